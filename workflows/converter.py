"""The data converter: pydantic models as plain JSON, with bad input failing clearly.

With the stock pydantic converter, a workflow started with JSON that does not match its model
(say, by the `temporal` CLI with a zero quantity) fails its workflow *task* over and over and
sits "running" forever. Here, in the workflow's own context (start input, signals, queries,
updates), a validation error becomes a non-retryable `ApplicationError` of type `InvalidInput`
that names each bad field: the workflow fails at once with that message. Activity results keep
the stock behaviour (a task failure that a fixed deployment can recover).

Payloads are decoded by the exact contract first. One only the rules of earlier releases accept
(an order taken before currencies were checked, in a history replayed months later) decodes
leniently, with what the exact contract refused recorded on it (`contract_problems`): the
workflow's start and the update validators refuse it, a replay carries on. A union input (the
workflow's `Order | CarriedState`) is reported against the member the payload is closest to,
not with a clause for every member.
"""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Any, Self

from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import (
    DataConverter,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError

from domain.contract import LENIENT, Message, faults, mark_lenient

INVALID_INPUT = "InvalidInput"


def describe(err: ValidationError) -> str:
    """`lines.0.quantity: Input should be greater than 0; ...`: one clause per bad field (a
    whole-model rule by its message alone)."""
    return "; ".join(
        f"{f['field']}: {f['message']}" if f["field"] else f["message"] for f in faults(err)
    )


@cache
def _adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


def _union_args(type_hint: Any) -> tuple[Any, ...]:
    """The members of a union (`A | B`, `A | None`), else just the type."""
    if typing.get_origin(type_hint) in (typing.Union, types.UnionType):
        return typing.get_args(type_hint)
    return (type_hint,)


def _members(type_hint: Any) -> tuple[Any, ...]:
    """The models of a union of models (`Order | CarriedState`), else just the type."""
    args = _union_args(type_hint)
    if all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
        return args
    return (type_hint,)


def _message_type(type_hint: Any) -> type[Message] | None:
    """The customer-service message a handler takes (`CancelRequest`, or `CancelRequest |
    None`), if it takes one."""
    hints = [h for h in _union_args(type_hint) if h is not type(None)]
    if len(hints) == 1 and isinstance(hints[0], type) and issubclass(hints[0], Message):
        return hints[0]
    return None


def unreadable(message_type: type[Message], err: InvalidPayload) -> Message:
    """An empty message that carries why it was refused: the handler answers it."""
    value = message_type.model_construct()
    mark_lenient(value, describe(err.error))
    return value


def decode(data: bytes, type_hint: Any) -> Any:
    """`data` as `type_hint` by the exact contract, else leniently with the problems recorded.
    Raises `InvalidPayload` naming the type (the closest member of a union) and each field."""
    errors: list[tuple[Any, ValidationError]] = []
    for member in _members(type_hint):
        try:
            return _adapter(member).validate_json(data)
        except ValidationError as err:
            errors.append((member, err))
    member, exact = min(errors, key=lambda e: e[1].error_count())
    try:
        value = _adapter(member).validate_json(data, context={LENIENT: True})
    except ValidationError:
        raise InvalidPayload(member, exact) from None
    mark_lenient(value, describe(exact))
    return value


class InvalidPayload(Exception):
    """A payload no rule of the contract accepts."""

    def __init__(self, type_hint: Any, err: ValidationError) -> None:
        self.name = getattr(type_hint, "__name__", "payload")
        self.error = err
        super().__init__(f"invalid {self.name}: {describe(err)}")

    def details(self) -> dict[str, object]:
        """For an integrator's code: the payload's type and each field at fault."""
        return {"payload": self.name, "errors": faults(self.error)}


class _ContractJSONConverter(PydanticJSONPlainPayloadConverter, WithSerializationContext):
    def __init__(self, in_workflow: bool = False) -> None:
        super().__init__()
        self._in_workflow = in_workflow
        self._sibling: Self | None = None

    def with_context(self, context: SerializationContext) -> Self:
        """The converter for `context`: this one, or its one sibling of the other kind. The SDK
        asks for every payload's context; building a new converter each time threw away the
        type-adapter cache (4 to 6 % of a worker's CPU during a release fan-out)."""
        in_workflow = isinstance(context, WorkflowSerializationContext)
        if in_workflow == self._in_workflow:
            return self
        if self._sibling is None:
            sibling = type(self)(in_workflow=in_workflow)
            sibling._type_adapter = self._type_adapter  # one cache for both kinds
            sibling._sibling = self
            self._sibling = sibling
        return self._sibling

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        try:
            return decode(payload.data, Any if type_hint is None else type_hint)
        except InvalidPayload as err:
            if not self._in_workflow:
                raise err.error from None
            message_type = _message_type(type_hint)
            if message_type is not None:
                return unreadable(message_type, err)
            raise ApplicationError(
                str(err), err.details(), type=INVALID_INPUT, non_retryable=True
            ) from None


class ContractPayloadConverter(PydanticPayloadConverter):
    def __init__(self) -> None:
        super().__init__()
        self._set_converters(
            *(
                _ContractJSONConverter() if isinstance(c, PydanticJSONPlainPayloadConverter) else c
                for c in self.converters.values()
            )
        )


data_converter = DataConverter(payload_converter_class=ContractPayloadConverter)
"""The one converter of every client and worker of the service."""
