"""The data converter: pydantic models as plain JSON, with bad input failing clearly.

With the stock pydantic converter, a workflow started with JSON that does not match its model
(say, by the `temporal` CLI with a zero quantity) fails its workflow *task* over and over and
sits "running" forever. Here, in the workflow's own context (start input, signals, queries,
updates), a validation error becomes a non-retryable `ApplicationError` of type `InvalidInput`
that names each bad field: the workflow fails at once with that message. Activity results keep
the stock behaviour (a task failure that a fixed deployment can recover).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import (
    DataConverter,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError

INVALID_INPUT = "InvalidInput"


def describe(err: ValidationError) -> str:
    """`lines.0.quantity: Input should be greater than 0; ...`: one clause per bad field."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(value)'}: {e['msg']}" for e in err.errors()
    )


class _ContractJSONConverter(PydanticJSONPlainPayloadConverter, WithSerializationContext):
    def __init__(self, in_workflow: bool = False) -> None:
        super().__init__()
        self._in_workflow = in_workflow

    def with_context(self, context: SerializationContext) -> Self:
        return type(self)(in_workflow=isinstance(context, WorkflowSerializationContext))

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        try:
            return super().from_payload(payload, type_hint)
        except ValidationError as err:
            if not self._in_workflow:
                raise
            name = getattr(type_hint, "__name__", "payload")
            raise ApplicationError(
                f"invalid {name}: {describe(err)}", type=INVALID_INPUT, non_retryable=True
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
