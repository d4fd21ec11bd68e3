"""CPU time and memory of the stack's processes, read from the OS (psutil, /proc).

A thread samples each group's cumulative CPU time (user + system) every 100 ms, stamped with the
host's wall clock. A scenario then asks for the CPU spent between two instants, taken from the
server-side timestamps that bound it (first start, last order waiting): the CPU of whatever the
bench does to notice the end (polls, history reads) after that instant is not counted.

PostgreSQL is a group: the postmaster, its live backends, and (through the postmaster's
`children_*` times) the backends that exited meanwhile.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import psutil

INTERVAL = 0.1
"""Seconds between samples: one costs about 1 ms of the bench's own CPU."""


@dataclass(frozen=True)
class Group:
    pid: int
    with_children: bool = False
    """Count the children too, live ones and (via the parent's counters) reaped ones."""


def cpu_seconds(group: Group) -> float:
    proc = psutil.Process(group.pid)
    t = proc.cpu_times()
    total = float(t.user + t.system)
    if group.with_children:
        total += t.children_user + t.children_system
        for child in proc.children():  # PostgreSQL's backends are direct children
            with suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
    return total


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


@dataclass
class Sampler:
    """Cumulative CPU seconds per group over time; `between(t0, t1)` interpolates."""

    groups: dict[str, Group] = field(default_factory=dict)
    _series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def watch(self, name: str, group: Group | None) -> None:
        """(Re)define a group, or drop it (None); its series starts afresh."""
        with self._lock:
            self._series.pop(name, None)
            if group is None:
                self.groups.pop(name, None)
            else:
                self.groups[name] = group
        self.sample()

    def sample(self) -> None:
        now = time.time()
        with self._lock:
            groups = dict(self.groups)
        readings = {}
        for name, group in groups.items():
            with suppress(psutil.Error):
                readings[name] = cpu_seconds(group)
        with self._lock:
            for name, value in readings.items():
                if name not in self.groups:
                    continue
                times, values = self._series.setdefault(name, ([], []))
                # cumulative CPU never falls: a backend caught between exit and reaping dips
                values.append(max(value, values[-1]) if values else value)
                times.append(now)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self.sample()

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self._run, name="bench cpu sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds each group spent between wall-clock instants t0 and t1."""
        self.sample()
        with self._lock:
            series = {k: (list(v[0]), list(v[1])) for k, v in self._series.items()}
        return {
            name: _at(times, values, t1) - _at(times, values, t0)
            for name, (times, values) in series.items()
        }


def _at(times: list[float], values: list[float], t: float) -> float:
    """The cumulative value at `t`, linear between the samples around it."""
    if not times:
        return 0.0
    i = bisect.bisect_left(times, t)
    if i == 0:
        return values[0]
    if i == len(times):
        return values[-1]
    t0, t1, v0, v1 = times[i - 1], times[i], values[i - 1], values[i]
    return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def own_group() -> Group:
    return Group(os.getpid())


def per_order_ms(cpu: Mapping[str, float], orders: int) -> dict[str, float]:
    return {name: seconds * 1000 / orders for name, seconds in cpu.items()}
