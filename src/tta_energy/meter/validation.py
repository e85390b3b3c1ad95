"""Validation of the meter against ground truth, side by side with its peers.

``benchmarks/meter_validation.py`` runs it. Protocol, per workload (a bf16 8192^3 matmul at the power limit,
and an AudioLDM-sized UNet step with classifier-free guidance replayed as a CUDA graph, so that its cost per
iteration is the GPU's and not the Python launcher's):

* **ground truth**: blocks (``truth_s``) of back-to-back iterations, interleaved with the steady trials
  (before, between chunks, after), with the meter's sampler running as during the trials. A block's steady
  power is the counter's energy between two change points (exact counter values, the first second skipped)
  over their time difference; its energy per iteration is that power times the block's time per iteration.
  A trial's truth is its iteration count times the energy per iteration, interpolated in time between the
  neighbouring blocks (thermal drift); ``truth_power_J`` (steady power x time) is kept as a cross-check.
* **steady** trials: the window sits inside continuous load. The other tools' bookkeeping (CodeCarbon's task,
  Zeus's window, two raw reads) happens while queued *bridge* iterations keep the GPU busy, so the only idle
  time near the meter's edges is the microseconds between a synchronisation and the next launch. A CUDA event
  checks that the bridge outlasted the bookkeeping (``continuous``); trials where it did not are kept in the
  CSV and left out of the statistics. Each tool's truth is the window's iterations plus steady power times
  the extra loaded time its own (wider) window holds. Window lengths are jittered by up to +-50 ms so their
  phase against the 100 ms counter grid is random. ``meter_<estimator>_repeated_1s``: a call of the target
  length repeated until the window lasts 1 s (``min_window_s``), energy per call, also inside the load.
* **isolated** trials: idle gap, window, idle: a single call from idle, as in a sweep. The truth assumes the
  steady energy per iteration, so these rows also carry the GPU's own ramp from idle: they compare the
  methods at power steps, they do not measure the meter's error.
* **overhead**: energy per 1-s call of each workload with no sampler, with the sampler process and with the
  sampler thread, measured from the main thread by polling the counter only at the block's edges;
  ``overhead_reps`` interleaved repetitions (the order rotates), each mode compared with the same
  repetition's no-sampler block; mean, spread and a 95% interval, so that a difference within the noise is
  reported as such.

A :class:`SimulatedRig` runs the same protocol on a simulated GPU in virtual time (``--dry-run``), so CI
exercises the protocol and the aggregation.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import interpolate, stats

from tta_energy.fileio import write_text_atomic
from tta_energy.meter.clock import Clock, VirtualClock
from tta_energy.meter.meter import EnergyMeter, Measurement
from tta_energy.meter.timeline import ESTIMATORS
from tta_energy.schema import J_PER_KWH

CSV_COLUMNS: tuple[str, ...] = ("workload", "scenario", "method", "window_target_s", "trial", "iterations",
                                "calls", "window_s", "extra_s", "measured_J", "truth_J", "rel_error",
                                "truth_power_J", "continuous", "order", "t_rel_s", "note")
#: (label, limit, selection of steady rows by window_target_s)
TARGETS: tuple[tuple[str, float], ...] = (("windows >= 1 s", 0.005), ("windows of 0.2 s", 0.02))
OVERHEAD_TARGET = 0.01
DEFAULT_ESTIMATOR = "split"  # EnergyMeter's default; see docs/meter.md for the choice
DEFAULT_METHOD = f"meter_{DEFAULT_ESTIMATOR}"
SAMPLER_MODES: tuple[str, ...] = ("off", "process", "thread")


@dataclass
class Config:
    windows: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
    trials: dict[float, int] = field(default_factory=lambda: {0.1: 3, 0.2: 12, 0.5: 3, 1.0: 10, 2.0: 4,
                                                              5.0: 1})
    truth_s: float = 3.0  # the first second is skipped: counter span ~1.9 s, instants +-0.5 ms: 0.05%
    truth_blocks: int = 5  # interleaved: before, between chunks of steady trials, after (tracks drift)
    preroll_s: float = 0.2
    postroll_s: float = 0.3
    bridge_s: float = 0.1  # initial bridge; grows to twice the slowest bookkeeping seen
    isolated_windows: tuple[float, ...] = (0.2, 1.0)
    isolated_trials: int = 3
    isolated_gap_s: float = 0.5
    repeated_targets: tuple[float, ...] = (0.1, 0.2)
    repeated_trials: int = 4  # steady, per target
    isolated_repeated_trials: int = 2  # from idle, per target
    repeated_min_window_s: float = 1.0
    overhead_reps: int = 3
    overhead_calls: int = 2
    idle_s: float = 3.0
    warmup_s: float = 2.0
    seed: int = 0
    budget_s: float = 300.0  # hard: sections are cut short past it (the device command has 600 s)
    overhead_reserve_s: float = 75.0  # kept for the overhead section out of budget_s

    @classmethod
    def quick(cls) -> Config:
        return cls(windows=(0.2, 1.0), trials={0.2: 4, 1.0: 3}, truth_s=3.0, truth_blocks=3,
                   isolated_windows=(0.2,), isolated_trials=1, repeated_targets=(0.2,), repeated_trials=2,
                   isolated_repeated_trials=1, overhead_reps=2, overhead_calls=1, idle_s=2.0, warmup_s=1.0,
                   budget_s=150.0, overhead_reserve_s=40.0)


@dataclass
class Workload:
    name: str
    step: Callable[[], None]  # enqueue one iteration (asynchronous on a GPU)
    description: str
    t_iter: float = math.nan


class Peer(ABC):
    """Another tool measuring the same windows."""

    name: str

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def end(self) -> float:
        """Energy of the window, J (NaN if the tool gave none)."""

    def close(self) -> None:  # noqa: B027 - most peers hold nothing to release
        """Release what the tool holds."""


class Rig(ABC):
    """The machine the protocol runs on: a real GPU, or the simulated one."""

    clock: Clock
    meter: EnergyMeter
    peers: list[Peer]
    skipped_peers: dict[str, str]

    @abstractmethod
    def sync(self) -> None: ...

    @abstractmethod
    def raw_read_J(self, device: int | None = None) -> float:
        """One naive read of the counter(s), J (the sum over the meter's devices if ``device`` is None)."""

    @abstractmethod
    def workloads(self) -> list[Workload]: ...

    @abstractmethod
    def new_meter(self, sampler: str) -> EnergyMeter: ...

    def busy_marker(self) -> Callable[[], bool]:
        """A check, callable later, of whether the GPU is still running work issued before this call.
        Work issued to the simulated GPU runs at once and its load holds until :meth:`sync`: always busy."""
        return lambda: True

    def idle(self, seconds: float) -> None:
        """Leave the GPU idle for ``seconds`` (call after :meth:`sync`)."""
        self.clock.sleep(seconds)

    def describe(self) -> dict[str, str]:
        return {}

    def counter_probe(self) -> dict[str, object]:
        return {}

    def close(self) -> None:
        self.meter.close()

    def run_iterations(self, workload: Workload, n: int) -> None:
        for _ in range(n):
            workload.step()

    def run_for(self, workload: Workload, seconds: float) -> int:
        end = self.clock.now() + seconds
        n = 0
        while self.clock.now() < end:
            workload.step()
            n += 1
        return n


# --------------------------------------------------------------------------------------------- protocol
class Validation:
    def __init__(self, rig: Rig, config: Config, log: Callable[[str], None] = print) -> None:
        self.rig = rig
        self.config = config
        self.log = log
        self.rng = random.Random(config.seed)
        self.rows: list[dict[str, object]] = []
        self.truth: dict[str, list[dict[str, float]]] = {}
        self.info: dict[str, object] = {}
        self.skipped: list[str] = []
        self.bookkeeping_s = 0.0  # slowest peers' begin or end seen so far
        self._order = 0
        self._start = time.perf_counter()
        self._t0 = 0.0

    # --- helpers
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def _row(self, **values: object) -> None:
        self._order += 1
        row = {c: values.get(c, math.nan) for c in CSV_COLUMNS}
        row["_t"] = values.get("_t", math.nan)  # clock time of the window, for the truth's drift correction
        row["order"] = self._order
        row["note"] = values.get("note", "")
        row["extra_s"] = values.get("extra_s", 0.0)
        row["continuous"] = values.get("continuous", True)
        self.rows.append(row)

    def _jittered(self, target: float) -> float:
        return max(0.02, target + self.rng.uniform(-1, 1) * min(0.05, target / 4))

    def _iterations(self, wl: Workload, target: float) -> int:
        return max(1, round(self._jittered(target) / wl.t_iter))

    # --- ground truth
    def truth_block(self, wl: Workload, label: str) -> dict[str, float]:
        rig, cfg = self.rig, self.config
        rig.run_for(wl, 0.5)
        rig.sync()
        raw0 = rig.raw_read_J()
        t_start = rig.clock.now()
        n = max(1, math.ceil(cfg.truth_s / wl.t_iter))
        rig.run_iterations(wl, n)
        rig.sync()
        t_end = rig.clock.now()
        raw1 = rig.raw_read_J()
        power = 0.0
        span = span_mid = math.nan
        for timeline in rig.meter.sampler.timelines:  # type: ignore[union-attr]
            ts, es = timeline.snapshot()
            inside = [i for i, t in enumerate(ts) if t_start + 1.0 <= t <= t_end - 0.01]
            if len(inside) < 2:
                raise RuntimeError(f"truth block {label}: too few counter updates ({len(inside)})")
            i0, i1 = inside[0], inside[-1]
            power += (es[i1] - es[i0]) / (ts[i1] - ts[i0])
            span = ts[i1] - ts[i0]
            span_mid = 0.5 * (ts[i0] + ts[i1])
        t_iter = (t_end - t_start) / n
        # the block stands for the instant in the middle of the counter span its power comes from
        block = {"t_mid": span_mid, "e_iter": power * t_iter, "t_iter": t_iter,
                 "power_W": power, "naive_e_iter": (raw1 - raw0) / n, "n": float(n), "counter_span_s": span,
                 "t_rel_s": t_start - self._t0}
        self.truth.setdefault(wl.name, []).append(block)
        self.log(f"  truth {label}: {power:.1f} W, {t_iter * 1e3:.3f} ms/iter, {block['e_iter']:.4f} J/iter "
                 f"(naive {block['naive_e_iter']:.4f}) over {n} iterations")
        return block

    def _truth_at(self, workload: str, t: float, key: str) -> float:
        """``key`` of the truth blocks at ``t``: a monotone cubic (PCHIP) through the blocks, which follows a
        thermal drift's curvature without overshooting (linear with two blocks; constant outside them)."""
        blocks = sorted(self.truth[workload], key=lambda b: b["t_mid"])
        ts = np.array([b["t_mid"] for b in blocks])
        values = np.array([b[key] for b in blocks])
        if len(blocks) < 3 or np.any(np.diff(ts) <= 0):
            return float(np.interp(t, ts, values))
        return float(interpolate.PchipInterpolator(ts, values)(min(max(t, ts[0]), ts[-1])))

    def e_iter_at(self, workload: str, t: float) -> float:
        return self._truth_at(workload, t, "e_iter")

    def power_at(self, workload: str, t: float) -> float:
        return self._truth_at(workload, t, "power_W")

    # --- one window measured by everybody
    def _timed(self, call: Callable[[], object]) -> tuple[object, float, float]:
        """(result, midpoint, duration) of a call on the rig's clock."""
        before = self.rig.clock.now()
        result = call()
        after = self.rig.clock.now()
        return result, 0.5 * (before + after), after - before

    def _bridge(self, wl: Workload) -> Callable[[], bool]:
        """Queue iterations that outlast the other tools' bookkeeping; returns the still-busy check."""
        seconds = max(self.config.bridge_s, 2.0 * self.bookkeeping_s + 0.02)
        self.rig.run_iterations(wl, max(1, math.ceil(seconds / wl.t_iter)))
        return self.rig.busy_marker()

    def _nested_window(self, wl: Workload, n: int, steady: bool) -> dict[str, object]:
        """CodeCarbon, Zeus, two raw reads and the meter (innermost) on one window of ``n`` iterations.
        ``steady``: the outer tools' bookkeeping runs while bridge iterations keep the GPU busy; otherwise
        (isolated) the GPU is idle around the window and the meter aligns its start to a counter update."""
        rig = self.rig
        if steady:
            still_busy = self._bridge(wl)
        else:
            rig.sync()
            rig.meter.align()
        begins: dict[str, float] = {}
        slowest = 0.0
        for peer in rig.peers:
            _, begins[peer.name], took = self._timed(peer.begin)
            slowest = max(slowest, took)
        raw0, begins["raw_counter"], _ = self._timed(rig.raw_read_J)
        continuous = still_busy() if steady else True
        window = rig.meter.begin(align=False)
        rig.run_iterations(wl, n)
        rig.meter.end(window)
        if steady:
            still_busy = self._bridge(wl)
        raw1, end_raw, _ = self._timed(rig.raw_read_J)
        ends = {"raw_counter": end_raw}
        values = {"raw_counter": raw1 - raw0}  # type: ignore[operator]
        for peer in reversed(rig.peers):
            values[peer.name], ends[peer.name], took = self._timed(peer.end)  # type: ignore[assignment]
            slowest = max(slowest, took)
        if steady:
            continuous = continuous and still_busy()
        self.bookkeeping_s = max(self.bookkeeping_s, slowest)
        extra = {name: (window.t0 - begins[name]) + (ends[name] - window.t1) for name in values}
        return {"window": window, "values": values, "extra_s": extra, "continuous": continuous}

    def _record_window(self, wl: Workload, scenario: str, target: float, trial: int, n: int,
                       nested: dict[str, object], m: Measurement) -> None:
        common = {"workload": wl.name, "scenario": scenario, "window_target_s": target, "trial": trial,
                  "iterations": n, "calls": 1, "window_s": m.window_s, "t_rel_s": m.t_start - self._t0,
                  "_t": m.t_start, "continuous": nested["continuous"]}
        for estimator in ESTIMATORS:
            self._row(method=f"meter_{estimator}", measured_J=m.window_estimates_J[estimator], **common)
        extra: dict[str, float] = nested["extra_s"]  # type: ignore[assignment]
        for name, value in nested["values"].items():  # type: ignore[attr-defined]
            self._row(method=name, measured_J=value, extra_s=extra[name], **common)

    def steady_trial(self, wl: Workload, target: float, trial: int) -> None:
        rig, cfg = self.rig, self.config
        n = self._iterations(wl, target)
        rig.run_for(wl, cfg.preroll_s)
        nested = self._nested_window(wl, n, steady=True)
        rig.run_for(wl, cfg.postroll_s)  # the counter updates after the window come while the load goes on
        m = rig.meter.resolve(nested["window"])  # type: ignore[arg-type]
        self._record_window(wl, "steady", target, trial, n, nested, m)

    def isolated_trial(self, wl: Workload, target: float, trial: int) -> None:
        rig, cfg = self.rig, self.config
        n = self._iterations(wl, target)
        rig.sync()
        rig.idle(cfg.isolated_gap_s)
        nested = self._nested_window(wl, n, steady=False)
        m = rig.meter.resolve(nested["window"])  # type: ignore[arg-type]
        self._record_window(wl, "isolated", target, trial, n, nested, m)

    def _repeated_rows(self, wl: Workload, scenario: str, target: float, trial: int, n: int, m: Measurement,
                       continuous: bool) -> None:
        label = f"repeated_{self.config.repeated_min_window_s:g}s"
        for estimator in ESTIMATORS:
            self._row(workload=wl.name, scenario=scenario, method=f"meter_{estimator}_{label}",
                      window_target_s=target, trial=trial, iterations=n, calls=m.calls, window_s=m.wall_s,
                      measured_J=m.window_estimates_J[estimator] / m.calls, t_rel_s=m.t_start - self._t0,
                      _t=m.t_start, continuous=continuous, note=f"window {m.window_s:.3f} s, per call")

    def repeated_trial(self, wl: Workload, target: float, trial: int, steady: bool) -> None:
        """A call of ``target`` seconds measured with ``min_window_s`` repetition, inside the load (steady)
        or from idle (isolated, through ``EnergyMeter.measure`` exactly as a sweep calls it)."""
        rig, cfg = self.rig, self.config
        n = self._iterations(wl, target)
        meter = rig.meter
        saved = meter.min_window_s
        meter.min_window_s = cfg.repeated_min_window_s
        try:
            if steady:
                rig.run_for(wl, cfg.preroll_s)
                still_busy = self._bridge(wl)
                continuous = still_busy()
                window = meter.begin(align=False)
                _, calls = meter.repeat_in(window, lambda phases: rig.run_iterations(wl, n))
                meter.end(window)
                rig.run_for(wl, cfg.postroll_s)
                m = meter.resolve(window, calls)
            else:
                rig.sync()
                rig.idle(cfg.isolated_gap_s)
                continuous = True
                _, m = meter.measure(lambda phases: rig.run_iterations(wl, n), align=True)
        finally:
            meter.min_window_s = saved
        self._repeated_rows(wl, "steady" if steady else "isolated", target, trial, n, m, continuous)

    # --- overhead of the sampler
    def _poll_change(self, timeout_s: float = 1.0) -> tuple[float, float]:
        """(value J, instant) of the next update of device 0's counter, polled from this thread."""
        rig = self.rig
        first = rig.raw_read_J(0)
        last_t = rig.clock.now()
        deadline = last_t + timeout_s
        while rig.clock.now() < deadline:
            rig.clock.sleep(0.0002)
            before = rig.clock.now()
            value = rig.raw_read_J(0)
            now = 0.5 * (before + rig.clock.now())
            if value != first:
                return value, 0.5 * (last_t + now)
            last_t = now
        raise RuntimeError("the energy counter did not update")

    def overhead_block(self, wl: Workload, n_per_call: int) -> tuple[float, float]:
        """(energy per call J, wall s per call) of ``overhead_calls`` calls, from edge polling only."""
        rig, cfg = self.rig, self.config
        rig.sync()
        e_a, u_a = self._poll_change()
        t_start = rig.clock.now()
        for _ in range(cfg.overhead_calls):
            rig.run_iterations(wl, n_per_call)
        rig.sync()
        t_end = rig.clock.now()
        e_b, u_b = self._poll_change()
        e_c, u_c = self._poll_change()
        tail_power = (e_c - e_b) / (u_c - u_b)
        idle = self.info.get("idle_power_W", math.nan)
        idle = tail_power if not isinstance(idle, float) or math.isnan(idle) else idle
        # the same edge corrections for every mode: what is left of their error cancels in the comparison
        energy = (e_b - e_a) - tail_power * (u_b - t_end) - idle * (t_start - u_a)
        return energy / cfg.overhead_calls, (t_end - t_start) / cfg.overhead_calls

    def _overhead_one(self, wl: Workload, mode: str, rep: int) -> None:
        n_per_call = max(1, round(1.0 / wl.t_iter))
        meter = None if mode == "off" else self.rig.new_meter(mode)
        try:
            settle = self.rig.clock.now()
            if meter is not None:
                meter.start()
            # the same thermal history before every block, however long the sampler took to start
            self.rig.idle(max(0.0, 1.0 - (self.rig.clock.now() - settle)))
            self.rig.run_for(wl, 0.5)
            self.rig.sync()
            self.rig.idle(0.3)
            energy, wall = self.overhead_block(wl, n_per_call)
        finally:
            if meter is not None:
                meter.close()
        self._row(workload=wl.name, scenario="overhead", method=f"sampler_{mode}", window_target_s=1.0,
                  trial=rep, iterations=n_per_call, calls=self.config.overhead_calls, window_s=wall,
                  measured_J=energy, note="truth = the same repetition's energy per call without sampler")
        self.log(f"  overhead {wl.name} rep {rep + 1} sampler {mode}: {energy:.2f} J/call, "
                 f"{wall * 1e3:.1f} ms/call")

    def overhead(self, workloads: list[Workload], deadline: float) -> None:
        """Interleaved repetitions (off/process/thread, order rotating) on every workload, within time."""
        cfg = self.config
        for rep in range(cfg.overhead_reps):
            started = self.elapsed()
            for wl in workloads:
                order = list(SAMPLER_MODES[rep % 3:] + SAMPLER_MODES[:rep % 3])
                for mode in order:
                    self._overhead_one(wl, mode, rep)
            took = self.elapsed() - started
            if rep + 1 < cfg.overhead_reps and self.elapsed() + took > deadline:
                self.skipped.append(f"sampler overhead: {cfg.overhead_reps - rep - 1} of "
                                    f"{cfg.overhead_reps} repetitions (time budget)")
                return

    # --- the whole run
    def run(self) -> pd.DataFrame:
        rig, cfg = self.rig, self.config
        self._t0 = rig.clock.now()
        self.info.update(rig.describe())
        self.log(f"idle power over {cfg.idle_s:g} s ...")
        self.info["idle_power_W"] = rig.meter.measure_idle(cfg.idle_s)
        self.info["counter_idle"] = update_interval_stats(rig.meter.sampler.timelines[0].snapshot()[0])
        self.info["counter_probe"] = rig.counter_probe()
        self.log(f"  idle {self.info['idle_power_W']:.2f} W; counter updates {self.info['counter_idle']}")
        workloads = rig.workloads()
        for number, wl in enumerate(workloads):
            allotment = (cfg.budget_s - cfg.overhead_reserve_s - self.elapsed()) / (len(workloads) - number)
            self._run_workload(wl, self.elapsed() + allotment)
        rig.meter.close()  # its sampler must not run during the blocks without sampler
        overhead_deadline = cfg.budget_s - 2.0
        if self.elapsed() < overhead_deadline - 10.0:
            self.log("overhead of the sampler ...")
            self.overhead(workloads, overhead_deadline)
        else:
            self.skipped.append("sampler overhead (time budget)")
        return self.frame()

    def _run_workload(self, wl: Workload, deadline: float) -> None:
        rig, cfg = self.rig, self.config
        self.log(f"workload {wl.name}: {wl.description}")
        calibrate(rig, wl)
        self.log(f"  {wl.t_iter * 1e3:.3f} ms per iteration; warming up {cfg.warmup_s:g} s")
        rig.run_for(wl, cfg.warmup_s)
        self.truth_block(wl, "1")
        snap = rig.meter.sampler.timelines[0].snapshot()[0]  # type: ignore[union-attr]
        self.info[f"counter_load_{wl.name}"] = update_interval_stats(
            [t for t in snap if t >= rig.clock.now() - cfg.truth_s + 1.0])
        steady = [("steady", w, k) for w in cfg.windows for k in range(cfg.trials.get(w, 1))]
        steady += [("steady_repeated", w, k) for w in cfg.repeated_targets
                   for k in range(cfg.repeated_trials)]
        single = [("isolated", w, k) for w in cfg.isolated_windows for k in range(cfg.isolated_trials)]
        single += [("isolated_repeated", w, k) for w in cfg.repeated_targets
                   for k in range(cfg.isolated_repeated_trials)]
        self.rng.shuffle(steady)
        self.rng.shuffle(single)
        chunks = max(1, cfg.truth_blocks - 1)
        # the truth blocks still to run and the single calls get their share of the workload's time
        single_reserve = 0.12 * (deadline - self.elapsed())
        for c in range(chunks):
            later_truth = (chunks - c) * (cfg.truth_s + 1.5)
            self._run_plan(wl, steady[c::chunks], deadline - single_reserve - later_truth)
            self.truth_block(wl, str(c + 2))
        self._run_plan(wl, single, deadline)

    def _run_plan(self, wl: Workload, plan: list[tuple[str, float, int]], deadline: float) -> None:
        run = {"steady": self.steady_trial, "isolated": self.isolated_trial,
               "steady_repeated": lambda w, t, k: self.repeated_trial(w, t, k, steady=True),
               "isolated_repeated": lambda w, t, k: self.repeated_trial(w, t, k, steady=False)}
        for i, (scenario, target, trial) in enumerate(plan):
            if self.elapsed() + target + 0.7 > deadline:
                self.skipped.append(f"{wl.name}: {len(plan) - i} of {len(plan)} trials of a "
                                    f"{plan[0][0].split('_')[0]} plan (time budget)")
                return
            run[scenario](wl, target, trial)
            if (i + 1) % 10 == 0 or i + 1 == len(plan):
                self.log(f"  {plan[0][0].split('_')[0]} {i + 1}/{len(plan)} trials "
                         f"({self.elapsed():.0f} s elapsed)")

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        if df.empty:
            return pd.DataFrame(columns=list(CSV_COLUMNS))
        for idx in df.index[df["scenario"] != "overhead"]:
            workload, t = str(df.at[idx, "workload"]), float(df.at[idx, "_t"])
            e_iter, power = self.e_iter_at(workload, t), self.power_at(workload, t)
            extra = float(df.at[idx, "extra_s"])
            # the extra time of a wider window is loaded (steady) or idle (isolated, truth approximate)
            extra_power = power if df.at[idx, "scenario"] == "steady" else float(self.info["idle_power_W"])
            df.at[idx, "truth_J"] = float(df.at[idx, "iterations"]) * e_iter + extra_power * extra
            df.at[idx, "truth_power_J"] = power * float(df.at[idx, "window_s"]) + extra_power * extra
        overhead = df["scenario"] == "overhead"
        for _, group in df[overhead].groupby(["workload", "trial"]):
            off = group[group["method"] == "sampler_off"]["measured_J"]
            if len(off):
                df.loc[group.index, "truth_J"] = float(off.iloc[0])
        df["rel_error"] = df["measured_J"] / df["truth_J"] - 1.0
        df["continuous"] = df["continuous"].astype(bool)
        return df[list(CSV_COLUMNS)]


def calibrate(rig: Rig, wl: Workload, seconds: float = 1.0) -> None:
    """Warm up and time one iteration (synchronised, so the time is the device's)."""
    rig.run_for(wl, 0.5)  # warm-up: autotuning, allocator, clocks
    rig.sync()
    n = 8
    while True:
        start = rig.clock.now()
        rig.run_iterations(wl, n)
        rig.sync()
        took = rig.clock.now() - start
        if took >= seconds / 4 or n > 1_000_000:
            break
        n *= 4
    wl.t_iter = took / n


def update_interval_stats(times: list[float]) -> dict[str, float]:
    d = np.diff(np.asarray(times, dtype=float))
    if d.size == 0:
        return {"n": 0}
    return {"n": int(d.size), "mean_ms": float(d.mean() * 1e3), "sd_ms": float(d.std() * 1e3),
            "min_ms": float(d.min() * 1e3), "max_ms": float(d.max() * 1e3)}


# ------------------------------------------------------------------------------------------- aggregation
def _usable(df: pd.DataFrame) -> pd.DataFrame:
    """Measured windows with a truth, without the steady trials whose load was not continuous."""
    d = df[(df["scenario"] != "overhead") & df["rel_error"].notna()]
    return d[d["continuous"].astype(bool)]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per workload, scenario, method and window: trials, mean and max |relative error| (in %)."""
    d = _usable(df).copy()
    d["abs_pct"] = d["rel_error"].abs() * 100
    d["pct"] = d["rel_error"] * 100
    out = d.groupby(["workload", "scenario", "method", "window_target_s"], as_index=False).agg(
        trials=("pct", "size"), mean_error_pct=("pct", "mean"), sd_error_pct=("pct", "std"),
        mean_abs_error_pct=("abs_pct", "mean"), max_abs_error_pct=("abs_pct", "max"))
    return out.sort_values(["workload", "scenario", "window_target_s", "method"]).reset_index(drop=True)


def overhead_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per workload and sampler mode: energy per call, and the paired overhead against the same repetition's
    no-sampler block: mean, spread and the half-width of a 95% t interval (NaN with one repetition)."""
    columns = ["workload", "method", "reps", "energy_per_call_J", "wall_per_call_s", "overhead_pct",
               "sd_pct", "ci95_pct"]
    d = df[(df["scenario"] == "overhead") & df["measured_J"].notna()]
    if d.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (workload, method), g in d.groupby(["workload", "method"], sort=True):
        pct = (g["rel_error"] * 100).dropna()
        n = len(pct)
        sd = float(pct.std()) if n > 1 else math.nan
        ci = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
        rows.append({"workload": workload, "method": method, "reps": int(len(g)),
                     "energy_per_call_J": float(g["measured_J"].mean()),
                     "wall_per_call_s": float(g["window_s"].mean()),
                     "overhead_pct": float(pct.mean()) if n else math.nan, "sd_pct": sd, "ci95_pct": ci})
    return pd.DataFrame(rows, columns=columns)


def _target_rows(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """The steady rows a target is judged on: single windows, plus (0.2 s) calls measured by repetition."""
    steady = _usable(df)
    steady = steady[steady["scenario"] == "steady"]
    if label == "windows >= 1 s":
        picked = steady[(steady["window_target_s"] >= 1.0) & ~steady["method"].str.contains("_repeated_")]
    else:
        picked = steady[np.isclose(steady["window_target_s"].astype(float), 0.2)]
    return picked


def check_targets(df: pd.DataFrame, method: str = DEFAULT_METHOD) -> list[dict[str, object]]:
    """The issue's targets on the steady trials' worst case (max |error|), for every method measured, and the
    sampler process's overhead. ``met`` is the verdict for ``method`` (the meter's default)."""
    results: list[dict[str, object]] = []
    for label, limit in TARGETS:
        picked = _target_rows(df, label)
        by_method: dict[str, dict[str, float]] = {}
        for name, g in picked.groupby("method"):
            errors = g["rel_error"].abs() * 100
            by_method[str(name)] = {"n": int(len(g)), "max_abs_pct": float(errors.max()),
                                    "mean_abs_pct": float(errors.mean()),
                                    "met": bool(errors.max() <= limit * 100),
                                    "workloads": int(g["workload"].nunique())}
        mine = by_method.get(method)
        results.append({"target": f"{label}: deviation <= {limit * 100:g}%", "limit_pct": limit * 100,
                        "method": method, "value_pct": mine["max_abs_pct"] if mine else math.nan,
                        "met": bool(mine and mine["met"]), "n": mine["n"] if mine else 0,
                        "by_method": by_method,
                        "peers_max_pct": {k: v["max_abs_pct"] for k, v in by_method.items() if k != method}})
    ov = overhead_summary(df)
    proc = ov[ov["method"] == "sampler_process"]
    verdicts = {str(r.workload): overhead_verdict(r.overhead_pct, r.ci95_pct) for r in proc.itertuples()}
    worst = float(proc["overhead_pct"].abs().max()) if len(proc) else math.nan
    results.append({"target": f"meter overhead <= {OVERHEAD_TARGET * 100:g}% of a 1 s workload's energy",
                    "limit_pct": OVERHEAD_TARGET * 100, "method": "sampler_process", "value_pct": worst,
                    "met": bool(verdicts) and all(v.startswith("met") for v in verdicts.values()),
                    "n": int(proc["reps"].min()) if len(proc) else 0, "verdicts": verdicts,
                    "by_method": {}, "peers_max_pct": {}})
    return results


def overhead_verdict(mean_pct: float, ci95_pct: float, limit_pct: float = OVERHEAD_TARGET * 100) -> str:
    """``met``, ``NOT met`` or ``inconclusive`` for a mean overhead and the half-width of its 95% interval."""
    if math.isnan(mean_pct):
        return "not measured"
    if math.isnan(ci95_pct):
        return "inconclusive (one repetition: no noise estimate)"
    if abs(mean_pct) + ci95_pct <= limit_pct:
        return f"met (|{mean_pct:.2f}| + {ci95_pct:.2f} <= {limit_pct:g}% at 95%)"
    if abs(mean_pct) - ci95_pct > limit_pct:
        return f"NOT met ({mean_pct:.2f} +- {ci95_pct:.2f}%)"
    return f"inconclusive ({mean_pct:.2f} +- {ci95_pct:.2f}%: the noise reaches the {limit_pct:g}% limit)"


def write_outputs(out_dir: str | Path, df: pd.DataFrame, validation: Validation, *,
                  dry_run: bool) -> tuple[Path, Path]:
    """meter.csv and meter_summary.md (atomically: temp file + rename)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "meter.csv", out / "meter_summary.md"
    write_text_atomic(csv_path, df.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(md_path, render_summary(df, validation, dry_run=dry_run))
    return csv_path, md_path


def _md_table(df: pd.DataFrame, floats: str = "{:.3f}") -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in df.itertuples(index=False):
        cells = [floats.format(v) if isinstance(v, float) else str(v) for v in rec]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}%"


def truth_checks(df: pd.DataFrame, validation: Validation) -> pd.DataFrame:
    """How far the truth itself can be trusted, per workload: the drift of the energy per iteration across
    the truth blocks, and the steady rows' iteration truth against steady power x time."""
    rows = []
    for workload, blocks in validation.truth.items():
        e = np.array([b["e_iter"] for b in blocks])
        d = df[(df["workload"] == workload) & (df["scenario"] == "steady") & (df["method"] == DEFAULT_METHOD)]
        d = d[d["continuous"].astype(bool)]
        diff = (d["truth_power_J"] / d["truth_J"] - 1) * 100
        rows.append({"workload": workload, "blocks": len(blocks),
                     "e_iter_spread_pct": float((e.max() - e.min()) / e.mean() * 100) if len(e) else math.nan,
                     "power_x_time_vs_iterations_mean_pct": float(diff.mean()) if len(diff) else math.nan,
                     "power_x_time_vs_iterations_sd_pct": float(diff.std()) if len(diff) > 1 else math.nan})
    return pd.DataFrame(rows)


def _verdict_lines(df: pd.DataFrame, targets: list[dict[str, object]]) -> list[str]:
    lines = []
    for t in targets:
        if not t["by_method"] and "verdicts" not in t:
            continue
        if "verdicts" in t:
            verdicts: dict[str, str] = t["verdicts"]  # type: ignore[assignment]
            if not verdicts:
                lines.append(f"- **{t['target']}**: not measured.")
                continue
            parts = "; ".join(f"{w}: {v}" for w, v in verdicts.items())
            lines.append(f"- **{t['target']}** (sampler process, paired against no sampler): {parts}.")
            continue
        limit = float(t["limit_pct"])  # type: ignore[arg-type]
        by_method: dict[str, dict[str, float]] = t["by_method"]  # type: ignore[assignment]
        if not by_method:
            lines.append(f"- **{t['target']}**: no trials.")
            continue
        picked = _target_rows(df, t["target"].split(":")[0])  # type: ignore[union-attr]
        said = []
        for name in sorted(by_method, key=lambda k: by_method[k]["max_abs_pct"]):
            r = by_method[name]
            g = picked[picked["method"] == name]["rel_error"] * 100
            how = "met" if r["met"] else f"NOT met, {r['max_abs_pct'] / limit:.1f}x the limit"
            said.append(f"`{name}` max {r['max_abs_pct']:.3f}% ({how}; bias {g.mean():+.3f}%, sd "
                        f"{g.std():.3f}%, mean abs {r['mean_abs_pct']:.3f}%, n={int(r['n'])})")
        lines.append(f"- **{t['target']}**: " + "; ".join(said) + ".")
    return lines


def render_summary(df: pd.DataFrame, validation: Validation, *, dry_run: bool) -> str:
    info = validation.info
    parts = ["# GPU energy meter: validation against ground truth\n"]
    if dry_run:
        parts.append("**DRY RUN on a simulated GPU (virtual time): exercises the protocol and the "
                     "aggregation; these numbers say nothing about real hardware.**\n")
    parts.append("Written by `benchmarks/meter_validation.py`; protocol in `tta_energy.meter.validation`, "
                 "method and error model in `docs/meter.md`. Errors are relative to the ground truth (energy "
                 "per iteration from long back-to-back blocks interleaved with the trials, interpolated in "
                 "time). Targets are judged on steady windows (inside continuous load, where the truth "
                 "applies exactly), worst case over all trials of both workloads.\n")
    targets = check_targets(df)
    parts.append(f"## Verdict (the meter's default is `{DEFAULT_METHOD}`)\n")
    parts.append("\n".join(_verdict_lines(df, targets)) + "\n")
    parts.append("\n## Targets by method (steady windows)\n")
    rows = []
    for t in targets:
        for name, r in sorted(t["by_method"].items(), key=lambda kv: kv[1]["max_abs_pct"]):  # type: ignore[union-attr]
            rows.append({"target": t["target"], "method": name, "trials": int(r["n"]),
                         "max_abs_pct": f"{r['max_abs_pct']:.3f}", "mean_abs_pct": f"{r['mean_abs_pct']:.3f}",
                         "met": "met" if r["met"] else "NOT met"})
    parts.append(_md_table(pd.DataFrame(rows)))
    excluded = df[(df["scenario"] == "steady") & ~df["continuous"].astype(bool)]
    if len(excluded):
        parts.append(f"\n{len(excluded)} steady rows left out: the bridge ran out before the other tools' "
                     f"bookkeeping ended (the GPU idled near an edge).\n")
    parts.append("\n## Setup\n")
    setup = {k: v for k, v in info.items() if not isinstance(v, dict)}
    parts.append(_md_table(pd.DataFrame({"item": list(setup), "value": [str(v) for v in setup.values()]})))
    for key, value in info.items():
        if isinstance(value, dict) and value:
            parts.append(f"\n`{key}`: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                     for k, v in value.items()) + "\n")
    parts.append("\n## Ground truth blocks\n")
    truth_rows = [{"workload": wl, "block": i, **b} for wl, blocks in validation.truth.items()
                  for i, b in enumerate(blocks)]
    parts.append(_md_table(pd.DataFrame(truth_rows).drop(columns=["t_mid"], errors="ignore"), "{:.5g}"))
    parts.append("\nHow far the truth itself holds: spread of the energy per iteration across blocks, and "
                 "the steady windows' truth from steady power x window time against iterations x energy per "
                 "iteration (differences here bound what the errors below can resolve).\n")
    parts.append(_md_table(truth_checks(df, validation), "{:.3f}"))
    parts.append("\n## Error by method and window (%, all trials)\n")
    parts.append("`steady`: inside continuous load (the tools' bookkeeping bridged by queued work), where "
                 "the truth applies exactly. `isolated`: one call from idle; its truth is still the steady "
                 "energy per iteration, so these rows include the GPU's own ramp from idle, not only "
                 "measurement error: compare the methods with each other there. "
                 "`meter_<estimator>_repeated_1s`: the call repeated until the window lasts 1 s "
                 "(`min_window_s`), energy per call.\n")
    parts.append(_md_table(summarise(df), "{:.3f}"))
    parts.append("\n## Sampler overhead (energy per 1-s call, paired with the same repetition's block "
                 "without sampler)\n")
    parts.append(_md_table(overhead_summary(df), "{:.4g}"))
    if validation.skipped:
        parts.append("\n## Skipped\n\n" + "\n".join(f"- {s}" for s in validation.skipped) + "\n")
    skipped_peers = getattr(validation.rig, "skipped_peers", {})
    if skipped_peers:
        lines = "\n".join(f"- {k}: {v}" for k, v in skipped_peers.items())
        parts.append(f"\n## Peers not run\n\n{lines}\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------- simulated rig
class _SimulatedPeer(Peer):
    """Raw reads of the simulated counter at the window edges: what Zeus and CodeCarbon do on Volta+."""

    def __init__(self, name: str, rig: SimulatedRig) -> None:
        self.name = name
        self._rig = rig
        self._start = math.nan

    def begin(self) -> None:
        self._start = self._rig.raw_read_J()

    def end(self) -> float:
        return self._rig.raw_read_J() - self._start


class SimulatedRig(Rig):
    """The protocol on a simulated GPU in virtual time (``--dry-run``)."""

    def __init__(self, seed: int = 0) -> None:
        from tta_energy.meter.simulated import CounterModel, SimulatedCounterSource, SimulatedGpu

        self.clock = VirtualClock()
        self.gpu = SimulatedGpu(self.clock, counter=CounterModel(phase_s=0.0371, seed=seed))
        self._source = SimulatedCounterSource([self.gpu])
        self.meter = self.new_meter("inline")
        self.meter.start()
        # stand-ins for the peers are named as such: they do what Zeus/CodeCarbon do (raw reads at the edges)
        self.peers = [_SimulatedPeer("simulated_edge_reads", self)]
        self.skipped_peers = {"zeus": "dry run (no GPU)", "codecarbon": "dry run (no GPU)"}

    def new_meter(self, sampler: str) -> EnergyMeter:
        return EnergyMeter(source=self._source, clock=self.clock, codecarbon=False, sampler="inline")

    def sync(self) -> None:
        # simulated work runs as it is issued; once synchronised, nothing is queued: the GPU idles
        self.gpu.set_load(self.gpu.power.idle_W)

    def idle(self, seconds: float) -> None:
        self.gpu.idle(seconds)

    def raw_read_J(self, device: int | None = None) -> float:
        return self.gpu.read_mJ() / 1000.0

    def workloads(self) -> list[Workload]:
        return [Workload("matmul_bf16_8192", lambda: self.gpu.run(0.00167, 690.0),
                         "simulated: 1.67 ms at 690 W"),
                Workload("unet_audioldm_fp16", lambda: self.gpu.run(0.012, 520.0),
                         "simulated: 12 ms at 520 W")]

    def describe(self) -> dict[str, str]:
        return {"gpu": "simulated (tta_energy.meter.simulated defaults)", "sampler": "inline (virtual clock)"}


# --------------------------------------------------------------------------------------------- real GPU rig
class ZeusPeer(Peer):
    name = "zeus"

    def __init__(self, cuda_index: int) -> None:
        from zeus.monitor import ZeusMonitor

        try:
            self._monitor = ZeusMonitor(gpu_indices=[cuda_index], cpu_indices=[])
        except TypeError:  # older Zeus without CPU support
            self._monitor = ZeusMonitor(gpu_indices=[cuda_index])
        self._key = 0

    def begin(self) -> None:
        self._key += 1
        # no synchronisation by Zeus: in steady trials the bridge work must keep running through its edges
        self._monitor.begin_window(f"w{self._key}", sync_execution=False)

    def end(self) -> float:
        measurement = self._monitor.end_window(f"w{self._key}", sync_execution=False)
        return float(sum(measurement.gpu_energy.values()))


class CodeCarbonPeer(Peer):
    """CodeCarbon's own task measurement, GPU included (its GPU energy only)."""

    name = "codecarbon"

    def __init__(self, nvml_index: int) -> None:
        import logging

        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        # CodeCarbon 3.3.2 selects GPUs by NVML index (its UUID matching strips a leading "G" from "GPU-")
        self._tracker = OfflineEmissionsTracker(
            country_iso_code="ITA", measure_power_secs=1e9, log_level="error", output_methods=[],
            gpu_ids=[nvml_index], allow_multiple_runs=True, electricitymaps_api_token="",
            emissions_endpoint="")
        self._task = 0

    def begin(self) -> None:
        self._task += 1
        self._tracker.start_task(f"w{self._task}")

    def end(self) -> float:
        data = self._tracker.stop_task(f"w{self._task}")
        return float(data.gpu_energy) * J_PER_KWH if data is not None else math.nan

    def close(self) -> None:
        self._tracker.stop()


class GpuRig(Rig):
    """One CUDA GPU (``cuda_index``) with the matmul and UNet workloads, Zeus and CodeCarbon as peers."""

    def __init__(self, out_dir: Path, cuda_index: int = 0, log: Callable[[str], None] = print) -> None:
        import torch

        from tta_energy.meter.clock import MonotonicClock

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU: use --dry-run on a machine without one")
        self.torch = torch
        self.cuda_index = cuda_index
        self.device = torch.device("cuda", cuda_index)
        torch.cuda.set_device(self.device)
        self.clock = MonotonicClock()
        self.trace_path = Path(out_dir) / "meter_trace.csv.gz"
        if self.trace_path.exists():
            self.trace_path.unlink()
        self.meter = EnergyMeter([cuda_index], trace_path=self.trace_path, codecarbon=False)
        if not self.meter.gpu_available:
            raise RuntimeError(f"the meter cannot measure this GPU: {self.meter.unavailable_reason}")
        self.meter.start()
        self._nvml = self.meter.source._nvml  # type: ignore[union-attr]
        self._handles = list(self.meter.source._handles)  # type: ignore[union-attr]
        self.peers = []
        self.skipped_peers = {}
        for make, name in ((lambda: CodeCarbonPeer(self.meter.gpu_infos()[0].nvml_index), "codecarbon"),
                           (lambda: ZeusPeer(cuda_index), "zeus")):
            try:
                self.peers.append(make())
            except Exception as exc:  # a peer that is missing is recorded as not run, never faked
                self.skipped_peers[name] = f"{type(exc).__name__}: {exc}"
                log(f"  peer {name} not run: {self.skipped_peers[name]}")

    def sync(self) -> None:
        self.torch.cuda.synchronize(self.device)

    def raw_read_J(self, device: int | None = None) -> float:
        handles = self._handles if device is None else [self._handles[device]]
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles) / 1000.0

    def new_meter(self, sampler: str) -> EnergyMeter:
        return EnergyMeter([self.cuda_index], codecarbon=False, sampler=sampler)

    def workloads(self) -> list[Workload]:
        torch = self.torch
        a = torch.randn(8192, 8192, device=self.device, dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device=self.device, dtype=torch.bfloat16)
        c = torch.empty(8192, 8192, device=self.device, dtype=torch.bfloat16)

        def matmul() -> None:
            torch.matmul(a, b, out=c)

        unet, sample, timestep, labels = build_audioldm_unet(self.device)

        def unet_step() -> None:
            with torch.inference_mode():
                unet(sample, timestep, encoder_hidden_states=None, class_labels=labels)

        # replayed as a CUDA graph, the step costs the GPU's time and energy, not the Python launcher's:
        # eager, this UNet is launch-bound (~30 ms per step at ~150 W on the H200), and its energy per step
        # then follows the CPU's speed, which differs between long truth blocks and short windows
        step, how = capture_cuda_graph(unet_step, self.device)
        return [Workload("matmul_bf16_8192", matmul, "bf16 8192^3 matmul (1.1 TFLOP per iteration)"),
                Workload("unet_audioldm_fp16", step,
                         "AudioLDM UNet2DConditionModel, fp16, random weights, sample (2,8,250,16), "
                         f"class_labels (2,512): one guided denoising step of a 10 s clip, {how}")]

    def busy_marker(self) -> Callable[[], bool]:
        event = self.torch.cuda.Event()
        event.record()
        return lambda: not event.query()

    def describe(self) -> dict[str, str]:
        from tta_energy.provenance import package_version

        prov = self.meter.provenance()
        return {"gpu": prov["gpu_name"], "gpu_uuid": prov["gpu_uuid"], "driver": prov["gpu_driver"],
                "power_limit_W": str(prov["gpu_power_limit_W"]), "torch": prov["torch_version"],
                "cuda": str(self.torch.version.cuda), "diffusers": prov["diffusers_version"],
                "codecarbon": prov["codecarbon_version"], "zeus": package_version("zeus") or "not installed",
                "sampler": f"{self.meter.sampler.mode}, poll {self.meter.poll_interval_s * 1e3:g} ms",
                "git_commit": prov["git_commit"], "trace": str(self.trace_path)}

    def counter_probe(self, seconds: float = 1.0) -> dict[str, object]:
        """Does NVML's field value for the energy counter carry the instant of the update? Polls field 83."""
        nvml = self._nvml
        handle = self._handles[0]
        field_id = getattr(nvml, "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 83)
        values, stamps = [], []
        end = time.perf_counter() + seconds
        try:
            while time.perf_counter() < end:
                (fv,) = nvml.nvmlDeviceGetFieldValues(handle, [field_id])
                if fv.nvmlReturn != 0:
                    return {"field_83": f"error {fv.nvmlReturn}"}
                values.append(int(fv.value.ullVal))
                stamps.append(int(fv.timestamp))
                time.sleep(0.0005)
        except Exception as exc:
            return {"field_83": f"{type(exc).__name__}: {exc}"}
        v, s = np.asarray(values), np.asarray(stamps)
        value_changes = int(np.count_nonzero(np.diff(v)))
        stamp_changes = int(np.count_nonzero(np.diff(s)))
        both = int(np.count_nonzero((np.diff(v) != 0) & (np.diff(s) != 0)))
        return {"reads": len(values), "value_changes": value_changes, "timestamp_changes": stamp_changes,
                "changes_with_new_timestamp": both}

    def run_for(self, workload: Workload, seconds: float) -> int:
        """Keep the GPU busy for ``seconds`` with at most ~0.1 s of work queued (a deep launch queue would
        make the next synchronisation wait for seconds)."""
        from collections import deque

        batch = max(1, int(0.05 / workload.t_iter)) if workload.t_iter > 0 else 2
        pending: deque = deque()
        end = self.clock.now() + seconds
        n = 0
        while self.clock.now() < end:
            for _ in range(batch):
                workload.step()
            n += batch
            event = self.torch.cuda.Event()
            event.record()
            pending.append(event)
            if len(pending) > 2:
                pending.popleft().synchronize()
        return n

    def close(self) -> None:
        super().close()
        for peer in self.peers:
            with contextlib.suppress(Exception):  # closing a peer must not hide the results already written
                peer.close()


def capture_cuda_graph(step: Callable[[], None], device: object) -> tuple[Callable[[], None], str]:
    """``step`` captured in a CUDA graph (its replay, and "replayed as a CUDA graph"), or ``step`` itself
    and why the capture failed. ``step`` must use static inputs; each replay overwrites its outputs."""
    import torch

    try:
        torch.cuda.synchronize(device)
        side = torch.cuda.Stream(device)  # warm-up off the default stream, as capture requires
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            step()
        graph.replay()
        torch.cuda.synchronize(device)
    except Exception as exc:  # recorded in the workload's description and the summary, never hidden
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
        return step, f"eager (CUDA graph capture failed: {type(exc).__name__}: {str(exc)[:200]})"
    return graph.replay, "replayed as a CUDA graph"


def build_audioldm_unet(device: object) -> tuple[object, object, object, object]:
    """AudioLDM's UNet (bundled reconstructed config), fp16, random weights, on ``device``; example inputs."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging

    from tta_energy.models.common import load_config

    config = load_config("audioldm", "unet_config.reconstructed.json")
    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the cast to fp16 is intended (the study ran AudioLDM in fp16)
    try:
        with torch.device(device):  # type: ignore[call-overload]
            unet = UNet2DConditionModel(**config).to(dtype=torch.float16).eval()
    finally:
        diffusers_logging.set_verbosity(previous)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 8, 250, 16, generator=generator).to(device=device, dtype=torch.float16)
    labels = torch.randn(2, 512, generator=generator).to(device=device, dtype=torch.float16)
    timestep = torch.tensor(500, device=device)
    return unet, sample, timestep, labels
