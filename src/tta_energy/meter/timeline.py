"""Counter timelines and the arithmetic that turns them into window energies.

NVML's cumulative energy counter changes in steps (about every 100 ms on an H200). The sampler records each
step as a change point ``(u_k, E_k)``: the instant the counter took the value ``E_k`` (joules). Between two
change points the counter says only how much energy was used in the whole interval, so the energy up to a
window edge that falls inside an interval has to be estimated. The estimators here:

``naive``
    what two raw reads return: the counter value last published before each edge (a step function). Its
    error is up to one update interval's energy per edge (about +-70 J at 700 W), whatever the window length.
``linear``
    piecewise-linear interpolation between change points: assumes constant power across the interval that
    holds the edge. Exact in steady state; wrong by up to ``(P_before - P_after) * L / 4`` when the power
    steps at the edge (work starting from idle, or the fast drop when the work ends).
``split`` (the meter's default)
    divides the edge interval's exactly known energy between its part outside and inside the window in
    proportion to ``P * length``, taking the power of each part from the neighbouring interval on the same
    side (the interval just before a start edge is outside the window, the one after it inside; for the last
    interval the in-window power is the window's own mean, solved by fixed-point iteration). It reduces to
    ``linear`` when the power is flat, and keeps the interval's total, so its error is bounded by how much
    the power differs from its neighbour within one interval.

All estimators are pure functions of the change points, so the CPU tests drive them with a simulated
counter of known ground truth.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

ESTIMATORS: tuple[str, ...] = ("split", "linear", "naive")


@dataclass(frozen=True)
class ChangePoint:
    """The counter took ``energy_J`` at about ``t`` (seconds); the change happened inside ``(lo, hi]``."""

    t: float
    energy_J: float
    lo: float
    hi: float


class WindowOutOfRange(ValueError):
    """The change points do not bracket the window (too early, or the sampler fell behind)."""


class DeviceTimeline:
    """Change points of one device's counter, appended by the sampler and read by the meter (thread-safe)."""

    def __init__(self) -> None:
        self._t: list[float] = []
        self._e: list[float] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._t)

    def add(self, point: ChangePoint) -> None:
        with self._lock:
            if self._e and point.energy_J < self._e[-1]:
                # the counter went backwards: the driver was reloaded; the old history no longer connects
                self._t.clear()
                self._e.clear()
            if self._t and point.t <= self._t[-1]:
                return
            self._t.append(point.t)
            self._e.append(point.energy_J)

    def snapshot(self) -> tuple[list[float], list[float]]:
        with self._lock:
            return list(self._t), list(self._e)

    def count_after(self, t: float) -> int:
        with self._lock:
            return len(self._t) - bisect.bisect_right(self._t, t)

    def discard_before(self, t: float, keep: int = 4) -> None:
        """Forget change points older than ``t`` (keeping ``keep`` of them), so a long sweep stays small."""
        with self._lock:
            cut = max(0, bisect.bisect_left(self._t, t) - keep)
            if cut:
                del self._t[:cut]
                del self._e[:cut]


def _segment(ts: Sequence[float], t: float) -> int:
    """Index ``i`` with ``ts[i] <= t < ts[i+1]``."""
    if len(ts) < 2 or t < ts[0] or t >= ts[-1]:
        raise WindowOutOfRange(f"t={t:.4f} outside the counter's change points "
                               f"[{ts[0] if ts else math.nan:.4f}, {ts[-1] if ts else math.nan:.4f})")
    return bisect.bisect_right(ts, t) - 1


def _power(ts: Sequence[float], es: Sequence[float], i: int) -> float | None:
    if 0 <= i < len(ts) - 1:
        return (es[i + 1] - es[i]) / (ts[i + 1] - ts[i])
    return None


def energy_naive(ts: Sequence[float], es: Sequence[float], t0: float, t1: float) -> float:
    """What raw reads at ``t0`` and ``t1`` return: the values last published before each instant."""
    i0 = bisect.bisect_right(ts, t0) - 1
    i1 = bisect.bisect_right(ts, t1) - 1
    if i0 < 0 or i1 < 0:
        raise WindowOutOfRange(f"no counter value before t={t0:.4f}")
    return es[i1] - es[i0]


def energy_at_linear(ts: Sequence[float], es: Sequence[float], t: float) -> float:
    i = _segment(ts, t)
    return es[i] + (es[i + 1] - es[i]) * (t - ts[i]) / (ts[i + 1] - ts[i])


def energy_linear(ts: Sequence[float], es: Sequence[float], t0: float, t1: float) -> float:
    return energy_at_linear(ts, es, t1) - energy_at_linear(ts, es, t0)


def _share(energy: float, p_in: float, len_in: float, p_out: float, len_out: float) -> float:
    """The in-window share of an interval's energy, split in proportion to power x length."""
    w_in = max(p_in, 0.0) * len_in
    w_out = max(p_out, 0.0) * len_out
    if w_in + w_out <= 0.0:
        return energy * len_in / (len_in + len_out)
    return energy * w_in / (w_in + w_out)


def energy_split(ts: Sequence[float], es: Sequence[float], t0: float, t1: float,
                 iterations: int = 8) -> float:
    """Window energy with both edge intervals split by the neighbouring intervals' powers (see above)."""
    if t1 <= t0:
        return 0.0
    a = _segment(ts, t0)
    b = _segment(ts, t1)
    energy = energy_linear(ts, es, t0, t1)  # starting point of the fixed-point iteration
    if a == b:
        # the whole window inside one interval: take the outside parts' energy from the neighbours
        p_before = _power(ts, es, a - 1)
        p_after = _power(ts, es, a + 1)
        if p_before is None or p_after is None:
            return energy
        total = es[a + 1] - es[a]
        inside = total - p_before * (t0 - ts[a]) - p_after * (ts[a + 1] - t1)
        return min(max(inside, 0.0), total)
    full = es[b] - es[a + 1]  # whole intervals inside the window: exact
    p_out_start = _power(ts, es, a - 1)
    p_out_end = _power(ts, es, b + 1)
    p_in_start_nb = _power(ts, es, a + 1) if a + 1 < b else None
    p_in_end_nb = _power(ts, es, b - 1) if b - 1 > a else None
    e_a = es[a + 1] - es[a]
    e_b = es[b + 1] - es[b]
    for _ in range(max(1, iterations)):
        mean = energy / (t1 - t0)
        p_in_start = p_in_start_nb if p_in_start_nb is not None else mean
        p_in_end = p_in_end_nb if p_in_end_nb is not None else mean
        start_part = _share(e_a, p_in_start, ts[a + 1] - t0,
                            p_out_start if p_out_start is not None else p_in_start, t0 - ts[a])
        end_part = _share(e_b, p_in_end, t1 - ts[b], p_out_end if p_out_end is not None else p_in_end,
                          ts[b + 1] - t1)
        new = start_part + full + end_part
        if abs(new - energy) < 1e-9 * max(1.0, abs(new)):
            energy = new
            break
        energy = new
    return energy


def window_energy(ts: Sequence[float], es: Sequence[float], t0: float, t1: float, estimator: str) -> float:
    if estimator == "split":
        return energy_split(ts, es, t0, t1)
    if estimator == "linear":
        return energy_linear(ts, es, t0, t1)
    if estimator == "naive":
        return energy_naive(ts, es, t0, t1)
    raise ValueError(f"unknown estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}")


def changes_needed_after(estimator: str) -> int:
    """Change points needed after a window's end before it can be resolved (``naive`` reads the last update
    before the end, which is known only once a later one has come through the sampler)."""
    return {"split": 2, "linear": 1, "naive": 1}[estimator]
