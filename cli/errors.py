"""What the user is told when a command fails: one `backorder: ...` message, never a traceback.

Commands raise `CliError` with their own words. What they do not expect (`UNEXPECTED`) still
reaches `main`, which prints `failure_message(err)`: one line naming the problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    RPCTimeoutOrCancelledError,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.contract import faults

M = TypeVar("M", bound=BaseModel)


class CliError(Exception):
    """A user-facing failure: printed as one clear message, exit code 1."""


def validation_lines(err: ValidationError, whole: str = "(order)") -> str:
    """One indented `field: why` line per problem; `whole` names a problem of the whole value."""
    return "\n".join(f"  {f['field'] or whole}: {f['message']}" for f in faults(err))


def invalid(err: ValidationError, what: str, whole: str | None = None) -> CliError:
    """`not a valid <what>:` and the fields: how every payload built from arguments fails."""
    return CliError(f"not a valid {what}:\n{validation_lines(err, whole or f'({what})')}")


class BadValue(ValueError):
    """A value typed on the command line that its parser refuses; Click reports it as a usage
    error naming the option and this message (exit 2)."""


def validated(model: type[M], what: str, whole: str | None = None, **fields: Any) -> M:
    """`model` from the user's values, checked before anything is sent: a bad one is a
    CliError naming each field and why."""
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        raise invalid(err, what, whole) from None


def first_reason(err: ValidationError) -> str:
    """Why one value was refused, in pydantic's words (for one-line usage errors)."""
    return "; ".join(f["message"] for f in faults(err))


@contextmanager
def refused_as(what: str) -> Iterator[None]:
    """An update the workflow refused becomes `<what>: <the workflow's reason>`."""
    try:
        yield
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise CliError(f"{what} ({cause.type}): {cause.message}") from None
        raise CliError(f"{what}: {cause}") from None


@contextmanager
def missing_as(message: str) -> Iterator[None]:
    """Temporal's "workflow not found" becomes `message`; a missing namespace is not a missing
    workflow and keeps Temporal's words (see `failure_message`)."""
    try:
        yield
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND and not namespace_missing(err):
            raise CliError(message) from None
        raise


def namespace_missing(err: RPCError) -> bool:
    """Whether Temporal's NOT_FOUND is about the namespace rather than the workflow."""
    return any(d.type_url.endswith(".NamespaceNotFoundFailure") for d in err.grpc_status.details)


def timed_out(err: RPCError) -> bool:
    """The call's deadline passed (the client's `rpc_timeout` shows as CANCELLED)."""
    return err.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED)


UNEXPECTED = (
    ValidationError,
    RPCError,
    WorkflowUpdateFailedError,
    WorkflowQueryFailedError,
    RPCTimeoutOrCancelledError,
    TimeoutError,  # asyncio.TimeoutError since 3.11
    OSError,
)
"""Failures no command turns into a CliError of its own; `main` prints them in one line."""


def failure_message(err: BaseException) -> str:
    """One line for a failure of `UNEXPECTED`: what failed, in the words of who refused."""
    match err:
        case ValidationError():
            return f"not a valid {err.title}:\n{validation_lines(err, '(value)')}"
        case RPCError():
            return rpc_message(err)
        case WorkflowUpdateFailedError():
            return f"the workflow refused the update: {err.cause}"
        case WorkflowQueryFailedError():
            return f"the workflow's query failed: {err.message}"
        case RPCTimeoutOrCancelledError() | TimeoutError():
            return f"Temporal did not answer in time{f': {err}' if str(err) else ''}"
        case OSError() if err.filename is not None and err.strerror:
            return f"{err.filename}: {err.strerror}"
    return str(err) or type(err).__name__


def rpc_message(err: RPCError) -> str:
    """Temporal's refusal with its status (`permission denied`, `unavailable`...)."""
    if timed_out(err):
        return f"Temporal did not answer in time: {err.message}"
    status = err.status.name.lower().replace("_", " ")
    hint = " (`backorder setup temporal` creates it)" if namespace_missing(err) else ""
    return f"Temporal refused the request ({status}): {err.message}{hint}"
