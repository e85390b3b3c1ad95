"""The levers summary, ``levers_summary.md``: each target met or missed, by how much, and what the
measurements say limits it (the step profiles, the share of the generation outside the denoising loop,
Amdahl's bound for float8); the lossless and any-precision tables; what was not lossless, what failed and
what lost the CUDA context. The table it reads and the rules that pick each reduction's run are
:mod:`tta_energy.levers.report`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy import markdown
from tta_energy.levers.equivalence import ERROR_FLOOR, UNINFORMATIVE_ERROR, YARDSTICK_FACTOR
from tta_energy.levers.report import (
    best_fraction,
    best_lossless,
    configuration_rows,
    largest_reduction,
    lever_targets,
    target_cell,
)
from tta_energy.levers.spec import DEFAULT_SPEC, PRECISIONS, REFERENCE_SPEC, LeverError, parse_levers
from tta_energy.levers.tables import ceiling_rows, failure_where
from tta_energy.study import STUDY_DURATION_S

#: the kinds of target, as ``levers_targets.csv`` names them (the thresholds are each model's
#: :class:`~tta_energy.models.catalogue.LeverTargets`)
LOSSLESS_TARGET = "lossless reduction"
ANY_PRECISION_TARGET = "reduction at any precision"
#: the best lossless configuration's; and the best one's at any precision that keeps the computation (no fp8
#: or trim-latents): the target ("best configuration at any batch") names no precision, and the bf16
#: ceiling is out of an fp32 configuration's reach, so both are judged
CEILING_TARGET = "fraction of the ceiling"
CEILING_ANY_PRECISION_TARGET = "fraction of the ceiling at any precision"
FP8_TARGET = "fp8 TFLOP per joule"
TARGET_KINDS = (LOSSLESS_TARGET, ANY_PRECISION_TARGET, CEILING_TARGET, CEILING_ANY_PRECISION_TARGET,
                FP8_TARGET)
#: ``levers_targets.csv``: one row per target of a model; ``value`` against ``wanted`` (a reduction in x, a
#: fraction, or TFLOP/J), ``met`` empty where nothing was measured for it
TARGET_COLUMNS = ["target", "model", "optimize", "dtype", "steps", "waveforms_per_prompt", "value",
                  "wanted", "met"]
#: the columns of :data:`TARGET_COLUMNS` that may be empty, and their types
TARGET_NULLABLE = {"met": "boolean", "steps": "Int64", "waveforms_per_prompt": "Int64"}


def read_targets(path: Path) -> pd.DataFrame:
    """A ``levers_targets.csv`` (:data:`TARGET_COLUMNS`); one clear :class:`LeverError` line for a file with
    other columns."""
    targets = pd.read_csv(path, dtype={"optimize": "string", "dtype": "string"})
    if list(targets.columns) != TARGET_COLUMNS:
        raise LeverError(f"{path}: columns {', '.join(targets.columns)}; a levers targets table has "
                         f"{', '.join(TARGET_COLUMNS)} (rebuild it with `tta-energy levers report`)")
    return targets.astype(TARGET_NULLABLE)


def meets(value: float, wanted: float) -> bool | None:
    """Whether a measured ``value`` reaches its target ``wanted``: the one rule of every target; None where
    nothing was measured (NaN)."""
    return None if not np.isfinite(value) else bool(value >= wanted)


def target_status(target: str, model: str, wanted: float, best: pd.Series | None,
                  value: float = float("nan")) -> dict[str, object]:
    """One row of :data:`TARGET_COLUMNS`: ``best`` (a row of the levers table, or None: not measured)
    reaching ``value`` against ``wanted``."""
    return {"target": target, "model": model,
            "optimize": None if best is None else str(best["optimize"]),
            "dtype": None if best is None else str(best["dtype"]),
            "steps": None if best is None else int(best["steps"]),
            "waveforms_per_prompt": None if best is None else int(best["waveforms_per_prompt"]),
            "value": value, "wanted": float(wanted), "met": meets(value, wanted)}


def _ratio(x: float) -> str:
    """A reduction or saving factor: ``4.21x``, or ``n/a``."""
    return f"{x:.2f}x" if np.isfinite(x) else "n/a"


def _interval(low: float, high: float) -> str:
    """``a-bx``, or n/a where there is no interval (one repeat)."""
    return "n/a" if not (np.isfinite(low) and np.isfinite(high)) else f"{low:.2f}-{high:.2f}x"


def _fmt(x: float, spec: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def profile_rows(model: str, profile: pd.DataFrame, run_id: str | None = None) -> pd.DataFrame:
    """One step profile per (configuration, batch) of ``model``: the one of ``run_id`` (the run the summary
    reports) where it has one, else the latest run's; several runs' profiles of the same configuration would
    quote the same step twice with the host's spread between them."""
    if profile.empty:
        return profile
    rows = profile[profile["model"] == model].copy()
    rows["_preferred"] = rows["run_id"].astype(str) == str(run_id)
    rows = rows.sort_values(["_preferred", "run_id"])
    rows = rows.drop_duplicates(["optimize", "waveforms_per_prompt"], keep="last")
    return rows.drop(columns="_preferred").sort_values(["optimize", "waveforms_per_prompt"])


def step_time(optimize: str, eager_step_ms: float, graph_step_ms: float) -> tuple[float, str]:
    """The time of one denoiser step as the configuration runs it, and how it runs: a profile times the
    configuration's denoiser, and again without the manually captured CUDA graph where it has one (for
    ``compile-graphs`` the compiled module replays its own CUDA graph trees, so there is one time)."""
    try:
        levers = parse_levers(optimize)
    except LeverError:
        levers = None
    compiled = levers is not None and levers.compiled
    if math.isfinite(graph_step_ms):
        return graph_step_ms, (f"as a CUDA graph ({_fmt(eager_step_ms)} ms "
                               f"{'compiled' if compiled else 'eager'} without it)")
    if compiled and levers.compile_mode == "reduce-overhead":
        return eager_step_ms, "compiled, replayed by CUDA graph trees"
    return eager_step_ms, "compiled, without CUDA graphs" if compiled else "eager"


def _limits_text(model: str, best: pd.Series | None, profile: pd.DataFrame) -> str:
    """What the measurements say limits a model: the eager share of the generation outside the denoising
    loop, launch gaps, the kernel mix of a step, and the time its FLOPs would take at the ceiling's rate."""
    parts = []
    if best is not None and math.isfinite(float(best.get("denoising_share", np.nan))):
        other = 1.0 - float(best["denoising_share"])
        parts.append(f"outside the denoising loop (text encoding, decoding, vocoder; eager) {other:.0%} of "
                     f"`{best['optimize']}`'s energy")
    run_id = None if best is None else best.get("run_id")
    for r in profile_rows(model, profile, run_id).itertuples():
        k = max(float(r.kernel_ms), 1e-9)
        mix = (f"matmul {r.matmul_ms / k:.0%}, conv {r.conv_ms / k:.0%}, attention {r.attention_ms / k:.0%}, "
               f"other (elementwise, normalisation, copies: memory-bound) {r.other_ms / k:.0%}")
        if r.optimize == DEFAULT_SPEC:
            busy = k / max(float(r.eager_step_ms), 1e-9)
            parts.append(f"`none` batch {r.waveforms_per_prompt}: an eager step takes "
                         f"{_fmt(r.eager_step_ms)} ms with kernels busy {_fmt(r.kernel_ms)} ms ({busy:.0%}; "
                         f"the rest is launch overhead)")
        else:
            ms, how = step_time(str(r.optimize), float(r.eager_step_ms), float(r.graph_step_ms))
            share = f"{r.flop_bound_ms / ms:.0%}" if ms > 0 and math.isfinite(ms) else "n/a"
            parts.append(f"`{r.optimize}` batch {r.waveforms_per_prompt}: a step takes {_fmt(ms)} ms {how}; "
                         f"kernels {_fmt(r.kernel_ms)} ms: {mix}; its FLOPs at the ceiling's rate would take "
                         f"{_fmt(r.flop_bound_ms, '.3f')} ms ({share} of the step)")
    return "; ".join(parts) if parts else "no step profile measured"


def reduction_miss(head: str, best: pd.Series, none_J: float, target: float, batch: int,
                   profile: pd.DataFrame) -> str:
    """The line of a missed reduction target, ``head`` first: by how much, the most a free denoising loop
    would give with the rest of the generation as measured, the fraction of the ceiling the target needs
    against what ``best`` reaches, and what the step profiles say limits it."""
    red = none_J / float(best["gpu_energy_J_per_clip"])
    outside = float(best["gpu_energy_J_per_clip"]) * (1.0 - float(best["denoising_share"]))
    bound = none_J / outside if outside > 0 else float("nan")
    # the FLOP/J the whole generation would need for the target, against the ceiling of the same run
    need = float(best["gflop"]) / 1e3 * target / none_J / float(best["ceiling_tflop_per_J"])
    reached = float(best["fraction_of_ceiling"]) * 100
    return (f"- {head}, short of {target}x by a factor {target / red:.2f}. With the rest of the generation "
            f"as measured, even a free denoising loop would give at most {_fmt(bound)}x. The target needs "
            f"{_fmt(need * 100, '.0f')}% of the ceiling's FLOP per joule over the whole generation at batch "
            f"{batch}; `{best['optimize']}` reaches {_fmt(reached, '.0f')}%. "
            "Measured: " + _limits_text(str(best["model"]), best, profile) + ".")


def best_any_precision(cell: pd.DataFrame, steps: int, batch: int,
                       profile: pd.DataFrame | None = None
                       ) -> tuple[list[str], list[str], list[dict[str, object]]]:
    """Markdown lines: per model, the configuration with the largest reduction against ``none`` at any
    precision (each in its own run, :func:`~tta_energy.levers.report.configuration_rows`; the least energy
    per clip where no run measured ``none``; fp8 included; not ``trim-latents``, which computes a shorter
    clip), with its error against fp32, the verdict and the model's any-precision target; and a line per
    target missed, with what ``profile`` (the step profiles) says limits it (:func:`reduction_miss`); and the
    status of each model's any-precision target (:func:`target_status`)."""
    lines = ["", f"## Whole generation, {steps} steps, batch {batch}: best at any precision, with its error",
             ""]
    header = ["model", "configuration", "dtype", "J/clip", "reduction", "latents error",
              "study default's error", "lossless", "target", "met"]
    table_rows: list[list[object]] = []
    misses: list[str] = []
    statuses: list[dict[str, object]] = []
    for model in sorted(cell["model"].unique()):
        target = lever_targets(model).any_precision_reduction
        wanted = f"{target}x" if target else ""
        rows = cell[(cell["model"] == model) & (cell["optimize"] != REFERENCE_SPEC)
                    & cell["gpu_energy_J_per_clip"].notna()
                    & ~cell["optimize"].map(lambda spec: parse_levers(spec).trim_latents)]
        if rows.empty:
            table_rows.append([model, "n/a", *[""] * 6, wanted, "not measured" if target else ""])
            if target:
                statuses.append(target_status(ANY_PRECISION_TARGET, model, target, None))
            continue
        within = configuration_rows(rows, rows)  # each configuration in its own run, as the lossless table
        r = (largest_reduction(within) if not within.empty
             else rows.loc[rows["gpu_energy_J_per_clip"].idxmin()])
        red = float(r["reduction_vs_none"])
        status = target_status(ANY_PRECISION_TARGET, model, target, r, red) if target else None
        met = "" if status is None else {None: "n/a", True: "yes", False: "no"}[status["met"]]
        if status is not None:
            statuses.append(status)
        table_rows.append([model, f"`{r['optimize']}`", r["dtype"], f"{r['gpu_energy_J_per_clip']:.1f}",
                           _ratio(red), _fmt(float(r["rel_error_latents"]), ".2e"),
                           _fmt(float(r["yardstick_latents"]), ".2e"), "yes" if r["lossless"] else "no",
                           wanted, met])
        if met == "no":
            none_J = float(rows.loc[(rows["run_id"] == r["run_id"]) & (rows["optimize"] == DEFAULT_SPEC),
                                    "gpu_energy_J_per_clip"].iloc[0])
            misses.append(reduction_miss(f"**{model}** (any precision): {red:.2f}x with `{r['optimize']}` "
                                         f"({r['dtype']})", r, none_J, target, batch,
                                         pd.DataFrame() if profile is None else profile))
    lines.append(markdown.table(header, table_rows))
    return lines, misses, statuses


def _fp8_limits(best: pd.Series, table: pd.DataFrame, profile: pd.DataFrame, fp8_over_bf16: float) -> str:
    """What limits a float8 configuration ``best``: float8 runs the linear layers only, so the matrix
    products' share of a 16-bit step's kernel time bounds what the fp8 ceiling's rate (``fp8_over_bf16`` times
    the bf16 one's FLOP per joule) can give (Amdahl's law), against what the same configuration without
    float8 reaches; and the share of the generation outside the denoising loop, which stays eager."""
    model, batch = str(best["model"]), int(best["waveforms_per_prompt"])
    parts = []
    if math.isfinite(float(best.get("denoising_share", np.nan))):
        parts.append(f"outside the denoising loop (eager) {1.0 - float(best['denoising_share']):.0%} of its "
                     "energy")
    base = parse_levers(str(best["optimize"])).without("fp8").spec
    same = table[(table["model"] == model) & (table["optimize"] == base)
                 & (table["waveforms_per_prompt"] <= batch) & table["tflop_per_J"].notna()]
    if not same.empty:  # at the largest batch measured up to the float8 one's
        top = same[same["waveforms_per_prompt"] == same["waveforms_per_prompt"].max()]
        r = top.loc[top["tflop_per_J"].idxmax()]
        parts.append(f"`{base}` without float8 reaches {r['tflop_per_J']:.3f} TFLOP/J at batch "
                     f"{int(r['waveforms_per_prompt'])}, so float8 gave "
                     f"{float(best['tflop_per_J']) / float(r['tflop_per_J']):.2f}x")
    rows = profile_rows(model, profile)
    if not rows.empty:
        parsed = rows["optimize"].map(parse_levers)
        rows = rows[parsed.map(lambda levers: not levers.is_none and not levers.fp8)]
    if not rows.empty and math.isfinite(fp8_over_bf16) and fp8_over_bf16 > 0:
        # the profiled 16-bit configuration nearest the float8 one in batch size, a compiled one first
        compiled = rows["optimize"].map(lambda spec: parse_levers(spec).compiled)
        order = pd.DataFrame({"compiled": compiled, "gap": (rows["waveforms_per_prompt"] - batch).abs()})
        r = rows.loc[order.sort_values(["compiled", "gap"], ascending=[False, True]).index[0]]
        k = max(float(r["kernel_ms"]), 1e-9)
        share = float(r["matmul_ms"]) / k
        bound = 1.0 / (1.0 - share + share / fp8_over_bf16)
        parts.append(f"float8 runs the linear layers only: in the step profile of `{r['optimize']}` (batch "
                     f"{int(r['waveforms_per_prompt'])}) matrix products take {share:.0%} of the kernel "
                     f"time, attention {float(r['attention_ms']) / k:.0%} and the rest "
                     f"{(float(r['conv_ms']) + float(r['other_ms'])) / k:.0%}; with the fp8 ceiling "
                     f"{fp8_over_bf16:.2f}x the bf16 one, float8 matrix products at its rate would make that "
                     f"step at most {bound:.2f}x as efficient")
    return "; ".join(parts) if parts else "no step profile measured"


def fp8_lines(table: pd.DataFrame, profile: pd.DataFrame | None = None,
              fp8_over_bf16: float = float("nan")
              ) -> tuple[list[str], list[str], list[dict[str, object]]]:
    """Markdown lines: per model with an fp8 target, its best float8 configuration's FLOP per joule (any
    batch size) against the target; and a line per target missed or not measured, with what limits it
    (``profile``: the step profiles; ``fp8_over_bf16``: the fp8 ceiling's FLOP per joule over the bf16
    one's); and the status of each fp8 target (:func:`target_status`)."""
    lines: list[str] = []
    misses: list[str] = []
    statuses: list[dict[str, object]] = []
    for model in sorted(table["model"].unique()):
        target = lever_targets(model).fp8_tflop_per_J
        if not target:
            continue
        rows = table[(table["model"] == model) & table["optimize"].map(lambda spec: parse_levers(spec).fp8)
                     & table["tflop_per_J"].notna()]
        if rows.empty:
            lines.append(f"- {model}: no float8 configuration measured (target {target} TFLOP/J)")
            statuses.append(target_status(FP8_TARGET, model, target, None))
            continue
        best = rows.loc[rows["tflop_per_J"].idxmax()]
        got = float(best["tflop_per_J"])
        statuses.append(target_status(FP8_TARGET, model, target, best, got))
        verdict = "met" if statuses[-1]["met"] else "missed"
        text = (f"{model} `{best['optimize']}`, {int(best['steps'])} steps, batch "
                f"{int(best['waveforms_per_prompt'])}: {got:.3f} TFLOP/J against a target of {target} "
                f"({verdict}); latents error {_fmt(float(best['rel_error_latents']), '.2e')} "
                "(changes the output)")
        lines.append(f"- {text}")
        if not statuses[-1]["met"]:
            limits = _fp8_limits(best, table, pd.DataFrame() if profile is None else profile, fp8_over_bf16)
            misses.append(f"- **{model}** (fp8): {text}, short of {target} by a factor {target / got:.2f}. "
                          f"Measured: {limits}.")
    if lines:
        lines = ["", "## Float8 linear layers (changes the output)", "", *lines]
    return lines, misses, statuses


def _listed(title: str, intro: str, items: Sequence[str]) -> list[str]:
    """A summary section of ``items`` as a bullet list under ``title`` and ``intro``; none without items."""
    return ["", f"## {title}", "", intro, "", *(f"- {item}" for item in items)] if items else []


def summary_markdown(table: pd.DataFrame, ceiling: pd.DataFrame, profile: pd.DataFrame,
                     losses: pd.DataFrame | None = None, failed: pd.DataFrame | None = None) -> str:
    """The text of :func:`levers_summary`."""
    return levers_summary(table, ceiling, profile, losses, failed)[0]


def levers_summary(table: pd.DataFrame, ceiling: pd.DataFrame, profile: pd.DataFrame,
                   losses: pd.DataFrame | None = None,
                   failed: pd.DataFrame | None = None) -> tuple[str, pd.DataFrame]:
    """The short markdown summary: each target met or missed (by how much, and the measured limits), the
    configurations that lost the CUDA context (``losses``, from ``context_losses``) and those that failed
    otherwise (``failed``, from ``generation_failures``); and each target's status as a table
    (:data:`TARGET_COLUMNS`, written as ``levers_targets.csv``)."""
    steps, batch = target_cell(table)
    duration = float(table["duration_s"].iloc[0]) if "duration_s" in table else STUDY_DURATION_S
    lines = ["# Energy levers: summary", ""]
    fp8 = ceiling_rows(ceiling, "fp8")
    ceiling = ceiling_rows(ceiling, "bf16")
    if not ceiling.empty:
        c = ceiling
        gpu = ", ".join(sorted({str(g) for g in c.get("gpu_name", pd.Series(dtype=str)).dropna() if str(g)}))
        lines.append(f"Ceiling (bf16 {int(c['n'].iloc[0])}^3 matrix products, measured with the project's "
                     f"meter at the start of each run and the end of each call{', ' + gpu if gpu else ''}): "
                     f"{_fmt(c['tflop_per_J'].mean(), '.3f')} TFLOP/J (range "
                     f"{_fmt(c['tflop_per_J'].min(), '.3f')}-{_fmt(c['tflop_per_J'].max(), '.3f')}), "
                     f"{_fmt(c['tflop_per_s'].mean(), '.3g')} TFLOP/s at "
                     f"{_fmt(c['power_W'].mean(), '.0f')} W.")
        if not fp8.empty:
            lines.append(f"FP8 ceiling (e4m3 `torch._scaled_mm`, bf16 output, same loop): "
                         f"{_fmt(fp8['tflop_per_J'].mean(), '.3f')} TFLOP/J, "
                         f"{_fmt(fp8['tflop_per_s'].mean(), '.3g')} TFLOP/s at "
                         f"{_fmt(fp8['power_W'].mean(), '.0f')} W.")
        lines.append("")
    floors = ", ".join(f"{name} {ERROR_FLOOR[d]:.1e}".replace("e-0", "e-") for name, d in PRECISIONS.items())
    lines += ["Lossless: final latents and waveform of the same seed and weights within "
              f"{YARDSTICK_FACTOR:g} x the error of the study's default (`{DEFAULT_SPEC}`: the model's "
              "default precision, eager) of the fp32 eager reference (relative L2 error; a floor at that "
              f"precision, {floors}, where that error is 0). A configuration is not judged lossless where "
              "the default's latents error was not measured at that step count; where its waveform error "
              "was not measured the waveform is held to the floor, and where that error is >= "
              f"{UNINFORMATIVE_ERROR} the waveform is not judged (the latents decide). The fp32 reference "
              f"(`{REFERENCE_SPEC}`) is lossless by definition. The yardstick "
              "does not follow a configuration's precision: an fp16 configuration of a model the study ran "
              "in fp32 is judged against the fp32 default's error. `trim-latents` and `fp8` change the "
              "computation and are never lossless.", "",
              "Each configuration's reduction is taken within one run (one process): of the runs that "
              "measured it, the one with the most repeats of `none` in the cell, the latest of equals; the "
              "best configuration is the one with the largest reduction, given with its 95% interval over "
              "the run's repeats (delta method on the log scale). The eager default of a launch-bound model "
              "moves by tens of percent between processes (`none` in every run of the cell: the interval "
              "does not hold that spread), so a reduction across runs would measure the host as much as the "
              "lever.", "",
              f"## Whole generation, {duration:g} s, {steps} steps, batch {batch}: best lossless "
              "configuration at the study's precision vs `none`", ""]
    lossless_rows: list[list[object]] = []
    misses: list[str] = []
    unmeasured: list[str] = []
    statuses: list[dict[str, object]] = []
    cell = table[(table["steps"] == steps) & (table["waveforms_per_prompt"] == batch)]
    chosen = best_lossless(table, batch, steps).set_index("model")
    for model in sorted(table["model"].unique()):
        target = lever_targets(model).reduction or float("nan")
        if model not in chosen.index:
            lossless_rows.append([model, "n/a", "n/a", "n/a", "n/a", f"{target}x", "not measured", "", ""])
            unmeasured.append(f"- {model}: no GPU energy for `none` and a lossless configuration at {steps} "
                              f"steps, batch {batch}")
            if np.isfinite(target):  # a model of one's own may have no such target
                statuses.append(target_status(LOSSLESS_TARGET, model, target, None))
            continue
        pick = chosen.loc[model]
        best = table.loc[pick["best_index"]]
        none_J = float(pick["none_J"])
        red = float(pick["ratio"])
        status = target_status(LOSSLESS_TARGET, model, target, best, red)
        if np.isfinite(target):
            statuses.append(status)
        met = status["met"]
        nones = cell.loc[(cell["model"] == model) & (cell["optimize"] == DEFAULT_SPEC),
                         "gpu_energy_J_per_clip"].dropna()
        low, high = nones.min(), nones.max()
        spread = f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"
        lossless_rows.append([model, f"{none_J:.1f}", f"`{best['optimize']}`",
                              f"{best['gpu_energy_J_per_clip']:.1f}", f"{red:.2f}x", f"{target}x",
                              "yes" if met else "no", f"{spread} ({len(nones)})",
                              _interval(pick["ratio_low"], pick["ratio_high"])])
        if not met:
            misses.append(reduction_miss(f"**{model}**: {red:.2f}x", best, none_J, target, batch, profile))
    lines.append(markdown.table(["model", "`none` J/clip", "best lossless", "J/clip", "reduction", "target",
                                 "met", "`none` J/clip, every run (runs)", "reduction, 95% CI in its run"],
                                lossless_rows))
    any_lines, any_misses, any_statuses = best_any_precision(cell, steps, batch, profile)
    lines += any_lines
    misses += any_misses
    statuses += any_statuses
    lines += ["", "## Best lossless configuration at any batch size: FLOP per joule against the ceiling", "",
              "`best at any precision`: the configuration with the highest fraction among those that keep "
              "the computation, lossless or not (not `fp8` or `trim-latents`), where it is another; the "
              "figure's third bar. `levers_targets.csv` judges it against the same target "
              f"(`{CEILING_ANY_PRECISION_TARGET}`).", ""]
    fraction_rows: list[list[object]] = []
    for model in sorted(table["model"].unique()):
        best = best_fraction(table, model)
        anywhere = best_fraction(table, model, lossless=False)
        other = "same"
        if anywhere is not None and (best is None or anywhere.name != best.name):
            other = (f"`{anywhere['optimize']}` ({anywhere['dtype']}), {int(anywhere['steps'])} steps, "
                     f"batch {int(anywhere['waveforms_per_prompt'])}: "
                     f"{float(anywhere['fraction_of_ceiling']):.0%}")
        target = lever_targets(model).ceiling_fraction
        frac = float("nan") if best is None else float(best["fraction_of_ceiling"])
        any_frac = float("nan") if anywhere is None else float(anywhere["fraction_of_ceiling"])
        statuses.append(target_status(CEILING_TARGET, model, target, best, frac))
        met = statuses[-1]["met"]
        statuses.append(target_status(CEILING_ANY_PRECISION_TARGET, model, target, anywhere, any_frac))
        if best is None:
            fraction_rows.append([model, "n/a", "", "", "", "n/a", f"{target:.0%}", "not measured", other])
            unmeasured.append(f"- {model}: no FLOP per joule (GPU energy or ceiling missing)")
            continue
        fraction_rows.append([model, f"`{best['optimize']}`", int(best["steps"]),
                              int(best["waveforms_per_prompt"]), f"{best['tflop_per_J']:.3f}", f"{frac:.0%}",
                              f"{target:.0%}", "yes" if met else "no", other])
        if not met:
            misses.append(f"- **{model}** (ceiling): {frac:.0%} of the ceiling's FLOP/J, short of "
                          f"{target:.0%} by {(target - frac) * 100:.0f} points (`{best['optimize']}`, "
                          f"{int(best['steps'])} steps, batch {int(best['waveforms_per_prompt'])}). "
                          + ("" if other == "same" else f"At any precision: {other}. ")
                          + "Measured: " + _limits_text(model, best, profile) + ".")
    lines.append(markdown.table(["model", "configuration", "steps", "batch", "TFLOP/J", "fraction of ceiling",
                                 "target", "met", "best at any precision"], fraction_rows))
    ratio = (float(fp8["tflop_per_J"].mean() / ceiling["tflop_per_J"].mean())
             if not fp8.empty and not ceiling.empty else float("nan"))
    fp8_text, fp8_misses, fp8_statuses = fp8_lines(table, profile, ratio)
    lines += fp8_text
    misses += fp8_misses
    statuses += fp8_statuses
    lines += ["", "## Targets missed and what limits them", ""]
    if misses:
        lines += misses
    elif unmeasured:
        lines.append("No measured target was missed; some were not measured:")
    else:
        lines.append("All targets met.")
    lines += unmeasured
    flagged = table[(~table["lossless"]) & (table["optimize"] != REFERENCE_SPEC)
                    & (table["waveforms_per_prompt"] == table["waveforms_per_prompt"].min())]
    lines += ["", "## Levers that change the output beyond the study default's error", ""]
    if flagged.empty:
        lines.append("None.")
    else:
        for r in flagged.drop_duplicates(["model", "optimize"]).itertuples():
            why = "changes the model's behaviour by design" if r.changes_behaviour else (
                f"latents error {_fmt(r.rel_error_latents, '.2e')} (tolerance "
                f"{_fmt(r.tolerance_latents, '.2e')}), waveform {_fmt(r.rel_error_audio, '.2e')} (tolerance "
                f"{_fmt(r.tolerance_audio, '.2e')})")
            lines.append(f"- {r.model} `{r.optimize}` ({r.dtype}): {why}")
    if losses is not None:
        lines += _listed("Configurations that lost the CUDA context",
                         "A CUDA error after which nothing more runs in the process: the run's later "
                         "generations failed with it. Another card tries the configuration once more at that "
                         "batch size; after a loss on two cards, calls leave it out.",
                         [f"{r.model} `{r.optimize}`, batch {r.waveforms_per_prompt}"
                          f"{' (warm-up)' if r.is_warmup else ''}, run {r.run_id}: {r.error}"
                          for r in losses.itertuples()])
    if failed is not None:
        lines += _listed("Configurations that failed",
                         "A warm-up or generation that failed (out of memory, an error, NaN audio) in a run "
                         "that measured none of that configuration at that batch size. Later calls try it "
                         "once more; after failures in two runs they leave it out.",
                         [f"{r.model} `{r.optimize}`, batch {r.waveforms_per_prompt}"
                          f"{'' if r.is_warmup else f', {int(r.steps)} steps'}, {failure_where(r)}, "
                          f"run {r.run_id}: {r.error}" for r in failed.itertuples()])
    trims = table[table["optimize"].map(lambda spec: parse_levers(spec).trim_latents)
                  & table["gpu_energy_J_per_clip"].notna()]
    if not trims.empty:
        lines += ["", "## Stable Audio Open: computing only the requested length (`trim-latents`, changes "
                  "the output)", ""]
        keyed = table.set_index(["run_id", "model", "optimize", "steps", "waveforms_per_prompt"])
        trim_rows: list[list[object]] = []
        for r in trims.itertuples():
            base = parse_levers(r.optimize).without("trim-latents").spec
            key = (r.run_id, r.model, base, r.steps, r.waveforms_per_prompt)
            other = float(keyed["gpu_energy_J_per_clip"].get(key, np.nan))
            trim_rows.append([f"`{r.optimize}`", r.steps, r.waveforms_per_prompt,
                              f"{r.gpu_energy_J_per_clip:.1f}", f"`{base}` {_fmt(other, '.1f')}",
                              _ratio(other / r.gpu_energy_J_per_clip)])
        lines.append(markdown.table(["configuration", "steps", "batch", "J/clip", "same without trim",
                                     "saving"], trim_rows))
    every = cell[cell["gpu_energy_J_per_clip"].notna()]
    every = every.sort_values(["model", "gpu_energy_J_per_clip"])
    if not every.empty:
        lines += ["", f"## Every configuration at {steps} steps, batch {batch}", "",
                  "Reductions are against `none` of the same run (`run`); n/a where that run did not measure "
                  "`none` in this cell.", "",
                  markdown.table(["model", "configuration", "dtype", "J/clip", "denoising J/call",
                                  "reduction vs `none`", "latents error", "lossless", "run"],
                                 [[r.model, f"`{r.optimize}`", r.dtype, f"{r.gpu_energy_J_per_clip:.1f}",
                                   _fmt(r.denoising_J_per_call, ".3f"), _ratio(r.reduction_vs_none),
                                   _fmt(r.rel_error_latents, ".1e"), "yes" if r.lossless else "no", r.run_id]
                                  for r in every.itertuples()])]
    comp = table[table["compile_J"].notna() & (table["steps"] == steps) & (table["optimize"] != DEFAULT_SPEC)
                 & (table["optimize"] != REFERENCE_SPEC)]
    if not comp.empty:
        lines += ["", f"## One-time cost (compilation, graph capture, lazy set-up) and payoff, {steps} steps",
                  "",
                  "`from cache`: the share of the compiled graphs the compile cache served (0: compiled "
                  "anew, what a fresh machine pays; n/a: nothing compiled, or a run before the count).", ""]
        comp_rows: list[list[object]] = []
        for r in comp.itertuples():
            pay = ("n/a" if np.isnan(r.payoff_clips) else "never" if not math.isfinite(r.payoff_clips)
                   else "at once" if r.payoff_clips == 0 else f"{int(r.payoff_clips)}")
            comp_rows.append([r.model, f"`{r.optimize}`", r.waveforms_per_prompt,
                              _fmt(r.compile_s, ".1f"), _fmt(r.compile_J, ".0f"),
                              _fmt(r.compile_cache_hit_share, ".0%"), pay])
        lines.append(markdown.table(["model", "configuration", "batch", "one-time s", "one-time J",
                                     "from cache", "pays off after (clips)"], comp_rows))
        if comp["payoff_clips"].isna().any():
            lines += ["", "n/a: the run measured no `none` at that batch size and step count, so there is no "
                          "saving per clip to pay the one-time cost back."]
    lines.append("")
    targets = pd.DataFrame(statuses, columns=TARGET_COLUMNS).astype(TARGET_NULLABLE)
    return "\n".join(lines), targets
