"""A measurement campaign: what a folder of run tables must hold, declared in a TOML file, measured
adaptively.

A campaign file (``campaigns/h200.toml``) lists experiments (the sweeps' grids, :mod:`.grids`) x models, and
the stopping rule of their cells. A *cell* is what one number of the study describes:

* for the repeated experiments (steps, batch, duration, guidance, precision), one grid value of one model; a
  repeat of it is every configuration of that value (one call, or the 10/b calls of a batch layout), its
  sample the summed GPU energy of those calls. A cell is done when it has at least ``min`` complete ``ok``
  repeats with a GPU energy and the 95% confidence half-width of its mean (Student t) is at most
  ``ci95_half_width_rel`` of the mean, or when ``max`` repeats were measured (the interval is then reported as
  it is), or when a repeat ended ``oom`` / ``nan_audio`` (a property of the configuration: repeating it would
  only repeat it);
* for the quality experiment, (model, steps, caption set): done when each of its captions (the first
  ``caption_limit`` of the caption file) was measured once.

Rows are matched to cells by ``config_id`` (:func:`.grids.config_id`, as the sweeps compute it), so rows a
sweep measured count. Warm-up rows never count; neither do rows other than ``ok`` (an ``error`` is retried).

``run`` measures in rounds: each round visits every unfinished cell once (one repeat, or one caption), in an
order shuffled with the campaign's seed, the rows already measured and the round's number
(:func:`round_order`), so that repeats of different cells (and models: built models stay resident) interleave
instead of running back to back, and no two calls visit in the same order. A repeat whose call ends other than
``ok`` is not continued in that visit. Before each generation it
checks that its estimated time (plus a model build and warm-up when the model is not resident) fits in the
time budget left; a cell that does not fit waits for the next run while the others go on as long as they fit.
A budget in which no cell of the first experiment fits is refused before anything is built, made or locked.
Every row is appended when measured (:func:`.runner.measure_pair`), so a kill loses at most the generation in
flight and the same command resumes; a run stopped by SIGINT or an error also logs its call. Under torchrun
the cells are split over the ranks by estimated time; each rank appends to its shard files, which rank 0
merges at the end (and the next run, or ``collect``, merges those an interrupted run left).
A run holds the lock of every table it writes (and of the runs log) from before it reads them to its end, as a
sweep does: a second run, or a sweep writing one of them, is refused.
"""

from __future__ import annotations

import json
import math
import os
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tta_energy.devices import gpu_mismatch
from tta_energy.errors import positive_number, stop_signal_name
from tta_energy.experiments import distributed, resume
from tta_energy.experiments.campaign_plan import (
    CELL_COLUMNS,
    WALL_TO_WINDOW_TARGET,
    Cell,
    CellReport,
    CellState,
    Estimator,
    Observed,
    build_cells,
    build_overhead_s,
    call_windows_s,
    campaign_cost,
    cell_state,
    check_precision,
    ci95_half_width,
    cost_of_calls,
    estimator,
    expected_missing,
    next_items,
    observe,
    overhead_text,
    plan_table,
    prior_cvs,
    read_frames,
    read_runs_log,
    report,
    selected,
    status_table,
    sweep_options,
    window_seconds,
)
from tta_energy.experiments.campaign_spec import (
    DEFAULT_BUILD_S,
    DEFAULT_MAX_REPEATS,
    DEFAULT_MIN_REPEATS,
    DEFAULT_TARGET_REL,
    MAX_ERRORS_PER_RUN,
    RUNS_LOG,
    Campaign,
    CampaignError,
    Entry,
    Stopping,
    load_campaign,
)
from tta_energy.study import STUDY_COUNTRY

__all__ = [
    "DEFAULT_BUILD_S",
    "DEFAULT_MAX_REPEATS",
    "DEFAULT_MIN_REPEATS",
    "DEFAULT_TARGET_REL",
    "MAX_ERRORS_PER_RUN",
    "RUNS_LOG",
    "Campaign",
    "CampaignError",
    "Entry",
    "Stopping",
    "build_overhead_s",
    "load_campaign",
    "CELL_COLUMNS",
    "Cell",
    "CellReport",
    "CellState",
    "Estimator",
    "Observed",
    "build_cells",
    "cell_state",
    "ci95_half_width",
    "estimator",
    "expected_missing",
    "next_items",
    "observe",
    "plan_table",
    "prior_cvs",
    "read_frames",
    "report",
    "sweep_options",
    "window_seconds",
    "WALL_TO_WINDOW_TARGET",
    "call_windows_s",
    "campaign_cost",
    "cost_of_calls",
    "read_runs_log",
    "status_table",
    "overhead_text",
    "RunOptions",
    "RunResult",
    "ResidentModels",
    "check_run_options",
    "check_budget",
    "check_precision",
    "needed_s",
    "run_campaign",
    "campaign_locks",
    "selected",
    "record_run",
    "append_jsonl",
]


# --- running ------------------------------------------------------------------------------------------------
@dataclass
class RunOptions:
    models: tuple[str, ...] = ()  # empty: every model of the campaign
    experiments: tuple[str, ...] = ()  # empty: every experiment
    time_budget_s: float | None = None
    device: str | None = None
    codecarbon: bool = True
    country: str = STUDY_COUNTRY
    trace: bool = True
    progress: bool = True
    command: str = ""  # recorded in campaign_runs.jsonl (default: this process's command line)


#: the parts of a call's time outside its measured windows that it times and logs (``phases_s``). Before the
#: meter starts: the device and GPU checks (``checks``: CUDA's start), the cells (``cells``: the model
#: libraries' imports and each model's build on the meta device that checks its configurations), the tables
#: read and the estimates made from them, once before and once under the locks (``tables``), and the rest
#: (``before_meter``). Then the meter's start (NVML, CodeCarbon, the trace); the model builds; the idle
#: baseline; and between windows the meter's waits for the counter's updates at the start (``align``) and
#: after the end (``resolve``) of each window and CodeCarbon's tasks (``EnergyMeter.host_s``). What is left of
#: the wall time is the host's other work between the windows and after the last one (rows written, the
#: meter's stop, the tables' merge).
CALL_PHASES = ("checks", "cells", "tables", "before_meter", "meter_start", "builds", "idle", "align",
               "resolve", "codecarbon")
#: the phases timed before the meter starts (``before_meter`` is what is left of that time after them)
SETUP_PHASES = ("checks", "cells", "tables")


@dataclass
class RunResult:
    rows: Counter = field(default_factory=Counter)  # experiment -> measured rows written (warm-ups apart)
    warmups: int = 0
    measured_s: float = 0.0  # seconds inside measured windows (warm-ups included)
    stopped_by_budget: bool = False
    unfinished: int = 0  # cells of this run not done at the end
    nothing_left: bool = False  # every cell was done before the run: it built and measured nothing
    stopped_by: str = ""  # what stopped it before its end: "interrupted (SIGINT)" or the error's line
    #: where this process's time outside the windows went, s: :data:`CALL_PHASES` (the rest: between windows)
    phases_s: dict[str, float] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return bool(self.stopped_by)


def check_run_options(campaign: Campaign, ro: RunOptions) -> None:
    from tta_energy.models.catalogue import check_models

    check_models(ro.models, CampaignError, "--model")
    declared = {e.experiment for e in campaign.entries}
    for e in ro.experiments:
        if e not in declared:
            raise CampaignError(f"experiment {e!r} is not in {campaign.path} (it declares "
                                f"{', '.join(sorted(declared))})")
    if ro.time_budget_s is not None:
        positive_number(ro.time_budget_s, "--time-budget-s", unit="seconds", error=CampaignError)


def check_campaign_gpu(campaign: Campaign, device: str) -> None:
    """Refuse a device whose GPU is not the campaign's (``gpu`` in its file): its rows would enter tables
    that say which GPU they hold, e.g. ``data/h200``."""
    why = gpu_mismatch(campaign.gpu, device)
    if why:
        raise CampaignError(f"campaign {campaign.name} measures on an {campaign.gpu} (gpu in "
                            f"{campaign.path}); {why}: its rows would enter {campaign.out_dir} as "
                            f"{campaign.gpu} rows. Run it on an {campaign.gpu}, or write another campaign "
                            "file")


class ResidentModels:
    """Built models stay resident across cells (one :class:`.runner.ModelCache` per model); when building one
    runs out of memory every other resident build is dropped, the same model's other precisions too (and
    rebuilt, with a new warm-up, when needed again)."""

    def __init__(self, campaign: Campaign, device: str) -> None:
        self.campaign = campaign
        self.device = device
        self.caches: dict[str, Any] = {}

    def cache(self, model: str) -> Any:
        from tta_energy.experiments.runner import ModelCache

        if model not in self.caches:
            self.caches[model] = ModelCache(sweep_options(self.campaign, model), self.device)
        return self.caches[model]

    def resident(self, model: str, dtype: str) -> bool:
        return model in self.caches and dtype in self.caches[model].warmed

    def build(self, model: str, dtype: str) -> None:
        from tta_energy.experiments.runner import free_memory, is_oom

        cache = self.cache(model)
        try:
            cache.get(dtype)
        except Exception as exc:
            if not is_oom(exc):
                raise
            for cached in self.caches.values():  # make room, then try once more
                cached.adapters.clear()
                cached.warmed.clear()
            free_memory()
            cache.get(dtype)


def run_campaign(campaign: Campaign, ro: RunOptions, echo: Callable[[str], None] = print) -> RunResult:
    """Measure what the campaign still misses, within the time budget; see the module docstring.

    Everything that can refuse the run (options, folder, device, cells, time budget) is checked before a
    folder or a lock is made; a refused run says only why (the notes on configurations left out follow a
    run that goes on)."""
    from tta_energy.experiments.runner import check_sweep_device, now_iso, resolve_device
    from tta_energy.fileio import output_folder_path

    start, start_utc = time.perf_counter(), now_iso()
    phases: dict[str, float] = {}
    check_run_options(campaign, ro)
    output_folder_path(campaign.out_dir, "the campaign's folder")
    with timed(phases, "checks"):
        check_sweep_device(sweep_options(campaign, campaign.entries[0].models[0], device=ro.device))
        ctx = distributed.context_from_env()
        device = resolve_device(ro.device, ctx)
        check_campaign_gpu(campaign, device)
    notes: list[str] = []
    with timed(phases, "cells"):
        cells = build_cells(campaign, ro.models, ro.experiments, note=notes.append)
    if not cells:
        raise CampaignError("no cell to measure: the filters leave none of the campaign's cells")
    with timed(phases, "checks"):
        check_precision(campaign, cells, device)  # the cells plan and status count, or none
    with timed(phases, "tables"):
        frames = read_frames(campaign, {c.experiment for c in cells})  # read again under the locks
        observed = observe(frames)
        todo = [c for c in cells if not cell_state(c, observed).done]
        est = estimator(frames, cells, build_overhead_s(campaign.out_dir, frames))
    check_budget(campaign, ro.time_budget_s, time.perf_counter() - start, todo, observed, est)
    for line in notes if ctx.is_main else ():
        echo(line)
    writes = {entry.experiment for entry, _model in selected(campaign, ro.models, ro.experiments)}
    with campaign_locks(campaign, writes, ctx), distributed.process_group(ctx):
        return _run(campaign, ro, writes, ctx, echo, cells, (start, start_utc), phases)


@contextmanager
def campaign_locks(campaign: Campaign, experiments: Iterable[str],
                   ctx: distributed.DistContext) -> Iterator[None]:
    """Hold the lock of every file this process of a campaign run writes, from before it reads the tables
    to its end: rank 0 the experiments' tables and the runs log, each rank of torchrun its shard files (as a
    sweep does, :func:`.resume.hold_locks`), so that a second run or a sweep cannot measure the same pairs."""
    tables = []
    for e in sorted(experiments):
        out = campaign.table(e)
        if ctx.is_main:
            tables.append(out)
        if ctx.is_distributed:
            tables.append(resume.shard_path(out, ctx.rank))
    if ctx.is_main:
        tables.append(campaign.out_dir / RUNS_LOG)
    campaign.out_dir.mkdir(parents=True, exist_ok=True)
    with resume.hold_locks(tables, CampaignError, "--out-dir"):
        yield


def _run(campaign: Campaign, ro: RunOptions, writes: set[str], ctx: distributed.DistContext,
         echo: Callable[[str], None], cells: list[Cell], started: tuple[float, str],
         phases: dict[str, float]) -> RunResult:
    """The run, under the locks: ``cells`` as planned, ``started`` (perf_counter, UTC) when it began,
    ``phases`` the seconds of :data:`SETUP_PHASES` so far."""
    from tta_energy.experiments import runner
    from tta_energy.experiments.runner import RowContext, measure_idle, measure_pair, window_s

    start, start_utc = started
    say = echo if ctx.is_main else (lambda _m: None)
    experiments = [e.experiment for e in campaign.entries]
    distributed.barrier(ctx)
    with timed(phases, "tables"):
        frames = read_frames(campaign, {c.experiment for c in cells})
        observed = observe(frames)
        est = estimator(frames, cells, build_overhead_s(campaign.out_dir, frames))
    distributed.barrier(ctx)  # every rank has read the same state before any writes
    with timed(phases, "tables"):
        todo = [c for c in cells if not cell_state(c, observed).done]
        prior = prior_cvs((c, cell_state(c, observed)) for c in cells)
    if not todo:  # every rank sees the same tables: none measures, builds or logs anything
        say(f"campaign {campaign.name}: nothing left to measure ({len(cells)} cells done)")
        merge_shard_files(campaign, writes, ctx)  # an interrupted torchrun run's rows join the tables
        return RunResult(nothing_left=True)
    say(f"campaign {campaign.name}: {len(cells)} cells, {len(cells) - len(todo)} done")
    check_budget(campaign, ro.time_budget_s, time.perf_counter() - start, todo, observed, est)
    if ctx.is_distributed:
        def remaining_s(c: Cell) -> float:  # balancing weight: estimated seconds, 1 per generation if unknown
            per_generation = est.cell_generation_s(c)
            per_generation = per_generation if np.isfinite(per_generation) else 1.0
            return expected_missing(c, cell_state(c, observed), observed, prior) * per_generation

        mine = distributed.assign(todo, ctx.world_size, remaining_s)[ctx.rank]
        todo = [todo[i] for i in mine]
    result = RunResult(phases_s=phases)
    device = runner.resolve_device(ro.device, ctx)
    run_id = distributed.broadcast(ctx, runner.new_run_id())
    budget_s = ro.time_budget_s
    gpu_name = ""
    meter: Any = None

    def log_stopped_call(why: str) -> None:
        if ctx.is_main and not ctx.is_distributed:  # torchrun's ranks can no longer gather their counts
            result.stopped_by = why
            result.phases_s.update(getattr(meter, "host_s", {}))
            record_run(campaign, ro, run_id, start_utc, time.perf_counter() - start, result, gpu_name, 1)

    if todo:
        base = sweep_options(campaign, todo[0].model, codecarbon=ro.codecarbon, country=ro.country,
                             trace=ro.trace)
        trace = (campaign.out_dir / "traces" / f"campaign-{campaign.name}-{run_id}-rank{ctx.rank}.csv.gz"
                 if ro.trace else None)
        if trace is not None:
            trace.parent.mkdir(parents=True, exist_ok=True)
        meter = runner.make_meter(base, device, trace)
        missing = sum(expected_missing(c, cell_state(c, observed), observed, prior) for c in todo)
        meter_t0 = time.perf_counter()
        result.phases_s["before_meter"] = meter_t0 - start - sum(phases.get(p, 0.0) for p in SETUP_PHASES)
        with (on_failure(log_stopped_call), meter,
              runner.progress_bar(missing, ro.progress and ctx.is_main) as bar):
            result.phases_s["meter_start"] = time.perf_counter() - meter_t0
            provenance = {**meter.provenance(), "rank": ctx.rank}
            gpu_name = str(provenance.get("gpu_name", ""))
            contexts = {m: RowContext(sweep_options(campaign, m), run_id, ctx.rank, provenance,
                                      meter.trace_file) for m in {c.model for c in todo}}
            models = ResidentModels(campaign, device)
            idle_done = False
            errors: Counter = Counter()  # cell -> visits of this run that ended in an error row
            for tier in dict.fromkeys(experiments):  # the campaign file's order is the priority
                left = [c for c in todo if c.experiment == tier]
                rows_before = sum(int((f["experiment"] == tier).sum()) for f in frames if f is not None)
                round_no = 0
                over_budget: set[tuple] = set()  # cells that no longer fit: they wait for the next run
                while left:
                    order = round_order(left, campaign.seed, tier, rows_before, round_no)
                    for cell in order:
                        for item in next_items(cell, observed):
                            needed = needed_s(campaign, est, cell.model, item,
                                              fresh=not models.resident(cell.model, item.dtype))
                            if budget_s is not None and time.perf_counter() - start + needed > budget_s:
                                # the time left only shrinks: the other cells go on while they fit
                                result.stopped_by_budget = True
                                over_budget.add(cell.key)
                                break
                            with timed(result.phases_s, "builds"):
                                models.build(cell.model, item.dtype)
                            if not idle_done:
                                with timed(result.phases_s, "idle"):
                                    measure_idle(meter, campaign.idle_s)
                                idle_done = True
                            target = (resume.shard_path(campaign.table(cell.experiment), ctx.rank)
                                      if ctx.is_distributed else campaign.table(cell.experiment))
                            row, warmups = measure_pair(meter, models.cache(cell.model), contexts[cell.model],
                                                        cell.experiment, item, target)
                            seconds = window_s(row)
                            # each window as it was measured (a fresh model's warm-up call is longer); a call
                            # that failed before its window closed has none
                            result.measured_s += float(np.nansum([window_s(r) for r in (*warmups, row)]))
                            result.rows[cell.experiment] += 1
                            result.warmups += len(warmups)
                            observed[item.config_id].add(item.repeat, str(row["status"]),
                                                         float(row["gpu_energy_J"]), seconds)
                            if row["status"] == "ok":
                                est.learn(cell.model, item, seconds)
                            elif row["status"] == "error":
                                errors[cell.key] += 1
                            bar.set_postfix_str(f"{cell.model} {cell.label} r{item.repeat} {row['status']}",
                                                refresh=False)
                            bar.update(1)  # shows the postfix of the generation it counts
                            if row["status"] != "ok":  # the repeat is decided (oom, nan_audio) or waits
                                break  # for a later visit (error): its other calls would be spent for nothing
                    for cell in left:
                        if errors[cell.key] >= MAX_ERRORS_PER_RUN:
                            say(f"{cell.model} {cell.label}: {errors[cell.key]} error rows "
                                "in this run; left for the next run (see the table's error column)")
                    left = [c for c in left if not cell_state(c, observed).done
                            and errors[c.key] < MAX_ERRORS_PER_RUN and c.key not in over_budget]
                    round_no += 1
            todo = [c for c in todo if not cell_state(c, observed).done]
        result.phases_s.update(meter.host_s)
    result.unfinished = len(todo)
    merge_shard_files(campaign, writes, ctx)
    gathered = distributed.all_gather(ctx, (result.rows, result.warmups, result.measured_s,
                                            result.stopped_by_budget, result.unfinished, gpu_name))
    total = RunResult(rows=sum((g[0] for g in gathered), Counter()), warmups=sum(g[1] for g in gathered),
                      measured_s=float(sum(g[2] for g in gathered)),
                      stopped_by_budget=any(g[3] for g in gathered),
                      unfinished=sum(g[4] for g in gathered), phases_s=result.phases_s)
    if ctx.is_main:
        gpus = sorted({g[5] for g in gathered if g[5]})
        record_run(campaign, ro, run_id, start_utc, time.perf_counter() - start, total, ", ".join(gpus),
                   ctx.world_size)
        written = ", ".join(f"{n} {e}" for e, n in sorted(total.rows.items())) or "nothing"
        why = "stopped by the time budget" if total.stopped_by_budget else "left after errors"
        left = (f"; {why}, {total.unfinished} cell(s) unfinished: run the same command again"
                if total.unfinished else "")
        say(f"campaign {campaign.name}: measured {written} (+{total.warmups} warm-up) in "
            f"{time.perf_counter() - start:.1f} s, {total.measured_s:.1f} s inside measured windows{left}")
    return total


def round_order(cells: Sequence[Cell], seed: int, experiment: str, rows_before: int,
                round_no: int) -> list[Cell]:
    """One round's visiting order: ``cells`` shuffled with a seed made of the campaign's seed, the experiment,
    the rows its table held when the run began and the round's number. Reproducible from the tables, and a
    later call does not replay an earlier call's order, so a cell's place in a call (after a fresh build, late
    in a warm GPU) is not tied to the cell."""
    order = list(cells)
    random.Random(f"{seed}:{experiment}:{rows_before}:{round_no}").shuffle(order)
    return order


def merge_shard_files(campaign: Campaign, writes: Iterable[str], ctx: distributed.DistContext) -> None:
    """Once every rank is done writing, rank 0 merges the shard files of the tables this run holds the locks
    of (this run's, or those an interrupted torchrun run left) into the tables."""
    distributed.barrier(ctx)
    if ctx.is_main:
        for e in sorted(writes):
            if resume.shard_paths(campaign.table(e)):
                resume.merge_shards(campaign.table(e))


@contextmanager
def on_failure(action: Callable[[str], None]) -> Iterator[None]:
    """Run ``action`` with what stopped the block (an interrupt: SIGINT, a device script's hard limit; any
    error), then let it go on: the call's time was spent and its runs-log line says so."""
    try:
        yield
    except KeyboardInterrupt as stop:
        action(f"interrupted ({stop_signal_name(stop)})")
        raise
    except Exception as exc:
        from tta_energy.experiments.runner import one_line

        action(one_line(exc))
        raise


def needed_s(campaign: Campaign, est: Estimator, model: str, item: Any, fresh: bool) -> float:
    """Estimated seconds until ``item``'s row is written: its generation, plus the model's build and warm-ups
    when the model is not resident (an unknown generation time counts 0)."""
    needed = est.generation_s(model, item)
    needed = needed if np.isfinite(needed) else 0.0
    if fresh:
        needed += est.model_build_s(model) + campaign.warmup * needed
    return needed


def check_budget(campaign: Campaign, budget_s: float | None, elapsed_s: float, todo: list[Cell],
                 observed: dict[str, Observed], est: Estimator) -> None:
    """Refuse, before anything is built, a time budget in which no unfinished cell of the first experiment the
    run measures fits: a model build, its warm-ups and one generation, after the ``elapsed_s`` already spent
    planning (reading the tables, checking the configurations). The error names the smallest budget that fits
    one."""
    if budget_s is None or not todo:
        return
    first = next(e.experiment for e in campaign.entries if any(c.experiment == e.experiment for c in todo))
    needs = [(needed_s(campaign, est, c.model, items[0], fresh=True), c) for c in todo
             if c.experiment == first and (items := next_items(c, observed))]
    if not needs:
        return
    smallest, cell = min(needs, key=lambda pair: pair[0])
    if elapsed_s + smallest > budget_s:
        raise CampaignError(
            f"--time-budget-s {budget_s:g} s cannot cover one generation: {cell.model} {cell.label} "
            f"needs a model build, {campaign.warmup} warm-up(s) and one generation, about {smallest:.0f} s "
            f"(from earlier rows; {DEFAULT_BUILD_S:.0f} s a build without them), after {elapsed_s:.0f} s of "
            f"planning; the smallest useful budget is {math.ceil(elapsed_s + smallest)} s")


def record_run(campaign: Campaign, ro: RunOptions, run_id: str, start_utc: str, wall_s: float,
               result: RunResult, gpu_name: str, world_size: int) -> None:
    """Append the run's line to ``<out_dir>/campaign_runs.jsonl`` (one write of a complete line, fsync'd); a
    run stopped by SIGINT or an error is logged with what it measured until then (``interrupted``, and
    ``stopped_by`` saying why), one killed outright (SIGKILL) is not."""
    from tta_energy.experiments.runner import now_iso
    from tta_energy.provenance import git_commit, host_cpu_model

    line = {"command": ro.command or shlex.join(["tta-energy", *sys.argv[1:]]),
            "campaign": str(campaign.path), "run_id": run_id, "start_utc": start_utc, "end_utc": now_iso(),
            "wall_s": round(wall_s, 3),
            "measured_s": round(result.measured_s, 3), "rows": dict(sorted(result.rows.items())),
            "warmup_rows": result.warmups, "stopped_by_budget": result.stopped_by_budget,
            "phases_s": {k: round(result.phases_s[k], 3) for k in CALL_PHASES if k in result.phases_s},
            "interrupted": result.interrupted, "stopped_by": result.stopped_by,
            "time_budget_s": ro.time_budget_s, "world_size": world_size, "git_commit": git_commit(),
            "host_cpu_model": host_cpu_model(), "host_cpu_count": os.cpu_count() or 0, "gpu_name": gpu_name}
    call_start = device_call_start()
    if call_start:
        line["call_start_utc"] = call_start
    append_jsonl(campaign.out_dir / RUNS_LOG, line)


#: set by the device scripts (scripts/gpu_call.sh) to the UTC time their call began, before the wheels'
#: install and the checks: the runs log then says how long the whole device call took
CALL_START_ENV = "TTA_ENERGY_CALL_START"


def device_call_start() -> str | None:
    """The start of the device call this process runs in (:data:`CALL_START_ENV`, ISO 8601), or None when it
    runs outside one or the value is not such a time."""
    import datetime as dt

    value = os.environ.get(CALL_START_ENV, "").strip()
    try:
        return dt.datetime.fromisoformat(value).isoformat(timespec="milliseconds") if value else None
    except ValueError:
        return None


@contextmanager
def timed(phases: dict[str, float], phase: str) -> Iterator[None]:
    """Add the seconds the block takes to ``phases[phase]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t0


def append_jsonl(path: Path, obj: dict[str, object]) -> None:
    """Append one JSON line durably (a line cut by a crash is repaired before the next append)."""
    from tta_energy.schema import repair_tail

    path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(obj, sort_keys=False) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
