"""The order's next timer, kept across wake-ups (lean-history-2).

An order sleeps until a message comes or its next duty is due. Waiting with a timeout starts a
timer for every wait and cancels it whenever a message wakes the order first: two history
events per message, and a cancelled timer in every release. The alarm is set once per instant
instead: a message leaves it running, only a new instant replaces it, and an order that ends
leaves it behind with its run (a run's timers end with it).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow

SHORTEST = timedelta(seconds=1)
"""An instant already past rings after this (as the wait's timeout did)."""


class Alarm:
    def __init__(self) -> None:
        self._at: datetime | None = None
        self._ringing: asyncio.Task[None] | None = None
        self.rang = False
        """The instant set last has come (until the alarm is set again)."""

    def set(self, at: datetime | None) -> None:
        """Ring at `at` (None: never); a running timer for the same instant is kept."""
        running = self._ringing is not None and not self._ringing.done()
        if running and at == self._at:
            return
        if running:
            assert self._ringing is not None
            self._ringing.cancel()
        self._at, self._ringing, self.rang = at, None, False
        if at is not None:
            delay = max(at - workflow.now(), SHORTEST)
            self._ringing = asyncio.create_task(self._ring(delay))

    async def _ring(self, delay: timedelta) -> None:
        await workflow.sleep(delay)
        self.rang = True
