"""The window arithmetic of the meter on counter change points with an exactly known power function."""

from __future__ import annotations

import math

import pytest

from tta_energy.meter.timeline import (
    ChangePoint,
    DeviceTimeline,
    WindowOutOfRange,
    changes_needed_after,
    energy_linear,
    energy_naive,
    energy_split,
    window_energy,
)


def piecewise_power(steps: list[tuple[float, float]]):
    """Power (W) that takes value p from time t on, for each (t, p); returns (power, cumulative energy)."""

    def energy(t: float) -> float:
        total = 0.0
        for (start, p), nxt in zip(steps, [*steps[1:], (math.inf, 0.0)], strict=True):
            if t <= start:
                break
            total += p * (min(t, nxt[0]) - start)
        return total

    return energy


def counter_points(energy, period: float = 0.1, start: float = 0.0, end: float = 4.0):
    """Change points of a counter that publishes the exact cumulative energy every ``period`` seconds."""
    n = int(round((end - start) / period))
    ts = [start + k * period for k in range(n + 1)]
    return ts, [energy(t) for t in ts]


def test_flat_power_is_exact_for_the_interpolating_estimators_and_not_for_naive_reads():
    energy = piecewise_power([(0.0, 500.0)])
    ts, es = counter_points(energy)
    t0, t1 = 1.037, 1.268  # not on the update grid, and not a whole number of periods long
    truth = 500.0 * (t1 - t0)
    assert energy_split(ts, es, t0, t1) == pytest.approx(truth, rel=1e-12)
    assert energy_linear(ts, es, t0, t1) == pytest.approx(truth, rel=1e-12)
    # a raw read returns the value published last: here 1.0 and 1.2, i.e. 100 J for a 115.5 J window
    assert energy_naive(ts, es, t0, t1) == pytest.approx(100.0)
    assert abs(energy_naive(ts, es, t0, t1) / truth - 1) > 0.1


def test_split_is_exact_for_a_load_step_inside_the_edge_intervals_where_linear_is_not():
    # idle 80 W, then 700 W from t0 = 1.03 to t1 = 2.261, then 80 W: both steps fall mid-interval
    t0, t1 = 1.03, 2.261
    energy = piecewise_power([(0.0, 80.0), (t0, 700.0), (t1, 80.0)])
    ts, es = counter_points(energy)
    truth = 700.0 * (t1 - t0)
    assert energy_split(ts, es, t0, t1) == pytest.approx(truth, rel=1e-9)
    linear_error = energy_linear(ts, es, t0, t1) / truth - 1
    assert abs(linear_error) > 0.01  # linear smears each step over its 100 ms interval


def test_split_handles_short_windows_inside_one_or_two_intervals():
    for t0, t1 in ((1.02, 1.09), (1.05, 1.17)):  # inside one interval; across one update
        energy = piecewise_power([(0.0, 80.0), (t0, 650.0), (t1, 80.0)])
        ts, es = counter_points(energy)
        truth = 650.0 * (t1 - t0)
        assert energy_split(ts, es, t0, t1) == pytest.approx(truth, rel=1e-6)
        assert abs(energy_linear(ts, es, t0, t1) / truth - 1) > 0.05


def test_split_energies_of_adjacent_long_phases_add_up_to_the_window():
    energy = piecewise_power([(0.0, 90.0), (0.52, 300.0), (0.91, 690.0), (2.43, 450.0), (3.1, 85.0)])
    ts, es = counter_points(energy)
    edges = [0.52, 0.91, 2.43, 3.1]
    parts = [energy_split(ts, es, a, b) for a, b in zip(edges, edges[1:], strict=False)]
    assert sum(parts) == pytest.approx(energy_split(ts, es, edges[0], edges[-1]), rel=1e-12)
    for (a, b), part in zip(zip(edges, edges[1:], strict=False), parts, strict=True):
        assert part == pytest.approx(energy(b) - energy(a), rel=1e-6)


def test_window_must_be_bracketed_by_change_points():
    ts, es = counter_points(piecewise_power([(0.0, 100.0)]), end=1.0)
    with pytest.raises(WindowOutOfRange):
        window_energy(ts, es, 0.5, 1.05, "split")  # no update after the end yet
    with pytest.raises(WindowOutOfRange):
        window_energy(ts, es, -0.1, 0.5, "linear")
    with pytest.raises(ValueError, match="unknown estimator"):
        window_energy(ts, es, 0.2, 0.5, "cubic")
    assert changes_needed_after("split") == 2 and changes_needed_after("linear") == 1
    assert changes_needed_after("naive") == 1


def test_timeline_orders_points_forgets_old_ones_and_restarts_after_a_counter_reset():
    timeline = DeviceTimeline()
    for k in range(50):
        timeline.add(ChangePoint(t=0.1 * k, energy_J=10.0 * k, lo=0.1 * k - 0.001, hi=0.1 * k))
    timeline.add(ChangePoint(t=1.0, energy_J=999.0, lo=0.999, hi=1.0))  # out of order: ignored
    assert len(timeline) == 50
    assert timeline.count_after(4.05) == 9  # 4.1 ... 4.9
    timeline.discard_before(3.0, keep=2)
    ts, _ = timeline.snapshot()
    assert ts[0] == pytest.approx(2.8) and len(ts) == 22
    timeline.add(ChangePoint(t=5.0, energy_J=1.0, lo=4.99, hi=5.0))  # the driver reloaded: counter restarted
    assert timeline.snapshot() == ([5.0], [1.0])
