"""Types shared by the read-model queries the CLI answers from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


UtcInstant = Annotated[AwareDatetime, AfterValidator(_utc)]
"""A time in UTC whatever the session's time zone, so output does not depend on the server."""
