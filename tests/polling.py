"""Waiting for what happens a moment later (a signal handled, visibility updated, a pass run):
poll, never sleep a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], seconds: float = 60
) -> T:
    """Poll `probe` until `ok` holds; fail with the last value after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await probe()
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not there after {seconds}s: {value!r}")
        await asyncio.sleep(0.2)
