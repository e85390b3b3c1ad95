"""A levers table declared as data (a TOML plan file), and what measuring it will cost before GPU time is
spent.

A plan file (e.g. ``campaigns/h200_levers.toml``) has one ``[levers]`` table::

    [levers]
    models = ["audioldm", "tango"]            # default: every model of the catalogue
    specs = ["none", "graphs", "max"]         # measured at every (steps, batch) below
    steps = [100]
    batches = [1, 10]
    repeats = 3
    duration_s = 10.0
    seed = 0
    call_budget_s = 540                       # one device call: how the dry run splits; a shorter
                                              # --time-budget-s leaves a unit it cannot hold for one
    gpu = "H200"                              # a run on another GPU is refused
    out_dir = "../data/h200"                  # relative to this file's folder: the report; parts and
                                              # stored references in its levers/ folder

    [levers.model.audioldm]                   # per-model changes
    steps = [10, 100]                         # replaces the default steps
    extra_specs = ["fp16"]                    # added to the specs (same cells)

    [[levers.extra]]                          # more cells for some specs (and models: default all)
    models = ["tango"]
    specs = ["max"]
    batches = [32]                            # steps and repeats: the plan's unless given

:func:`read_levers_plan` parses it once into :class:`LeversPlan`; :func:`estimate_plan` prices each cell from
the rows of earlier levers tables (else by scaling what is known, else the catalogue's relative cost), and
:mod:`tta_energy.levers.calls` cuts what is left into device calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tta_energy import schema
from tta_energy.errors import first_line, positive_number, seed_number
from tta_energy.fileio import path_beside, read_toml, toml_value
from tta_energy.levers.spec import (
    DEFAULT_REPEATS,
    DEFAULT_SPEC,
    PLAN_DEFAULT_BATCHES,
    PLAN_DEFAULT_STEPS,
    LeverError,
    LeversError,
    parse_levers,
)
from tta_energy.levers.tables import TableColumns, read_table
from tta_energy.meter import MIN_WINDOW_S
from tta_energy.models import catalogue
from tta_energy.precision import canonical_dtype
from tta_energy.study import STUDY_DURATION_S

if TYPE_CHECKING:
    from tta_energy.levers.experiment import LeversOptions

Cells = tuple[tuple[int, int], ...]
Declared = dict[str, tuple[tuple[str, Cells, int], ...]]

#: fallback when nothing of a model is known: seconds per denoising step at batch 1 per unit of the
#: catalogue's relative cost (Tango `none`, 100 steps, batch 1 took 4.74 s on the H200 at cost 1.9:
#: data/h200/levers.csv)
FALLBACK_S_PER_COST_STEP = 0.025
#: Inductor compilation per unit of cost at batch 1 (Tango, cost 1.9, compiled in about a minute on the H200);
#: batch 10 doubles it (Tango took twice as long)
COMPILE_S_PER_COST = 32.0
COMPILE_BATCH_FACTOR = 2.0
#: one ``compile-blocks`` compilation as a share of one of the whole denoiser: AudioLDM at full size, 100
#: steps, batch 1, on an H100 machine, ``max,compile-blocks`` took 54.5 s to compile against 147.9 s for
#: ``max,compile-graphs`` in the same process (benchmarks/results/compile_blocks_h100, ``levers report``)
BLOCKS_COMPILE_SHARE = 0.37
#: building one configuration (fp32 build, weights check, levers applied) per unit of cost
BUILD_S_PER_COST = 4.0
#: per device call: interpreter and CUDA start-up, idle baseline and the ceiling loops are added to this
CALL_START_S = 30.0
#: a step profile of one configuration and batch size
PROFILE_S = 5.0
DEFAULT_CALL_BUDGET_S = 540.0
#: denoising steps of a configuration's warm-up (at most): enough to run every code path once (compilation,
#: capture, the sampler's first and later steps), a tenth of a 100-step generation
WARMUP_STEPS = 10


@dataclass(frozen=True)
class LeversPlan:
    """A parsed plan file: models, their declared (spec, cells, repeats), and the run's settings."""

    models: tuple[str, ...]
    declared: Declared
    repeats: int
    duration_s: float
    seed: int
    call_budget_s: float = DEFAULT_CALL_BUDGET_S
    #: the GPU the table holds (a part of its name, e.g. ``H200``): a run on another is refused; None: any
    gpu: str | None = None
    #: where scripts/gpu_levers.sh keeps the table: the report (levers.csv, levers_summary.md) here, the
    #: calls' parts and stored fp32 references in its ``levers/`` folder; ``levers run`` itself reads it only
    #: for its default price history (its own folders are its options). None: not declared
    out_dir: Path | None = None

    def applied_to(self, opts: LeversOptions, path: Path) -> LeversOptions:
        """``opts`` with this plan's cells, repeats, duration, seed, call budget and GPU, and its models
        (those of ``opts.models`` only, when given); ``path``: the plan file, for the error of a model it
        does not plan."""
        outside = [m for m in opts.models if m not in self.models]
        if outside:
            raise LeversError(f"--model names {outside[0]}, which {path} does not plan; it plans "
                              f"{', '.join(self.models)}")
        models = tuple(m for m in self.models if m in opts.models) if opts.models else self.models
        return dataclasses.replace(opts, models=models, declared=self.declared, repeats=self.repeats,
                                   duration_s=self.duration_s, seed=self.seed,
                                   call_budget_s=self.call_budget_s, gpu=self.gpu)


def _ints(value: Any, what: str, path: Path) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise LeversError(f"{path}: {what} must be a non-empty list of integers >= 1, got {value!r}")
    _once(value, value, what, path)
    return tuple(value)


def _once(keys: list, given: list, what: str, path: Path) -> None:
    """Refuse two values of ``given`` with one key (what they configure), as a campaign's grid does: a value
    named twice would be measured once, so the file would declare more than it gets."""
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise LeversError(f"{path}: {what} {given!r} names {given[i]!r} twice (the same configuration): "
                              "keep one")


def _specs(value: Any, what: str, path: Path, *, may_be_empty: bool = False) -> tuple[str, ...]:
    strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not strings or not (value or may_be_empty):
        kind = "a list" if may_be_empty else "a non-empty list"
        raise LeversError(f"{path}: {what} must be {kind} of lever specs, got {value!r}")
    for spec in value:
        try:
            parse_levers(spec)
        except LeverError as exc:
            raise LeversError(f"{path}: {what}: {exc}") from None
    specs = tuple(parse_levers(v).spec for v in value)
    _once_specs(specs, what, path)
    return specs


def _once_specs(specs: tuple[str, ...], what: str, path: Path) -> None:
    """:func:`_once` for lever specs, compared by what they configure: "fp16,graphs" = "graphs,fp16"."""
    _once([dataclasses.replace(parse_levers(s), spec="") for s in specs], list(specs), what, path)


def _get(table: dict, key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    """``table[key]`` of ``kind`` (the campaign reader's check), else a :class:`LeversError`."""
    return toml_value(table, key, kind, default, where, LeversError)


def _count(table: dict, key: str, default: int, where: str) -> int:
    """An integer >= 1 (repeats)."""
    value = _get(table, key, int, default, where)
    if value < 1:
        raise LeversError(f"{where}: {key} must be an integer >= 1, got {value}")
    return value


def _positive(table: dict, key: str, default: float, where: str) -> float:
    """A finite number > 0 (seconds)."""
    return positive_number(_get(table, key, (int, float), default, where), f"{where}: {key}",
                           unit="seconds", error=LeversError)


def _model_names(value: Any, where: str) -> tuple[str, ...]:
    """A non-empty list of distinct model names, each in the catalogue (:func:`catalogue.check_models`)."""
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise LeversError(f"{where}: models must be a non-empty list of model names, got {value!r}")
    catalogue.check_models(value, LeversError, f"{where} models")
    twice = sorted({m for m in value if value.count(m) > 1})
    if twice:
        raise LeversError(f"{where}: {', '.join(twice)} listed twice in models: list each model once")
    return tuple(value)


def read_levers_plan(path: Path) -> LeversPlan:
    """Parse a plan file; one clear :class:`LeversError` line (the file, the table and the key) for anything
    wrong in it, a value of the wrong type included."""
    path = Path(path)
    data = read_toml(path, LeversError, "levers plan file")
    table = data.get("levers")
    if not isinstance(table, dict):
        raise LeversError(f"{path}: needs a [levers] table")
    where = f"{path}: [levers]"
    allowed = {"models", "specs", "steps", "batches", "repeats", "duration_s", "seed", "call_budget_s",
               "model", "extra", "gpu", "out_dir"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise LeversError(f"{path}: unknown key {unknown[0]!r} in [levers]; "
                          f"allowed: {', '.join(sorted(allowed))}")
    models = (_model_names(table["models"], where) if "models" in table
              else tuple(catalogue.model_names()))
    specs = _specs(table.get("specs", [DEFAULT_SPEC]), "specs", path)
    steps = _ints(table.get("steps", list(PLAN_DEFAULT_STEPS)), "steps", path)
    batches = _ints(table.get("batches", list(PLAN_DEFAULT_BATCHES)), "batches", path)
    repeats = _count(table, "repeats", DEFAULT_REPEATS, where)
    duration_s = _positive(table, "duration_s", STUDY_DURATION_S, where)
    seed = seed_number(_get(table, "seed", int, 0, where), f"{where}: seed", error=LeversError)
    call_budget_s = _positive(table, "call_budget_s", DEFAULT_CALL_BUDGET_S, where)
    out_dir = _get(table, "out_dir", str, None, where)
    per_model = _get(table, "model", dict, {}, where)
    for m, over in per_model.items():
        if m not in models:
            raise LeversError(f"{path}: [levers.model.{m}] names a model that is not in models")
        if not isinstance(over, dict):
            raise LeversError(f"{path}: levers.model.{m} must be a table ([levers.model.{m}])")
    declared: Declared = {}
    for m in models:
        over = per_model.get(m, {})
        bad = sorted(set(over) - {"steps", "batches", "specs", "extra_specs", "repeats"})
        if bad:
            raise LeversError(f"{path}: unknown key {bad[0]!r} in [levers.model.{m}]")
        m_specs = _specs(over["specs"], f"{m} specs", path) if "specs" in over else specs
        m_specs += _specs(over.get("extra_specs", []), f"{m} extra_specs", path, may_be_empty=True)
        _once_specs(m_specs, f"{m} specs and extra_specs", path)
        cells = tuple((s, b) for b in _ints(over.get("batches", list(batches)), f"{m} batches", path)
                      for s in _ints(over.get("steps", list(steps)), f"{m} steps", path))
        m_repeats = _count(over, "repeats", repeats, f"{path}: [levers.model.{m}]")
        declared[m] = tuple((spec, cells, m_repeats) for spec in dict.fromkeys(m_specs))
    declared = _with_extra_cells(declared, table.get("extra", []), steps, repeats, path)
    return LeversPlan(models=models, declared=declared, repeats=repeats, duration_s=duration_s, seed=seed,
                      call_budget_s=call_budget_s, gpu=_get(table, "gpu", str, None, where) or None,
                      out_dir=path_beside(path, out_dir) if out_dir is not None else None)


def _with_extra_cells(declared: Declared, extra: Any, steps: tuple[int, ...], repeats: int,
                      path: Path) -> Declared:
    """``declared`` with the cells of the plan's ``[[levers.extra]]`` tables: some specs at more batch sizes
    (or step counts) for some models, e.g. the best configuration at a batch large enough to approach the
    GPU's ceiling. A spec already declared for a model gets the cells added (its repeats kept)."""
    if not isinstance(extra, list) or not all(isinstance(t, dict) for t in extra):
        raise LeversError(f"{path}: extra must be [[levers.extra]] tables")
    out = {m: list(entries) for m, entries in declared.items()}
    for i, t in enumerate(extra, 1):
        where = f"[[levers.extra]] #{i}"
        bad = sorted(set(t) - {"models", "specs", "steps", "batches", "repeats"})
        if bad:
            raise LeversError(f"{path}: unknown key {bad[0]!r} in {where}; "
                              "allowed: batches, models, repeats, specs, steps")
        if "specs" not in t or "batches" not in t:
            raise LeversError(f"{path}: {where} needs specs and batches")
        models = t.get("models", list(declared))
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise LeversError(f"{path}: {where}: models must be a list of model names, got {models!r}")
        outside = [m for m in models if m not in declared]
        if outside:
            raise LeversError(f"{path}: {where} names {outside[0]!r}, which is not in models")
        specs = _specs(t["specs"], f"{where} specs", path)
        cells = tuple((s, b) for b in _ints(t["batches"], f"{where} batches", path)
                      for s in _ints(t.get("steps", list(steps)), f"{where} steps", path))
        extra_repeats = _count(t, "repeats", repeats, f"{path}: {where}")
        for m in models:
            for spec in specs:
                at = next((j for j, (sp, _, _) in enumerate(out[m]) if sp == spec), None)
                if at is None:
                    out[m].append((spec, cells, extra_repeats))
                else:
                    sp, have, reps = out[m][at]
                    out[m][at] = (sp, have + tuple(c for c in cells if c not in have), reps)
    return {m: tuple(entries) for m, entries in out.items()}


# ---------------------------------------------------------------------------------------------------------
# What a plan costs
# ---------------------------------------------------------------------------------------------------------
def read_history(paths: Sequence[Path], size: str | None = None,
                 duration_s: float | None = None) -> pd.DataFrame:
    """Seconds per generation measured earlier, one row per (model, spec, steps, batch) with the median, and
    the longest compilation on a fresh machine (:func:`fresh_compile_s`; a table that predates the compile
    cache's count has every one as measured): from
    levers tables (``levers.csv``) and from run tables of the sweeps (``steps.csv``, ``batch.csv``: their
    eager generations at the model's study precision are the levers' ``none``; one prompt per generation
    only). Only rows of model size ``size`` (a tiny replica is never priced from full-size times) and of
    clip length ``duration_s`` count, when given; an empty frame without any. The tables of one folder (one
    GPU's) are pooled; a cell's (model, spec, steps, batch) seconds per generation and compilation seconds
    each come from the earliest folder of ``paths`` that measured them (a plan's own GPU first, other cards'
    tables fill the gaps). Each table is checked as it is read (a run table by the schema, a levers table by
    :data:`HISTORY_COLUMNS`): a :class:`LeversError` or :class:`~tta_energy.schema.SchemaError` names the
    file and the column."""
    keys = ["model", "optimize", "steps", "waveforms_per_prompt"]
    cols = [*keys, "wall_s", "compile_s"]
    frames = []
    folders: dict[Path, int] = {}  # a table's folder -> its precedence (the order folders first appear)
    for path in paths:
        rows = _history_table(Path(path))
        if "is_warmup" in rows.columns:  # a run table: measured generations of the study default only
            one_prompt = (rows["n_prompts"] == 1).fillna(False) if "n_prompts" in rows else True
            rows = rows[schema.measured_generations(rows) & one_prompt]
            rows = rows.assign(optimize=rows["optimize"].fillna(DEFAULT_SPEC).replace("", DEFAULT_SPEC))
            default = rows["model"].map(lambda m: catalogue.entry(m).defaults.dtype
                                        if m in catalogue.model_names() else "")
            rows = rows[(rows["optimize"] == DEFAULT_SPEC) & (rows["dtype"].map(canonical_dtype) == default)]
        frames.append(rows.assign(_table=folders.setdefault(Path(path).resolve().parent, len(folders))))
    if not frames:
        return pd.DataFrame(columns=cols)
    rows = pd.concat(frames, ignore_index=True)
    if size is not None and "size" in rows.columns:
        rows = rows[rows["size"] == size]
    if duration_s is not None and "duration_s" in rows.columns:
        rows = rows[(pd.to_numeric(rows["duration_s"]) - duration_s).abs() < 1e-6]
    if "compile_cache_hit_share" in rows.columns:
        rows = rows.assign(compile_s=fresh_compile_s(rows["compile_s"], rows["compile_cache_hit_share"]))
    rows = rows.reindex(columns=[*cols, "_table"])
    if rows.empty:
        return rows[cols].reset_index(drop=True)
    out = rows[keys].drop_duplicates()
    for value in ("wall_s", "compile_s"):  # per value: the first folder that measured it in the cell
        measured = rows[rows[value].notna()]
        first = measured.groupby(keys, dropna=False)["_table"].transform("min")
        chosen = measured[measured["_table"] == first]
        # a generation's seconds: the median; a compilation's: the longest, the one a fresh machine pays
        # (a later call on a machine that is still warm finds its graphs in the compile cache)
        pooled = chosen.groupby(keys, as_index=False, dropna=False)[value]
        out = out.merge(pooled.median() if value == "wall_s" else pooled.max(), on=keys, how="left")
    return out.reset_index(drop=True)


#: a compilation whose graphs came from the compile cache at this share or more prices nothing: what it
#: would take anew is too far from what it took
MOSTLY_CACHED_SHARE = 0.5


def fresh_compile_s(compile_s: pd.Series, cache_hit_share: pd.Series) -> pd.Series:
    """What each measured compilation would take on a fresh machine, whose compile cache is empty: its
    seconds where the cache served none of its graphs (or the count is missing); scaled up by the share the
    cache served, ``compile_s / (1 - share)``, where that is below :data:`MOSTLY_CACHED_SHARE` (a graph served
    costs less than one compiled, so this errs long, as a price should: Tango's ``max,fp8,compile-blocks``
    at batch 10 took 209 s with 18% of its graphs served, where the fresh compilations of batch 1 priced it
    at 67 s); NaN (not measured) from there on."""
    share = pd.to_numeric(cache_hit_share, errors="coerce")
    seconds = pd.to_numeric(compile_s, errors="coerce").astype("float64")
    scaled = seconds / (1.0 - share.clip(upper=MOSTLY_CACHED_SHARE))
    return seconds.where(~(share > 0), scaled.where(share < MOSTLY_CACHED_SHARE))


def with_warmup_compilations(history: pd.DataFrame, runs: pd.DataFrame, configs: pd.DataFrame,
                             compiles: pd.DataFrame) -> pd.DataFrame:
    """``history`` (:func:`read_history`) plus the compilations that raw levers folders measured only in
    warm-ups, for the (model, spec, batch) it has none of: a unit its time budget cut after its warm-ups
    measured no generation, so no levers table holds that compilation, while the next call must price it.
    Each is the first warm-up over the second (:func:`tta_energy.levers.tables.warmup_compilations`) plus
    applying the levers (``configs``' ``setup_s``), made fresh by the compile cache's share (``compiles``,
    :func:`fresh_compile_s`)."""
    from tta_energy.levers.tables import UNIT_IN_RUN, compile_cache_hit_share, warmup_compilations

    if runs.empty or "is_warmup" not in runs.columns:
        return history
    found = warmup_compilations(runs)
    keys = UNIT_IN_RUN
    if not configs.empty and "setup_s" in configs.columns:
        setup = configs[configs["status"] == "ok"].drop_duplicates(keys)[[*keys, "setup_s"]]
        found = found.merge(setup, on=keys, how="left")
        found["compile_s"] = found["compile_s"] + pd.to_numeric(found["setup_s"], errors="coerce").fillna(0.0)
    found["compile_s"] = fresh_compile_s(found["compile_s"], compile_cache_hit_share(found, compiles))
    priced = set() if history.empty else set(
        history.loc[history["compile_s"].notna(), ["model", "optimize", "waveforms_per_prompt"]]
        .itertuples(index=False, name=None))
    unpriced = [(m, o, b) not in priced for m, o, b in zip(found["model"], found["optimize"],
                                                           found["waveforms_per_prompt"], strict=True)]
    new = found[found["compile_s"].notna().to_numpy() & np.asarray(unpriced, dtype=bool)]
    if new.empty:
        return history
    rows = new.groupby(["model", "optimize", "steps", "waveforms_per_prompt"],
                       as_index=False)["compile_s"].max()
    return pd.concat([history, rows.assign(wall_s=float("nan"))], ignore_index=True)


#: what pricing reads of a levers table (``levers.csv``, :data:`tta_energy.levers.report.LEVERS_COLUMNS`)
HISTORY_COLUMNS = TableColumns(keys=("model", "optimize", "steps", "waveforms_per_prompt"),
                               numeric=("steps", "waveforms_per_prompt", "wall_s", "compile_s", "duration_s",
                                        "compile_cache_hit_share"))


def _history_table(path: Path) -> pd.DataFrame:
    """One table of measured seconds, checked: a sweep's run table (it has ``is_warmup``) by the schema,
    else a levers table by :data:`HISTORY_COLUMNS`."""
    if not path.is_file():
        raise LeversError(f"--history: {path} is not a file (give levers tables or sweep run tables, comma "
                          "separated; '' for none)")
    if "is_warmup" in schema.csv_header(path):
        try:
            return schema.read_runs(path)
        except pd.errors.ParserError as exc:
            raise LeversError(f"{path}: not a well-formed run table ({first_line(exc)})") from None
    return read_table(path, HISTORY_COLUMNS, "levers table (levers.csv)")


def _cost(model: str) -> float:
    return catalogue.entry(model).levers.cost


#: an unmeasured spec is priced as the nearest measured one without compilation, fp8 or tf32 (compiled code,
#: float8 and TF32 matrix products are taken to be no slower than what they replace)
UNCOMPILED: dict[str, str] = {"compile": "", "compile-graphs": "graphs", "compile-blocks": "", "fp8": "",
                              "tf32": ""}


def _base_spec(spec: str) -> str:
    """``spec`` without its compilation levers, fp8 and tf32 (:data:`UNCOMPILED`: ``compile-graphs`` counts
    as ``graphs``, which ``max`` already holds)."""
    items = [UNCOMPILED.get(t, t) for t in parse_levers(spec).items]
    items = [t for t in dict.fromkeys(items) if t]
    if "max" in items and "graphs" in items:
        items.remove("graphs")
    return ",".join(items) or DEFAULT_SPEC


def _nearest_steps(rows: pd.DataFrame, steps: int) -> pd.Series:
    return rows.iloc[(rows["steps"] - steps).abs().argsort().iloc[0]]


def batch_ratio(history: pd.DataFrame, model: str, batch: int) -> float | None:
    """How much longer a generation at ``batch`` takes than at batch 1: the median over the model's
    configurations measured at both, else over every model's; None when none was."""
    for rows in (history[history["model"] == model], history):  # the model's own, else every model's
        h = rows[rows["wall_s"].notna()]
        keys = ["model", "optimize", "steps"]
        one = h[h["waveforms_per_prompt"] == 1].groupby(keys)["wall_s"].median()
        many = h[h["waveforms_per_prompt"] == batch].groupby(keys)["wall_s"].median()
        ratios = (many / one).dropna()
        if not ratios.empty:
            return float(ratios.median())
    return None


def generation_s(history: pd.DataFrame, model: str, spec: str, steps: int, batch: int) -> tuple[float, str]:
    """Seconds of one generation of the cell and where the number comes from: measured; the same spec at
    another step count (scaled by steps) or at batch 1 (scaled by the model's measured batch ratio) or, where
    no ratio to this batch size was measured, at its largest measured batch size (scaled by the batch size:
    a bound, batching costs less per clip); the same for the spec without compilation; else the catalogue's
    relative cost."""
    h = history[(history["model"] == model) & history["wall_s"].notna()]
    ratio = batch_ratio(history, model, batch) if batch != 1 else 1.0
    for candidate in dict.fromkeys((spec, _base_spec(spec), DEFAULT_SPEC)):
        tag = "" if candidate == spec else f" as {candidate}"
        same = h[(h["optimize"] == candidate) & (h["waveforms_per_prompt"] == batch)]
        if not same.empty:
            r = _nearest_steps(same, steps)
            how = "measured" if int(r["steps"]) == steps else f"scaled from {int(r['steps'])} steps"
            return float(r["wall_s"]) * steps / float(r["steps"]), how + tag
        single = h[(h["optimize"] == candidate) & (h["waveforms_per_prompt"] == 1)]
        if ratio is not None and not single.empty:
            r = _nearest_steps(single, steps)
            return (float(r["wall_s"]) * steps / float(r["steps"]) * ratio,
                    f"batch 1 x {ratio:.1f} (measured ratio){tag}")
        other = h[h["optimize"] == candidate]
        if ratio is None and not other.empty:
            largest = int(other["waveforms_per_prompt"].max())
            r = _nearest_steps(other[other["waveforms_per_prompt"] == largest], steps)
            return (float(r["wall_s"]) * steps / float(r["steps"]) * batch / largest,
                    f"batch {largest} x {batch / largest:.1f}{tag}")
    return FALLBACK_S_PER_COST_STEP * _cost(model) * steps * batch, "catalogue cost"


def whole_compilations(spec: str) -> float:
    """What applying ``spec`` compiles, in compilations of the whole denoiser: its compilations
    (:func:`tta_energy.levers.apply.compilations`), each :data:`BLOCKS_COMPILE_SHARE` of one for
    ``compile-blocks``."""
    from tta_energy.levers.apply import compilations  # torch: only where a plan is priced

    count = compilations(spec)
    if count and parse_levers(spec).compile_scope == "blocks":
        return count * BLOCKS_COMPILE_SHARE
    return float(count)


def _one_compilation_s(history: pd.DataFrame, model: str, batch: int,
                       scope: str | None = None) -> float | None:
    """Seconds of one compilation of ``model``'s whole denoiser at ``batch``, from the compiled specs measured
    there that compile at ``scope`` (``denoiser`` or ``blocks``; any where none does: the blocks' share
    :data:`BLOCKS_COMPILE_SHARE` was measured on AudioLDM and does not hold for every model) — its one-time
    cost over :func:`whole_compilations`, the median over specs of each one's longest, as :func:`compile_s`
    takes it — of this model, else of a model with the same denoiser (:func:`same_denoiser`); None when none
    was."""
    for same in same_denoiser(model):
        h = history[(history["model"] == same) & (history["waveforms_per_prompt"] == batch)
                    & history["compile_s"].notna()]
        at_scope = pd.Series([parse_levers(spec).compile_scope == scope for spec in h["optimize"]],
                             index=h.index, dtype=bool)
        h = h[at_scope] if at_scope.any() else h
        # a float Series built from a list: an empty string column's map keeps its string dtype (pandas 3)
        counts = pd.Series([whole_compilations(spec) for spec in h["optimize"]], index=h.index,
                           dtype="float64")
        per = h["compile_s"][counts > 0].astype("float64") / counts[counts > 0]
        if not per.empty:
            return float(per.median())
    return None


def same_denoiser(model: str) -> tuple[str, ...]:
    """``model`` and the catalogue's other models of its adapter module (Tango and Tango 2: one architecture,
    other weights), whose compilations take the same time."""
    module = catalogue.entry(model).adapter.split(":")[0]
    return (model, *(e.name for e in catalogue.entries()
                     if e.name != model and e.adapter.split(":")[0] == module))


def compile_s(history: pd.DataFrame, model: str, spec: str, batch: int) -> float:
    """One-time cost of ``spec`` at ``batch``: measured (the same spec and batch, of this model or of a
    model with the same denoiser, :func:`same_denoiser`; the longest, since a call on a machine still warm
    finds graphs in the compile cache, or a model finds those of its twin compiled earlier in the process, and
    a call priced on that shorter time runs out of its budget on a fresh machine before it measures anything:
    Tango's 9.2 s `compile` on the H100, served so, against Tango 2's 40.2 s); else, for a compiled spec, its
    :func:`whole_compilations` at the model's measured seconds per compilation (:func:`_one_compilation_s`:
    at this batch, else at batch 1 scaled by :data:`COMPILE_BATCH_FACTOR`), else at the catalogue
    estimate."""
    h = history[history["model"].isin(same_denoiser(model)) & (history["optimize"] == spec)
                & (history["waveforms_per_prompt"] == batch) & history["compile_s"].notna()]
    if not h.empty:
        return float(h["compile_s"].max())
    count = whole_compilations(spec)
    if count == 0:
        return 0.0
    factor = COMPILE_BATCH_FACTOR if batch > 1 else 1.0
    scope = parse_levers(spec).compile_scope
    per = _one_compilation_s(history, model, batch, scope)
    if per is None and batch > 1:
        one = _one_compilation_s(history, model, 1, scope)
        per = None if one is None else one * factor
    if per is None:
        per = COMPILE_S_PER_COST * _cost(model) * factor
    return per * count


def reference_rows(model: str, plans: Sequence[tuple[str, Cells, int]], history: pd.DataFrame, *,
                   stored_references: set[tuple[str, int]] = frozenset()) -> list[dict[str, Any]]:
    """The rows of ``model``'s fp32 references, one per step count of ``plans``: a generation and a share of
    one build each, nothing where stored (``stored_references``: (model, steps) pairs)."""
    rows = []
    ref_steps = sorted({s for _, cells, _ in plans for s, _ in cells})
    for steps in ref_steps:
        stored = (model, steps) in stored_references
        gen, source = generation_s(history, model, "fp32", steps, 1)
        build = 0.0 if stored else BUILD_S_PER_COST * _cost(model) / len(ref_steps)
        rows.append({"model": model, "optimize": "fp32 (reference)", "steps": steps,
                     "waveforms_per_prompt": 1, "repeats": 0 if stored else 1, "generation_s": gen,
                     "source": "stored" if stored else source, "warmup_s": 0.0, "compile_s": 0.0,
                     "build_s": build, "total_s": 0.0 if stored else gen + build})
    return rows


def entry_rows(model: str, spec: str, cells: Cells, repeats: int, history: pd.DataFrame, *,
               min_window_s: float = MIN_WINDOW_S) -> list[dict[str, Any]]:
    """The rows of one declared entry, one per cell: measured generations (repeats x the generation, at least
    the meter's window), one warm-up and compilation per batch size, the spec's build. They depend on the
    entry alone, whatever else a call measures."""
    rows = []
    first_of_batch: set[int] = set()
    warm_steps = min(min(s for s, _ in cells), WARMUP_STEPS)
    for steps, batch in cells:
        gen, source = generation_s(history, model, spec, steps, batch)
        warm = comp = 0.0
        if batch not in first_of_batch:  # one warm-up per (spec, batch), at the smallest step count
            first_of_batch.add(batch)
            baseline = 2 if (warm_steps, batch) not in cells else 1  # a second warm-up: baseline
            warm = baseline * generation_s(history, model, spec, warm_steps, batch)[0]
            comp = compile_s(history, model, spec, batch)
        build = BUILD_S_PER_COST * _cost(model) if (steps, batch) == cells[0] else 0.0
        measured = repeats * max(gen, min_window_s)
        rows.append({"model": model, "optimize": spec, "steps": steps, "waveforms_per_prompt": batch,
                     "repeats": repeats, "generation_s": gen, "source": source, "warmup_s": warm,
                     "compile_s": comp, "build_s": build, "total_s": measured + warm + comp + build})
    return rows


def profiles_row(model: str, plans: Sequence[tuple[str, Cells, int]]) -> dict[str, Any]:
    """The row of ``model``'s step profiles: the default and the best configuration at each batch size."""
    profiles = 2 * len({b for _, cells, _ in plans for _, b in cells})
    return {"model": model, "optimize": "step profiles", "steps": 1, "waveforms_per_prompt": 0,
            "repeats": 0, "generation_s": 0.0, "source": "estimate", "warmup_s": 0.0,
            "compile_s": 0.0, "build_s": 0.0, "total_s": PROFILE_S * profiles}


def estimate_plan(declared: Declared, history: pd.DataFrame, *, min_window_s: float = MIN_WINDOW_S,
                  stored_references: set[tuple[str, int]] = frozenset()) -> pd.DataFrame:
    """One row per (model, spec, steps, batch) with its predicted seconds: per model its fp32 references
    (:func:`reference_rows`), each declared entry's cells (:func:`entry_rows`) and its step profiles
    (:func:`profiles_row`)."""
    rows = []
    for model, plans in declared.items():
        rows += reference_rows(model, plans, history, stored_references=stored_references)
        for spec, cells, repeats in plans:
            rows += entry_rows(model, spec, cells, repeats, history, min_window_s=min_window_s)
        rows.append(profiles_row(model, plans))
    return pd.DataFrame(rows)


def run_ceilings_s(ceiling_s: float, fp8: bool) -> float:
    """Seconds of the ceiling loops a run starts with: bf16, and fp8 where a spec uses it."""
    return ceiling_s * (2 if fp8 else 1)


def call_overhead_s(idle_s: float, ceiling_s: float, fp8: bool) -> float:
    """Seconds of a device call outside the models: start-up, idle baseline, the first run's ceiling loops
    and the closing one."""
    return CALL_START_S + idle_s + run_ceilings_s(ceiling_s, fp8) + ceiling_s


def estimate_text(estimate: pd.DataFrame) -> list[str]:
    """The dry run's table: every cell, each model's total and the total (the calls come from
    :mod:`tta_energy.levers.calls`)."""
    lines = [f"{'model':18} {'configuration':22} {'steps':>5} {'batch':>5} {'reps':>4} {'gen s':>7} "
             f"{'warm s':>7} {'compile s':>9} {'total s':>8}  source"]
    for r in estimate.itertuples():
        lines.append(f"{r.model:18} {r.optimize:22} {r.steps:>5} {r.waveforms_per_prompt:>5} {r.repeats:>4} "
                     f"{r.generation_s:>7.1f} {r.warmup_s:>7.1f} {r.compile_s:>9.1f} {r.total_s:>8.1f}  "
                     f"{r.source}")
    per_model = estimate.groupby("model", sort=False)["total_s"].sum().to_dict()
    measuring = float((estimate["repeats"] * estimate["generation_s"]).sum())
    lines += ["", "per model: " + ", ".join(f"{m} {s:.0f} s" for m, s in per_model.items()),
              f"total: {sum(per_model.values()):.0f} s: the measured generations {measuring:.0f} s "
              f"(repeats x seconds), compilation {estimate['compile_s'].sum():.0f} s, the rest builds, "
              "warm-ups, references and profiles (the calls below price each unit on its own, with its "
              "default)"]
    return lines


def stored_reference_steps(references_dir: Path | None, declared: Declared,
                           size: str) -> set[tuple[str, int]]:
    """(model, steps) whose fp32 reference is stored for the current code (any device, torch and key fields
    the dry run cannot know are not checked)."""
    from tta_energy.levers.references import code_version, stored_keys

    if references_dir is None:
        return set()
    found = set()
    for model, plans in declared.items():
        for steps in {s for _, cells, _ in plans for s, _ in cells}:
            keys = stored_keys(Path(references_dir), model, size, steps)
            if any(k.get("code") == code_version() for k in keys):
                found.add((model, steps))
    return found
