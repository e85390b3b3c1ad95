"""A campaign's cells, their state in the run tables, and what is missing with its estimated GPU time
(``campaign plan`` / ``status``). See :mod:`.campaign` for the rules."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tta_energy import schema
from tta_energy.errors import TtaError
from tta_energy.experiments import resume
from tta_energy.experiments.campaign_spec import (
    DEFAULT_BUILD_S,
    RUNS_LOG,
    Campaign,
    CampaignError,
    Entry,
    Stopping,
)
from tta_energy.experiments.grids import EXPERIMENTS, Config, check_distinct
from tta_energy.intervals import CONFIDENCE, t_half_width, t_half_width_of
from tta_energy.provenance import run_id_start

# --- cells --------------------------------------------------------------------------------------------------
#: the configuration columns that name a cell, per experiment
CELL_COLUMNS: dict[str, tuple[str, ...]] = {name: spec.columns for name, spec in EXPERIMENTS.items()}
#: the device every command expands a campaign's cells for, wherever it runs: a GPU, whose default precision
#: is the study's. A file without ``dtype`` so declares each model's GPU precision; ``run`` refuses a device
#: that would measure another (a CPU's float32: other configuration ids, rows no cell counts)
PLAN_DEVICE = "cuda"


@dataclass(frozen=True)
class Cell:
    """One model x one grid value: the items (one per configuration, repeat 0) a repeat of it measures."""

    model: str
    experiment: str
    config: tuple[tuple[str, object], ...]  # the cell's configuration columns and values
    items: tuple[Any, ...]  # runner.Item, repeat 0
    stopping: Stopping
    per_caption: bool  # quality: one measurement per caption, no repeats

    @property
    def label(self) -> str:
        """The cell's configuration, its experiment named once (its items share it)."""
        return self.items[0].config.label

    @property
    def key(self) -> tuple:
        return (self.model, self.experiment, self.config)

    def at_target(self, state: CellState) -> bool:
        """The interval is within the target with the minimum repeats (a quality cell: every caption
        measured; its spread is between captions, not a measurement uncertainty)."""
        return state.done if self.per_caption else state.at_target(self.stopping)


def _cell_value(config: Config, column: str, dtype: str | None) -> object:
    if column == "dtype":
        return dtype
    return getattr(config, column)


def _cell_key(config: Config, experiment: str, dtype: str | None) -> tuple[tuple[str, object], ...]:
    return tuple((c, _cell_value(config, c, dtype)) for c in CELL_COLUMNS[experiment])


def _key_text(key: tuple[tuple[str, object], ...]) -> str:
    return ", ".join(f"{c} {v}" for c, v in key)


def sweep_options(campaign: Campaign, model: str, entry: Entry | None = None, **more: Any) -> Any:
    """The :class:`.runner.SweepOptions` that describe ``model`` in this campaign (config ids, rows)."""
    from tta_energy.experiments.runner import SweepOptions

    kwargs: dict[str, Any] = dict(
        model=model, experiments=(entry.experiment,) if entry else tuple(EXPERIMENTS), size=campaign.size,
        weights=campaign.weights, dtype=campaign.dtype, duration_s=campaign.duration_s, seed=campaign.seed,
        min_window_s=campaign.min_window_s, idle_s=campaign.idle_s, warmup=campaign.warmup,
        save_audio=False, out_dir=campaign.out_dir)
    if entry is not None:
        kwargs.update(grid={entry.experiment: entry.grid} if entry.grid else {}, captions=entry.captions,
                      limit=entry.caption_limit, repeats={entry.experiment: 1})
    kwargs.update(more)
    return SweepOptions(**kwargs)


def build_cells(campaign: Campaign, models: Sequence[str] | None = None,
                experiments: Sequence[str] | None = None,
                note: Callable[[str], None] = lambda _m: None) -> list[Cell]:
    """The campaign's cells (in the file's order of experiments), optionally only some models/experiments.

    Configurations a model cannot run are left out, as the sweep leaves them out (checked on a ``meta``-device
    copy of the model); ``note`` hears about them. A value of a grid the file wrote that none of its entry's
    models can run is an error (:func:`check_grid`), so are grids that make one cell twice
    (:func:`check_entries`). The cells are the file's, for :data:`PLAN_DEVICE`, so that plan, status and run
    count the same rows (:func:`check_precision`).
    """
    from tta_energy.experiments.runner import NothingToRun, Probe, expand

    check_entries(campaign, models, experiments)
    probes: dict[str, Any] = {}
    cells: dict[tuple, Cell] = {}
    runnable: dict[Entry, set[str]] = defaultdict(set)  # entry -> configurations a selected model runs
    for entry, model in selected(campaign, models, experiments):
        opts = sweep_options(campaign, model, entry)
        probe = probes.setdefault(model, Probe(sweep_options(campaign, model)))
        try:
            items, excluded = expand(opts, entry.experiment, probe, PLAN_DEVICE)
        except NothingToRun as exc:
            runnable.setdefault(entry, set())
            note(str(exc))
            continue
        runnable[entry].update(it.config.label for it in items)
        for text in excluded:
            note(f"{model} {text}")  # the text names the experiment
        groups: dict[tuple, list[Any]] = defaultdict(list)
        for it in items:
            groups[_cell_key(it.config, entry.experiment, it.dtype)].append(it)
        for key, group in groups.items():
            cell = Cell(model, entry.experiment, key, tuple(group), entry.stopping,
                        per_caption=entry.experiment == "quality")
            if cell.key in cells:  # two entries make it alike (check_entries): the first one's rule holds
                continue
            cells[cell.key] = cell
    for entry, labels in runnable.items():
        check_grid(campaign, entry, labels, probes)
    return list(cells.values())


def check_precision(campaign: Campaign, cells: Iterable[Cell], device: str) -> None:
    """Refuse to measure ``cells`` on a ``device`` that would run one of their configurations in another
    precision than the cells declare: a file without ``dtype`` declares each model's GPU precision, which a
    CPU runs as float32; those rows have other configuration ids, so ``run`` would count them while plan and
    status (and later runs) never would. One line naming the fix, before anything is built or locked."""
    from tta_energy.precision import generation_precision

    for cell in cells:
        for it in cell.items:
            there = generation_precision(cell.model, None, it.config.dtype, campaign.dtype, device)
            if there != it.dtype:
                raise CampaignError(
                    f"{campaign.path} sets no dtype, so its cells are measured in each model's GPU precision "
                    f"({cell.model}: {it.dtype}), which {device} would run in {there}: measure it on a GPU, "
                    f"or set dtype = \"{there}\" in the file to measure it on {device}")


def entry_cells(campaign: Campaign, number: int, entry: Entry) -> dict[tuple, tuple[str, frozenset[Config]]]:
    """The cells the grid of entry ``number`` (from 1) makes: cell key -> (its grid value, its
    configurations with the model left out). A grid the sweep refuses, or two of its values that make one cell
    (batch ``1`` and ``p1``: one prompt x one waveform; duration ``5`` and ``5.0``), is a
    :class:`CampaignError` naming the file and the entry."""
    from tta_energy.experiments.grids import build_configs
    from tta_energy.experiments.runner import grid_request

    where = f"{campaign.path}: experiment {number} ({entry.experiment})"

    def configs(e: Entry) -> list[Config]:
        try:
            return build_configs(grid_request(sweep_options(campaign, e.models[0], e), e.experiment))
        except TtaError as exc:
            raise CampaignError(f"{where}: {exc}") from None

    configs(entry)  # the whole grid first: the sweep's errors (a bad value, a repeated one)
    out: dict[tuple, tuple[str, frozenset[Config]]] = {}
    made: list[tuple[str, tuple]] = []  # (grid value, a cell it makes)
    for value in entry.grid if entry.grid is not None else EXPERIMENTS[entry.experiment].grid:
        by_key: dict[tuple, set[Config]] = defaultdict(set)
        for c in configs(replace(entry, grid=(value,))):
            by_key[_cell_key(c, entry.experiment, c.dtype)].add(replace(c, model=""))
        for key, group in by_key.items():
            made.append((value, key))
            out.setdefault(key, (value, frozenset(group)))
    try:  # the sweep's rule for grid values that mean the same, at the level of cells
        check_distinct(made, lambda key: f"cell ({_key_text(key)})",
                       f"a cell is named by {', '.join(CELL_COLUMNS[entry.experiment])}")
    except TtaError as exc:
        raise CampaignError(f"{where}: {exc}") from None
    return out


def check_entries(campaign: Campaign, models: Sequence[str] | None = None,
                  experiments: Sequence[str] | None = None) -> None:
    """Refuse entries (those the filters keep, :func:`selected`) whose grids make one cell of a model from
    different configurations, e.g. two quality entries of one step count with another ``caption_limit``: one
    would be dropped silently. Entries that make a cell alike may share it (the first one's rule holds)."""
    kept = {entry for entry, _model in selected(campaign, models, experiments)}
    seen: dict[tuple, list[tuple[int, Entry, str, frozenset[Config]]]] = defaultdict(list)
    for number, entry in enumerate(campaign.entries, 1):
        if entry not in kept:
            continue
        for key, (value, configs) in entry_cells(campaign, number, entry).items():
            for first, other, other_value, other_configs in seen[(entry.experiment, key)]:
                shared = [m for m in entry.models if m in other.models and (not models or m in models)]
                if shared and configs != other_configs:
                    how = [f"{name} {a} and {b}" for name, a, b in (
                        ("grid values", other_value, value),
                        ("caption_limit", other.caption_limit, entry.caption_limit),
                        ("captions", ",".join(other.captions), ",".join(entry.captions))) if a != b]
                    raise CampaignError(
                        f"{campaign.path}: experiments {first} and {number} ({entry.experiment}) make the "
                        f"same cell ({_key_text(key)}) of {shared[0]} from different configurations "
                        f"({'; '.join(how) or 'different grids'}): declare each cell in one entry")
            seen[(entry.experiment, key)].append((number, entry, value, configs))


def check_grid(campaign: Campaign, entry: Entry, runnable: set[str], probes: dict[str, Any]) -> None:
    """Refuse a value of the grid the file wrote for ``entry`` that none of the entry's models can run (the
    models the filters left out are asked too): it would leave no cell, silently. A value only some models
    cannot run is left out for those, as the file says; so are the values of a default grid (no ``grid``).
    ``runnable``: the configurations' labels the selected models run; ``probes``: model -> its Probe."""
    if entry.grid is None:
        return
    from tta_energy.experiments.grids import build_configs
    from tta_energy.experiments.runner import Probe, grid_request
    from tta_energy.models.base import ModelError

    reasons: dict[str, list[str]] = defaultdict(list)
    for model in entry.models:
        configs = build_configs(grid_request(sweep_options(campaign, model, entry), entry.experiment))
        missing = [c for c in configs if c.label not in runnable]
        if not missing:
            continue
        probe = probes.setdefault(model, Probe(sweep_options(campaign, model)))
        for c in missing:
            try:
                probe.check(c.request())
            except ModelError as exc:
                reasons[c.label].append(str(exc))
                continue
            runnable.add(c.label)
    for label, why in reasons.items():
        if label not in runnable:
            number = campaign.entries.index(entry) + 1
            shown = "; ".join(dict.fromkeys(why[:3])) + (f"; and {len(why) - 3} more" if len(why) > 3 else "")
            raise CampaignError(f"{campaign.path}: experiment {number} ({entry.experiment}): none of its "
                                f"models can run grid value {label} ({shown})")


def selected(campaign: Campaign, models: Sequence[str] | None = None,
             experiments: Sequence[str] | None = None) -> list[tuple[Entry, str]]:
    """The campaign's (entry, model) pairs the filters keep (an empty filter keeps all), in file order."""
    return [(entry, model) for entry in campaign.entries
            if not experiments or entry.experiment in experiments
            for model in entry.models if not models or model in models]


# --- the state of a cell ------------------------------------------------------------------------------------
@dataclass
class Observed:
    """The measured (non-warm-up) rows of one configuration: repeat -> status, GPU energy, window seconds."""

    rows: dict[int, list[tuple[str, float, float]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, repeat: int, status: str, energy_J: float, seconds: float) -> None:
        self.rows[repeat].append((status, energy_J, seconds))

    def finished(self, repeat: int) -> str | None:
        """The repeat's finished status (ok first), or None when it has none (missing or error only)."""
        statuses = {s for s, _, _ in self.rows.get(repeat, [])}
        for s in resume.DONE_STATUSES:
            if s in statuses:
                return s
        return None

    def ok_energy(self, repeat: int) -> float:
        return next((e for s, e, _ in self.rows.get(repeat, []) if s == "ok"), math.nan)


def observe(frames: Iterable[pd.DataFrame | None]) -> dict[str, Observed]:
    """config_id -> its measured rows, from run tables (warm-ups left out)."""
    out: dict[str, Observed] = defaultdict(Observed)
    for df in frames:
        if df is None or df.empty:
            continue
        rows = df[~df["is_warmup"]]
        columns = (rows["config_id"].astype(str), rows["repeat"].astype(int), rows["status"],
                   rows["gpu_energy_J"].astype(float), window_seconds(rows))
        for cid, rep, status, energy, seconds in zip(*columns, strict=True):
            out[cid].add(rep, status, energy, seconds)
    return out


def window_seconds(df: pd.DataFrame) -> pd.Series:
    """GPU seconds a row took: its meter window (several calls under ``min_window_s``), else its wall time."""
    wall = df["wall_s"].astype(float)
    if "meter_window_s" not in df.columns:
        return wall
    return df["meter_window_s"].astype(float).fillna(wall)


@dataclass
class CellState:
    n: int  # complete ok repeats (quality: captions measured ok)
    attempts: int  # complete finished repeats (quality: captions finished)
    mean_J: float
    ci95_half_width_J: float
    failed: str  # "oom" / "nan_audio" when a repeat ended so, else ""
    done: bool
    samples: list[float]

    @property
    def ci95_half_width_rel(self) -> float:
        if not (self.mean_J > 0 and np.isfinite(self.ci95_half_width_J)):
            return math.nan
        return self.ci95_half_width_J / self.mean_J

    @property
    def n_with_energy(self) -> int:
        """Repeats with a measured energy: an ok row whose window got no energy (NaN) counts towards ``n``
        but not towards the minimum repeats of the interval it is left out of."""
        return sum(bool(np.isfinite(s)) for s in self.samples)

    def at_target(self, stopping: Stopping) -> bool:
        return self.n_with_energy >= stopping.min_repeats and self.ci95_half_width_rel <= stopping.target_rel


def ci95_half_width(samples: Sequence[float]) -> float:
    """Half-width of the confidence interval of the mean of the finite samples (:func:`.t_half_width`)."""
    return t_half_width(np.asarray([s for s in samples if np.isfinite(s)], dtype=float), CONFIDENCE)


def cell_state(cell: Cell, observed: dict[str, Observed]) -> CellState:
    """How far a cell is, from the rows observed so far (the done rule of the module docstring)."""
    empty = Observed()
    obs = [observed.get(it.config_id, empty) for it in cell.items]
    if cell.per_caption:
        finished = [o.finished(0) for o in obs]
        samples = [o.ok_energy(0) for o, f in zip(obs, finished, strict=True) if f == "ok"]
        attempts = sum(f is not None for f in finished)
        done = attempts == len(cell.items)
        return _state(len(samples), attempts, samples, "", done)
    repeats = sorted({r for o in obs for r in o.rows})
    samples, attempts, failed = [], 0, ""
    for r in repeats:
        statuses = [o.finished(r) for o in obs]
        bad = [s for s in statuses if s is not None and s != "ok"]
        if bad:  # oom / nan_audio decide the repeat, even before its other calls (they are not measured)
            attempts += 1
            failed = failed or str(bad[0])
            continue
        if any(s is None for s in statuses):
            continue  # incomplete repeat (a run stopped inside a batch layout, or an error): finished later
        attempts += 1
        samples.append(float(sum(o.ok_energy(r) for o in obs)))
    stop = cell.stopping
    state = _state(len(samples), attempts, samples, failed, False)
    state.done = bool(failed) or attempts >= stop.max_repeats or state.at_target(stop)
    return state


def _state(n: int, attempts: int, samples: list[float], failed: str, done: bool) -> CellState:
    finite = [s for s in samples if np.isfinite(s)]
    mean = float(np.mean(finite)) if finite else math.nan
    return CellState(n, attempts, mean, ci95_half_width(finite), failed, done, samples)


def next_items(cell: Cell, observed: dict[str, Observed]) -> list[Any]:
    """What one visit of an unfinished cell measures: the rest of an incomplete repeat, else a new repeat
    (every configuration of the cell); for a quality cell, its next caption not yet measured."""
    empty = Observed()
    obs = [observed.get(it.config_id, empty) for it in cell.items]
    if cell.per_caption:
        for it, o in zip(cell.items, obs, strict=True):
            if o.finished(0) is None:
                return [it]
        return []
    seen = sorted({r for o in obs for r in o.rows})
    for r in seen:  # a repeat with rows but not finished (cut, or a call that ended in an error): go on
        missing = [it for it, o in zip(cell.items, obs, strict=True) if o.finished(r) is None]
        if missing:
            return [replace(it, repeat=r) for it in missing]
    new = (max(seen) + 1) if seen else 0
    return [replace(it, repeat=new) for it in cell.items]


# --- estimates ----------------------------------------------------------------------------------------------
@dataclass
class Estimator:
    """Seconds of GPU time a generation or a model build takes, from the rows already measured.

    A configuration measured before: the mean of its windows. Otherwise scaled from the same model's rows by
    the configurations' relative cost (:meth:`.grids.Config.cost`: steps x clips x seconds of audio), else
    from every model's rows. A model build (build, idle baseline, warm-up): where earlier campaign calls are
    logged, their time outside measured windows per model built (:func:`build_overhead_s`) plus the median
    of the model's warm-up windows; otherwise the median, over the sweeps that measured only that model, of
    the time from the run's start (its ``run_id``) to its first row (imports included, so an upper bound).
    """

    per_config_s: dict[str, float]
    per_cost_s: dict[str, float]  # model -> seconds per unit of cost
    build_s: dict[str, float]
    all_per_cost_s: float

    def generation_s(self, model: str, item: Any) -> float:
        if item.config_id in self.per_config_s:
            return self.per_config_s[item.config_id]
        rate = self.per_cost_s.get(model, self.all_per_cost_s)
        return rate * item.cost() if np.isfinite(rate) else math.nan

    def cell_generation_s(self, cell: Cell) -> float:
        """Mean seconds of one generation of ``cell`` over its configurations with an estimate (NaN: none)."""
        known = [t for t in (self.generation_s(cell.model, it) for it in cell.items) if np.isfinite(t)]
        return float(np.mean(known)) if known else math.nan

    def model_build_s(self, model: str) -> float:
        return self.build_s.get(model, DEFAULT_BUILD_S)

    def learn(self, model: str, item: Any, seconds: float) -> None:
        """What this run measured replaces the tables' estimate for that configuration."""
        if np.isfinite(seconds):
            self.per_config_s[item.config_id] = seconds
            self.per_cost_s.setdefault(model, seconds / item.cost())


def build_overhead_s(out_dir: Path, frames: Iterable[pd.DataFrame | None] = ()) -> float | None:
    """Seconds a campaign call spends outside measured windows per model it builds (and warms up): the
    median over the logged calls of (wall time - windows) / warm-up rows; ``None`` without such a call.
    ``frames``: run tables of ``out_dir`` already read (:func:`call_windows_s`)."""
    lines = [line for line in read_runs_log(out_dir / RUNS_LOG) if int(line.get("warmup_rows") or 0) > 0
             and int(line.get("world_size") or 1) == 1 and not line.get("interrupted")]
    windows = call_windows_s(out_dir, lines, frames)
    outside = {str(line.get("run_id")): float(line["wall_s"]) - windows.get(str(line.get("run_id")),
               float(line.get("measured_s") or 0.0)) for line in lines if line.get("wall_s") is not None}
    per_build = [outside[str(line.get("run_id"))] / int(line["warmup_rows"]) for line in lines
                 if str(line.get("run_id")) in outside]
    per_build = [s for s in per_build if np.isfinite(s) and s >= 0]
    return float(np.median(per_build)) if per_build else None


def estimator(frames: Iterable[pd.DataFrame | None], cells: Sequence[Cell],
              per_build_s: float | None = None) -> Estimator:
    """:class:`Estimator` from the run tables ``frames``; ``per_build_s``: :func:`build_overhead_s`."""
    frames = [f for f in frames if f is not None and not f.empty]
    per_config: dict[str, float] = {}
    per_cost: dict[str, float] = {}
    builds: dict[str, float] = {}
    all_rates: list[float] = []
    cost_of = {it.config_id: it.cost() for c in cells for it in c.items}
    if frames:
        df = pd.concat(frames, ignore_index=True)
        ok = df[schema.measured_generations(df)].copy()
        ok["_s"] = window_seconds(ok)
        ok = ok[np.isfinite(ok["_s"])]
        per_config = ok.groupby("config_id")["_s"].mean().to_dict()
        from tta_energy.experiments.grids import Config as _Config

        def cost(row: pd.Series) -> float:
            if row["config_id"] in cost_of:
                return cost_of[row["config_id"]]
            c = _Config(experiment="", model="", steps=int(row["steps"]),
                        prompts=("",) * int(row["n_prompts"]),
                        waveforms_per_prompt=int(row["waveforms_per_prompt"]),
                        duration_s=float(row["duration_s"]), guidance_scale=float(row["guidance_scale"]))
            return c.cost()

        if not ok.empty:
            ok["_rate"] = ok["_s"] / ok.apply(cost, axis=1)
            ok = ok[np.isfinite(ok["_rate"])]
            per_cost = ok.groupby("model")["_rate"].median().to_dict()
            all_rates = list(ok["_rate"])
        stamps = pd.to_datetime(df["timestamp"], utc=True, errors="coerce")
        df = df.assign(_t=stamps.map(lambda t: t.timestamp() if pd.notna(t) else math.nan))
        gaps: dict[str, list[float]] = defaultdict(list)
        for run_id, rows in df.groupby("run_id"):
            if rows["model"].nunique() != 1:
                continue
            gap = float(rows["_t"].min()) - run_id_start(str(run_id))
            if np.isfinite(gap) and gap >= 0:
                gaps[str(rows["model"].iloc[0])].append(gap)
        builds = {m: float(np.median(v)) for m, v in gaps.items()}
        if per_build_s is not None:
            warm = df[(df["status"] == "ok") & df["is_warmup"].astype(bool)]
            warm_s = window_seconds(warm).groupby(warm["model"]).median()
            for model, rates in ok.groupby("model")["_s"] if not ok.empty else ():
                seconds = warm_s.get(model, float(np.median(rates)))
                builds[str(model)] = per_build_s + float(seconds)
    return Estimator(per_config, per_cost, builds, float(np.median(all_rates)) if all_rates else math.nan)


# --- reading the tables -------------------------------------------------------------------------------------
def read_frames(campaign: Campaign, experiments: Iterable[str]) -> list[pd.DataFrame | None]:
    """The campaign's tables (and shard files of an interrupted torchrun run) for these experiments."""
    frames: list[pd.DataFrame | None] = []
    for e in sorted(set(experiments)):
        out = campaign.table(e)
        frames.append(resume.read_table(out))
        frames.extend(resume.read_table(p) for p in resume.shard_paths(out))
    return frames


@dataclass
class CellReport:
    cell: Cell
    state: CellState
    missing: int  # generations still expected
    estimate_s: float  # their estimated GPU seconds

    def as_dict(self) -> dict[str, object]:
        s, c = self.state, self.cell
        return {"model": c.model, "experiment": c.experiment, **{k: _plain(v) for k, v in c.config},
                "configurations": len(c.items), "n": s.n, "attempts": s.attempts,
                "mean_J": _plain(s.mean_J), "ci95_half_width_J": _plain(s.ci95_half_width_J),
                "ci95_half_width_rel": _plain(s.ci95_half_width_rel), "at_target": c.at_target(s),
                "failed": s.failed, "done": s.done, "generations_missing": self.missing,
                "estimated_s": _plain(self.estimate_s)}


def _plain(v: object) -> object:
    if isinstance(v, float | np.floating):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _cv(samples: Sequence[float]) -> float | None:
    """Coefficient of variation of a cell's energies; ``None`` below 2 finite samples."""
    finite = [s for s in samples if np.isfinite(s)]
    if len(finite) < 2 or np.mean(finite) <= 0:
        return None
    return float(np.std(finite, ddof=1) / np.mean(finite))


def prior_cvs(states: Iterable[tuple[Cell, CellState]]) -> dict[str, float]:
    """Per model, the median spread (coefficient of variation) of its repeated cells: what a cell of that
    model with fewer than 2 repeats is expected to show (a launch-bound model's cells all spread alike);
    key ``""``: the median over every model, for a model without a repeated cell."""
    by_model: dict[str, list[float]] = defaultdict(list)
    for cell, state in states:
        cv = None if cell.per_caption else _cv(state.samples)
        if cv is not None:
            by_model[cell.model].append(cv)
    out = {m: float(np.median(v)) for m, v in by_model.items()}
    every = [cv for v in by_model.values() for cv in v]
    if every:
        out[""] = float(np.median(every))
    return out


def expected_missing(cell: Cell, state: CellState, observed: dict[str, Observed],
                     prior_cv: dict[str, float] | None = None) -> int:
    """Generations a cell still needs: every caption not measured; or the repeats until ``min`` and, past it,
    until the interval would reach the target at the spread seen so far (capped at ``max``); a cell with
    fewer than 2 repeats is given its model's spread from ``prior_cv`` (:func:`prior_cvs`) where known."""
    if state.done:
        return 0
    if cell.per_caption:
        return len(cell.items) - state.attempts
    stop = cell.stopping
    needed = stop.min_repeats
    cv = _cv(state.samples)
    if cv is None and prior_cv:
        cv = prior_cv.get(cell.model, prior_cv.get(""))
    if cv is not None:
        n = stop.min_repeats
        while n < stop.max_repeats and t_half_width_of(cv, n, CONFIDENCE) > stop.target_rel:
            n += 1
        needed = n
    repeats = max(needed - state.attempts, 1)
    partial = len(next_items(cell, observed))
    size = len(cell.items)
    return partial + (repeats - 1) * size if partial < size else repeats * size


def report(campaign: Campaign, cells: Sequence[Cell], frames: Sequence[pd.DataFrame | None]
           ) -> tuple[list[CellReport], Estimator]:
    observed = observe(frames)
    est = estimator(frames, cells, build_overhead_s(campaign.out_dir, frames))
    states = [(cell, cell_state(cell, observed)) for cell in cells]
    prior = prior_cvs(states)
    out = []
    for cell, state in states:
        missing = expected_missing(cell, state, observed, prior)
        out.append(CellReport(cell, state, missing, missing * est.cell_generation_s(cell)))
    return out, est


def campaign_state(campaign: Campaign, models: Sequence[str] | None = None,
                   experiments: Sequence[str] | None = None
                   ) -> tuple[list[CellReport], Estimator, list[pd.DataFrame | None]]:
    """Where the campaign stands, from its tables: the cell reports (optionally of some models/experiments),
    the estimator, and the tables read (what ``plan``, ``status`` and the docs read)."""
    cells = build_cells(campaign, models, experiments)
    frames = read_frames(campaign, {c.experiment for c in cells})
    reports, est = report(campaign, cells, frames)
    return reports, est, frames


#: a run's pace needs this many measured rows of configurations that other runs measured too
PACE_MIN_ROWS = 10


def run_paces(frames: Iterable[pd.DataFrame | None], min_rows: int = PACE_MIN_ROWS) -> dict[str, float]:
    """Each run's pace: the median, over its measured rows, of a row's seconds over the mean of the other
    runs' rows of its configuration (configurations measured by two runs or more); above 1 the host made that
    run slower than the others. The same cell can take 20% more or less time from one process to the next
    where the host paces the GPU, so a plan's seconds are given with the range of the runs' paces. Runs with
    fewer than ``min_rows`` such rows are left out."""
    frames = [f for f in frames if f is not None and not f.empty]
    if not frames:
        return {}
    df = pd.concat(frames, ignore_index=True)
    ok = df[schema.measured_generations(df)].copy()
    ok["_s"] = window_seconds(ok)
    ok = ok[np.isfinite(ok["_s"]) & (ok["_s"] > 0)]
    ok = ok[ok.groupby("config_id")["run_id"].transform("nunique") >= 2]
    if ok.empty:
        return {}
    # the mean of the other runs' rows of the configuration: (sum - the run's sum) / (count - the run's count)
    config_sum = ok.groupby("config_id")["_s"].transform("sum")
    config_n = ok.groupby("config_id")["_s"].transform("count")
    run_sum = ok.groupby(["config_id", "run_id"])["_s"].transform("sum")
    run_n = ok.groupby(["config_id", "run_id"])["_s"].transform("count")
    ratio = ok["_s"] / ((config_sum - run_sum) / (config_n - run_n))
    paces = ratio.groupby(ok["run_id"]).agg(["count", "median"])
    return {str(run): float(p["median"]) for run, p in paces.iterrows() if p["count"] >= min_rows}


def pace_range_text(generations_s: float, builds_s: float, paces: dict[str, float]) -> str:
    """The GPU seconds of ``generations_s`` (plus ``builds_s``) at the pace of the fastest and the slowest of
    ``paces`` (:func:`run_paces`), in words; empty with fewer than two runs or nothing left."""
    if len(paces) < 2 or generations_s <= 0:
        return ""
    low, high = min(paces.values()), max(paces.values())
    return (f"at the pace of the fastest and the slowest of {len(paces)} runs (a run's median window against "
            f"the other runs' mean: {low:.2f}x to {high:.2f}x): {generations_s * low + builds_s:,.0f} to "
            f"{generations_s * high + builds_s:,.0f} GPU s")


def plan_table(reports: Sequence[CellReport], est: Estimator) -> tuple[list[dict[str, object]], float]:
    """Per experiment (in the campaign's order): cells, done, generations missing, estimated GPU seconds; and
    the models' build overhead for the models with work left."""
    rows: dict[str, dict[str, Any]] = {}
    for r in reports:
        row = rows.setdefault(r.cell.experiment, {"experiment": r.cell.experiment, "cells": 0, "done": 0,
                                                  "generations_missing": 0, "estimated_s": 0.0})
        row["cells"] += 1
        row["done"] += int(r.state.done)
        row["generations_missing"] += r.missing
        row["estimated_s"] += r.estimate_s
    models = sorted({r.cell.model for r in reports if r.missing})
    overhead = float(sum(est.model_build_s(m) for m in models))
    return list(rows.values()), overhead




def status_table(reports: Sequence[CellReport]) -> list[dict[str, object]]:
    """Per experiment (in the campaign's order): cells, cells done (the stopping rule met) and cells at target
    (interval within the target)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in reports:
        row = rows.setdefault(r.cell.experiment, {"experiment": r.cell.experiment, "cells": 0, "done": 0,
                                                  "at_target": 0})
        row["cells"] += 1
        row["done"] += int(r.state.done)
        row["at_target"] += int(r.cell.at_target(r.state))
    return list(rows.values())


# --- cost of the calls --------------------------------------------------------------------------------------
#: wall time of the campaign's calls / time inside their measured windows the campaign aims at
WALL_TO_WINDOW_TARGET = 1.15


#: what a line of the runs log must be, said in the error about one that is not
RUNS_LOG_LINE = "one campaign call per line: a JSON object with wall_s, rows, ... as `campaign run` writes it"


def read_runs_log(path: Path) -> list[dict[str, Any]]:
    """The lines of a ``campaign_runs.jsonl`` (none when the file is missing). A last line without its
    newline that does not parse was cut by a crash (the next append repairs it) and is skipped; any other
    line that is not a call's object is an error naming the file and the line, never skipped or counted."""
    if not path.is_file():
        return []
    try:
        texts = path.read_text(encoding="utf-8").split("\n")  # the last one: what follows the last newline
    except UnicodeDecodeError as exc:
        raise CampaignError(f"{path}: not UTF-8 text (byte {exc.start}): {RUNS_LOG_LINE}") from None
    lines = []
    for number, text in enumerate(texts, 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            if number == len(texts):
                continue  # cut by a crash
            raise CampaignError(f"{path}, line {number}: not JSON ({exc.msg}); fix or delete the line "
                                f"({RUNS_LOG_LINE})") from None
        problem = _call_problem(line)
        if problem:
            raise CampaignError(f"{path}, line {number}: {problem}; fix or delete the line ({RUNS_LOG_LINE})")
        lines.append(line)
    return lines


def _call_problem(line: object) -> str:
    """What makes a parsed line of the runs log not a call ('' when it is one): the fields the cost and
    the estimates read, of the types :func:`.campaign.record_run` writes (older lines lack some)."""
    def number(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

    def count(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(line, dict):
        return f"a JSON {type(line).__name__}, not an object"
    if line.get("wall_s") is None:
        return "no wall_s (the call's seconds)"
    fields: dict[str, tuple[Callable[[Any], bool], str]] = {
        "wall_s": (number, "seconds >= 0"), "measured_s": (number, "seconds >= 0"),
        "warmup_rows": (count, "a count >= 0"), "world_size": (lambda v: count(v) and v >= 1, "a count >= 1"),
        "run_id": (lambda v: isinstance(v, str), "a string"),
        "rows": (lambda v: isinstance(v, dict) and all(count(n) for n in v.values()),
                 "an object of row counts per experiment")}
    for key, (ok, wanted) in fields.items():
        if line.get(key) is not None and not ok(line[key]):
            return f"{key} must be {wanted}, got {json.dumps(line[key])}"
    return ""


def call_windows_s(out_dir: Path, lines: Iterable[dict[str, Any]],
                   frames: Iterable[pd.DataFrame | None] = ()) -> dict[str, float]:
    """Seconds inside the measured windows of each logged call (by ``run_id``), from the rows it wrote to the
    run tables of ``out_dir`` (warm-ups included, every rank); calls without rows there are left out.
    ``frames``: tables of ``out_dir`` already read; an experiment with rows in them is not read again. A row
    found twice (a table and the shard file it was merged from, left by a kill before the shard's removal)
    counts once."""
    run_ids = {str(line["run_id"]) for line in lines if line.get("run_id")}
    if not run_ids:
        return {}
    given = [f for f in frames if f is not None and not f.empty]
    known = {str(e) for f in given for e in f["experiment"].unique()}
    read = [resume.read_table(schema.run_table_path(out_dir, e)) for e in EXPERIMENTS if e not in known]
    mine = [f[f["run_id"].isin(run_ids)] for f in given + [f for f in read if f is not None]]
    mine = [f for f in mine if not f.empty]
    if not mine:
        return {}
    rows = pd.concat(mine, ignore_index=True)
    rows = rows[~schema.row_keys(rows).duplicated()]
    seconds = window_seconds(rows).groupby(rows["run_id"]).sum()
    return {str(run_id): float(s) for run_id, s in seconds.items()}


def cost_of_calls(out_dir: Path, frames: Iterable[pd.DataFrame | None] = ()) -> dict[str, Any]:
    """:func:`campaign_cost` of the calls logged in ``out_dir``, their windows read from its run tables
    (``frames``: those already read, :func:`call_windows_s`)."""
    lines = read_runs_log(out_dir / RUNS_LOG)
    return campaign_cost(lines, call_windows_s(out_dir, lines, frames))


def campaign_cost(lines: Iterable[dict[str, Any]],
                  windows_s: dict[str, float] | None = None) -> dict[str, Any]:
    """What the campaign's calls cost: GPU seconds (wall seconds x ranks) per experiment and the overhead.

    A call that measured one experiment charges it all its GPU time; a call over several apportions its GPU
    time by the measured rows of each; a call that measured nothing counts under ``"(none)"``. The overhead is
    the calls' GPU time over the seconds inside their measured windows (warm-ups included, summed over ranks):
    model builds, idle baselines and the host's work between windows make it exceed 1. A call's windows are
    ``windows_s[run_id]`` (:func:`call_windows_s`, from its rows) where given, else the line's ``measured_s``
    (which older versions wrote counting each warm-up as long as the measured row after it).

    ``outside_windows`` says where the time outside the windows went, summed over the one-process calls that
    time it (``phases_s`` of their log lines): the phases of :data:`.campaign.CALL_PHASES` and, for the rest,
    ``between_and_after_windows`` (the host's other work between the windows and after the last one).

    ``device_calls``: the same over whole device calls, for the runs whose line gives the call's start
    (``call_start_utc``): a call's wall time runs from that start (before the wheels' install and the checks)
    to the end of its last run (the packing after it, a few seconds, is not in it), over the windows of its
    runs."""
    by: dict[str, dict[str, float]] = {}
    calls = 0
    gpu_total = measured_total = 0.0
    outside: dict[str, float] = {}
    timed_calls = 0
    device: dict[str, dict[str, Any]] = {}  # call start -> its last run's end and its runs' windows
    for line in lines:
        gpu_s = float(line.get("wall_s") or 0.0) * int(line.get("world_size") or 1)
        rows = {str(e): int(n) for e, n in (line.get("rows") or {}).items() if int(n) > 0}
        calls += 1
        gpu_total += gpu_s
        from_rows = (windows_s or {}).get(str(line.get("run_id")))
        windows = from_rows if from_rows is not None else float(line.get("measured_s") or 0.0)
        measured_total += windows
        if line.get("call_start_utc") and line.get("end_utc"):
            call = device.setdefault(str(line["call_start_utc"]),
                                     {"end": str(line["end_utc"]), "windows": 0.0})
            call["end"] = max(call["end"], str(line["end_utc"]))
            call["windows"] += windows
        phases = line.get("phases_s") or {}
        if phases and int(line.get("world_size") or 1) == 1:
            timed_calls += 1
            for phase, seconds in phases.items():
                outside[phase] = outside.get(phase, 0.0) + float(seconds)
            rest = gpu_s - windows - sum(float(v) for v in phases.values())
            outside["between_and_after_windows"] = outside.get("between_and_after_windows", 0.0) + rest
        shares = ({e: n / sum(rows.values()) for e, n in rows.items()} if rows else {"(none)": 1.0})
        for experiment, share in shares.items():
            entry = by.setdefault(experiment, {"gpu_s": 0.0, "rows": 0, "calls": 0})
            entry["gpu_s"] += gpu_s * share
            entry["rows"] += rows.get(experiment, 0)
            entry["calls"] += 1
    return {
        "calls": calls, "gpu_s": round(gpu_total, 3), "measured_s": round(measured_total, 3),
        "overhead": round(gpu_total / measured_total, 4) if measured_total > 0 else None,
        "overhead_target": WALL_TO_WINDOW_TARGET,
        "by_experiment": [{"experiment": e, "gpu_s": round(v["gpu_s"], 3), "rows": int(v["rows"]),
                           "calls": int(v["calls"])} for e, v in by.items()],
        "outside_windows": {"calls": timed_calls, **{k: round(v, 3) for k, v in outside.items()}},
        "device_calls": _device_calls(device),
    }


def _device_calls(calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``device_calls`` of :func:`campaign_cost`: the calls' count, wall and window seconds, overhead."""
    import datetime as dt

    wall = sum((dt.datetime.fromisoformat(c["end"]) - dt.datetime.fromisoformat(start)).total_seconds()
               for start, c in calls.items())
    windows = sum(c["windows"] for c in calls.values())
    return {"calls": len(calls), "wall_s": round(wall, 3), "measured_s": round(windows, 3),
            "overhead": round(wall / windows, 4) if windows > 0 else None}


def outside_windows_text(cost: dict[str, Any]) -> str:
    """Where the time outside the windows went (``outside_windows`` of :func:`campaign_cost`), in words; empty
    when no logged call times it."""
    outside = dict(cost["outside_windows"])
    calls = outside.pop("calls")
    if not calls:
        return ""
    parts = ", ".join(f"{phase.replace('_', ' ')} {seconds:,.0f} s" for phase, seconds in outside.items())
    return f"outside the windows, in the {calls} call(s) that time it: {parts}"


def overhead_text(cost: dict[str, Any]) -> str:
    """The overhead of :func:`campaign_cost` against its target, in words (and that of the whole device calls
    where any is logged)."""
    if cost["overhead"] is None:
        return "n/a (no measured window)"
    verdict = "within" if cost["overhead"] <= cost["overhead_target"] else "above"
    text = f"{cost['overhead']:.2f} ({verdict} the target {cost['overhead_target']:.2f})"
    device = cost.get("device_calls") or {}
    if device.get("overhead") is not None:
        text += (f"; whole device calls, for the {device['calls']} that log their start: "
                 f"{device['overhead']:.2f} ({device['wall_s']:,.0f} s over {device['measured_s']:,.0f} s of "
                 "windows, the wheels' install and the checks before the campaign included)")
    return text
