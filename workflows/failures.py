"""What an activity failure says: its error type and its innermost message."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError


def error_type_of(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def cause_of(err: BaseException) -> str:
    """The innermost message of an activity failure (what the gateway or ledger said)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)
