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

A :class:`~.rigs.SimulatedRig` runs the same protocol on a simulated GPU in virtual time (``--dry-run``), so
CI exercises the protocol and the aggregation.
"""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import interpolate

from tta_energy.meter.clock import Clock
from tta_energy.meter.meter import EnergyMeter, Measurement
from tta_energy.meter.timeline import ESTIMATORS

CSV_COLUMNS: tuple[str, ...] = ("workload", "scenario", "method", "window_target_s", "trial", "iterations",
                                "calls", "window_s", "extra_s", "measured_J", "truth_J", "rel_error",
                                "truth_power_J", "continuous", "order", "t_rel_s", "note")
#: (label, limit, selection of steady rows by window_target_s)
TARGETS: tuple[tuple[str, float], ...] = (("windows >= 1 s", 0.005), ("windows of 0.2 s", 0.02))
#: the meter may cost at most this fraction of a workload's energy (the sampler's overhead)
METER_OVERHEAD_TARGET = 0.01
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
