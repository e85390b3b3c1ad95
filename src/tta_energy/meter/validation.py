"""Validation of the meter against ground truth, side by side with its peers.

``benchmarks/meter_validation.py`` runs it. Protocol, per workload (a bf16 8192^3 matmul, and an
AudioLDM-sized UNet forward with classifier-free guidance):

* **ground truth**: a long block (``truth_s``) of back-to-back iterations, before and after the trials. The
  steady power is the counter's energy between two change points (exact counter values, >= ``truth_s``-1.5 s
  apart, the first second skipped) over their time difference; the energy per iteration is that power times
  the block's time per iteration. A trial's truth is its iteration count times the energy per iteration,
  interpolated in time between the two blocks (thermal drift). The naive ``Delta E / N`` of the block is
  reported beside it.
* **steady** trials: the window sits inside continuous load (pre-roll and post-roll of the same iterations),
  so the truth above applies exactly. Window lengths are jittered by up to +-50 ms so that their phase
  against the 100 ms counter grid is random (a window of exactly k x 100 ms would flatter naive reads).
* **isolated** trials: idle gap, window, idle: a single call from idle, as in a sweep. The truth assumes the
  steady energy per iteration, so these rows also carry the GPU's own warm-up; they show how methods behave
  at power steps, not a pure meter error. ``meter_repeated_1s`` is the ``min_window_s=1`` mode.
* every window is measured at once by all methods, nested outer to inner: CodeCarbon's task, Zeus's window,
  two raw counter reads, the meter (innermost, so it never pays for the others' bookkeeping).
* **overhead**: energy per 1-s call of the UNet workload with no sampler, with the sampler process, and with
  the sampler thread, measured from the main thread by polling the counter only at the block's edges.

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

from tta_energy.meter.clock import Clock, VirtualClock
from tta_energy.meter.meter import EnergyMeter, Measurement
from tta_energy.meter.timeline import ESTIMATORS

CSV_COLUMNS: tuple[str, ...] = ("workload", "scenario", "method", "window_target_s", "trial", "iterations",
                                "calls", "window_s", "measured_J", "truth_J", "rel_error", "order", "t_rel_s",
                                "note")
TARGETS: tuple[tuple[str, float], ...] = (("windows >= 1 s", 0.005), ("windows of 0.2 s", 0.02))
OVERHEAD_TARGET = 0.01
DEFAULT_METHOD = "meter_split"


@dataclass
class Config:
    windows: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
    trials: dict[float, int] = field(default_factory=lambda: {0.1: 6, 0.2: 8, 0.5: 5, 1.0: 5, 2.0: 4, 5.0: 2,
                                                              10.0: 1})
    truth_s: float = 20.0
    preroll_s: float = 0.3
    postroll_s: float = 0.3
    isolated_windows: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)
    isolated_trials: int = 2
    isolated_gap_s: float = 0.5
    repeated_targets: tuple[float, ...] = (0.1, 0.2)
    repeated_trials: int = 3
    repeated_min_window_s: float = 1.0
    overhead_reps: int = 2
    overhead_calls: int = 5
    idle_s: float = 5.0
    warmup_s: float = 3.0
    seed: int = 0
    budget_s: float = 420.0  # optional sections are skipped past this (the device command has 600 s)

    @classmethod
    def quick(cls) -> Config:
        return cls(windows=(0.2, 1.0, 2.0), trials={0.2: 3, 1.0: 2, 2.0: 2}, truth_s=6.0,
                   isolated_windows=(0.2, 1.0), isolated_trials=2, repeated_targets=(0.2,), repeated_trials=2,
                   overhead_reps=1, overhead_calls=3, idle_s=2.0, warmup_s=2.0, budget_s=150.0)


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
        self._order = 0
        self._start = time.perf_counter()

    # --- helpers
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def _row(self, **values: object) -> None:
        self._order += 1
        row = {c: values.get(c, math.nan) for c in CSV_COLUMNS}
        row["_t"] = values.get("_t", math.nan)  # clock time of the window, for the truth's drift correction
        row["order"] = self._order
        row["note"] = values.get("note", "")
        self.rows.append(row)

    def _jittered(self, target: float) -> float:
        return max(0.02, target + self.rng.uniform(-1, 1) * min(0.05, target / 4))

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
        span = math.nan
        for timeline in rig.meter.sampler.timelines:  # type: ignore[union-attr]
            ts, es = timeline.snapshot()
            inside = [i for i, t in enumerate(ts) if t_start + 1.0 <= t <= t_end - 0.01]
            if len(inside) < 2:
                raise RuntimeError(f"truth block {label}: too few counter updates ({len(inside)})")
            i0, i1 = inside[0], inside[-1]
            power += (es[i1] - es[i0]) / (ts[i1] - ts[i0])
            span = ts[i1] - ts[i0]
        t_iter = (t_end - t_start) / n
        block = {"t_mid": 0.5 * (t_start + t_end), "e_iter": power * t_iter, "t_iter": t_iter,
                 "power_W": power, "naive_e_iter": (raw1 - raw0) / n, "n": float(n), "counter_span_s": span}
        self.truth.setdefault(wl.name, []).append(block)
        self.log(f"  truth {label}: {power:.1f} W, {t_iter * 1e3:.3f} ms/iter, {block['e_iter']:.4f} J/iter "
                 f"(naive {block['naive_e_iter']:.4f}) over {n} iterations")
        return block

    def e_iter_at(self, workload: str, t: float) -> float:
        blocks = self.truth[workload]
        if len(blocks) == 1 or blocks[-1]["t_mid"] == blocks[0]["t_mid"]:
            return float(np.mean([b["e_iter"] for b in blocks]))
        a, b = blocks[0], blocks[-1]
        x = min(1.0, max(0.0, (t - a["t_mid"]) / (b["t_mid"] - a["t_mid"])))
        return a["e_iter"] + x * (b["e_iter"] - a["e_iter"])

    # --- one window measured by everybody
    def _nested_window(self, wl: Workload, n: int, align: bool) -> dict[str, float]:
        rig = self.rig
        rig.sync()
        if align:
            rig.meter.align()
        for peer in rig.peers:
            peer.begin()
        raw0 = rig.raw_read_J()
        window = rig.meter.begin(align=False)
        rig.run_iterations(wl, n)
        rig.meter.end(window)
        raw1 = rig.raw_read_J()
        peer_values = {peer.name: peer.end() for peer in reversed(rig.peers)}
        return {"window": window, "raw": raw1 - raw0, **peer_values}  # type: ignore[dict-item]

    def _record_window(self, wl: Workload, scenario: str, target: float, trial: int, n: int,
                       values: dict[str, object], m: Measurement) -> None:
        common = {"workload": wl.name, "scenario": scenario, "window_target_s": target, "trial": trial,
                  "iterations": n, "calls": 1, "window_s": m.window_s, "t_rel_s": m.t_start - self._t0,
                  "_t": m.t_start}
        for estimator in ESTIMATORS:
            self._row(method=f"meter_{estimator}", measured_J=m.window_estimates_J[estimator], **common)
        self._row(method="raw_counter", measured_J=values["raw"], **common)
        for peer in self.rig.peers:
            self._row(method=peer.name, measured_J=values[peer.name], **common)

    def steady_trial(self, wl: Workload, target: float, trial: int) -> None:
        rig, cfg = self.rig, self.config
        n = max(1, round(self._jittered(target) / wl.t_iter))
        rig.run_for(wl, cfg.preroll_s)
        values = self._nested_window(wl, n, align=False)
        rig.run_for(wl, cfg.postroll_s)  # the counter updates after the window come while the load goes on
        m = rig.meter.resolve(values["window"])  # type: ignore[arg-type]
        rig.sync()
        self._record_window(wl, "steady", target, trial, n, values, m)

    def isolated_trial(self, wl: Workload, target: float, trial: int) -> None:
        rig, cfg = self.rig, self.config
        n = max(1, round(self._jittered(target) / wl.t_iter))
        rig.sync()
        rig.idle(cfg.isolated_gap_s)
        values = self._nested_window(wl, n, align=True)
        m = rig.meter.resolve(values["window"])  # type: ignore[arg-type]
        self._record_window(wl, "isolated", target, trial, n, values, m)

    def repeated_trial(self, wl: Workload, target: float, trial: int) -> None:
        rig, cfg = self.rig, self.config
        n = max(1, round(self._jittered(target) / wl.t_iter))
        rig.sync()
        rig.idle(cfg.isolated_gap_s)
        meter = rig.meter
        saved = meter.min_window_s
        meter.min_window_s = cfg.repeated_min_window_s
        try:
            _, m = meter.measure(lambda phases: rig.run_iterations(wl, n))
        finally:
            meter.min_window_s = saved
        self._row(workload=wl.name, scenario="isolated",
                  method=f"meter_repeated_{cfg.repeated_min_window_s:g}s", window_target_s=target,
                  trial=trial, iterations=n, calls=m.calls, window_s=m.wall_s, measured_J=m.gpu_energy_J,
                  t_rel_s=m.t_start - self._t0, _t=m.t_start)

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
        energy = (e_b - e_a) - tail_power * (u_b - t_end) - idle * (t_start - u_a)
        return energy / cfg.overhead_calls, (t_end - t_start) / cfg.overhead_calls

    def overhead(self, wl: Workload) -> None:
        cfg = self.config
        n_per_call = max(1, round(1.0 / wl.t_iter))
        modes = ["off", "process", "thread"]
        results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        self.rig.run_for(wl, self.config.warmup_s)
        for rep in range(cfg.overhead_reps):
            order = modes[rep % 3:] + modes[:rep % 3]
            for mode in order:
                meter = None if mode == "off" else self.rig.new_meter(mode)
                try:
                    settle = self.rig.clock.now()
                    if meter is not None:
                        meter.start()
                    # the same thermal history before every block, however long the sampler took to start
                    self.rig.idle(max(0.0, 1.5 - (self.rig.clock.now() - settle)))
                    self.rig.run_for(wl, 1.0)
                    self.rig.sync()
                    self.rig.idle(0.3)
                    results[mode].append(self.overhead_block(wl, n_per_call))
                finally:
                    if meter is not None:
                        meter.close()
                e, t = results[mode][-1]
                self.log(f"  overhead rep {rep + 1} sampler {mode}: {e:.2f} J/call, {t * 1e3:.1f} ms/call")
        baseline = float(np.mean([e for e, _ in results["off"]]))
        for mode in modes:
            for rep, (e, t) in enumerate(results[mode]):
                self._row(workload=wl.name, scenario="overhead", method=f"sampler_{mode}",
                          window_target_s=1.0, trial=rep, iterations=n_per_call, calls=cfg.overhead_calls,
                          window_s=t, measured_J=e, truth_J=baseline,
                          note="truth = mean energy per call without sampler")

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
        for number, wl in enumerate(workloads, start=1):
            self.log(f"workload {wl.name}: {wl.description}")
            calibrate(rig, wl)
            self.log(f"  {wl.t_iter * 1e3:.3f} ms per iteration; warming up {cfg.warmup_s:g} s")
            rig.run_for(wl, cfg.warmup_s)
            self.truth_block(wl, "before")
            snap = rig.meter.sampler.timelines[0].snapshot()[0]  # type: ignore[union-attr]
            self.info[f"counter_load_{wl.name}"] = update_interval_stats(
                [t for t in snap if t >= rig.clock.now() - cfg.truth_s + 1.0])
            # steady trials back to back (the GPU stays loaded), then the truth again, then single calls
            steady = [("steady", w, k) for w in cfg.windows for k in range(cfg.trials.get(w, 1))]
            single = [("isolated", w, k) for w in cfg.isolated_windows for k in range(cfg.isolated_trials)]
            single += [("repeated", w, k) for w in cfg.repeated_targets for k in range(cfg.repeated_trials)]
            self.rng.shuffle(steady)
            self.rng.shuffle(single)
            self._run_plan(wl, steady, budget=math.inf)
            self.truth_block(wl, "after")
            self._run_plan(wl, single, budget=cfg.budget_s * number / len(workloads) - 10.0)
        rig.meter.close()
        overhead_wl = workloads[-1]
        if self.elapsed() < cfg.budget_s - 15 * cfg.overhead_reps:
            self.log(f"overhead of the sampler on {overhead_wl.name} ...")
            self.overhead(overhead_wl)
        else:
            self.skipped.append("sampler overhead (time budget)")
        return self.frame()

    def _run_plan(self, wl: Workload, plan: list[tuple[str, float, int]], budget: float) -> None:
        run = {"steady": self.steady_trial, "isolated": self.isolated_trial, "repeated": self.repeated_trial}
        for i, (scenario, target, trial) in enumerate(plan):
            if self.elapsed() > budget:
                self.skipped.append(f"{wl.name}: {len(plan) - i} single-call trials (time budget)")
                return
            run[scenario](wl, target, trial)
            if (i + 1) % 10 == 0 or i + 1 == len(plan):
                self.log(f"  {plan[0][0]} {i + 1}/{len(plan)} trials ({self.elapsed():.0f} s elapsed)")

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        if df.empty:
            return pd.DataFrame(columns=list(CSV_COLUMNS))
        needs = df["truth_J"].isna() & df["iterations"].notna()
        for idx in df.index[needs]:
            e_iter = self.e_iter_at(str(df.at[idx, "workload"]), float(df.at[idx, "_t"]))
            df.at[idx, "truth_J"] = float(df.at[idx, "iterations"]) * e_iter
        df["rel_error"] = df["measured_J"] / df["truth_J"] - 1.0
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
def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per workload, scenario, method and window: trials, mean and max |relative error| (in %)."""
    d = df[df["scenario"] != "overhead"].dropna(subset=["rel_error"]).copy()
    d["abs_pct"] = d["rel_error"].abs() * 100
    d["pct"] = d["rel_error"] * 100
    out = d.groupby(["workload", "scenario", "method", "window_target_s"], as_index=False).agg(
        trials=("pct", "size"), mean_error_pct=("pct", "mean"), mean_abs_error_pct=("abs_pct", "mean"),
        max_abs_error_pct=("abs_pct", "max"))
    return out.sort_values(["workload", "scenario", "window_target_s", "method"]).reset_index(drop=True)


def overhead_summary(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["scenario"] == "overhead"]
    if d.empty:
        columns = ["method", "reps", "energy_per_call_J", "wall_per_call_s", "overhead_pct"]
        return pd.DataFrame(columns=columns)
    out = d.groupby("method", as_index=False).agg(
        reps=("measured_J", "size"), energy_per_call_J=("measured_J", "mean"),
        wall_per_call_s=("window_s", "mean"), baseline=("truth_J", "first"))
    out["overhead_pct"] = (out["energy_per_call_J"] / out["baseline"] - 1) * 100
    return out.drop(columns="baseline")


def check_targets(df: pd.DataFrame, method: str = DEFAULT_METHOD) -> list[dict[str, object]]:
    """The issue's targets, judged on the steady trials' worst case (max |error|) of ``method``."""
    steady = df[(df["scenario"] == "steady") & df["rel_error"].notna()]
    results = []
    selections = {"windows >= 1 s": steady["window_target_s"] >= 1.0,
                  "windows of 0.2 s": np.isclose(steady["window_target_s"], 0.2)}
    for label, limit in TARGETS:
        picked = steady[selections[label]]
        mine = picked[picked["method"] == method]["rel_error"].abs()
        peers = {m: float(g["rel_error"].abs().max() * 100)
                 for m, g in picked.groupby("method") if m != method}
        worst = float(mine.max() * 100) if len(mine) else math.nan
        results.append({"target": f"{label}: deviation <= {limit * 100:g}%", "value_pct": worst,
                        "met": bool(len(mine)) and worst <= limit * 100, "peers_max_pct": peers,
                        "n": int(len(mine))})
    ov = overhead_summary(df)
    proc = ov[ov["method"] == "sampler_process"]
    value = float(proc["overhead_pct"].iloc[0]) if len(proc) else math.nan
    results.append({"target": f"meter overhead <= {OVERHEAD_TARGET * 100:g}% of a 1 s workload's energy",
                    "value_pct": value, "met": bool(len(proc)) and abs(value) <= OVERHEAD_TARGET * 100,
                    "peers_max_pct": {}, "n": int(proc["reps"].iloc[0]) if len(proc) else 0})
    return results


def write_outputs(out_dir: str | Path, df: pd.DataFrame, validation: Validation, *,
                  dry_run: bool) -> tuple[Path, Path]:
    """meter.csv and meter_summary.md (atomically: temp file + rename)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "meter.csv", out / "meter_summary.md"
    _atomic_write(csv_path, df.to_csv(index=False, float_format="%.6g"))
    _atomic_write(md_path, render_summary(df, validation, dry_run=dry_run))
    return csv_path, md_path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _md_table(df: pd.DataFrame, floats: str = "{:.3f}") -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in df.itertuples(index=False):
        cells = [floats.format(v) if isinstance(v, float) else str(v) for v in rec]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_summary(df: pd.DataFrame, validation: Validation, *, dry_run: bool) -> str:
    info = validation.info
    parts = ["# GPU energy meter: validation against ground truth\n"]
    if dry_run:
        parts.append("**DRY RUN on a simulated GPU (virtual time): exercises the protocol and the "
                     "aggregation; these numbers say nothing about real hardware.**\n")
    parts.append("Written by `benchmarks/meter_validation.py`; protocol in `tta_energy.meter.validation`, "
                 "method and error model in `docs/meter.md`. Errors are relative to the ground truth "
                 "(energy per iteration from long back-to-back blocks before and after, interpolated in "
                 "time).\n")
    parts.append("## Targets (steady windows, worst case of the meter's default `split` estimator)\n")
    rows = []
    for t in check_targets(df):
        peers = ", ".join(f"{k} {v:.2f}%" for k, v in sorted(t["peers_max_pct"].items()))
        rows.append({"target": t["target"], "meter (max abs %)": f"{t['value_pct']:.3f}",
                     "met": "met" if t["met"] else "NOT met", "trials": t["n"],
                     "peers (max abs %)": peers or "-"})
    parts.append(_md_table(pd.DataFrame(rows)))
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
    parts.append("\n## Error by method and window (%, all trials)\n")
    parts.append("`steady`: the window sits inside continuous load, where the truth applies exactly. "
                 "`isolated`: one call from idle; its truth is still the steady energy per iteration, so "
                 "these rows include the GPU's own ramp from idle, not only measurement error: compare the "
                 "methods with each other there. `meter_repeated_1s` repeats the call for at least 1 s "
                 "(`min_window_s`).\n")
    parts.append(_md_table(summarise(df), "{:.3f}"))
    parts.append("\n## Sampler overhead (energy per 1-s call of the UNet workload)\n")
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
        self._monitor.begin_window(f"w{self._key}", sync_execution=False)  # the harness has synchronised

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
        return float(data.gpu_energy) * 3.6e6 if data is not None else math.nan

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

        return [Workload("matmul_bf16_8192", matmul, "bf16 8192^3 matmul (1.1 TFLOP per iteration)"),
                Workload("unet_audioldm_fp16", unet_step,
                         "AudioLDM UNet2DConditionModel, fp16, random weights, sample (2,8,250,16), "
                         "class_labels (2,512): one guided denoising step of a 10 s clip")]

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
