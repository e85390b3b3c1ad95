"""A campaign file (``campaigns/h200.toml``), parsed once into a :class:`Campaign`: experiments x models and
the stopping rule of their cells. See :mod:`.campaign` for what a campaign measures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tta_energy import schema
from tta_energy.errors import TtaError, positive_number, seed_number
from tta_energy.experiments.grids import EXPERIMENTS, grid_values
from tta_energy.fileio import DEFAULT_OUT_DIR, path_beside, toml_value
from tta_energy.meter import CAMPAIGN_IDLE_S, MIN_WINDOW_S, WARMUP_GENERATIONS
from tta_energy.models.catalogue import check_size
from tta_energy.quality.clap_score import BUNDLED_CAPTIONS
from tta_energy.study import STUDY_REPEATS

#: the study's repeats per configuration and the campaign's defaults
DEFAULT_MIN_REPEATS = STUDY_REPEATS
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
    #: the GPU the tables hold (a part of its name, e.g. ``H200``): ``run`` refuses another, whose rows would
    #: enter the tables under the campaign's name, and ``collect`` refuses such rows; None: any
    gpu: str | None = None

    def table(self, experiment: str) -> Path:
        return schema.run_table_path(self.out_dir, experiment)


_TOP_KEYS = {"name", "out_dir", "size", "weights", "dtype", "duration_s", "seed", "idle_s", "warmup",
             "min_window_s", "repeats", "experiment", "gpu"}
_ENTRY_KEYS = {"name", "models", "grid", "repeats", "captions", "caption_limit"}
_REPEAT_KEYS = {"min", "max", "ci95_half_width_rel"}


def _get(table: dict, key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    """``table[key]`` of ``kind`` (:func:`~tta_energy.fileio.toml_value`), else a :class:`CampaignError`."""
    return toml_value(table, key, kind, default, where, CampaignError)


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
    single = out.min_repeats == out.max_repeats == 1  # one measurement per cell, no interval
    if not single and (out.min_repeats < 2 or out.max_repeats < out.min_repeats):
        raise CampaignError(f"{where}: repeats need 2 <= min <= max (a confidence interval needs 2 repeats) "
                            f"or min = max = 1, got min {out.min_repeats}, max {out.max_repeats}")
    positive_number(out.target_rel, f"{where}: ci95_half_width_rel", error=CampaignError)
    return out


def _str_list(value: object, key: str, where: str, other: str = "") -> tuple[str, ...]:
    """``value`` as a non-empty list of texts; else one line (``other``: what else ``key`` may be)."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str | int | float) for v in value):
        raise CampaignError(f"{where}: {key} must be {other}a non-empty list, got {value!r}")
    return tuple(str(v) for v in value)


def _grid(value: object, experiment: str, where: str) -> tuple[str, ...]:
    """An entry's ``grid``: a non-empty list, its values by the sweep's rule (:func:`.grids.grid_values`),
    named as the file writes them."""
    values = _str_list(value, "grid", where)
    try:
        return grid_values(values, experiment, "grid")
    except TtaError as exc:
        raise CampaignError(f"{where}: {exc}") from None


def load_campaign(path: str | Path) -> Campaign:
    """Parse and validate a campaign file; a problem raises :class:`CampaignError` (one line)."""
    from tta_energy.fileio import read_toml
    from tta_energy.models.catalogue import check_models, model_names

    path = Path(path)
    data = read_toml(path, CampaignError, "campaign file")
    where = str(path)
    if "levers" in data and "experiment" not in data:
        raise CampaignError(f"{where} is a levers plan file (its [levers] table): "
                            f"tta-energy levers run --plan {where} measures it")
    _unknown(data, _TOP_KEYS, where)
    stopping = _stopping(data.get("repeats", {}), Stopping(), where)
    size = _get(data, "size", str, "full", where)
    check_size(size, CampaignError, f"{where}: ")
    dtype = _get(data, "dtype", str, None, where)
    if dtype is not None:
        from tta_energy.precision import PrecisionError, canonical_dtype

        try:
            dtype = canonical_dtype(dtype)
        except PrecisionError as exc:
            raise CampaignError(f"{where}: {exc}") from None
    duration = _get(data, "duration_s", (int, float), None, where)
    if duration is not None:
        positive_number(duration, f"{where}: duration_s", unit="seconds", error=CampaignError)
    numbers = {k: positive_number(_get(data, k, (int, float), d, where), f"{where}: {k}", allow_zero=True,
                                  unit="seconds", error=CampaignError)
               for k, d in (("idle_s", CAMPAIGN_IDLE_S), ("min_window_s", MIN_WINDOW_S))}
    warmup = _get(data, "warmup", int, WARMUP_GENERATIONS, where)
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
            models = _str_list(models_value, "models", at, other='"all" or ')
            check_models(models, CampaignError, at)
            if len(set(models)) != len(models):
                raise CampaignError(f"{at}: a model is listed twice")
        grid = _grid(raw["grid"], name, at) if "grid" in raw else None
        captions = tuple(c if c.lower() in BUNDLED_CAPTIONS else str(path_beside(path, c))
                         for c in (_str_list(raw["captions"], "captions", at) if "captions" in raw else ()))
        limit = _get(raw, "caption_limit", int, None, at)
        if name != "quality" and (captions or limit is not None):
            raise CampaignError(f"{at}: captions and caption_limit belong to the quality experiment")
        if limit is not None and limit < 1:
            raise CampaignError(f"{at}: caption_limit must be >= 1, got {limit}")
        entries.append(Entry(name, models, grid, _stopping(raw.get("repeats", {}), stopping, at),
                             captions or (BUNDLED_CAPTIONS if name == "quality" else ()), limit))
    # relative to the file's folder, as every path it names; left out, a sweep's folder name there, so the
    # commands find the same tables from any working directory
    out_dir = _get(data, "out_dir", str, str(DEFAULT_OUT_DIR), where)
    seed = seed_number(_get(data, "seed", int, 0, where), f"{where}: seed", error=CampaignError)
    return Campaign(path=path, name=_get(data, "name", str, path.stem, where),
                    out_dir=path_beside(path, out_dir),
                    size=size,
                    weights=_get(data, "weights", str, "random", where), dtype=dtype,
                    duration_s=float(duration) if duration is not None else None,
                    seed=seed, idle_s=float(numbers["idle_s"]), warmup=warmup,
                    min_window_s=float(numbers["min_window_s"]), entries=tuple(entries),
                    gpu=_get(data, "gpu", str, None, where) or None)


