"""Clocks for the meter: the real monotonic clock, and a virtual one that lets CPU tests drive the very same
sampling and windowing code through simulated time, deterministically and faster than real time."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """Time source of the meter. ``now`` is in seconds on a monotonic scale shared by the sampler."""

    virtual: bool

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """``time.perf_counter`` (CLOCK_MONOTONIC on Linux, so it is the same scale in the sampler process)."""

    virtual = False

    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """Simulated time: ``sleep`` advances it, running the periodic tickers that fall due on the way.

    A ticker stands for a background thread (the counter sampler): its callback runs at each multiple of its
    period, with the clock set to that instant, exactly as if the thread had woken up then.
    """

    virtual = True

    def __init__(self, start: float = 1000.0) -> None:
        self._t = float(start)
        self._queue: list[tuple[float, int, float, Callable[[], None]]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self._t

    def add_ticker(self, period_s: float, callback: Callable[[], None],
                   first_at: float | None = None) -> None:
        if period_s <= 0:
            raise ValueError("ticker period must be positive")
        first = self._t + period_s if first_at is None else first_at
        heapq.heappush(self._queue, (first, next(self._ids), period_s, callback))

    def remove_ticker(self, callback: Callable[[], None]) -> None:
        self._queue = [entry for entry in self._queue if entry[3] is not callback]
        heapq.heapify(self._queue)

    def sleep(self, seconds: float) -> None:
        target = self._t + max(0.0, seconds)
        while self._queue and self._queue[0][0] <= target:
            due, ident, period, callback = heapq.heappop(self._queue)
            self._t = max(self._t, due)
            heapq.heappush(self._queue, (due + period, ident, period, callback))
            callback()
        self._t = target
