"""The numbers the documentation quotes, generated from the tables under ``data/``.

README.md, data/README.md and docs/ quote measurements inside generated blocks::

    <!-- generated:NAME -->text written by this module<!-- /generated:NAME -->

:func:`update_docs` (run by ``make reproduce``) rewrites every block from the run tables; :func:`stale_blocks`
lists the blocks whose text differs from what the tables give (the test suite fails on any). A number in a
block therefore always has a table behind it and follows new measurements. Means over more than one run
are quoted with n and their 95 % Student-t interval; a single run says n = 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tta_energy import markdown, schema
from tta_energy.analysis import docs_numbers_docs, efficiency, fronts, spread, summaries, tables
from tta_energy.devices import PROJECT_GPU, names_gpu, rows_of_gpu
from tta_energy.errors import TtaError
from tta_energy.experiments.meter_validation.report import METER_TABLE
from tta_energy.fileio import write_text_atomic
from tta_energy.intervals import t_half_width_of
from tta_energy.levers.tables import TARGETS_FILE
from tta_energy.models import catalogue
from tta_energy.study import CLIPS_PER_REPEAT

#: Files that hold generated blocks, relative to the repository root.
DOC_FILES: tuple[str, ...] = (
    "README.md", "data/README.md", "data/validation/README.md", "docs/analysis.md", "docs/meter.md",
    "docs/levers.md", "docs/quality.md", "docs/results.md",
)
BLOCK = re.compile(r"<!-- generated:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /generated:(?P=name) -->", re.S)
#: Below this mean GPU power (W) a model run eagerly at batch 1 leaves the H200 mostly idle (launch-bound).
IDLE_BOUND_W = 200.0


METRIC_NAMES = {"clap": "CLAP", "fad": "FAD-inf"}


def label(model: str) -> str:
    return catalogue.label(model)


def _j(value: float) -> str:
    """Joules the way the prose quotes them: 3 significant figures, no exponent."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) >= 10 else f"{value:.2g}" if abs(value) < 1 else f"{value:.1f}"


def _change(change: float, digits: int = 1) -> str:
    """A signed relative change in percent to ``digits`` decimals; one that rounds to zero reads as zero,
    unsigned ("0.0%", not "-0.0%" or "+0.0%")."""
    rounded = round(change, digits + 2)
    return f"{0.0:.{digits}%}" if rounded == 0 else f"{rounded:+.{digits}%}"


def _models(frame: pd.DataFrame) -> list[str]:
    return catalogue.ordered(frame["model"].unique())


def _bare(text: str) -> str:
    """A percentage as a table cell under a ``[%]`` header: ``-4.2%`` -> ``-4.2``, same rounding."""
    return text.removesuffix("%").replace("%/", "/")


#: A table cell for a model that has no value in a column.
NOT_MEASURED = "not measured"
#: A study column's cell for a model the study measured but the committed import (``data/study``) lacks.
NOT_IN_STUDY_DATA = "not in `data/study`"


def _run_table(folder: str, experiment: str) -> property:
    """A :class:`DocData` attribute: the usable rows of ``experiment``'s run table in ``data/<folder>``, read
    on first use."""
    return property(lambda self: self.runs(folder, experiment),
                    doc=f"usable rows of data/{schema.run_table_path(Path(folder), experiment).as_posix()}")


@dataclass
class DocData:
    """The run tables the documentation quotes (read once, usable rows only)."""

    data: Path
    _tables: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    _texts: dict[str, str] = field(default_factory=dict)

    def block(self, name: str) -> str:
        """The text of block ``name`` (computed once per instance)."""
        if name not in BLOCKS:
            raise TtaError(f"unknown generated block {name!r}: known blocks are {', '.join(BLOCKS)}")
        if name not in self._texts:
            self._texts[name] = BLOCKS[name](self)
        return self._texts[name]

    def runs(self, folder: str, experiment: str) -> pd.DataFrame:
        """The usable rows of ``experiment``'s table in ``data/<folder>`` (empty without it), read once."""
        if (folder, experiment) not in self._tables:
            path = schema.run_table_path(self.data / folder, experiment)
            self._tables[folder, experiment] = (
                summaries.usable_runs(schema.read_runs(path))
                if path.is_file()
                else pd.DataFrame(columns=[*schema.COLUMN_NAMES, "first_generation"])
            )
        return self._tables[folder, experiment]

    def sweep(self, experiment: str) -> pd.DataFrame:
        """The usable rows of the H200's ``experiment`` table."""
        return self.runs("h200", experiment)

    steps = _run_table("h200", "steps")
    batch = _run_table("h200", "batch")
    quality = _run_table("h200", "quality")
    study_steps = _run_table("study", "steps")
    study_quality = _run_table("study", "quality")

    @cached_property
    def ceilings(self) -> pd.DataFrame:
        """The bf16 matrix-product ceilings measured under ``data/`` (the levers experiment's)."""
        return efficiency.read_ceilings([self.data])

    @cached_property
    def efficiency(self) -> pd.DataFrame:
        """FLOP per joule of the H200's and the study's steps sweeps (:func:`.efficiency.efficiency_table`),
        computed once for the blocks that quote it."""
        frames = [f for f in (self.steps, self.study_steps) if not f.empty]
        if not frames:  # pd.concat refuses an empty list
            return pd.DataFrame()
        return efficiency.efficiency_table(pd.concat(frames, ignore_index=True), self.ceilings)

    @cached_property
    def levers(self) -> pd.DataFrame:
        return docs_numbers_docs.read_levers(self.data)

    @cached_property
    def campaign(self) -> tuple[list, Any, list]:
        """The cell reports, estimator and tables of ``campaigns/h200.toml`` over ``data/h200``
        (:func:`~tta_energy.experiments.campaign_plan.campaign_state`; no reports, no estimator and no tables
        without the file), computed once for the blocks that quote it."""
        from dataclasses import replace

        from tta_energy.experiments import campaign_plan, campaign_spec

        path = self.data.parent / "campaigns" / "h200.toml"
        if not path.is_file():
            return [], None, []
        spec = replace(campaign_spec.load_campaign(path), out_dir=self.data / "h200")
        return campaign_plan.campaign_state(spec)


# --------------------------------------------------------------------------------------------------------
# The blocks


def _slope_text(rows: pd.DataFrame) -> str:
    """Per-call slope of energy against denoiser calls over all runs of one model, with its 95 % interval, as
    a table cell under a ``J per denoiser call (95% CI)`` header: ``5.3 (4.9–5.8)``."""
    fit = summaries.per_call_fit(rows).iloc[0]
    return (f"{fit['slope_J_per_call']:.1f} ({fit['slope_J_per_call_ci_low']:.1f}–"
            f"{fit['slope_J_per_call_ci_high']:.1f})")


def _repeats(rows: pd.DataFrame) -> str:
    n = rows.groupby("steps").size()
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"


def _spread(rows: pd.DataFrame) -> tuple[float, float]:
    """Lowest and highest run relative to the mean of its (model, steps), over all step counts."""
    rel = rows["gpu_energy_J"] / rows.groupby("steps")["gpu_energy_J"].transform("mean") - 1
    return float(rel.min()), float(rel.max())


def _power(rows: pd.DataFrame) -> pd.Series:
    return rows["gpu_energy_J"] / rows["wall_s"]


def block_steps(d: DocData) -> str:
    """The steps sweep per model: the energy per denoiser call on the H200 and the study's A40, and how far
    repeats scatter, as a table; then which models leave the H200 idle."""
    steps = d.steps
    if steps.empty:
        return "No steps sweep measured on the H200 yet."
    study = d.study_steps
    clean = summaries.without_first_generations(study) if not study.empty else study
    header = ["model", "dtype", "J per denoiser call, H200 (95% CI)", "n per step count, H200"]
    if not clean.empty:
        header.append("J per denoiser call, study's A40 (95% CI)")
    header.append("H200 repeats around their mean, lowest/highest [%]")
    rows = []
    for model in catalogue.ordered({*steps["model"], *clean.get("model", [])}):
        runs = steps[steps["model"] == model]
        row = [label(model)]
        row += ([runs["dtype"].iloc[0], _slope_text(runs), _repeats(runs)] if not runs.empty
                else [clean[clean["model"] == model]["dtype"].iloc[0], NOT_MEASURED, NOT_MEASURED])
        if not clean.empty:
            a40 = clean[clean["model"] == model]
            row.append(_slope_text(a40) if not a40.empty else NOT_IN_STUDY_DATA)
        row.append(_bare("{:+.0%}/{:+.0%}".format(*_spread(runs))) if not runs.empty else NOT_MEASURED)
        rows.append(row)
    text = (
        "GPU energy per denoiser call of a 10 s clip with classifier-free guidance, batch 1, each model in "
        "the study's dtype and run eagerly as the study did, from `data/h200/steps.csv` (fit over every run "
        "of the six step counts; `figures/tables/steps_fit.csv` fits the means)"
        + (", and the same fit on the study's A40 (its runs without the first call of each script)"
           if not clean.empty else "")
        + "; the last column is how far the H200's repeats of one configuration range around their mean:\n\n"
        + markdown.table(header, rows)
    )
    power = _power(steps).groupby(steps["model"])
    low = [m for m in _models(steps) if power.mean()[m] < IDLE_BOUND_W]
    if low:
        text += (
            "\n\nThe small UNets run eagerly leave the H200 mostly idle: mean power "
            + ", ".join(f"{label(m)} {power.mean()[m]:.0f} W" for m in low)
            + f" against {power.mean().drop(low).min():.0f}–{power.mean().drop(low).max():.0f} W for the "
            "others (`figures/platform-comparison.png`)."
        )
    return text


def _batch_ci(row: pd.Series) -> str:
    """A batch summary row's energy per clip as a table cell: ``127 (94–159)`` with the 95% interval where
    the batch size has more than one run (its lower end at least 0), the mean alone for one run."""
    mean = f"{row['gpu_energy_J_per_clip_mean']:.0f}"
    if row["n_runs"] < 2:
        return mean
    low = row["gpu_energy_J_per_10_clips_ci_low"] / CLIPS_PER_REPEAT
    high = row["gpu_energy_J_per_10_clips_ci_high"] / CLIPS_PER_REPEAT
    return f"{mean} ({max(low, 0):.0f}–{high:.0f})"


def _levers_ci(energy: float, std: float, repeats: int) -> str:
    """`` (a–b)``, the 95% interval from a levers row's mean, sample std and repeats; empty for one repeat."""
    if repeats < 2 or pd.isna(std):
        return ""
    half = t_half_width_of(std, repeats)
    return f" ({energy - half:.0f}–{energy + half:.0f})"


def block_batch(d: DocData) -> str:
    """The batch sweep per model as a table: energy per clip at one and at ten waveforms per prompt, and ten
    different prompts in one call against ten waveforms of one prompt."""
    batch = d.batch
    if batch.empty:
        return "No batch sweep measured on the H200 yet."
    summary = summaries.batch_summary(batch)
    runs = summary["n_runs"].astype(int)
    n_text = f"{runs.min()}" if runs.min() == runs.max() else f"{runs.min()}–{runs.max()}"
    one = summary[summary["n_prompts"] == 1]
    distinct = summary[summary["n_prompts"] > 1].set_index("model")["gpu_energy_J_per_clip_mean"]
    same = (
        one[one["n_clips"] == int(summary[summary["n_prompts"] > 1]["n_clips"].max())].set_index("model")[
            "gpu_energy_J_per_clip_mean"
        ]
        if not distinct.empty
        else distinct
    )
    header = ["model", "one waveform per prompt [J per clip] (95% CI)", "n", "ten waveforms per prompt "
              "[J per clip] (95% CI)", "n"]
    if not distinct.empty:
        header += ["ten different prompts vs ten waveforms of one prompt [J per clip]", "change [%]"]
    rows = []
    for model in _models(one):
        measured = one[one["model"] == model].sort_values("n_clips")
        first, last = measured.iloc[0], measured.iloc[-1]
        row = [label(model), _batch_ci(first), f"{int(first['n_runs'])}", _batch_ci(last),
               f"{int(last['n_runs'])}"]
        if not distinct.empty:
            row += ([f"{distinct[model]:.1f} vs {same[model]:.1f}",
                     _bare(_change(distinct[model] / same[model] - 1))]
                    if model in distinct.index and model in same.index else [NOT_MEASURED, NOT_MEASURED])
        rows.append(row)
    return (
        f"Batching (`data/h200/batch.csv`, 100 steps, {n_text} run(s) per batch size, n = 1: no interval; "
        "a 95% t interval's lower end below zero is shown as 0): energy per clip at 1 → 10 waveforms per "
        "prompt"
        + (", and ten *different* prompts in one call against ten waveforms of one prompt"
           if not distinct.empty else "")
        + ":\n\n"
        + markdown.table(header, rows)
    )


def _set_difference(quality: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The quality-energy summary of the (model, steps) cells whose two caption sets can be compared (Welch's
    test needs two captions of each) and its row whose caption sets differ most."""
    summary = summaries.quality_energy_summary(quality)
    summary = summary[summary["welch_p"].notna()]
    other = summary[summary["dataset"] != summaries.REFERENCE_DATASET]
    return summary, other.loc[(other["ratio_to_reference_dataset"] - 1).abs().idxmax()]


def block_quality_sets_short(d: DocData) -> str:
    if d.quality.empty:
        return "not measured yet"
    summary, worst = _set_difference(d.quality)
    low = summary[(summary["welch_p"] < SIGNIFICANCE) & (summary["dataset"] != summaries.REFERENCE_DATASET)]
    significance = (f"never significantly (Welch p ≥ {summary['welch_p'].min():.2f})" if low.empty else
                    f"significantly (Welch p < {SIGNIFICANCE:g}) for " + "; ".join(
                        f"{label(r.model)} at {r.steps} steps" for r in low.itertuples()))
    return (
        f"by at most {abs(worst['ratio_to_reference_dataset'] - 1):.0%} ({label(worst['model'])} at "
        f"{worst['steps']} steps) and {significance}"
    )


#: The level below which Welch's p calls two caption sets' energies different.
SIGNIFICANCE = 0.05


def block_study_quality_sets(d: DocData) -> str:
    """How far the study's two caption sets' energies differ, and where Welch's test finds a difference."""
    quality = d.study_quality
    if quality.empty:
        return "not in the imported data"
    summary, worst = _set_difference(quality)
    other = summary[summary["dataset"] != summaries.REFERENCE_DATASET]
    low = other[other["welch_p"] < SIGNIFICANCE]
    by_model = low.groupby("model")["steps"]
    cells = "; ".join(
        f"{label(m)} at {', '.join(str(s) for s in sorted(by_model.get_group(m)))} steps"
        for m in catalogue.ordered(set(low["model"]))
    ) or "no (model, steps)"
    return (
        f"differ by at most {abs(worst['ratio_to_reference_dataset'] - 1):.1%} (Welch p < {SIGNIFICANCE:g}, "
        f"\"significant\" with {int(summary['n_captions'].min())} captions each, for {cells}"
    )


def _quality_design(d: DocData) -> str:
    """The H200 quality sweep's captions of each caption file per step count: ``30 at 10 steps, 1–2 at 100
    steps`` (a range where models differ)."""
    summary = summaries.quality_energy_summary(d.quality)
    parts = []
    for steps, n in summary.groupby("steps")["n_captions"]:
        low, high = int(n.min()), int(n.max())
        parts.append(f"{low if low == high else f'{low}–{high}'} at {steps} steps")
    return ", ".join(parts)


def block_quality_design(d: DocData) -> str:
    if d.quality.empty:
        return "0 captions: no quality sweep measured on the H200 yet"
    return f"first captions of each caption file: {_quality_design(d)}"


def block_quality_sets(d: DocData) -> str:
    if d.quality.empty:
        return "No quality-sweep energy measured on the H200 yet."
    return (
        f"The quality sweep's energy (`data/h200/quality.csv`, captions of each caption file: "
        f"{_quality_design(d)}; `figures/tables/quality_energy.csv`; compared where each set has two "
        f"captions or more) hardly depends on the caption set: AudioCaps and Clotho differ "
        f"{block_quality_sets_short(d)}."
    )


def block_study_front_frequency(d: DocData) -> str:
    """How stable the study's fronts are under the bootstrap (``figures/tables/pareto.csv``)."""
    path = d.data.parent / "figures" / "tables" / "pareto.csv"
    if not path.is_file():
        return "no `pareto.csv` written yet (0 rows)"
    pareto = pd.read_csv(path)
    study = pareto[pareto["source"] == "study"]
    frequency = study["front_frequency"].dropna()
    models = study["model"].nunique()
    unsure = frequency[(frequency > 0) & (frequency < 1)]
    if unsure.empty:
        return (f"on the {models}-model subset every configuration is on the front in 0 % or 100 % of the "
                "resamples")
    return (
        f"on the {models}-model subset {len(unsure)} of {len(frequency)} configurations are on the front in "
        f"{unsure.min():.0%}–{unsure.max():.0%} of the resamples, the others in 0 % or 100 %"
    )


def block_steps_repeats(d: DocData) -> str:
    """The fewest and most usable repeats of a (model, steps) cell of the H200 steps sweep."""
    if d.steps.empty:
        return "0 repeats: not measured yet"
    n = d.steps.groupby(["model", "steps"]).size()
    return f"{n.min()} to {n.max()} repeats per cell" if n.min() != n.max() else f"{n.min()} repeats per cell"


def block_cell_processes(d: DocData) -> str:
    """How many processes measured a cell of the H200 steps sweep (:func:`.spread.cell_interval_table`)."""
    if d.steps.empty:
        return "0 processes: not measured yet"
    processes = spread.cell_interval_table(d.steps, experiments=("steps",))["n_processes"]
    return f"{int(processes.min())}–{int(processes.max())} processes"


def _ceiling(d: DocData, gpu: str = PROJECT_GPU) -> str:
    """A GPU's bf16 matrix-product ceiling as the docs quote it (``gpu``: a part of its name, as plan files
    give it): the mean of every measurement of it."""
    return _mean_ceiling(d.ceilings[[names_gpu(gpu, name) for name in d.ceilings["gpu_name"]]])


def _mean_ceiling(rows: pd.DataFrame) -> str:
    return f"{rows['ceiling_tflop_per_J'].mean():.2f} TFLOP/J" if not rows.empty else "not measured"


def levers_paragraph(d: DocData, folder: str, levers: pd.DataFrame | None = None) -> str:
    """The levers report of ``data/<folder>`` (``h200``, ``h100``; ``levers``: its table when already read):
    a table of the best lossless configuration per model at 100 steps, batch 1, against ``none`` of the same
    run (a model without one, or not measured there, says so in its row), then the range of fractions of the
    ceiling of the table's GPU."""
    from tta_energy.levers.report import best_fraction, best_lossless
    from tta_energy.models.catalogue import BUILTIN_NAMES

    if levers is None:
        levers = docs_numbers_docs.read_levers(d.data, folder)
    best = best_lossless(levers, batch=1, steps=100) if not levers.empty else pd.DataFrame()
    if best.empty:
        return "No energy levers measured yet."
    # each model's best lossless fraction of the ceiling: the summary's ceiling table, which this quotes
    chosen = (best_fraction(levers, str(m)) for m in levers["model"].unique())
    fractions = pd.Series([float(r["fraction_of_ceiling"]) for r in chosen if r is not None], dtype=float)
    cell = levers[(levers["steps"] == 100) & (levers["waveforms_per_prompt"] == 1)]
    rows = {
        r.model: [
            label(r.model), f"`{r.best}`",
            f"{r.none_J:.0f}{_levers_ci(r.none_J, r.none_std, r.none_n_runs)}",
            f"{r.best_J:.0f}{_levers_ci(r.best_J, r.best_std, r.best_n_runs)}",
            f"{r.ratio:.1f}"
            + (f" ({r.ratio_low:.1f}–{r.ratio_high:.1f})" if np.isfinite(r.ratio_low) else ""),
            f"{r.none_n_runs} and {r.best_n_runs}",
        ]
        for r in best.itertuples()
    }
    for model in catalogue.ordered(cell["model"].unique()):
        if model not in rows:
            rows[model] = [label(model), "measured at 100 steps, batch 1, but without a lossless "
                           "configuration beside `none` in one run", "—", "—", "—", "—"]
    for model in BUILTIN_NAMES:
        if model not in set(cell["model"]):
            rows[model] = [label(model), "not measured at 100 steps, batch 1", "—", "—", "—", "—"]
    header = ["model", "configuration", "`none` [J per clip] (95% CI)", "configuration [J per clip] (95% CI)",
              "reduction [×] (95% CI)", "n (`none` and configuration)"]
    ceilings = d.ceilings[d.ceilings["gpu_name"].isin(set(levers["gpu_name"].dropna()))]
    return (
        f"Run differently, without changing the output (`data/{folder}/levers.csv`, 100 steps, batch 1): "
        "per model the lossless configuration at the study's precision with the largest reduction against "
        "the study's default `none` of its own run, of the runs that measured it the one with the most "
        "repeats of `none`:\n\n"
        + markdown.table(header, [rows[m] for m in catalogue.ordered(rows)])
        + f"\n\nThe best configurations at any batch size reach {fractions.min():.0%}–{fractions.max():.0%} "
        f"of the measured bf16 matmul ceiling ({_mean_ceiling(ceilings)}, each against the ceiling "
        f"measured in its own run; `data/{folder}/levers_summary.md`)."
    )


def targets_sentence(data: Path, folder: str) -> str:
    """How far the levers plan of ``data/<folder>`` is (``campaigns/<folder>_levers.toml``,
    :func:`tta_energy.levers.calls.plan_progress`); a table of each kind of target in its
    ``levers_targets.csv``: how many models meet it, and each miss with its value against the target; then the
    targets nothing was measured for."""
    from tta_energy.levers.calls import plan_progress
    from tta_energy.levers.summary import (
        CEILING_ANY_PRECISION_TARGET,
        CEILING_TARGET,
        FP8_TARGET,
        TARGET_KINDS,
        read_targets,
    )

    path = data / folder / TARGETS_FILE
    if not path.is_file():
        return f"No targets table yet (`{path.as_posix()}`)."
    targets = read_targets(path)

    def shown(target: str, value: float) -> str:
        return (f"{value:.0%}" if target in (CEILING_TARGET, CEILING_ANY_PRECISION_TARGET)
                else f"{value:.3f}" if target == FP8_TARGET
                else f"{value:.2f}×")

    rows, unmeasured = [], []
    for target in TARGET_KINDS:
        kind = targets[targets["target"] == target]
        judged = kind[kind["met"].notna()]
        unmeasured += [f"{label(r.model)} ({target})" for r in kind[kind["met"].isna()].itertuples()]
        if judged.empty:
            continue
        missed = judged[~judged["met"].astype(bool)]
        rows.append([target, f"{int(judged['met'].astype(bool).sum())} of {len(judged)}",
                     "; ".join(f"{label(r.model)} {shown(target, r.value)} against {shown(target, r.wanted)}"
                               for r in missed.itertuples()) or "none"])
    plan = data.parent / "campaigns" / f"{folder}_levers.toml"
    progress = ""
    if plan.is_file():
        done, total = plan_progress(plan, data / folder)
        progress = (f"The table holds {done} of the {total} cells `campaigns/{folder}_levers.toml` declares"
                    + ("" if done == total else ", so a target missed here may still be met by a "
                       "configuration not measured yet") + ". ")
    source = f"Against the targets (`data/{folder}/levers_targets.csv`"
    if not rows:
        text = f"{progress}{source}): none measured yet."
    else:
        text = (f"{progress}{source}), per kind of target: how many of the models measured meet it, and each "
                "miss with its value against the target:\n\n"
                + markdown.table(["target", "met of measured", "missed (value against target)"], rows))
    if unmeasured:
        text += ("\n\n" if rows else " ") + "Not measured yet: " + ", ".join(unmeasured) + "."
    return text


def block_levers(d: DocData) -> str:
    return levers_paragraph(d, "h200", d.levers)


def block_levers_targets(d: DocData) -> str:
    return targets_sentence(d.data, "h200")


def block_levers_targets_h100(d: DocData) -> str:
    return targets_sentence(d.data, "h100")


def block_levers_h100(d: DocData) -> str:
    return levers_paragraph(d, "h100")


def study_warmup(study: pd.DataFrame) -> pd.DataFrame:
    """The study's first call of each script against the mean of the other runs of its (model, steps)."""
    out = []
    for row in study[study["first_generation"]].itertuples():
        others = study[
            (study["model"] == row.model) & (study["steps"] == row.steps) & ~study["first_generation"]
        ]["gpu_energy_J"]
        out.append(
            {
                "model": row.model,
                "steps": int(row.steps),
                "first_J": float(row.gpu_energy_J),
                "others_J": float(others.mean()),
                "n_others": len(others),
            }
        )
    frame = pd.DataFrame(out)
    if not frame.empty:
        frame["excess"] = frame["first_J"] / frame["others_J"] - 1
    return frame


def block_study_warmup(d: DocData) -> str:
    warm = study_warmup(d.study_steps)
    if warm.empty:
        return "the study's first calls are not in the imported data"
    top = warm.loc[warm["excess"].idxmax()]
    return (
        f"up to {_change(top['excess'], 0)} in its steps experiment (`data/study/steps.csv`): "
        f"{label(top['model'])} at {top['steps']} "
        f"steps, {top['first_J']:.0f} J against a mean of {top['others_J']:.0f} J over its other "
        f"{top['n_others']} runs"
    )


def block_study_warmup_example(d: DocData) -> str:
    study = d.study_steps
    rows = study[(study["model"] == "audioldm") & (study["steps"] == 10)]
    if rows.empty:
        return "not in the imported data"
    with_first = rows["gpu_energy_J"]
    without = summaries.without_first_generations(rows)["gpu_energy_J"]
    return (
        f"AudioLDM 10 steps: {with_first.mean():.1f} ± {with_first.std():.1f} J with it "
        f"(n = {len(with_first)}), "
        f"{without.mean():.1f} ± {without.std():.1f} J without (n = {len(without)}; mean ± sample std)"
    )


def block_observations(d: DocData) -> str:
    steps = d.steps
    if steps.empty:
        return "No H200 measurements yet."
    power = _power(steps).groupby(steps["model"])
    mean_power = power.mean()
    spread = {m: _spread(steps[steps["model"] == m]) for m in _models(steps)}

    def span(models: list[str]) -> str:
        return ", ".join(f"{label(m)} {spread[m][0]:+.0%}/{spread[m][1]:+.0%}" for m in models)

    compute_bound = [m for m in ("stable-audio-open", "tango", "tango2") if m in spread]
    items = [
        "In the steps sweep (`data/h200/steps.csv`), run eagerly at batch 1, the small UNets leave the H200 "
        "mostly idle. Mean GPU power over the generation: "
        + ", ".join(
            f"{label(m)} {mean_power[m]:.0f} W ({power.min()[m]:.0f}–{power.max()[m]:.0f} W)"
            for m in _models(steps)
        )
        + ", against the 700 W limit.",
        "The launch-bound ones follow the host CPU's pace, and their repeats of one configuration scatter "
        "widely around the mean of their step count (lowest/highest run): "
        + span([m for m in _models(steps) if m not in compute_bound])
        + "; the compute-bound models "
        + span(compute_bound)
        + ".",
    ]
    duration = d.sweep("duration")
    sao = duration[duration["model"] == "stable-audio-open"]
    if not sao.empty:
        by_duration = sao.groupby("duration_s")["gpu_energy_J"].agg(["mean", "size"])
        lo, hi = by_duration.iloc[0], by_duration.iloc[-1]
        items.append(
            "Stable Audio Open's energy does not follow the duration asked (`data/h200/duration.csv`; "
            f"{by_duration.index[0]:g} s: "
            f"{lo['mean']:.0f} J, n = {int(lo['size'])}; {by_duration.index[-1]:g} s: {hi['mean']:.0f} J, "
            f"n = {int(hi['size'])}; {int(sao['steps'].iloc[0])} steps; it always computes "
            f"{sao['latent_seconds'].iloc[0]:.2f} s of "
            "latents)."
        )
    guidance = d.sweep("guidance")
    if not guidance.empty:
        summary = summaries.parameter_summary(guidance, "guidance")
        parts = []
        for model in _models(summary):
            rows = summary[summary["model"] == model].sort_values("guidance_scale")
            if len(rows) == 2:
                off, on = rows.iloc[0], rows.iloc[1]
                change = off["gpu_energy_J_mean"] / on["gpu_energy_J_mean"] - 1
                parts.append(
                    f"{label(model)} {on['gpu_energy_J_mean']:.0f} → {off['gpu_energy_J_mean']:.0f} J "
                    f"({change:+.0%}; n = {int(on['n_runs'])}/{int(off['n_runs'])})"
                )
        items.append(
            "Turning classifier-free guidance off halves the denoiser batch (`data/h200/guidance.csv`, mean "
            "energy on → off, 100 steps): "
            + ", ".join(parts)
            + "; it does not halve the kernel launches, which set the pace of the host-paced models."
        )
    precision = d.sweep("precision")
    sao = precision[precision["model"] == "stable-audio-open"].groupby("dtype")["gpu_energy_J"].agg(
        ["mean", "size"])
    if {"float32", "float16"} <= set(sao.index):
        fp32, fp16 = sao.loc["float32"], sao.loc["float16"]
        items.append(
            "fp32 as PyTorch runs it by default (matrix products without TF32; `data/h200/precision.csv`) "
            "costs Stable Audio Open "
            f"{fp32['mean']:.0f} J (n = {int(fp32['size'])}) against {fp16['mean']:.0f} J in fp16 "
            f"(n = {int(fp16['size'])})."
        )
    items.append(block_quality_drift(d))
    return "Observations worth knowing before reading the tables:\n\n" + "\n".join(
        f"* {item}" for item in items if item)


def _spread_part(row: pd.Series) -> str:
    if row["reason"] and pd.isna(row["between_process_share"]):
        return f"{label(row['model'])} not separable ({row['reason']})"
    busy = "" if pd.isna(row["gpu_busy_fraction_mean"]) else f", GPU busy {row['gpu_busy_fraction_mean']:.0%}"
    time = ("" if pd.isna(row["energy_time_r2"]) else
            f"; duration explains {row['energy_time_r2']:.0%} of the within-configuration variance, "
            f"slope {row['energy_time_slope']:.2f}")
    return (
        f"{label(row['model'])} {row['between_process_sd_pct']:.1f}% / {row['within_process_sd_pct']:.1f}% "
        f"(between-process share {row['between_process_share']:.0%}{busy}{time})"
    )


def block_process_spread(d: DocData) -> str:
    """Per model of the steps sweep: the between- and within-process SDs of :mod:`.spread` (point estimates;
    their bootstrap intervals are in the table), ordered by how busy the GPU was."""
    if d.steps.empty:
        return "No H200 steps sweep to split the spread of yet."
    table = spread.spread_table(d.steps, experiments=("steps",), draws=0)
    table = table.sort_values("gpu_busy_fraction_mean", kind="stable", na_position="last")
    processes = table["n_processes"]
    return (
        "How much of the steps sweep's scatter around a configuration's mean lies between processes "
        "(`figures/tables/spread_h200.csv`: log GPU energy "
        "fitted with the configuration as fixed effect and a random intercept per process, REML; "
        f"{processes.min()}–{processes.max()} processes per model, so the between-process SD is rough — "
        "its bootstrap interval is in the table), and how much of a configuration's scatter its duration "
        "explains (log energy on log wall time within each configuration: a slope near 1 means more energy "
        "because the generation took longer at the same power): the SD of one configuration's energy between "
        "processes / within a process, from the least to the most busy GPU:\n\n"
        + "\n".join(f"* {_spread_part(row)}" for _, row in table.iterrows())
    )


def block_cell_intervals(d: DocData) -> str:
    """Per model of the steps sweep: the median 95% half-width of a cell's mean energy, from its repeats alone
    and with the process level counted (:func:`.spread.cell_interval_table`)."""
    if d.steps.empty:
        return "No H200 steps sweep to take intervals from yet."
    cells = spread.cell_interval_table(d.steps, experiments=("steps",))
    parts = []
    for model in catalogue.ordered(set(cells["model"])):
        rows = cells[cells["model"] == model]
        processes = rows["ci95_half_width_rel_processes"]
        counted = (f"{processes.median():.1%}" if processes.notna().any()
                   else f"not counted ({rows['reason'].iloc[0]})")
        parts.append(f"{label(model)} ±{rows['ci95_half_width_rel_repeats'].median():.1%} → +{counted}")
    return (
        "How well a steps cell's mean energy is known (`figures/tables/cell_intervals_h200.csv`; median over "
        "the six step counts of the 95% half-width relative to the mean, from the cell's repeats alone as "
        "the campaign's rule takes it → with the process level counted, in the mixed model above (its upper "
        "side: symmetric in log energy, the interval reaches less far below the mean), "
        f"{int(cells['n_processes'].min())}–{int(cells['n_processes'].max())} processes per cell): "
        + "; ".join(parts)
        + ". Differences between models smaller than these widths are not established by these data."
    )


def quality_drift(quality: pd.DataFrame, n: int = 20, steps: int = 10) -> pd.DataFrame:
    """Per model: mean energy of the first and the last ``n`` captions of the quality sweep at ``steps``
    (the study's 10; the campaign adds captions at 100 steps, which must not enter a drift at 10), in time
    order."""
    out = []
    for model in _models(quality):
        rows = quality[(quality["model"] == model) & (quality["steps"] == steps)]
        rows = rows.sort_values("timestamp", kind="stable")
        if len(rows) < 2 * n:
            continue
        first, last = rows.head(n), rows.tail(n)
        out.append(
            {
                "model": model,
                "first_J": first["gpu_energy_J"].mean(),
                "last_J": last["gpu_energy_J"].mean(),
                "first_text_J": first["energy_text_encoding_J"].mean(),
                "last_text_J": last["energy_text_encoding_J"].mean(),
                "steps": steps,
            }
        )
    frame = pd.DataFrame(out)
    if not frame.empty:
        frame["change"] = frame["last_J"] / frame["first_J"] - 1
    return frame


def block_quality_drift(d: DocData, n: int = 20) -> str:
    drift = quality_drift(d.quality, n)
    if drift.empty:
        return ""
    drift = drift.set_index("model")
    big = drift[drift["change"].abs() > 0.05]
    parts = [
        f"{label(m)} {r.first_J:.1f} → {r.last_J:.1f} J ({_change(r.change)}; text encoding "
        f"{r.first_text_J:.1f} → {r.last_text_J:.1f} J)"
        for m, r in big.iterrows()
    ]
    small = drift.drop(big.index)
    text = (
        "In the quality sweep (`data/h200/quality.csv`) the energy per caption moves over the sweep although "
        "a warm-up generation ran "
        f"(first {n} against last {n} captions in time order, {int(drift['steps'].iloc[0])} steps): "
        + "; ".join(parts)
        + "."
    )
    if not small.empty:
        text += (
            " The others stay within "
            f"±{small['change'].abs().max():.1%} ("
            + ", ".join(f"{label(m)} {_change(r.change)}" for m, r in small.iterrows())
            + ")."
        )
    return text


def block_h200_fronts(d: DocData) -> str:
    """The study's fronts redrawn with the H200's energy: the (model, steps) that join or leave the A40's
    front as a table, then the lever configurations the H200 front gains."""
    scores_path = d.data / "study" / "scores.csv"
    if d.steps.empty or d.study_quality.empty or not scores_path.is_file():
        return "No H200 steps sweep or study scores to draw the fronts with yet."
    quality = fronts.a40_quality_runs(d.study_quality)
    table = fronts.platform_fronts(
        summaries.steps_summary(d.steps), quality, tables.read_scores(scores_path), d.levers
    )
    h200 = table[table["point_set"] == fronts.H200_DEFAULT_POINTS]
    moved = h200[h200["front_change"].isin(["joins", "leaves"])]
    rows = [
        [label(r.model), f"{int(r.steps)}", summaries.DATASET_LABELS.get(r.dataset, r.dataset),
         METRIC_NAMES.get(r.metric, r.metric), r.front_change]
        for r in moved.itertuples()
    ]
    levers = table[
        (table["point_set"] == fronts.H200_LEVERS_POINTS) & table["on_front_h200_levers"].fillna(False)
    ]
    lever_parts = sorted(
        {f"{label(r.model)} {int(r.steps)} `{r.optimize}`" for r in levers.itertuples()}
    )
    models = ", ".join(label(m) for m in catalogue.ordered(table["model"].unique()))
    text = (
        "The study's question on the H200 (`figures/pareto-h200-vs-a40.png`, "
        f"`figures/tables/pareto_h200.csv`; the study's published scores for {models}, H200 energy per clip "
        "from the steps sweep). Against the A40 front (its warm-up calls left out), "
        + ("these configurations join or leave the front of a caption set and metric on the H200 at the "
           "study's defaults:\n\n"
           + markdown.table(["model", "steps", "caption set", "metric", "on the H200"], rows) + "\n\n"
           if rows else "on the H200 at the study's defaults no configuration joins or leaves. ")
    )
    if lever_parts:
        text += ("With the lossless levers (where measured) the H200 front gains " + ", ".join(lever_parts)
                 + ".")
    return text.rstrip()


def _study_table(d: DocData, name: str) -> pd.DataFrame:
    path = schema.run_table_path(d.data / "study", name)
    return (
        pd.read_csv(path, usecols=lambda c: c in {"model", "steps", "repeat", "dataset"})
        if path.is_file()
        else pd.DataFrame()
    )


def block_study_steps_rows(d: DocData) -> str:
    rows = _study_table(d, "steps")
    if rows.empty:
        return "not imported"
    return (
        f"{rows['model'].nunique()} models x {rows['steps'].nunique()} step counts x "
        f"{rows['repeat'].nunique()} runs ({len(rows):,} rows)"
    )


def block_study_batch_rows(d: DocData) -> str:
    rows = _study_table(d, "batch")
    return "not imported" if rows.empty else f"{rows['repeat'].nunique()} runs ({len(rows):,} rows)"


def block_study_quality_rows(d: DocData) -> str:
    rows = _study_table(d, "quality")
    if rows.empty:
        return "not imported"
    per_set = (
        rows.groupby("dataset").size() / rows.groupby("dataset")["steps"].nunique() / rows["model"].nunique()
    )
    sets = " + ".join(f"{int(n)} {summaries.DATASET_LABELS.get(s, s)}" for s, n in per_set.items())
    return f"{sets} captions x {rows['steps'].nunique()} step counts, one pass ({len(rows):,} rows)"


def block_estimators(d: DocData) -> str:
    """How `split` and `linear` differ on the matmul: inside the load, and on calls from idle."""
    path = d.data / "validation" / METER_TABLE
    if not path.is_file():
        return "not measured yet"
    rows = pd.read_csv(path)
    matmul = rows[
        rows["workload"].str.startswith("matmul") & rows["method"].isin(["meter_split", "meter_linear"])
    ]
    steady = matmul[(matmul["scenario"] == "steady") & (matmul["window_target_s"] >= 1)]
    wide = steady.pivot_table(index=["window_target_s", "trial"], columns="method", values="measured_J")
    diff = (wide["meter_split"] - wide["meter_linear"]).abs()
    iso = matmul[matmul["scenario"] == "isolated"]
    dev = (iso["measured_J"] - iso["truth_J"]).groupby(iso["method"])
    windows = iso[iso["method"] == "meter_linear"].groupby("window_target_s").size()
    return (
        f"on the matmul's ≥ 1 s windows the two differ by at most {(diff / wide['meter_split']).max():.2%} "
        f"({diff.min():.2f}–{diff.max():.2f} J of {wide['meter_split'].min():.0f}–"
        f"{wide['meter_split'].max():.0f} J, n = {len(diff)} windows). They differ only at power steps, i.e. "
        "at the edges of a call from idle, which is what every generation of a sweep is: there `linear` "
        "assumes flat power across the 100 ms interval that holds the step. On the isolated matmul calls ("
        + ", ".join(f"n = {n} at {w:g} s" for w, n in windows.items())
        + f") `linear` read {-dev.max()['meter_linear']:.1f}–{-dev.min()['meter_linear']:.1f} J (mean "
        f"{-dev.mean()['meter_linear']:.1f} J) below the steady truth, as linear interpolation's step error "
        f"predicts (≈ ΔP × L / 4 per edge); `split` read {dev.min()['meter_split']:.1f}–"
        f"{dev.max()['meter_split']:.1f} J (mean {dev.mean()['meter_split']:.1f} J) above it"
    )


def block_campaign_left(d: DocData) -> str:
    """What the H200 campaign still needs: cells, estimated GPU seconds and the range of the runs' paces."""
    from tta_energy.experiments.campaign_plan import pace_range_text, plan_table, run_paces

    reports, est, frames = d.campaign
    left = sum(not r.state.done for r in reports)
    if not left:
        return "nothing: every cell is done"
    rows, builds = plan_table(reports, est)
    generations_s = float(sum(r["estimated_s"] for r in rows))
    paced = pace_range_text(generations_s, builds, run_paces(frames))
    return (f"{left} cells, an estimated {generations_s + builds:,.0f} GPU s (`tta-energy campaign plan`)"
            + (f"; {paced}" if paced else ""))


def block_campaign_cells(d: DocData) -> str:
    """Cells of the H200 campaign per experiment: done (stopping rule met) and at target."""
    from tta_energy.experiments.campaign_plan import status_table

    rows = status_table(d.campaign[0])
    if not rows:
        return "0 cells: no campaign file"
    return "; ".join(f"{r['experiment']} {r['done']} of {r['cells']} cells done ({r['at_target']} at target)"
                     for r in rows)


def block_campaign_cost(d: DocData) -> str:
    """GPU time of the campaign's calls per experiment and their overhead (campaign_runs.jsonl)."""
    from tta_energy.experiments.campaign_plan import cost_of_calls, outside_windows_text, overhead_text

    cost = cost_of_calls(d.data / "h200")
    if not cost["calls"]:
        return "0 campaign calls logged yet"
    parts = ", ".join(f"{r['experiment']} {r['gpu_s']:,.0f} s ({r['rows']} rows)"
                      for r in cost["by_experiment"])
    outside = outside_windows_text(cost)
    return (f"{cost['calls']} campaign call(s), {cost['gpu_s']:,.0f} GPU s in all: {parts}; "
            f"{cost['measured_s']:,.0f} s inside measured windows, overhead {overhead_text(cost)}"
            + (f"; {outside}" if outside else ""))


def _interval(mean: float, low: float, high: float, fmt: Callable[[float], str]) -> str:
    """``mean (low–high)``, the mean alone where the interval is unknown (one run)."""
    if pd.isna(low) or pd.isna(high):
        return fmt(mean)
    return f"{fmt(mean)} ({fmt(max(low, 0.0))}–{fmt(high)})"


def block_model_table(d: DocData) -> str:
    """One row per model: what a reader wants first, each number with its interval and its table."""
    if d.steps.empty:
        return "No steps sweep measured on the H200 yet."
    flops = d.efficiency
    h200 = flops[rows_of_gpu(flops["gpu_name"])].set_index("model")
    a40 = flops[flops["source"] == "study"].set_index("model")
    try:
        host = summaries.host_summary(d.steps).set_index("model")
    except summaries.AnalysisError:
        host = pd.DataFrame()
    intro = ("Each model at the study's settings (10 s clip, batch 1, its dtype, run eagerly), 95% intervals "
             "in brackets (from the repeats as if independent; with the process level counted they widen for "
             "the host-paced models, `data/README.md`): energy per clip from the steps sweeps "
             "(`data/h200/steps.csv`, `data/study/steps.csv`), energy per denoiser call from the line "
             "through every run, FLOP per joule against the H200's measured bf16 ceiling "
             "(`figures/tables/efficiency.csv`) and the share of NVML's utilisation samples with a kernel "
             "running, mean over the generations that recorded it (n: `n_generations` in "
             "`figures/tables/host_summary.csv`). "
             "`docs/results.md` gives the details per sweep; `data/README.md` the duration, guidance and "
             "precision sweeps.")
    header = ["model", "dtype", "GPU energy per clip, 100 steps, H200 [J]", "same, study's A40 [J]",
              "J per denoiser call, H200", "TFLOP/J, H200 (share of its bf16 ceiling)", "GPU busy, H200"]
    rows = []
    for model in catalogue.ordered(h200.index):
        r = h200.loc[model]
        h_mean = _generation_interval(r)
        a_mean = _generation_interval(a40.loc[model]) if model in a40.index else NOT_IN_STUDY_DATA
        per_call = _interval(r["slope_J_per_call"], r["slope_J_per_call_ci_low"],
                             r["slope_J_per_call_ci_high"], lambda v: f"{v:.1f}")
        fraction = r["denoiser_fraction_of_ceiling"]
        share = f" ({fraction:.0%})" if pd.notna(fraction) else ""
        busy_text = _busy(host.loc[model]) if model in host.index else "n/a"
        rows.append([label(model), r["dtype"], h_mean, a_mean, per_call,
                     f"{_tflop(r['denoiser_tflop_per_J'])}{share}", busy_text])
    return f"{intro}\n\n{markdown.table(header, rows)}"


def _busy(row: pd.Series) -> str:
    """A host_summary row's GPU busy fraction: mean, 95% interval where there is one, and
    ``n_generations``."""
    mean = row["gpu_busy_fraction_mean"]
    low, high = row["gpu_busy_fraction_ci_low"], row["gpu_busy_fraction_ci_high"]
    interval = f"{low:.0%}–{high:.0%}, " if pd.notna(low) and pd.notna(high) else ""
    return f"{mean:.0%} ({interval}n = {int(row['n_generations'])})"


def _generation_interval(row: pd.Series) -> str:
    """An efficiency row's mean energy per clip at 100 steps with its 95% interval."""
    return _interval(row["generation_J_mean"], row["generation_J_ci_low"], row["generation_J_ci_high"], _j)


def _tflop(value: float) -> str:
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def block_efficiency(d: DocData) -> str:
    """FLOP per joule of a denoiser call at the study's settings, H200 against the ceiling and the A40, one
    table row per model; then the batch sweep's (:func:`_batch_efficiency_text`)."""
    if d.efficiency.empty:
        return "No steps sweep measured yet."
    table = d.efficiency.dropna(subset=["denoiser_tflop_per_J"])
    h200 = table[rows_of_gpu(table["gpu_name"])]
    a40 = table[table["source"] == "study"].set_index("model")
    if h200.empty:
        return "No steps sweep measured on the H200 yet."
    has_ceiling = h200["ceiling_tflop_per_J"].notna().any()
    has_a40 = any(r.model in a40.index for r in h200.itertuples())
    header = ["model", "dtype", "TFLOP/J, H200 (95% CI)"]
    header += ["share of the H200's ceiling [%]"] if has_ceiling else []
    header += ["TFLOP/J, study's A40", "FLOPs per joule, H200 against A40 [×]"] if has_a40 else []
    rows = []
    for r in h200.itertuples():
        row = [label(r.model), r.dtype, f"{_tflop(r.denoiser_tflop_per_J)} "
               f"({_tflop(r.denoiser_tflop_per_J_ci_low)}–{_tflop(r.denoiser_tflop_per_J_ci_high)})"]
        if has_ceiling:
            fraction = r.denoiser_fraction_of_ceiling
            row.append(_bare(f"{fraction:.0%}") if pd.notna(fraction) else NOT_MEASURED)
        if has_a40:
            study = a40["denoiser_tflop_per_J"].get(r.model)
            row += ([_tflop(study), f"{r.denoiser_tflop_per_J / study:.2f}"] if study is not None
                    else [NOT_IN_STUDY_DATA, "—"])
        rows.append(row)
    text = ("FLOP per joule at the study's settings (`figures/tables/efficiency.csv`, "
            "`figures/flop-per-joule.png`): the FLOPs of one denoiser call (`tta-energy describe`) over the "
            "energy per call fitted over every run of `data/h200/steps.csv`, in TFLOP/J"
            + (f", against the H200's bf16 matrix-product ceiling measured with the same meter "
               f"({_ceiling(d)})" if has_ceiling else "")
            + ("; on the study's A40 the same without the first call of each script, and how many times as "
               "many FLOPs the H200 gets from a joule" if has_a40 else "")
            + ":\n\n" + markdown.table(header, rows))
    return text + _batch_efficiency_text(d)


def _batch_efficiency_text(d: DocData) -> str:
    """The batch sweep's denoising phase at one clip per call and at each model's best one-prompt layout, as a
    table after the block's first (empty without a batch sweep)."""
    if d.batch.empty:
        return ""
    table = efficiency.batch_efficiency(d.batch, d.ceilings).dropna(subset=["denoising_tflop_per_J"])
    one_prompt = table[table["n_prompts"] == 1]
    rows = []
    for model in catalogue.ordered(one_prompt["model"].unique()):
        layouts = one_prompt[one_prompt["model"] == model].sort_values("n_clips")
        single, best = layouts.iloc[0], layouts.loc[layouts["denoising_tflop_per_J"].idxmax()]
        rows.append([label(model), _tflop(single["denoising_tflop_per_J"]),
                     _tflop(best["denoising_tflop_per_J"]), f"{int(best['n_clips'])}"])
    if not rows:
        return ""
    best = one_prompt.loc[one_prompt["denoising_tflop_per_J"].idxmax()]
    share = (f", {best['denoising_fraction_of_ceiling']:.0%} of the ceiling"
             if pd.notna(best["denoising_fraction_of_ceiling"]) else "")
    runs = f"{one_prompt['n_runs'].min()}–{one_prompt['n_runs'].max()}"
    header = ["model", "one clip per call [TFLOP/J]", "best layout [TFLOP/J]", "clips per call at the best"]
    return ("\n\nBatching moves the denoising phase's FLOP per joule (`data/h200/batch.csv`, 100 steps, one "
            f"prompt, from one clip per call to the model's best layout; {runs} run(s) per layout, intervals "
            "in `figures/tables/batch_efficiency.csv`):\n\n" + markdown.table(header, rows)
            + f"\n\nThe highest is {label(best['model'])} at {int(best['n_clips'])} clips "
            f"({_tflop(best['denoising_tflop_per_J'])}{share}).")


BLOCKS: dict[str, Callable[[DocData], str]] = {
    "campaign-cells": block_campaign_cells,
    "campaign-cost": block_campaign_cost,
    "campaign-left": block_campaign_left,
    "estimators": block_estimators,
    "study-steps-rows": block_study_steps_rows,
    "study-batch-rows": block_study_batch_rows,
    "study-quality-rows": block_study_quality_rows,
    "h200-fronts": block_h200_fronts,
    "steps": block_steps,
    "batch": block_batch,
    "quality-sets": block_quality_sets,
    "quality-sets-short": block_quality_sets_short,
    "study-quality-sets": block_study_quality_sets,
    "quality-design": block_quality_design,
    "study-front-frequency": block_study_front_frequency,
    "steps-repeats": block_steps_repeats,
    "cell-processes": block_cell_processes,
    "levers": block_levers,
    "levers-h100": block_levers_h100,
    "levers-targets": block_levers_targets,
    "levers-targets-h100": block_levers_targets_h100,
    "study-warmup": block_study_warmup,
    "study-warmup-example": block_study_warmup_example,
    "observations": block_observations,
    "process-spread": block_process_spread,
    "cell-intervals": block_cell_intervals,
    "efficiency": block_efficiency,
    "model-table": block_model_table,
    **docs_numbers_docs.BLOCKS,
}


# --------------------------------------------------------------------------------------------------------
# Reading and writing the documents


def render(text: str, data: DocData) -> str:
    """``text`` with every generated block rewritten from ``data`` (an unknown block name is an error)."""

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        body = data.block(name)
        multiline = match["body"].startswith("\n")
        inner = f"\n{body}\n" if multiline else body
        return f"<!-- generated:{name} -->{inner}<!-- /generated:{name} -->"

    return BLOCK.sub(fill, text)


def _doc_data(root: Path, data: Path | DocData | None) -> DocData:
    return data if isinstance(data, DocData) else DocData(data or root / "data")


def stale_blocks(root: Path, data: Path | DocData | None = None) -> list[str]:
    """``file: block`` for every generated block whose text differs from what the tables give."""
    docs = _doc_data(root, data)
    stale = []
    for relative in DOC_FILES:
        path = root / relative
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        fresh = {m["name"]: m["body"] for m in BLOCK.finditer(render(text, docs))}
        for match in BLOCK.finditer(text):
            if fresh.get(match["name"]) != match["body"]:
                stale.append(f"{relative}: {match['name']}")
    return stale


def update_docs(root: Path, data: Path | DocData | None = None) -> list[Path]:
    """Rewrite the generated blocks of :data:`DOC_FILES` under ``root``; returns the files that changed."""
    docs = _doc_data(root, data)
    changed = []
    for relative in DOC_FILES:
        path = root / relative
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        new = render(text, docs)
        if new != text:
            write_text_atomic(path, new)
            changed.append(path)
    return changed
