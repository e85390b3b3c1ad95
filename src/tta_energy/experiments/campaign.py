"""A measurement campaign: what a folder of run tables must hold, declared in a TOML file, measured
adaptively.

A campaign file (``campaigns/h200.toml``) lists experiments (the sweeps' grids, :mod:`.grids`) x models, and
the stopping rule of their cells. A *cell* is what one number of the study describes:

* for the repeated experiments (steps, batch, duration, guidance, precision), one grid value of one model; a
  repeat of it is every configuration of that value (one call, or the 10/b calls of a batch layout), its
  sample the summed GPU energy of those calls. A cell is done when it has at least ``min`` complete ``ok``
  repeats and the 95% confidence half-width of its mean (Student t) is at most ``ci95_half_width_rel`` of the
  mean, or when ``max`` repeats were measured (the interval is then reported as it is), or when a repeat ended
  ``oom`` / ``nan_audio`` (a property of the configuration: repeating it would only repeat it);
* for the quality experiment, (model, steps, caption set): done when each of its captions (the first
  ``caption_limit`` of the caption file) was measured once.

Rows are matched to cells by ``config_id`` (:func:`.grids.config_id`, as the sweeps compute it), so rows a
sweep measured count. Warm-up rows never count; neither do rows other than ``ok`` (an ``error`` is retried).

``run`` measures in rounds: each round visits every unfinished cell once (one repeat, or one caption), in an
order shuffled with the campaign's seed and the round's number, so that repeats of different cells (and
models: built models stay resident) interleave instead of running back to back. Before each generation it
checks that its estimated time (plus a model build and warm-up when the model is not resident) fits in the
time budget left; otherwise the run stops. Every row is appended when measured
(:func:`.runner.measure_pair`), so a kill loses at most the generation in flight and the same command resumes.
Under torchrun the cells are split over the ranks by estimated time; each rank appends to its shard files,
which rank 0 merges at the end.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import random
import shlex
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tta_energy.errors import TtaError
from tta_energy.experiments import distributed, resume
from tta_energy.experiments.grids import BUNDLED_CAPTIONS, EXPERIMENTS, Config

#: the study's repeats per configuration (arXiv 2505.07615) and the campaign's defaults
DEFAULT_MIN_REPEATS = 5
DEFAULT_MAX_REPEATS = 8
DEFAULT_TARGET_REL = 0.05
#: the log of the commands that measured a campaign's tables, next to them
RUNS_LOG = "campaign_runs.jsonl"
#: error rows one cell may write in one run before the run leaves it (an error may be transient; never a loop)
MAX_ERRORS_PER_RUN = 2
#: model build + idle baseline + warm-up, s, assumed for a model whose build the tables do not show
DEFAULT_BUILD_S = 30.0


class CampaignError(TtaError):
    """A campaign file that cannot be used; the message names the file and the problem."""


# --- the campaign file --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stopping:
    """When a cell is done: ``min_repeats`` and a relative 95% CI half-width, or ``max_repeats``."""

    min_repeats: int = DEFAULT_MIN_REPEATS
    max_repeats: int = DEFAULT_MAX_REPEATS
    target_rel: float = DEFAULT_TARGET_REL


@dataclass(frozen=True)
class Entry:
    """One experiment of the campaign, over some models (the order of entries is the run's priority)."""

    experiment: str
    models: tuple[str, ...]
    grid: tuple[str, ...] | None  # None: the experiment's grid
    stopping: Stopping
    captions: tuple[str, ...] = ()  # quality: caption files (default: the bundled ones)
    caption_limit: int | None = None  # quality: first N captions of each


@dataclass(frozen=True)
class Campaign:
    path: Path
    name: str
    out_dir: Path
    size: str
    weights: str
    dtype: str | None  # None: each model's study dtype
    duration_s: float | None  # None: each model's default
    seed: int
    idle_s: float
    warmup: int
    min_window_s: float
    entries: tuple[Entry, ...]

    def table(self, experiment: str) -> Path:
        return self.out_dir / f"{experiment}.csv"


_TOP_KEYS = {"name", "out_dir", "size", "weights", "dtype", "duration_s", "seed", "idle_s", "warmup",
             "min_window_s", "repeats", "experiment"}
_ENTRY_KEYS = {"name", "models", "grid", "repeats", "captions", "caption_limit"}
_REPEAT_KEYS = {"min", "max", "ci95_half_width_rel"}


def _get(table: dict, key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    value = table.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) and kind is not bool:  # TOML booleans are not numbers here
        raise CampaignError(f"{where}: {key} must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise CampaignError(f"{where}: {key} must be {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number", "list": "a list",
                        "dict": "a table", "bool": "true or false"}[k.__name__] for k in kinds)


def _unknown(table: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise CampaignError(f"{where}: unknown key(s) {', '.join(extra)} "
                            f"(allowed: {', '.join(sorted(allowed))})")


def _stopping(table: dict, base: Stopping, where: str) -> Stopping:
    if not isinstance(table, dict):
        raise CampaignError(f"{where}: repeats must be a table (min, max, ci95_half_width_rel)")
    _unknown(table, _REPEAT_KEYS, f"{where}: repeats")
    out = Stopping(_get(table, "min", int, base.min_repeats, where),
                   _get(table, "max", int, base.max_repeats, where),
                   float(_get(table, "ci95_half_width_rel", (int, float), base.target_rel, where)))
    if out.min_repeats < 1 or out.max_repeats < out.min_repeats:
        raise CampaignError(f"{where}: repeats need 1 <= min <= max, got min {out.min_repeats}, "
                            f"max {out.max_repeats}")
    if not out.target_rel > 0:
        raise CampaignError(f"{where}: ci95_half_width_rel must be > 0, got {out.target_rel}")
    return out


def _str_list(value: object, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str | int | float) for v in value):
        raise CampaignError(f"{where}: {key} must be a non-empty list")
    return tuple(str(v) for v in value)


def load_campaign(path: str | Path) -> Campaign:
    """Parse and validate a campaign file; a problem raises :class:`CampaignError` (one line)."""
    from tta_energy.fileio import read_toml
    from tta_energy.models.catalogue import model_names

    path = Path(path)
    data = read_toml(path, CampaignError, "campaign file")
    where = str(path)
    _unknown(data, _TOP_KEYS, where)
    stopping = _stopping(data.get("repeats", {}), Stopping(), where)
    size = _get(data, "size", str, "full", where)
    if size not in ("full", "tiny"):
        raise CampaignError(f"{where}: size must be full or tiny, got {size!r}")
    dtype = _get(data, "dtype", str, None, where)
    if dtype is not None:
        from tta_energy.precision import PrecisionError, canonical_dtype

        try:
            dtype = canonical_dtype(dtype)
        except PrecisionError as exc:
            raise CampaignError(f"{where}: {exc}") from None
    duration = _get(data, "duration_s", (int, float), None, where)
    if duration is not None and not duration > 0:
        raise CampaignError(f"{where}: duration_s must be > 0, got {duration}")
    numbers = {k: _get(data, k, (int, float), d, where) for k, d in
               (("idle_s", 3.0), ("min_window_s", 1.0))}
    if any(v < 0 for v in numbers.values()):
        raise CampaignError(f"{where}: idle_s and min_window_s must be >= 0")
    warmup = _get(data, "warmup", int, 1, where)
    if warmup < 0:
        raise CampaignError(f"{where}: warmup must be >= 0, got {warmup}")
    raw_entries = data.get("experiment")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise CampaignError(f"{where}: no [[experiment]] table (each names an experiment: "
                            f"{', '.join(EXPERIMENTS)})")
    entries = []
    for i, raw in enumerate(raw_entries, 1):
        at = f"{where}: experiment {i}"
        if not isinstance(raw, dict):
            raise CampaignError(f"{at}: must be a table")
        _unknown(raw, _ENTRY_KEYS, at)
        name = _get(raw, "name", str, None, at)
        if name not in EXPERIMENTS:
            raise CampaignError(f"{at}: name must be one of {', '.join(EXPERIMENTS)}, got {name!r}")
        at = f"{where}: experiment {i} ({name})"
        models_value = raw.get("models", "all")
        if models_value == "all":
            models = tuple(model_names())
        else:
            models = _str_list(models_value, "models", at)
            unknown = [m for m in models if m not in model_names()]
            if unknown:
                raise CampaignError(f"{at}: unknown model(s) {', '.join(unknown)}: choose among "
                                    f"{', '.join(model_names())} or \"all\"")
            if len(set(models)) != len(models):
                raise CampaignError(f"{at}: a model is listed twice")
        grid = _str_list(raw["grid"], "grid", at) if "grid" in raw else None
        captions = _str_list(raw["captions"], "captions", at) if "captions" in raw else ()
        limit = _get(raw, "caption_limit", int, None, at)
        if name != "quality" and (captions or limit is not None):
            raise CampaignError(f"{at}: captions and caption_limit belong to the quality experiment")
        if limit is not None and limit < 1:
            raise CampaignError(f"{at}: caption_limit must be >= 1, got {limit}")
        entries.append(Entry(name, models, grid, _stopping(raw.get("repeats", {}), stopping, at),
                             captions or (BUNDLED_CAPTIONS if name == "quality" else ()), limit))
    return Campaign(path=path, name=_get(data, "name", str, path.stem, where),
                    out_dir=Path(_get(data, "out_dir", str, "data/runs", where)), size=size,
                    weights=_get(data, "weights", str, "random", where), dtype=dtype,
                    duration_s=float(duration) if duration is not None else None,
                    seed=_get(data, "seed", int, 0, where), idle_s=float(numbers["idle_s"]), warmup=warmup,
                    min_window_s=float(numbers["min_window_s"]), entries=tuple(entries))


# --- cells --------------------------------------------------------------------------------------------------
#: the configuration columns that name a cell, per experiment
CELL_COLUMNS: dict[str, tuple[str, ...]] = {
    "steps": ("steps",), "batch": ("n_prompts", "waveforms_per_prompt"), "quality": ("steps", "dataset"),
    "duration": ("duration_s",), "guidance": ("guidance_scale",), "precision": ("dtype",),
}


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
        return " ".join(f"{k}={v}" for k, v in self.config)

    @property
    def key(self) -> tuple:
        return (self.model, self.experiment, self.config)

    def at_target(self, state: CellState) -> bool:
        """The interval is within the target with the minimum repeats (a quality cell: every caption
        measured; its spread is between captions, not a measurement uncertainty)."""
        return state.done if self.per_caption else state.at_target(self.stopping)


def _cell_value(config: Config, column: str, dtype: str) -> object:
    if column == "dtype":
        return dtype
    return getattr(config, column)


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
    copy of the model); ``note`` hears about them.
    """
    from tta_energy.experiments.runner import NothingToRun, Probe, expand

    probes: dict[str, Any] = {}
    cells: dict[tuple, Cell] = {}
    for entry in campaign.entries:
        if experiments and entry.experiment not in experiments:
            continue
        for model in entry.models:
            if models and model not in models:
                continue
            opts = sweep_options(campaign, model, entry)
            probe = probes.setdefault(model, Probe(sweep_options(campaign, model)))
            try:
                items, excluded = expand(opts, entry.experiment, probe)
            except NothingToRun as exc:
                note(str(exc))
                continue
            for text in excluded:
                note(f"{model} {entry.experiment}: {text}")
            groups: dict[tuple, list[Any]] = defaultdict(list)
            for it in items:
                key = tuple((c, _cell_value(it.config, c, it.dtype)) for c in CELL_COLUMNS[entry.experiment])
                groups[key].append(it)
            for key, group in groups.items():
                cell = Cell(model, entry.experiment, key, tuple(group), entry.stopping,
                            per_caption=entry.experiment == "quality")
                if cell.key in cells:  # two entries declare the same cell: the first one's rule holds
                    continue
                cells[cell.key] = cell
    return list(cells.values())


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

    def seconds(self) -> list[float]:
        return [t for rows in self.rows.values() for s, _, t in rows if s == "ok" and np.isfinite(t)]


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

    def at_target(self, stopping: Stopping) -> bool:
        return self.n >= stopping.min_repeats and self.ci95_half_width_rel <= stopping.target_rel


def ci95_half_width(samples: Sequence[float]) -> float:
    """Half-width of the 95% confidence interval of the mean (Student t); NaN below 2 samples."""
    from scipy import stats

    x = np.asarray([s for s in samples if np.isfinite(s)], dtype=float)
    if len(x) < 2:
        return math.nan
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


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
        if any(s is None for s in statuses):
            continue  # incomplete repeat (a run stopped inside a batch layout, or an error): finished later
        attempts += 1
        bad = [s for s in statuses if s != "ok"]
        if bad:
            failed = failed or str(bad[0])
            continue
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
    for r in seen:
        missing = [it for it, o in zip(cell.items, obs, strict=True) if o.finished(r) is None]
        if missing and len(missing) < len(cell.items):
            return [replace(it, repeat=r) for it in missing]
    new = (max(seen) + 1) if seen else 0
    return [replace(it, repeat=new) for it in cell.items]


# --- estimates ----------------------------------------------------------------------------------------------
@dataclass
class Estimator:
    """Seconds of GPU time a generation or a model build takes, from the rows already measured.

    A configuration measured before: the mean of its windows. Otherwise scaled from the same model's rows by
    the configurations' relative cost (:meth:`.grids.Config.cost`: steps x clips x seconds of audio), else
    from every model's rows. A model build (imports, build, idle baseline, warm-up): the median, over the
    sweeps that measured only that model, of the time from the run's start (its ``run_id``) to its first row.
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

    def model_build_s(self, model: str) -> float:
        return self.build_s.get(model, DEFAULT_BUILD_S)

    def learn(self, model: str, item: Any, seconds: float) -> None:
        """What this run measured replaces the tables' estimate for that configuration."""
        if np.isfinite(seconds):
            self.per_config_s[item.config_id] = seconds
            self.per_cost_s.setdefault(model, seconds / item.cost())


def _run_start(run_id: str) -> float:
    try:
        stamp = _dt.datetime.strptime(run_id.split("-")[0], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return math.nan
    return stamp.replace(tzinfo=_dt.timezone.utc).timestamp()


def estimator(frames: Iterable[pd.DataFrame | None], cells: Sequence[Cell]) -> Estimator:
    frames = [f for f in frames if f is not None and not f.empty]
    per_config: dict[str, float] = {}
    per_cost: dict[str, float] = {}
    builds: dict[str, float] = {}
    all_rates: list[float] = []
    cost_of = {it.config_id: it.cost() for c in cells for it in c.items}
    if frames:
        df = pd.concat(frames, ignore_index=True)
        ok = df[(df["status"] == "ok") & ~df["is_warmup"]].copy()
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
            gap = float(rows["_t"].min()) - _run_start(str(run_id))
            if np.isfinite(gap) and gap >= 0:
                gaps[str(rows["model"].iloc[0])].append(gap)
        builds = {m: float(np.median(v)) for m, v in gaps.items()}
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


def expected_missing(cell: Cell, state: CellState, observed: dict[str, Observed]) -> int:
    """Generations a cell still needs: every caption not measured; or the repeats until ``min`` and, past it,
    until the interval would reach the target at the spread seen so far (capped at ``max``)."""
    if state.done:
        return 0
    if cell.per_caption:
        return len(cell.items) - state.attempts
    stop = cell.stopping
    needed = stop.min_repeats
    finite = [s for s in state.samples if np.isfinite(s)]
    if len(finite) >= 2 and np.mean(finite) > 0:
        from scipy import stats

        cv = float(np.std(finite, ddof=1) / np.mean(finite))
        n = stop.min_repeats
        while n < stop.max_repeats and stats.t.ppf(0.975, n - 1) * cv / math.sqrt(n) > stop.target_rel:
            n += 1
        needed = n
    repeats = max(needed - state.attempts, 1)
    partial = len(next_items(cell, observed))
    size = len(cell.items)
    return partial + (repeats - 1) * size if partial < size else repeats * size


def report(campaign: Campaign, cells: Sequence[Cell], frames: Sequence[pd.DataFrame | None]
           ) -> tuple[list[CellReport], Estimator]:
    observed = observe(frames)
    est = estimator(frames, cells)
    out = []
    for cell in cells:
        state = cell_state(cell, observed)
        missing = expected_missing(cell, state, observed)
        per_gen = float(np.mean([est.generation_s(cell.model, it) for it in cell.items]))
        out.append(CellReport(cell, state, missing, missing * per_gen))
    return out, est


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


# --- running ------------------------------------------------------------------------------------------------
@dataclass
class RunOptions:
    models: tuple[str, ...] = ()  # empty: every model of the campaign
    experiments: tuple[str, ...] = ()  # empty: every experiment
    time_budget_s: float | None = None
    device: str | None = None
    codecarbon: bool = True
    country: str = "ITA"
    trace: bool = True
    progress: bool = True
    command: str = ""  # recorded in campaign_runs.jsonl (default: this process's command line)


@dataclass
class RunResult:
    rows: Counter = field(default_factory=Counter)  # experiment -> measured rows written (warm-ups apart)
    warmups: int = 0
    measured_s: float = 0.0  # seconds inside measured windows (warm-ups included)
    stopped_by_budget: bool = False
    unfinished: int = 0  # cells of this run not done at the end


def check_run_options(campaign: Campaign, ro: RunOptions) -> None:
    from tta_energy.models.catalogue import model_names

    for m in ro.models:
        if m not in model_names():
            raise CampaignError(f"unknown model {m!r}: choose among {', '.join(model_names())}")
    declared = {e.experiment for e in campaign.entries}
    for e in ro.experiments:
        if e not in declared:
            raise CampaignError(f"experiment {e!r} is not in {campaign.path} (it declares "
                                f"{', '.join(sorted(declared))})")
    if ro.time_budget_s is not None and not ro.time_budget_s > 0:
        raise CampaignError(f"--time-budget must be > 0 s, got {ro.time_budget_s}")


class ResidentModels:
    """Built models stay resident across cells (one :class:`.runner.ModelCache` per model); when building one
    runs out of memory the others are dropped (and rebuilt, with a new warm-up, when needed again)."""

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
            for other in self.caches.values():  # make room, then try once more
                if other is not cache:
                    other.adapters.clear()
                    other.warmed.clear()
            cache.adapters.pop(dtype, None)
            free_memory()
            cache.get(dtype)


def run_campaign(campaign: Campaign, ro: RunOptions, echo: Callable[[str], None] = print) -> RunResult:
    """Measure what the campaign still misses, within the time budget; see the module docstring."""
    check_run_options(campaign, ro)
    ctx = distributed.context_from_env()
    distributed.init(ctx)
    try:
        return _run(campaign, ro, ctx, echo)
    finally:
        distributed.shutdown(ctx)


def _run(campaign: Campaign, ro: RunOptions, ctx: distributed.DistContext,
         echo: Callable[[str], None]) -> RunResult:
    from tta_energy.experiments import runner
    from tta_energy.experiments.runner import RowContext, measure_idle, measure_pair

    start = time.perf_counter()
    start_utc = runner.now_iso()
    say = echo if ctx.is_main else (lambda _m: None)
    cells = build_cells(campaign, ro.models, ro.experiments, note=say)
    if not cells:
        raise CampaignError("no cell to measure: the filters leave none of the campaign's cells")
    experiments = [e.experiment for e in campaign.entries]
    campaign.out_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier(ctx)
    frames = read_frames(campaign, {c.experiment for c in cells})
    observed = observe(frames)
    est = estimator(frames, cells)
    distributed.barrier(ctx)  # every rank has read the same state before any writes
    todo = [c for c in cells if not cell_state(c, observed).done]
    say(f"campaign {campaign.name}: {len(cells)} cells, {len(cells) - len(todo)} done")
    if ctx.is_distributed:
        def remaining_s(c: Cell) -> float:  # balancing weight: estimated seconds, 1 per generation if unknown
            known = [t for t in (est.generation_s(c.model, it) for it in c.items) if np.isfinite(t)]
            per_generation = float(np.mean(known)) if known else 1.0
            return expected_missing(c, cell_state(c, observed), observed) * per_generation

        mine = distributed.assign(todo, ctx.world_size, remaining_s)[ctx.rank]
        todo = [todo[i] for i in mine]
    result = RunResult()
    device = runner.resolve_device(ro.device, ctx)
    run_id = distributed.broadcast(ctx, runner.new_run_id())
    budget_s = ro.time_budget_s
    gpu_name = ""
    if todo:
        base = sweep_options(campaign, todo[0].model, codecarbon=ro.codecarbon, country=ro.country,
                             trace=ro.trace)
        trace = (campaign.out_dir / "traces" / f"campaign-{campaign.name}-{run_id}-rank{ctx.rank}.csv.gz"
                 if ro.trace else None)
        if trace is not None:
            trace.parent.mkdir(parents=True, exist_ok=True)
        meter = runner.make_meter(base, device, trace)
        with meter, runner.progress_bar(sum(expected_missing(c, cell_state(c, observed), observed)
                                            for c in todo), ro.progress and ctx.is_main) as bar:
            provenance = {**meter.provenance(), "rank": ctx.rank}
            gpu_name = str(provenance.get("gpu_name", ""))
            contexts = {m: RowContext(sweep_options(campaign, m), run_id, ctx.rank, provenance,
                                      meter.trace_file) for m in {c.model for c in todo}}
            models = ResidentModels(campaign, device)
            idle_done = False
            errors: Counter = Counter()  # cell -> visits of this run that ended in an error row
            for tier in dict.fromkeys(experiments):  # the campaign file's order is the priority
                left = [c for c in todo if c.experiment == tier]
                round_no = 0
                while left and not result.stopped_by_budget:
                    order = list(left)
                    random.Random(f"{campaign.seed}:{tier}:{round_no}").shuffle(order)
                    for cell in order:
                        for item in next_items(cell, observed):
                            fresh = not models.resident(cell.model, item.dtype)
                            needed = est.generation_s(cell.model, item)
                            needed = needed if np.isfinite(needed) else 0.0
                            if fresh:  # a build and its warm-ups count against the budget too
                                needed += est.model_build_s(cell.model) + campaign.warmup * needed
                            if budget_s is not None and time.perf_counter() - start + needed > budget_s:
                                result.stopped_by_budget = True
                                break
                            models.build(cell.model, item.dtype)
                            if not idle_done:
                                measure_idle(meter, campaign.idle_s)
                                idle_done = True
                            target = (resume.shard_path(campaign.table(cell.experiment), ctx.rank)
                                      if ctx.is_distributed else campaign.table(cell.experiment))
                            row, warmups = measure_pair(meter, models.cache(cell.model), contexts[cell.model],
                                                        cell.experiment, item, target)
                            seconds = _window_of(row)
                            result.measured_s += seconds * (1 + warmups)
                            result.rows[cell.experiment] += 1
                            result.warmups += warmups
                            observed[item.config_id].add(item.repeat, str(row["status"]),
                                                         float(row["gpu_energy_J"]), seconds)
                            if row["status"] == "ok":
                                est.learn(cell.model, item, seconds)
                            elif row["status"] == "error":
                                errors[cell.key] += 1
                            bar.update(1)
                            bar.set_postfix_str(f"{cell.model} {cell.experiment} {cell.label} r{item.repeat} "
                                                f"{row['status']}", refresh=False)
                        if result.stopped_by_budget:
                            break
                    for cell in left:
                        if errors[cell.key] >= MAX_ERRORS_PER_RUN:
                            say(f"{cell.model} {cell.experiment} {cell.label}: {errors[cell.key]} error rows "
                                "in this run; left for the next run (see the table's error column)")
                    left = [c for c in left
                            if not cell_state(c, observed).done and errors[c.key] < MAX_ERRORS_PER_RUN]
                    round_no += 1
            todo = [c for c in todo if not cell_state(c, observed).done]
    result.unfinished = len(todo)
    distributed.barrier(ctx)
    if ctx.is_main:
        for e in experiments:
            if resume.shard_paths(campaign.table(e)):
                resume.merge_shards(campaign.table(e))
    gathered = distributed.all_gather(ctx, (result.rows, result.warmups, result.measured_s,
                                            result.stopped_by_budget, result.unfinished, gpu_name))
    total = RunResult(rows=sum((g[0] for g in gathered), Counter()), warmups=sum(g[1] for g in gathered),
                      measured_s=float(sum(g[2] for g in gathered)),
                      stopped_by_budget=any(g[3] for g in gathered),
                      unfinished=sum(g[4] for g in gathered))
    if ctx.is_main:
        gpus = sorted({g[5] for g in gathered if g[5]})
        record_run(campaign, ro, run_id, start_utc, time.perf_counter() - start, total, ", ".join(gpus),
                   ctx.world_size)
        written = ", ".join(f"{n} {e}" for e, n in sorted(total.rows.items())) or "nothing"
        left = (f"; stopped by the time budget, {total.unfinished} cell(s) unfinished: run the same command "
                "again") if total.stopped_by_budget else ""
        say(f"campaign {campaign.name}: measured {written} (+{total.warmups} warm-up) in "
            f"{time.perf_counter() - start:.1f} s, {total.measured_s:.1f} s inside measured windows{left}")
    return total


def _window_of(row: dict[str, object]) -> float:
    for key in ("meter_window_s", "wall_s"):
        value = row.get(key)
        if isinstance(value, int | float) and np.isfinite(value):
            return float(value)
    return math.nan


def record_run(campaign: Campaign, ro: RunOptions, run_id: str, start_utc: str, wall_s: float,
               result: RunResult, gpu_name: str, world_size: int) -> None:
    """Append the run's line to ``<out_dir>/campaign_runs.jsonl`` (one write of a complete line, fsync'd)."""
    from tta_energy.experiments.runner import now_iso
    from tta_energy.provenance import git_commit, host_cpu_model

    line = {"command": ro.command or shlex.join(["tta-energy", *sys.argv[1:]]),
            "campaign": str(campaign.path), "run_id": run_id, "start_utc": start_utc, "end_utc": now_iso(),
            "wall_s": round(wall_s, 3),
            "measured_s": round(result.measured_s, 3), "rows": dict(sorted(result.rows.items())),
            "warmup_rows": result.warmups, "stopped_by_budget": result.stopped_by_budget,
            "time_budget_s": ro.time_budget_s, "world_size": world_size, "git_commit": git_commit(),
            "host_cpu_model": host_cpu_model(), "host_cpu_count": os.cpu_count() or 0, "gpu_name": gpu_name}
    append_jsonl(campaign.out_dir / RUNS_LOG, line)


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
