"""The meter validation's statistics: error of each method per workload and window, the overhead of the
sampler, the targets' verdicts, and ``meter.csv`` / ``meter_summary.md``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy import markdown
from tta_energy.experiments.meter_validation.protocol import (
    DEFAULT_METHOD,
    METER_OVERHEAD_TARGET,
    TARGETS,
    Validation,
)
from tta_energy.fileio import write_text_atomic
from tta_energy.intervals import t_half_width

#: The validation's table: one row per method and measured window (:func:`write_outputs`).
METER_TABLE = "meter.csv"
#: The validation's summary: the targets' verdicts and the tables behind them (:func:`write_outputs`).
METER_SUMMARY = "meter_summary.md"

def _usable(df: pd.DataFrame) -> pd.DataFrame:
    """Measured windows with a truth, without the steady trials whose load was not continuous."""
    d = df[(df["scenario"] != "overhead") & df["rel_error"].notna()]
    return d[d["continuous"].astype(bool)]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per workload, scenario, method and window: trials, mean and max |relative error| (in %)."""
    d = _usable(df).copy()
    d["abs_pct"] = d["rel_error"].abs() * 100
    d["pct"] = d["rel_error"] * 100
    out = d.groupby(["workload", "scenario", "method", "window_target_s"], as_index=False).agg(
        trials=("pct", "size"), mean_error_pct=("pct", "mean"), sd_error_pct=("pct", "std"),
        mean_abs_error_pct=("abs_pct", "mean"), max_abs_error_pct=("abs_pct", "max"))
    return out.sort_values(["workload", "scenario", "window_target_s", "method"]).reset_index(drop=True)


def overhead_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per workload and sampler mode: energy per call, and the paired overhead against the same repetition's
    no-sampler block: mean, spread and the half-width of a 95% t interval (NaN with one repetition)."""
    columns = ["workload", "method", "reps", "energy_per_call_J", "wall_per_call_s", "overhead_pct",
               "sd_pct", "ci95_pct"]
    d = df[(df["scenario"] == "overhead") & df["measured_J"].notna()]
    if d.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (workload, method), g in d.groupby(["workload", "method"], sort=True):
        pct = (g["rel_error"] * 100).dropna()
        n = len(pct)
        sd = float(pct.std()) if n > 1 else math.nan
        ci = t_half_width(pct.to_numpy())
        rows.append({"workload": workload, "method": method, "reps": int(len(g)),
                     "energy_per_call_J": float(g["measured_J"].mean()),
                     "wall_per_call_s": float(g["window_s"].mean()),
                     "overhead_pct": float(pct.mean()) if n else math.nan, "sd_pct": sd, "ci95_pct": ci})
    return pd.DataFrame(rows, columns=columns)


def _target_rows(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """The steady rows a target is judged on: single windows, plus (0.2 s) calls measured by repetition."""
    steady = _usable(df)
    steady = steady[steady["scenario"] == "steady"]
    if label == "windows >= 1 s":
        picked = steady[(steady["window_target_s"] >= 1.0) & ~steady["method"].str.contains("_repeated_")]
    else:
        picked = steady[np.isclose(steady["window_target_s"].astype(float), 0.2)]
    return picked


def check_targets(df: pd.DataFrame, method: str = DEFAULT_METHOD) -> list[dict[str, object]]:
    """The meter's accuracy targets (:data:`~.protocol.TARGETS`) on the steady trials' worst case
    (max |error|), for every method measured, and the sampler process's overhead.
    ``met`` is the verdict for ``method`` (the meter's default)."""
    results: list[dict[str, object]] = []
    for label, limit in TARGETS:
        picked = _target_rows(df, label)
        by_method: dict[str, dict[str, float]] = {}
        for name, g in picked.groupby("method"):
            errors = g["rel_error"].abs() * 100
            by_method[str(name)] = {"n": int(len(g)), "max_abs_pct": float(errors.max()),
                                    "mean_abs_pct": float(errors.mean()),
                                    "bias_pct": float(g["rel_error"].mean() * 100),
                                    "met": bool(errors.max() <= limit * 100),
                                    "workloads": int(g["workload"].nunique())}
        mine = by_method.get(method)
        results.append({"target": f"{label}: deviation <= {limit * 100:g}%", "limit_pct": limit * 100,
                        "method": method, "value_pct": mine["max_abs_pct"] if mine else math.nan,
                        "met": bool(mine and mine["met"]), "n": mine["n"] if mine else 0,
                        "by_method": by_method,
                        "peers_max_pct": {k: v["max_abs_pct"] for k, v in by_method.items() if k != method}})
    ov = overhead_summary(df)
    proc = ov[ov["method"] == "sampler_process"]
    verdicts = {str(r.workload): overhead_verdict(r.overhead_pct, r.ci95_pct) for r in proc.itertuples()}
    worst = float(proc["overhead_pct"].abs().max()) if len(proc) else math.nan
    limit_pct = METER_OVERHEAD_TARGET * 100
    results.append({"target": f"meter overhead <= {limit_pct:g}% of a 1 s workload's energy",
                    "limit_pct": limit_pct, "method": "sampler_process", "value_pct": worst,
                    "met": bool(verdicts) and all(v.startswith("met") for v in verdicts.values()),
                    "n": int(proc["reps"].min()) if len(proc) else 0, "verdicts": verdicts,
                    "by_method": {}, "peers_max_pct": {}})
    return results


def overhead_verdict(mean_pct: float, ci95_pct: float, limit_pct: float = METER_OVERHEAD_TARGET * 100) -> str:
    """``met``, ``NOT met`` or ``inconclusive`` for a mean overhead and the half-width of its 95% interval."""
    if math.isnan(mean_pct):
        return "not measured"
    if math.isnan(ci95_pct):
        return "inconclusive (one repetition: no noise estimate)"
    if abs(mean_pct) + ci95_pct <= limit_pct:
        return f"met (|{mean_pct:.2f}| + {ci95_pct:.2f} <= {limit_pct:g}% at 95%)"
    if abs(mean_pct) - ci95_pct > limit_pct:
        return f"NOT met ({mean_pct:.2f} +- {ci95_pct:.2f}%)"
    return f"inconclusive ({mean_pct:.2f} +- {ci95_pct:.2f}%: the noise reaches the {limit_pct:g}% limit)"


def write_outputs(out_dir: str | Path, df: pd.DataFrame, validation: Validation, *,
                  dry_run: bool) -> tuple[Path, Path]:
    """:data:`METER_TABLE` and :data:`METER_SUMMARY` (atomically: temp file + rename)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / METER_TABLE, out / METER_SUMMARY
    write_text_atomic(csv_path, df.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(md_path, render_summary(df, validation, dry_run=dry_run))
    return csv_path, md_path


def _md_table(df: pd.DataFrame, floats: str = "{:.3f}") -> str:
    """``df`` as a Markdown table, its floats through ``floats``; ``(none)`` for an empty frame."""
    if df.empty:
        return "(none)\n"
    # a NaN (the SD of one trial) reads as a dash
    rows = [[("–" if math.isnan(v) else floats.format(v)) if isinstance(v, float) else str(v) for v in rec]
            for rec in df.itertuples(index=False)]
    return markdown.table([str(c) for c in df.columns], rows) + "\n"


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}%"


def truth_checks(df: pd.DataFrame, validation: Validation) -> pd.DataFrame:
    """How far the truth itself can be trusted, per workload: the drift of the energy per iteration across
    the truth blocks, and the steady rows' iteration truth against steady power x time."""
    rows = []
    for workload, blocks in validation.truth.items():
        e = np.array([b["e_iter"] for b in blocks])
        d = df[(df["workload"] == workload) & (df["scenario"] == "steady") & (df["method"] == DEFAULT_METHOD)]
        d = d[d["continuous"].astype(bool)]
        diff = (d["truth_power_J"] / d["truth_J"] - 1) * 100
        rows.append({"workload": workload, "blocks": len(blocks),
                     "e_iter_spread_pct": float((e.max() - e.min()) / e.mean() * 100) if len(e) else math.nan,
                     "power_x_time_vs_iterations_mean_pct": float(diff.mean()) if len(diff) else math.nan,
                     "power_x_time_vs_iterations_sd_pct": float(diff.std()) if len(diff) > 1 else math.nan})
    return pd.DataFrame(rows)


def target_status(target: dict[str, object]) -> str:
    """One console line of a :func:`check_targets` entry: met / NOT met with its value, or, for a target
    judged per workload with an interval (the overhead), each workload's verdict (met, not met or
    inconclusive)."""
    verdicts: dict[str, str] | None = target.get("verdicts")  # type: ignore[assignment]
    if verdicts is not None:
        said = "; ".join(f"{w}: {v}" for w, v in verdicts.items()) or "not measured"
        return f"{target['target']}: {said}"
    return f"{'met    ' if target['met'] else 'NOT met'} {target['target']}: {target['value_pct']:.3f}%"


def _verdict_lines(df: pd.DataFrame, targets: list[dict[str, object]]) -> list[str]:
    lines = []
    for t in targets:
        if not t["by_method"] and "verdicts" not in t:
            continue
        if "verdicts" in t:
            verdicts: dict[str, str] = t["verdicts"]  # type: ignore[assignment]
            if not verdicts:
                lines.append(f"- **{t['target']}**: not measured.")
                continue
            parts = "; ".join(f"{w}: {v}" for w, v in verdicts.items())
            lines.append(f"- **{t['target']}** (sampler process, paired against no sampler): {parts}.")
            continue
        limit = float(t["limit_pct"])  # type: ignore[arg-type]
        by_method: dict[str, dict[str, float]] = t["by_method"]  # type: ignore[assignment]
        if not by_method:
            lines.append(f"- **{t['target']}**: no trials.")
            continue
        picked = _target_rows(df, t["target"].split(":")[0])  # type: ignore[union-attr]
        said = []
        for name in sorted(by_method, key=lambda k: by_method[k]["max_abs_pct"]):
            r = by_method[name]
            g = picked[picked["method"] == name]["rel_error"] * 100
            how = "met" if r["met"] else f"NOT met, {r['max_abs_pct'] / limit:.1f}x the limit"
            said.append(f"`{name}` max {r['max_abs_pct']:.3f}% ({how}; bias {r['bias_pct']:+.3f}%, sd "
                        f"{g.std():.3f}%, mean abs {r['mean_abs_pct']:.3f}%, n={int(r['n'])})")
        lines.append(f"- **{t['target']}**: " + "; ".join(said) + ".")
    return lines


def render_summary(df: pd.DataFrame, validation: Validation, *, dry_run: bool) -> str:
    info = validation.info
    parts = ["# GPU energy meter: validation against ground truth\n"]
    if dry_run:
        parts.append("**DRY RUN on a simulated GPU (virtual time): exercises the protocol and the "
                     "aggregation; these numbers say nothing about real hardware.**\n")
    parts.append("Written by `benchmarks/meter_validation.py`; protocol in "
                 "`tta_energy.experiments.meter_validation`, method and error model in `docs/meter.md`. "
                 "Errors are relative to the ground truth (energy per iteration from long back-to-back "
                 "blocks interleaved with the trials, interpolated in time). Targets are judged on steady "
                 "windows (inside continuous load, where the truth applies exactly), worst case over all "
                 "trials of both workloads.\n")
    targets = check_targets(df)
    parts.append(f"## Verdict (the meter's default is `{DEFAULT_METHOD}`)\n")
    parts.append("\n".join(_verdict_lines(df, targets)) + "\n")
    parts.append("\n## Targets by method (steady windows)\n")
    rows = []
    for t in targets:
        for name, r in sorted(t["by_method"].items(), key=lambda kv: kv[1]["max_abs_pct"]):  # type: ignore[union-attr]
            rows.append({"target": t["target"], "method": name, "trials": int(r["n"]),
                         "max_abs_pct": f"{r['max_abs_pct']:.3f}", "mean_abs_pct": f"{r['mean_abs_pct']:.3f}",
                         "met": "met" if r["met"] else "NOT met"})
    parts.append(_md_table(pd.DataFrame(rows)))
    excluded = df[(df["scenario"] == "steady") & ~df["continuous"].astype(bool)]
    if len(excluded):
        parts.append(f"\n{len(excluded)} steady rows left out: the bridge ran out before the other tools' "
                     f"bookkeeping ended (the GPU idled near an edge).\n")
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
    parts.append("\nHow far the truth itself holds: spread of the energy per iteration across blocks, and "
                 "the steady windows' truth from steady power x window time against iterations x energy per "
                 "iteration (differences here bound what the errors below can resolve).\n")
    parts.append(_md_table(truth_checks(df, validation), "{:.3f}"))
    parts.append("\n## Error by method and window (%, all trials)\n")
    parts.append("`steady`: inside continuous load (the tools' bookkeeping bridged by queued work), where "
                 "the truth applies exactly. `isolated`: one call from idle; its truth is still the steady "
                 "energy per iteration, so these rows include the GPU's own ramp from idle, not only "
                 "measurement error: compare the methods with each other there. "
                 "`meter_<estimator>_repeated_1s`: the call repeated until the window lasts 1 s "
                 "(`min_window_s`), energy per call.\n")
    parts.append(_md_table(summarise(df), "{:.3f}"))
    parts.append("\n## Sampler overhead (energy per 1-s call, paired with the same repetition's block "
                 "without sampler)\n")
    parts.append(_md_table(overhead_summary(df), "{:.4g}"))
    if validation.skipped:
        parts.append("\n## Skipped\n\n" + "\n".join(f"- {s}" for s in validation.skipped) + "\n")
    skipped_peers = getattr(validation.rig, "skipped_peers", {})
    if skipped_peers:
        lines = "\n".join(f"- {k}: {v}" for k, v in skipped_peers.items())
        parts.append(f"\n## Peers not run\n\n{lines}\n")
    return "\n".join(parts)
