"""The timers of one backordered order: which duties are due now and when to wake up next.

Pure and deterministic: plain data in, plain data out, time always an argument. No I/O, no
clock, no randomness, and only stdlib, pydantic and `domain` imports, so the order workflow
calls it inside the Temporal sandbox and replays it safely.
"""

from domain.schedule.agenda import ScheduleSummary, due, next_wakeup, summary, upcoming
from domain.schedule.duties import Due, DutyKind
from domain.schedule.ftc import original_deadline
from domain.schedule.recording import (
    record,
    record_authorisation,
    record_awaiting_capture,
    record_cleared,
    record_consent,
    record_expected_ship_date,
    record_still_waiting,
)
from domain.schedule.state import (
    Authorisation,
    ConsentKind,
    FtcRecord,
    FtcState,
    ScheduleState,
)

__all__ = [
    "Authorisation",
    "ConsentKind",
    "Due",
    "DutyKind",
    "FtcRecord",
    "FtcState",
    "ScheduleState",
    "ScheduleSummary",
    "due",
    "next_wakeup",
    "original_deadline",
    "record",
    "record_authorisation",
    "record_awaiting_capture",
    "record_cleared",
    "record_consent",
    "record_expected_ship_date",
    "record_still_waiting",
    "summary",
    "upcoming",
]
