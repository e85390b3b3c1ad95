"""The generated blocks of docs/meter.md, docs/levers.md, docs/quality.md and data/validation/README.md.

Each block renders numbers from one committed file: the meter validation under ``data/validation/``, the
levers tables under ``data/h200/``, the quality benchmarks' outputs under ``benchmarks/results/`` and the
caption files bundled with the package. :mod:`tta_energy.analysis.docs_numbers` registers them with the
other blocks; a block whose file is missing says so instead of quoting a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from tta_energy import schema
from tta_energy.experiments.meter_validation import report
from tta_energy.experiments.meter_validation.protocol import DEFAULT_METHOD
from tta_energy.levers.spec import DEFAULT_SPEC, REFERENCE_SPEC, parse_levers
from tta_energy.levers.tables import CONFIGS_FILE, LEVERS_TABLE, PROFILE_FILE, RUNS_FILE
from tta_energy.models import catalogue
from tta_energy.quality.clap_score import bundled_captions

#: The quick meter validation run on the H200 that the meter's documentation discusses.
QUICK_VALIDATION = "validation/quick-2026-11-29"
#: The validation's methods as the prose names them (`meter.csv` keys); ``meter_split`` is the meter.
VALIDATION_METHODS = {
    "meter_split": "the meter",
    "raw_counter": "the raw counter",
    "zeus": "Zeus",
    "codecarbon": "CodeCarbon",
}
#: The peers of the meter in the validation benchmark, as `meter.csv` names them.
PEERS = ("raw_counter", "zeus", "codecarbon")
#: The validation's workloads as the prose names them, by the prefix of their `meter.csv` name.
WORKLOAD_NAMES = {"matmul": "matmul", "unet": "UNet"}
#: Attention backends as the prose names them (`levers_configs.csv` keys).
BACKEND_NAMES = {
    "cudnn": "cuDNN",
    "efficient": "the memory-efficient kernel",
    "flash": "FlashAttention",
    "math": "the math kernel",
}


class HasData(Protocol):
    data: Path

    @property
    def levers(self) -> pd.DataFrame: ...


def _range(low: float, high: float, fmt: str = ".0f", unit: str = "") -> str:
    """``a–b`` (or ``a`` where both ends print alike) with an optional unit."""
    a, b = format(low, fmt), format(high, fmt)
    return f"{a}{unit}" if a == b else f"{a}–{b}{unit}"


def _sci(value: float, digits: int = 2) -> str:
    """``2.84e-3``: scientific notation without the exponent's padding, as the prose writes it."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _minus(text: str) -> str:
    """The typographic minus sign the prose uses."""
    return "−" + text[1:] if text.startswith("-") else text


def _missing(path: Path) -> str:
    return f"no `{path.name}` committed yet (0 rows)"


# --------------------------------------------------------------------------------------------------------
# docs/meter.md: the quick validation run


def _quick(d: HasData) -> pd.DataFrame:
    path = d.data / QUICK_VALIDATION / report.METER_TABLE
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def truth_blocks(summary: Path) -> pd.DataFrame:
    """The *Ground truth blocks* table of a `meter_summary.md` (empty without one)."""
    if not summary.is_file():
        return pd.DataFrame()
    section = summary.read_text(encoding="utf-8").split("## Ground truth blocks", 1)[-1].split("\n## ", 1)[0]
    lines = section.strip().splitlines()
    table = lines[: next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]
    rows = [line.strip().strip("|").split("|") for line in table]
    header = [cell.strip() for cell in rows[0]]
    body = [[cell.strip() for cell in row] for row in rows[2:]]
    frame = pd.DataFrame(body, columns=header)
    return frame.astype({c: float for c in header if c != "workload"})


def block_meter_counter_interval(d: HasData) -> str:
    """How often the H200's energy counter changed at idle in the full validation run (its summary)."""
    path = d.data / "validation" / report.METER_SUMMARY
    found = (
        re.search(r"`counter_idle`: n=(\d+), mean_ms=([\d.]+)", path.read_text(encoding="utf-8"))
        if path.is_file()
        else None
    )
    if found is None:
        return _missing(path)
    source = f"`data/validation/{report.METER_SUMMARY}`"
    return f"about every {float(found[2]):.0f} ms (mean over {found[1]} idle intervals, {source})"


def block_meter_truth_span(d: HasData) -> str:
    """The counter span of the full run's truth blocks and the timing error of their ends (±0.5 ms each)."""
    truth = truth_blocks(d.data / "validation" / report.METER_SUMMARY)
    if truth.empty:
        return _missing(d.data / "validation" / report.METER_SUMMARY)
    span = truth["counter_span_s"]
    return f"~{_range(span.min(), span.max(), fmt='.1f')} s apart: {1e-3 / span.min():.2%}"


def block_meter_quick_unet(d: HasData) -> str:
    """The eager UNet of the quick run: truth blocks' time and power, the 2-s windows' step time and error."""
    runs = _quick(d)
    truth = truth_blocks(d.data / QUICK_VALIDATION / report.METER_SUMMARY)
    if runs.empty or truth.empty:
        return _missing(d.data / QUICK_VALIDATION / report.METER_TABLE)
    blocks = truth[truth["workload"].str.startswith("unet")]
    steady = runs[runs["workload"].str.startswith("unet") & (runs["scenario"] == "steady")]
    longest = steady[steady["window_target_s"] == steady["window_target_s"].max()]
    step_ms = 1000 * longest["window_s"] / longest["iterations"]
    truth_ms = _range(1000 * blocks["t_iter"].min(), 1000 * blocks["t_iter"].max())
    return (
        f"~{truth_ms} ms per step at ~{blocks['power_W'].mean():.0f} W): its energy per iteration follows "
        "the "
        f"CPU side's speed, which differed between the long truth blocks ({truth_ms} ms per step) and the "
        f"{longest['window_target_s'].iloc[0]:.0f}-s windows ({_range(step_ms.min(), step_ms.max())} ms per "
        f"step), so *every* method over those windows, the raw counter included, read "
        f"{_range(100 * longest['rel_error'].min(), 100 * longest['rel_error'].max(), unit=' %')} above the "
        '"truth"'
    )


def _steady_matmul(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["workload"].str.startswith("matmul") & (runs["scenario"] == "steady")]


def block_meter_quick_gaps(d: HasData) -> str:
    """The worst error of split and linear on the quick run's 0.2 s steady matmul windows."""
    runs = _quick(d)
    if runs.empty:
        return _missing(d.data / QUICK_VALIDATION / report.METER_TABLE)
    short = _steady_matmul(runs)
    short = short[
        (short["window_target_s"] == short["window_target_s"].min())
        & short["method"].isin(["meter_split", "meter_linear"])
    ]
    return (
        f"split/linear up to {100 * short['rel_error'].abs().max():.0f} % at "
        f"{short['window_target_s'].iloc[0]:g} s on the matmul"
    )


def block_meter_quick_matmul(d: HasData) -> str:
    """Worst and mean absolute error of split, linear and the peers on the quick run's >= 1 s matmul."""
    runs = _quick(d)
    if runs.empty:
        return _missing(d.data / QUICK_VALIDATION / report.METER_TABLE)
    long = _steady_matmul(runs)
    long = long[long["window_target_s"] >= 1]
    err = long.groupby("method")["rel_error"]
    worst, mean = 100 * err.apply(lambda s: s.abs().max()), 100 * err.apply(lambda s: s.abs().mean())
    trials = long.groupby(["method", "window_target_s"]).size()
    peers = worst[[p for p in PEERS if p in worst.index]]
    return (
        f"With {_range(trials.min(), trials.max())} trials per window, the ≥ 1 s windows of the matmul gave "
        "split "
        f"{worst['meter_split']:.2f}% / linear {worst['meter_linear']:.2f}% worst case (mean abs "
        f"{mean['meter_split']:.2f}% / {mean['meter_linear']:.2f}%), the peers "
        f"({_names(peers.index)}) {_range(peers.min(), peers.max(), unit=' %')} worst case"
    )


# --------------------------------------------------------------------------------------------------------
# README.md and data/validation/README.md: the full validation run


def _names(methods: Any) -> str:
    return ", ".join(VALIDATION_METHODS[m] for m in methods)


def _validation_targets(d: HasData) -> list[dict[str, Any]]:
    """The targets' verdicts of ``data/validation/meter.csv`` (:func:`.report.check_targets`), if any."""
    path = d.data / "validation" / report.METER_TABLE
    return report.check_targets(pd.read_csv(path)) if path.is_file() else []


def block_meter_validation(d: HasData) -> str:
    """The meter and its peers on the steady windows of at least 1 s (their worst case)."""
    targets = _validation_targets(d)
    if not targets:
        return "not measured yet"
    target = targets[0]
    by_method = target["by_method"]
    peers = [m for m in PEERS if m in by_method]
    verdict = "met" if by_method[DEFAULT_METHOD]["met"] else "not met"
    return (
        f"≥ 1 s windows within {by_method[DEFAULT_METHOD]['max_abs_pct']:.1f}% of the reference, the GPU's "
        f"own energy counter over long back-to-back blocks, not an external meter (largest of "
        f"{by_method[DEFAULT_METHOD]['n']} windows; the {target['limit_pct']:g}% target {verdict}); "
        f"{_names(peers)} reach " + ", ".join(f"{by_method[m]['max_abs_pct']:.1f}%" for m in peers)
        + " on the same windows"
    )


def _workload(name: str) -> str:
    return next((label for prefix, label in WORKLOAD_NAMES.items() if name.startswith(prefix)), name)


def block_validation_result(d: HasData) -> str:
    """The full run's verdicts: the two accuracy targets, the truth blocks' own spread and the overhead."""
    path = d.data / "validation" / report.METER_TABLE
    targets = _validation_targets(d)
    if not targets:
        return _missing(path)
    long, short, overhead = targets
    mine, peers = long["by_method"][DEFAULT_METHOD], [m for m in PEERS if m in long["by_method"]]
    truth = truth_blocks(d.data / "validation" / report.METER_SUMMARY)
    unet = truth[truth["workload"].str.startswith("unet")]["e_iter"]
    repeated = short["by_method"][f"{DEFAULT_METHOD}_repeated_1s"]
    single = short["by_method"]
    short_peers = [single[m]["max_abs_pct"] for m in PEERS if m in single]
    rows = report.overhead_summary(pd.read_csv(path))
    sampler = rows[rows["method"] == "sampler_process"]
    verdicts = {report.overhead_verdict(r.overhead_pct, r.ci95_pct).split(" (")[0]
                for r in sampler.itertuples()}
    return (
        f"windows ≥ 1 s: max deviation {mine['max_abs_pct']:.2f}% (mean abs {mine['mean_abs_pct']:.2f}%, "
        f"bias {mine['bias_pct']:+.2f}%, n = {mine['n']}) against the {long['limit_pct']:g}% target, "
        f"{'met' if long['met'] else 'not met'} — the UNet's truth blocks themselves spread over "
        f"{100 * (unet.max() - unet.min()) / unet.mean():.2f}% of their mean "
        f"({_range(unet.min(), unet.max(), fmt='.3f')} J/iteration); {_names(peers)} reach "
        + ", ".join(f"{long['by_method'][m]['max_abs_pct']:.1f}%" for m in peers)
        + " on the same windows. 0.2 s calls: with the meter's repetition mode (`min_window_s=1`, the mode "
        f"the sweeps use for generations shorter than 1 s) max {repeated['max_abs_pct']:.2f}% against the "
        f"{short['limit_pct']:g}% target ({'met' if repeated['met'] else 'not met'}); a single 0.2 s window "
        f"reaches {single[DEFAULT_METHOD]['max_abs_pct']:.2f}% (split) / "
        f"{single['meter_linear']['max_abs_pct']:.2f}% (linear) against "
        f"{_range(min(short_peers), max(short_peers), fmt='.1f')}% for the peers and "
        f"{single['meter_naive']['max_abs_pct']:.0f}% for naive counter reads. Sampler overhead (mean ± 95% "
        "half-width of the paired repetitions): "
        + " and ".join(f"{r.overhead_pct:.2f} ± {r.ci95_pct:.2f}% ({_workload(r.workload)})"
                       for r in sampler.itertuples())
        + f" against the {overhead['limit_pct']:g}% limit: {', '.join(sorted(verdicts))}"
    )


# --------------------------------------------------------------------------------------------------------
# docs/levers.md


#: the levers table's GPU energy per clip
CLIP_J = "gpu_energy_J_per_clip"


def read_levers(data: Path, folder: str = "h200") -> pd.DataFrame:
    """``data/<folder>/levers.csv`` (empty without it)."""
    path = data / folder / LEVERS_TABLE
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def _configs(d: HasData) -> pd.DataFrame:
    paths = sorted((d.data / "h200" / "levers").glob(f"part*/{CONFIGS_FILE}"))
    return pd.concat([pd.read_csv(p).assign(part=p.parent.name) for p in paths]) if paths else pd.DataFrame()


def _notes(frame: pd.DataFrame, key: str) -> list[tuple[pd.Series, Any]]:
    """(row, value) for every row of a configs table whose JSON `notes` hold ``key``."""
    found = []
    for _, row in frame.iterrows():
        notes = json.loads(row["notes"]) if isinstance(row["notes"], str) else {}
        if key in notes:
            found.append((row, notes[key]))
    return found


def _cell(
    levers: pd.DataFrame, model: str, spec: str, steps: int = 100, batch: int | None = 1
) -> pd.DataFrame:
    """The rows of ``levers.csv`` for one model, spec and step count (and batch size unless None)."""
    if levers.empty:
        return levers
    rows = levers[(levers["model"] == model) & (levers["optimize"] == spec) & (levers["steps"] == steps)]
    return rows if batch is None else rows[rows["waveforms_per_prompt"] == batch]


def _error(levers: pd.DataFrame, model: str, spec: str) -> pd.Series:
    rows = _cell(levers, model, spec)
    return rows["rel_error_latents"].dropna() if not rows.empty else pd.Series(dtype=float)


def latents_error(model: str, spec: str) -> Callable[[HasData], str]:
    """A block quoting the latents error of ``model``'s ``spec`` at 100 steps, batch 1."""

    def block(d: HasData) -> str:
        errors = _error(d.levers, model, spec)
        return _sci(errors.iloc[0]) if len(errors) else _missing(d.data / "h200" / LEVERS_TABLE)

    return block


def block_levers_reference_conv(d: HasData) -> str:
    """The fp32 reference's convolution timings for AudioLDM (cuDNN against PyTorch's own kernels)."""
    configs = _configs(d)
    timed = _notes(configs[configs["model"] == "audioldm"], "reference_conv_ms") if not configs.empty else []
    if not timed:
        return f"no AudioLDM reference convolution timed yet (0 rows in `{CONFIGS_FILE}`)"
    ms = timed[0][1]
    return f"{ms['cudnn']:.0f} ms per AudioLDM step against {ms['native']:.0f} ms"


def block_levers_audioldm2_graphs(d: HasData) -> str:
    """AudioLDM 2's `graphs` latents error at 100 steps, batch 1, and the tolerance it was judged by."""
    rows = _cell(d.levers, "audioldm2", "graphs")
    if rows.empty:
        return _missing(d.data / "h200" / LEVERS_TABLE)
    row = rows.iloc[0]
    error, tolerance = _sci(row["rel_error_latents"]), _sci(row["tolerance_latents"])
    return f"latents error {error} against a tolerance of {tolerance}"


def _same_run_pairs(levers: pd.DataFrame, model: str, spec: str) -> list[tuple[pd.Series, pd.Series]]:
    """(``none``, ``spec``) rows of ``model`` at 100 steps, batch 1, one pair per run that measured both."""
    none, other = _cell(levers, model, DEFAULT_SPEC), _cell(levers, model, spec)
    runs = sorted(set(none["run_id"]) & set(other["run_id"])) if not none.empty and not other.empty else []
    return [(none[none["run_id"] == r].iloc[0], other[other["run_id"] == r].iloc[0]) for r in runs]


def block_levers_audioldm2_graphs_h100(d: HasData) -> str:
    """AudioLDM 2's `graphs` against `none` measured in the same H100 run (100 steps, batch 1): their latents
    errors and the verdict."""
    pairs = _same_run_pairs(read_levers(d.data, "h100"), "audioldm2", "graphs")
    if not pairs:
        return _missing(d.data / "h100" / LEVERS_TABLE)
    same = all(n["rel_error_latents"] == g["rel_error_latents"] for n, g in pairs)
    lossless = all(bool(g["lossless"]) for _, g in pairs)

    def values(rows: list[pd.Series], column: str) -> str:
        return "/".join(dict.fromkeys(_sci(r[column]) for r in rows))

    verdict = "lossless" if lossless else "not lossless"
    text = (f"`none` {values([n for n, _ in pairs], 'rel_error_latents')}, `graphs` "
            f"{values([g for _, g in pairs], 'rel_error_latents')} in {len(pairs)} run(s) "
            f"({'equal to every digit stored' if same else 'different'}; tolerance "
            f"{values([g for _, g in pairs], 'tolerance_latents')}: {verdict})")
    if same and lossless:
        text += ". The flag on the H200 was the missing yardstick's, not the capture's"
    return text


def block_levers_fp8_eager_h100(d: HasData) -> str:
    """Stable Audio Open's eager `fp8` against `none` of the same H100 run (100 steps, batch 1): energy per
    clip of each and their ratio, per run that measured both."""
    pairs = _same_run_pairs(read_levers(d.data, "h100"), "stable-audio-open", "fp8")
    if not pairs:
        return _missing(d.data / "h100" / LEVERS_TABLE)
    return "; ".join(f"{f[CLIP_J]:.0f} J per clip against {n[CLIP_J]:.0f} J for `none` "
                     f"({f[CLIP_J] / n[CLIP_J]:.2f}x)" for n, f in pairs)


def levers_against_none_h100(model: str, spec: str) -> Callable[[HasData], str]:
    """A block: ``model``'s ``spec`` against `none` of the same H100 run (100 steps, batch 1): energy per
    clip of each, the reduction, FLOP per joule and the latents error, per run that measured both."""

    def block(d: HasData) -> str:
        pairs = _same_run_pairs(read_levers(d.data, "h100"), model, spec)
        if not pairs:
            return _missing(d.data / "h100" / LEVERS_TABLE)
        return "; ".join(
            f"{s[CLIP_J]:.0f} J per clip against {n[CLIP_J]:.0f} J for `none` "
            f"({n[CLIP_J] / s[CLIP_J]:.2f}x less, {s['tflop_per_J']:.3f} TFLOP/J, "
            f"latents error {_sci(s['rel_error_latents'])})"
            for n, s in pairs)

    return block


def block_levers_audioldm_none(d: HasData) -> str:
    """AudioLDM's latents error of `none` at 100 steps, and whether `graphs` equals it to every digit."""
    levers = d.levers
    none, graphs = _error(levers, "audioldm", DEFAULT_SPEC), _error(levers, "audioldm", "graphs")
    if not (len(none) and len(graphs)):
        return _missing(d.data / "h200" / LEVERS_TABLE)
    if set(none) == set(graphs):
        return f"{_sci(none.iloc[0])} to every digit stored"
    return f"{_sci(none.iloc[0])} (`none`) against {_sci(graphs.iloc[0])} (`graphs`)"


def block_levers_sao_reference(d: HasData) -> str:
    """The energy of Stable Audio Open's fp32 reference at 100 steps, over the runs that measured it."""
    rows = _cell(d.levers, "stable-audio-open", REFERENCE_SPEC, batch=None)
    if rows.empty:
        return _missing(d.data / "h200" / LEVERS_TABLE)
    energy = rows["gpu_energy_J"]
    return f"{_range(energy.min(), energy.max())} J at 100 steps (n = {len(rows)})"


def block_levers_graphs_capture(d: HasData) -> str:
    """The one-time cost of `graphs` (`compile_s`: capturing the example step, where recorded, plus the first
    generation's extra over a steady one), over every row."""
    levers = d.levers
    seconds = levers.loc[levers["optimize"] == "graphs", "compile_s"].dropna() if not levers.empty else []
    if not len(seconds):
        return _missing(d.data / "h200" / LEVERS_TABLE)
    return f"capture cost at most {max(seconds):.2f} s per model and batch size ({len(seconds)} `graphs` rows"


def block_levers_cache_served_h100(d: HasData) -> str:
    """Tango's `compile` and `compile-graphs` compilations at batch 1 on the H100 (served by the compile cache
    of a machine where Tango 2 had compiled them) against Tango 2's own."""
    levers = read_levers(d.data, "h100")
    specs = ("compile", "compile-graphs")
    seconds = {}
    for model in ("tango", "tango2"):
        rows = levers[(levers["model"] == model) & levers["optimize"].isin(specs)
                      & (levers["waveforms_per_prompt"] == 1) & levers["compile_s"].notna()]
        by_spec = rows.groupby("optimize")["compile_s"].min()
        if set(by_spec.index) != set(specs):
            return _missing(d.data / "h100" / LEVERS_TABLE)
        seconds[model] = " and ".join(f"{by_spec[spec]:.1f}" for spec in specs)
    return (f"Tango's `compile` and `compile-graphs` of {seconds['tango']} s, compiled in a call chained on "
            "the machine where Tango 2, of the same architecture, had just compiled in "
            f"{seconds['tango2']} s")


def block_levers_same_process_h100(d: HasData) -> str:
    """Tango 2's compilations in the run where Tango, of the same denoiser, compiled the same configuration
    at the same batch size first (one process) on the H100, against Tango's."""
    levers = read_levers(d.data, "h100")
    keys = ["run_id", "optimize", "waveforms_per_prompt"]
    if levers.empty:
        return _missing(d.data / "h100" / LEVERS_TABLE)
    compiled = levers["optimize"].map(lambda spec: parse_levers(spec).compiled)
    rows = levers[compiled.astype(bool) & levers["compile_s"].notna()]
    if rows.empty:
        return _missing(d.data / "h100" / LEVERS_TABLE)
    both = rows[rows["model"] == "tango"][[*keys, "compile_s"]].merge(
        rows[rows["model"] == "tango2"][[*keys, "compile_s"]], on=keys, suffixes=("_tango", "_tango2"))
    if both.empty:
        return _missing(d.data / "h100" / LEVERS_TABLE)
    return "; ".join(
        f"its `{r.optimize}` at batch {r.waveforms_per_prompt} compiled in {r.compile_s_tango2:.2f} s right "
        f"after Tango's {r.compile_s_tango:.1f} s (run {r.run_id} of `data/h100/levers.csv`)"
        for r in both.itertuples())


_CACHE_NOT_RETURNED = re.compile(r"compile cache not returned: (\d+) MiB (>|unpacked)")
_CACHE_FOLDER = re.compile(r"^([\d.]+)([KMG])\s+\.cache/compile/(?:inductor|triton)/$", re.M)


def block_levers_forecast_h100(d: HasData) -> str:
    """How well the priced dry run foretold the H100 levers calls: each model's time in a run against the
    price of its units (:mod:`tta_energy.levers.forecast`, from the calls' logs)."""
    from tta_energy.levers.forecast import forecast_text, read_forecasts

    logs = sorted((d.data / "h100" / "logs").glob("log-levers-plan-*.txt"))
    if not logs:
        return _missing(d.data / "h100" / "logs" / "log-levers-plan-*.txt")
    return forecast_text(read_forecasts(logs))


def block_levers_compile_cache_h100(d: HasData) -> str:
    """How often the H100 levers calls returned their compile cache (`scripts/gpu_levers.sh plan` logs), how
    large the others' were packed and how much gzip shrank them (du's folder sizes in the same logs), and how
    large the ones too large to pack were."""
    logs = sorted((d.data / "h100" / "logs").glob("log-levers-plan-*.txt"))
    if not logs:
        return _missing(d.data / "h100" / "logs" / "log-levers-plan-*.txt")
    back, packed, unpacked_only, ratios = 0, [], [], []
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        found = _CACHE_NOT_RETURNED.search(text)
        if found is None:
            back += 1
            continue
        if found.group(2) == "unpacked":  # too large to pack at all
            unpacked_only.append(int(found.group(1)))
            continue
        packed.append(int(found.group(1)))
        unpacked = sum(float(size) * {"K": 1 / 1024, "M": 1.0, "G": 1024.0}[unit]
                       for size, unit in _CACHE_FOLDER.findall(text))
        if unpacked:
            ratios.append(unpacked / int(found.group(1)))
    parts = [f"the compile cache came back from {back} of {len(logs)} calls"]
    if packed:
        shrink = f", {min(ratios):.1f}-{max(ratios):.1f}x less than unpacked" if ratios else ""
        parts.append(f"{len(packed)} others packed Inductor's and Triton's files to {min(packed)} to "
                     f"{max(packed)} MiB{shrink}")
    if unpacked_only:
        parts.append(f"{len(unpacked_only)} left them unpacked at {min(unpacked_only)} to "
                     f"{max(unpacked_only)} MiB")
    return "; ".join(parts)


#: the H100 levers part whose Stable Audio Open batch-10 unit ran out of time in its rounds
CUT_UNIT_PART = "partplan-20261206T070041"


def block_levers_cut_unit_h100(d: HasData) -> str:
    """Stable Audio Open's batch-10 unit of :data:`CUT_UNIT_PART`: its measured generations against its
    configurations' repeats, and how far the 10-step second warm-ups, denoising scaled by steps and the rest
    kept, predicted the measured 100-step generations."""
    path = d.data / "h100" / "levers" / CUT_UNIT_PART / RUNS_FILE
    if not path.is_file():
        return _missing(path)
    runs = schema.read_runs(path)
    runs = runs[(runs["model"] == "stable-audio-open") & (runs["status"] == "ok")]
    warm, measured = runs[runs["is_warmup"] & (runs["repeat"] == 1)], runs[~runs["is_warmup"]]
    denoising = warm["time_denoising_s"]
    predicted = pd.Series((warm["wall_s"] - denoising + denoising * 100 / warm["steps"]).to_numpy(),
                          index=warm["optimize"])
    mean = measured[measured["steps"] == 100].groupby("optimize")["wall_s"].mean()
    error = (predicted / mean - 1).abs().dropna()
    repeats = 3 * warm["optimize"].nunique()
    return (f"had time for {len(measured)} of its {repeats} generations and completed no cell "
            f"(`data/h100/logs/log-levers-plan-{CUT_UNIT_PART.removeprefix('partplan-')}.txt`). A cell's "
            f"seconds are predicted from a steady generation of the same configuration (a measured one, the "
            f"second warm-up, or the only warm-up of one that compiles nothing), else of `none` (a compiled "
            f"configuration's only warm-up holds its compilation), at another step count, its denoising "
            f"scaled by steps and the rest kept: 10-step warm-ups of that unit predicted its 100-step "
            f"generations within {error.max():.0%} of their measured mean")


#: the H100 levers part whose Stable Audio Open `max` warm-up at batch 32 ran out of memory
OOM_PART = "partplan-20261206T111203"
_OOM_TEXT = re.compile(r"Tried to allocate ([\d.]+) GiB.*total capacity of ([\d.]+) GiB.*this process has "
                       r"([\d.]+) GiB memory in use")


def block_levers_oom_h100(d: HasData) -> str:
    """Stable Audio Open's `max` at batch 32 on the H100 (:data:`OOM_PART`): the memory its out-of-memory
    error reports, and its peak memory per batch size in every H100 levers part (measured generations)."""
    path = d.data / "h100" / "levers" / OOM_PART / RUNS_FILE
    if not path.is_file():
        return _missing(path)
    runs = schema.read_runs(path)
    oom = runs[(runs["model"] == "stable-audio-open") & (runs["status"] == "oom")]
    found = _OOM_TEXT.search(str(oom["error"].iloc[0])) if not oom.empty else None
    if found is None:
        return f"no out-of-memory row of Stable Audio Open with its sizes in `{path}`"
    asked, total, in_use = (float(g) for g in found.groups())
    parts = sorted((d.data / "h100" / "levers").glob(f"part*/{RUNS_FILE}"))
    every = pd.concat([schema.read_runs(p) for p in parts], ignore_index=True)
    ok = every[(every["model"] == "stable-audio-open") & schema.measured_generations(every)]
    gib = ok.groupby("waveforms_per_prompt")["peak_memory_bytes"].agg(["min", "median", "max"]) / 2**30
    one, ten = gib.loc[1], gib.loc[10]
    per_clip = (ten["median"] - one["median"]) / 9
    return (f"ran out of memory in its warm-up ({in_use:.0f} GiB of the card's {total:.0f} GiB in use, "
            f"{asked:.0f} GiB more asked for: `data/h100/levers/{OOM_PART}`). Its peak memory grows by about "
            f"{per_clip:.1f} GiB a clip (medians; {one['min']:.0f}-{one['max']:.0f} GiB at batch 1, "
            f"{ten['min']:.0f}-{ten['max']:.0f} GiB at batch 10 in `data/h100/levers`), so batch 32 needs "
            f"about {one['median'] + 31 * per_clip:.0f} GiB")


#: the models whose fp32 runs the `tf32` lever was measured for: those the study ran in fp32
TF32_MODELS = tuple(m for m in catalogue.model_names() if catalogue.entry(m).defaults.dtype == "float32")


def block_levers_tf32_h100(d: HasData) -> str:
    """Per model the study ran in fp32: `compile-graphs,tf32` against `none` of the same H100 run (100 steps,
    batch 1), `compile-graphs` without TF32 against `none` of its own runs, and the latents errors."""
    from tta_energy.models.catalogue import label

    levers = read_levers(d.data, "h100")
    parts = []
    for model in TF32_MODELS:
        tf32 = _same_run_pairs(levers, model, "compile-graphs,tf32")
        plain = _same_run_pairs(levers, model, "compile-graphs")
        if not tf32:
            continue
        without = "/".join(f"{n[CLIP_J] / s[CLIP_J]:.2f}x" for n, s in plain)
        parts += [f"{label(model)} {s[CLIP_J]:.0f} J per clip against {n[CLIP_J]:.0f} J for `none` of the "
                  f"same run ({n[CLIP_J] / s[CLIP_J]:.2f}x; `compile-graphs` "
                  f"without TF32 {without or 'not measured'}), latents error {_sci(s['rel_error_latents'])} "
                  f"against the default's {_sci(n['rel_error_latents'])}" for n, s in tf32]
    return "; ".join(parts) if parts else _missing(d.data / "h100" / LEVERS_TABLE)


def block_levers_fp8_batch_h100(d: HasData) -> str:
    """Stable Audio Open's `compile-graphs,fp8` on the H100 (100 steps): FLOP per joule at each batch size
    measured (the range over runs), against the FP8 target."""
    levers = read_levers(d.data, "h100")
    if levers.empty:
        return _missing(d.data / "h100" / LEVERS_TABLE)
    rows = levers[(levers["model"] == "stable-audio-open") & (levers["optimize"] == "compile-graphs,fp8")
                  & (levers["steps"] == 100) & levers["tflop_per_J"].notna()]
    if rows.empty:
        return _missing(d.data / "h100" / LEVERS_TABLE)
    parts = []
    for batch, group in rows.groupby("waveforms_per_prompt"):
        low, high = group["tflop_per_J"].min(), group["tflop_per_J"].max()
        runs = f"{low:.3f}" if len(group) == 1 else f"{low:.3f}-{high:.3f} ({len(group)} runs)"
        parts.append(f"batch {int(batch)}: {runs}")
    target = catalogue.entry("stable-audio-open").levers.fp8_tflop_per_J
    return (f"`compile-graphs,fp8` measured {', '.join(parts)} TFLOP/J against the FP8 target of {target} "
            "(`data/h100/levers.csv`)")


def _sdpa(d: HasData, part: str = "part4") -> dict[str, dict[str, float]]:
    """Per model: the attention backends' step times of its `max` configuration at batch 1, in ``part``."""
    configs = _configs(d)
    if configs.empty:
        return {}
    rows = configs[
        (configs["part"] == part) & (configs["optimize"] == "max") & (configs["waveforms_per_prompt"] == 1)
    ]
    return {row["model"]: ms for row, ms in _notes(rows, "sdpa_ms")}


def block_levers_sdpa_ranking(d: HasData) -> str:
    """Tango's and Tango 2's fastest attention backend when timed eagerly, each against the other's winner."""
    timed = _sdpa(d)
    if not {"tango", "tango2"} <= set(timed):
        return f"no eager attention timings of Tango and Tango 2 yet (0 rows in `{CONFIGS_FILE}`)"
    winners = {m: min(timed[m], key=timed[m].get) for m in ("tango", "tango2")}
    parts = []
    for model, other in (("tango", "tango2"), ("tango2", "tango")):
        best, rival = winners[model], winners[other]
        parts.append(
            f"{BACKEND_NAMES.get(best, best)} first for {catalogue.label(model)} "
            f"({timed[model][best]:.1f} ms per step against {timed[model][rival]:.1f} ms for "
            f"{BACKEND_NAMES.get(rival, rival)})"
        )
    return " and ".join(parts)


def block_levers_attention_share(d: HasData) -> str:
    """Attention's share of the kernel time of Tango 2's and Tango's graphed `max` step (levers_profile)."""
    path = d.data / "h200" / "levers" / "part4" / PROFILE_FILE
    if not path.is_file():
        return _missing(path)
    profile = pd.read_csv(path)
    rows = profile[(profile["optimize"] == "max") & (profile["waveforms_per_prompt"] == 1)].set_index("model")
    share = rows["attention_ms"] / rows["kernel_ms"]
    return (
        f"in {catalogue.label('tango2')}'s graphed `max` step attention took {share['tango2']:.0%} of the "
        f"kernel time against {catalogue.label('tango')}'s {share['tango']:.0%}"
    )


# --------------------------------------------------------------------------------------------------------
# docs/quality.md


#: the one device call that metered a block compilation against a whole-denoiser one (levers raw tables)
COMPILE_BLOCKS_RUN = Path("benchmarks") / "results" / "compile_blocks_h100"


def block_levers_compile_blocks(d: HasData) -> str:
    """``max,compile-blocks`` against ``max,compile-graphs`` in the one call that measured both (compile
    seconds, their ratio, a generation's seconds and energy), from the raw tables under
    :data:`COMPILE_BLOCKS_RUN` as ``tta-energy levers report`` reads them."""
    from tta_energy.levers.report import levers_table

    folder = d.data.parent / COMPILE_BLOCKS_RUN
    if not folder.is_dir():
        return f"no `{COMPILE_BLOCKS_RUN.name}` committed yet (0 runs)"
    rows = levers_table([folder]).set_index("optimize")
    blocks, whole = rows.loc["max,compile-blocks"], rows.loc["max,compile-graphs"]
    share = blocks["compile_s"] / whole["compile_s"]
    return (f"`max,compile-blocks` compiled in {blocks['compile_s']:.1f} s against "
            f"{whole['compile_s']:.1f} s for `max,compile-graphs` ({share:.2f} of it), and generated "
            f"in {blocks['wall_s']:.2f} s and {blocks['gpu_energy_J']:.0f} J against {whole['wall_s']:.2f} s "
            f"and {whole['gpu_energy_J']:.0f} J (one repeat each)")


def from_benchmark(name: str, render: Callable[[dict[str, Any]], str]) -> Callable[[HasData], str]:
    """A block that renders the JSON output ``name`` of a benchmark under ``benchmarks/results/``."""

    def block(d: HasData) -> str:
        path = d.data.parent / "benchmarks" / "results" / name
        if not path.is_file():
            return f"no `{name}` committed yet (0 runs)"
        return render(json.loads(path.read_text(encoding="utf-8")))

    return block


def quality_sizes(result: dict[str, Any]) -> str:
    """FAD-inf with fadtk's and the per-clip sample sizes (benchmarks/results/quality_profiles.json)."""
    s, clips = result["sample_sizes"], result["clips"]
    fadtk, per_clip = s["fad_inf_fadtk_mean"], s["fad_inf_per_clip_mean"]
    change = _minus(format(100 * s["per_clip_minus_fadtk_relative"], ".1f"))
    offset = _minus(format(per_clip - fadtk, ".4f"))
    return (
        f"fadtk's sizes (500 … {clips}) give a mean FAD-inf of {fadtk:.4f} (sd over draw seeds "
        f"{s['fad_inf_fadtk_sd_over_draw_seeds']:.4f}), the per-clip sizes ({clips // 2} … {clips}) "
        f"{per_clip:.4f} (sd {s['fad_inf_per_clip_sd_over_draw_seeds']:.4f}): {change} %, an offset of "
        f"{offset} against a run-to-run sd of fadtk's FAD-inf of {s['fad_inf_fadtk_sd_run_to_run']:.4f} "
        f"({s['datasets']} independent data sets, each with its own draw seed). The FAD of all clips is "
        f"{s['fad']:.4f}"
    )


def quality_windows(result: dict[str, Any]) -> str:
    w = result["windows"]
    return (
        f"FAD {w['fad_windowed']:.3f} against {w['fad_one_per_clip']:.3f}, fadtk's FAD-inf "
        f"{w['fad_inf_windowed_fadtk']:.3f} against {w['fad_inf_one_per_clip_fadtk']:.3f} (fit R² "
        f"{w['fad_inf_windowed_fadtk_r2']:.3f})"
    )


def quality_float16(result: dict[str, Any]) -> str:
    f = result["float16"]
    return (
        f"FAD {f['fad_float16_pooled']:.6f} against {f['fad_float64']:.6f} in float64 "
        f"({_minus(format(f['relative_difference'], '.1e'))} relative)"
    )


def quality_regularised(result: dict[str, Any]) -> str:
    change = _minus(format(100 * result["eps_relative_change"], ".2f"))
    return f"changes FAD by {change} % at {result['clips']} × {result['dim']}"


def quality_fad_inf(r: dict[str, Any]) -> str:
    return (
        f"FAD {r['fad']:.3f}, FAD-inf (per-clip sizes) {r['fad_inf_with_replacement']:.3f}, FAD-inf without "
        f"replacement {r['fad_inf_without_replacement']:.3f}, while the FAD of {r['large_n']} clips per side "
        f"is {r['fad_large_n']:.3f}"
    )


def quality_intervals(r: dict[str, Any]) -> str:
    boot, basic, half = (
        r["bootstrap_percentile_interval"],
        r["bootstrap_basic_interval"],
        r["half_sampling_interval"],
    )
    covered = [low <= r["fad"] <= high for low, high in (boot, basic)]
    verdict = "neither covers" if not any(covered) else "both cover" if all(covered) else "one covers"
    return (
        f'FAD {r["fad"]:.3f}; with-replacement replicates {_range(*boot, fmt=".3f")} (their "basic" interval '
        f"{_range(*basic, fmt='.3f')}), so {verdict} the estimate; the true run-to-run spread of FAD over "
        f"{r['datasets']} independent data sets is {_range(r['true_q025'], r['true_q975'], fmt='.3f')} (sd "
        f"{r['true_sd']:.4f}); the half-sampling interval is {_range(*half, fmt='.3f')} (sd "
        f"{r['half_sampling_sd']:.4f}, {r['half_sampling_sd_over_true_sd']:.1f} × the true sd"
    )


def block_clotho_durations(d: HasData) -> str:
    """The length range of the study's Clotho captions' reference clips (the caption file bundled here)."""
    frame = pd.read_csv(bundled_captions("clotho"))
    return f"{_range(frame['duration'].min(), frame['duration'].max())} s"


BLOCKS: dict[str, Callable[[HasData], str]] = {
    "meter-validation": block_meter_validation,
    "validation-result": block_validation_result,
    "meter-counter-interval": block_meter_counter_interval,
    "meter-truth-span": block_meter_truth_span,
    "meter-quick-unet": block_meter_quick_unet,
    "meter-quick-gaps": block_meter_quick_gaps,
    "meter-quick-matmul": block_meter_quick_matmul,
    "levers-reference-conv": block_levers_reference_conv,
    "levers-audioldm2-graphs": block_levers_audioldm2_graphs,
    "levers-audioldm2-error": latents_error("audioldm2", "graphs"),
    "levers-audioldm2-graphs-h100": block_levers_audioldm2_graphs_h100,
    "levers-fp8-eager-h100": block_levers_fp8_eager_h100,
    "levers-fp8-compiled-sao-h100": levers_against_none_h100("stable-audio-open", "compile-graphs,fp8"),
    "levers-fp8-compiled-tango-h100": levers_against_none_h100("tango", "max,fp8,compile-blocks"),
    "levers-audioldm-none": block_levers_audioldm_none,
    "levers-audioldm-none-error": latents_error("audioldm", DEFAULT_SPEC),
    "levers-sao-reference": block_levers_sao_reference,
    "levers-graphs-capture": block_levers_graphs_capture,
    "levers-sdpa-ranking": block_levers_sdpa_ranking,
    "levers-attention-share": block_levers_attention_share,
    "levers-compile-blocks": block_levers_compile_blocks,
    "levers-cache-served-h100": block_levers_cache_served_h100,
    "levers-same-process-h100": block_levers_same_process_h100,
    "levers-cut-unit-h100": block_levers_cut_unit_h100,
    "levers-compile-cache-h100": block_levers_compile_cache_h100,
    "levers-forecast-h100": block_levers_forecast_h100,
    "levers-oom-h100": block_levers_oom_h100,
    "levers-tf32-h100": block_levers_tf32_h100,
    "levers-fp8-batch-h100": block_levers_fp8_batch_h100,
    "quality-sizes": from_benchmark("quality_profiles.json", quality_sizes),
    "quality-windows": from_benchmark("quality_profiles.json", quality_windows),
    "quality-float16": from_benchmark("quality_profiles.json", quality_float16),
    "quality-regularised": from_benchmark("quality_resampling.json", quality_regularised),
    "quality-fad-inf": from_benchmark("quality_resampling.json", quality_fad_inf),
    "quality-intervals": from_benchmark("quality_resampling.json", quality_intervals),
    "clotho-durations": block_clotho_durations,
}
