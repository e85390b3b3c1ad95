"""Where the energy goes: per-phase bars, power traces."""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from tta_energy.analysis.plots.common import (
    model_label,
    models_in,
    save_figure,
    skip_figure,
    slug,
    use_style,
)
from tta_energy.schema import PHASES


def phase_means(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean GPU energy per phase for each model and step count, over the rows with at least one phase
    measured (each phase's mean over the rows that have it)."""
    cols = [f"energy_{p}_J" for p in PHASES]
    if not set(cols) <= set(runs.columns):
        return pd.DataFrame()
    rows = runs.dropna(subset=cols, how="all")
    if rows.empty:
        return pd.DataFrame()
    groups = rows.groupby(["model", "steps"], sort=True)
    return groups[cols].mean().join(groups.size().rename("n_runs")).reset_index()


#: the most model panels in one row of the phase figure
_PHASE_COLUMNS = 4


def _experiments(runs: pd.DataFrame) -> str:
    """``steps sweep`` (or ``batch and steps sweeps``): the experiments ``runs`` come from."""
    if "experiment" not in runs.columns:
        return "runs"
    names = sorted(runs["experiment"].dropna().astype(str).unique())
    return f"{' and '.join(names)} sweep{'s' if len(names) > 1 else ''}"


def _only_study(runs: pd.DataFrame) -> bool:
    return not runs.empty and "source" in runs.columns and bool((runs["source"] == "study").all())


def plot_phases(runs: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """Stacked bars of the GPU energy of each phase (text encoding, denoising, decoding, vocoder)."""
    stem = f"phase-energy-{slug(label)}"
    means = phase_means(runs)
    if means.empty:
        skip_figure(
            figures,
            stem,
            f"{label}: no per-phase energies (energy_<phase>_J columns) in these runs"
            + ("; the study measured whole generations only" if _only_study(runs)
               else " (they need a GPU energy: NVML's counter)"),
            "phases",
        )
        return None
    use_style()
    models = models_in(means)
    # a grid of at most _PHASE_COLUMNS panels a row: one row of seven is unreadable at page width
    ncols = min(_PHASE_COLUMNS, len(models))
    nrows = math.ceil(len(models) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.0 * ncols + 0.6, 3.3 * nrows + 0.9), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    colours = sns.color_palette("Set2", len(PHASES))
    for ax, model in zip(axes.flat, models, strict=False):
        sub = means[means["model"] == model].sort_values("steps")
        bottom = np.zeros(len(sub))
        x = np.arange(len(sub))
        for phase, colour in zip(PHASES, colours, strict=True):
            values = sub[f"energy_{phase}_J"].fillna(0).to_numpy()
            ax.bar(x, values, bottom=bottom, color=colour, label=phase.replace("_", " "))
            bottom += values
        ax.set_xticks(x, [f"{int(s)}\nn={int(n)}" for s, n in zip(sub["steps"], sub["n_runs"], strict=True)])
        ax.tick_params(axis="x", labelsize="small")  # six "steps / n" labels side by side
        ax.set_title(model_label(model))
    fig.supxlabel("denoising steps (n = runs averaged)")
    fig.supylabel("GPU energy per generation [J]")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    fig.suptitle(f"Energy per phase — {label}")
    columns = [f"energy_{p}_J" for p in PHASES]
    measured = runs.dropna(subset=columns, how="all")  # the rows phase_means averaged
    caption = (
        f"{label}: mean GPU energy of each phase of a generation (text encoding, denoising loop, latent "
        f"decoding, vocoder), stacked, per model and step count; n under each bar is the number of runs "
        f"averaged. Drawn from the run rows' phase energies ({', '.join(f'`{c}`' for c in columns)}) of the "
        f"{_experiments(measured)}; each phase is averaged over the runs that report it (a phase none "
        f"reports adds nothing to the bar)."
    )
    return save_figure(fig, figures, stem, caption, "phases")


#: Time columns in order of preference: absolute clocks first (the meter's traces have ``unix_time`` and a
#: monotonic ``t``), so that a generation's window (from its row's timestamp) can be found in the trace.
_TIME_COLUMNS = ("unix_time", "timestamp", "timestamp_s", "t_s", "time_s", "elapsed_s", "t", "time")
_POWER_COLUMNS = ("power_W", "power_w", "gpu_power_W", "power_instant_W", "power")


def _gzip_text(raw: bytes) -> str:
    """Every member of a gzip stream (the trace writer appends one per process), up to where it ends: a
    sweep killed while writing leaves its trace without an end of stream, and the rows before the cut are
    still a valid trace."""
    parts = []
    while raw:
        member = zlib.decompressobj(wbits=31)
        try:
            parts.append(member.decompress(raw))
        except zlib.error:
            break
        if not member.eof:
            break
        raw = member.unused_data
    return b"".join(parts).decode("utf-8", errors="replace")


def read_trace(path: str | Path) -> pd.DataFrame:
    """A power trace (CSV, optionally gzip-compressed) as ``t_s`` (seconds from its start) and ``power_W``."""
    path = Path(path)
    raw = path.read_bytes()
    text = _gzip_text(raw) if path.suffix == ".gz" else raw.decode("utf-8", errors="replace")
    df = pd.read_csv(io.StringIO(text[: text.rfind("\n") + 1]))  # a last line cut short is left out
    tcol = next((c for c in _TIME_COLUMNS if c in df.columns), None)
    pcol = next((c for c in _POWER_COLUMNS if c in df.columns), None)
    if tcol is None or pcol is None:
        raise ValueError(
            f"{path}: a power trace needs a time column ({', '.join(_TIME_COLUMNS)}) and a power "
            f"column ({', '.join(_POWER_COLUMNS)})"
        )
    time = pd.to_numeric(df[tcol], errors="coerce")
    if time.isna().all():  # ISO timestamps
        stamps = pd.to_datetime(df[tcol], errors="coerce", utc=True, format="ISO8601")
        time = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    out = pd.DataFrame({"t_abs": time.astype("float64"), "power_W": pd.to_numeric(df[pcol], errors="coerce")})
    for extra in ("device", "power_instant_W", "temperature_C", "sm_clock_MHz"):
        if extra in df.columns:
            out[extra] = df[extra]
    out = out.dropna(subset=["t_abs", "power_W"]).sort_values("t_abs")
    out["t_s"] = out["t_abs"] - out["t_abs"].min()
    return out


def resolve_trace(trace_path: str, table_dir: Path, repo_root: Path | None = None) -> Path | None:
    """Find a run's trace file: as written, next to its run table, or under ``traces/`` there."""
    if not trace_path:
        return None
    p = Path(trace_path)
    candidates = [p, table_dir / p, table_dir / "traces" / p.name, table_dir / p.name]
    if repo_root is not None:
        candidates.append(repo_root / p)
    return next((c for c in candidates if c.is_file()), None)


def plot_power_trace(
    trace: pd.DataFrame | None,
    figures: str | Path,
    label: str,
    *,
    window: tuple[float, float] | None = None,
    title: str = "",
    reason: str = "",
) -> str | None:
    """GPU power against time for one generation (``window``: its start and end on the trace's clock)."""
    stem = f"power-trace-{slug(label)}"
    if trace is None or trace.empty:
        skip_figure(
            figures,
            stem,
            reason or f"{label}: no power trace file found for these runs; the study logged none",
            "power",
        )
        return None
    use_style()
    data = trace
    if window is not None:
        start, end = window
        margin = max(0.5, 0.15 * (end - start))
        data = trace[(trace["t_abs"] >= start - margin) & (trace["t_abs"] <= end + margin)]
        if data.empty:
            data = trace
            window = None
    fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
    t0 = data["t_abs"].min()
    devices = sorted(data["device"].unique()) if "device" in data.columns else [None]
    instantaneous = False
    for device in devices:
        part = data if device is None else data[data["device"] == device]
        suffix = "" if len(devices) == 1 else f" (GPU {device})"
        ax.plot(part["t_abs"] - t0, part["power_W"], lw=1.2, label=f"power{suffix}")
        if "power_instant_W" in part.columns and part["power_instant_W"].notna().any():
            instantaneous = True
            ax.plot(
                part["t_abs"] - t0,
                pd.to_numeric(part["power_instant_W"], errors="coerce"),
                lw=0.8,
                ls="--",
                label=f"instantaneous power{suffix}",
            )
    if window is not None:
        ax.axvspan(window[0] - t0, window[1] - t0, color="orange", alpha=0.2, label="generation")
    ax.legend(fontsize="small")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("GPU power [W]")
    ax.set_ylim(
        bottom=0, top=1.1 * float(data["power_W"].max())
    )  # from zero: a few watts must not look large
    ax.set_title(title or f"Power during one generation — {label}")
    caption = (
        f"{label}: GPU power sampled by the meter during one generation"
        f"{' (' + title + ')' if title else ''}; the y axis starts at 0 W. Drawn from the power trace file "
        f"that the run row's `trace_path` names. 'power' (solid): the trace's power column, in the meter's "
        f"traces `power_W`, NVML's power reading (nvmlDeviceGetPowerUsage), which the driver averages over "
        f"1 s on Ampere and newer GPUs."
    )
    if instantaneous:
        caption += (
            " 'instantaneous power' (dashed): `power_instant_W`, NVML's instantaneous power field "
            "(NVML_FI_DEV_POWER_INSTANT), read at the same moments."
        )
    if window is not None:
        caption += (
            " Shaded: the generation, from its run row's `timestamp` (when it ended) back over its `wall_s`, "
            "with up to max(0.5 s, 15 % of the generation) of trace either side."
        )
    else:
        caption += " No generation window is shaded: the whole trace is shown."
    return save_figure(fig, figures, stem, caption, "power")


def generation_trace(
    rows: pd.DataFrame, repo: Path | None = None
) -> tuple[pd.DataFrame | None, tuple[float, float] | None, str]:
    """The power trace around one generation of ``rows`` (prefers the steps sweep at 100 steps).

    Returns (trace, window, title) or (None, None, reason). ``window`` is the generation's (start, end) in
    seconds since the epoch, from its ``timestamp`` (end, UTC) and ``wall_s``; None when the trace's clock
    is not absolute or does not cover it.
    """
    if "trace_path" not in rows.columns:
        return None, None, "the run tables have no trace_path column"
    cand = rows[rows["trace_path"].fillna("").astype(str) != ""]
    if cand.empty:
        return None, None, "no run lists a power trace (trace_path is empty)"
    preference = (cand["experiment"] != "steps").astype(int) * 2 + (cand["steps"] != 100).astype(int)
    cand = cand.assign(_pref=preference.to_numpy()).sort_values("_pref", kind="stable")
    tried = set()
    for row in cand.itertuples():
        table_dir = Path(row.table_path).parent if getattr(row, "table_path", "") else Path(".")
        path = resolve_trace(str(row.trace_path), table_dir, repo)
        if path is None or path in tried:
            continue
        tried.add(path)
        try:
            trace = read_trace(path)
        except (ValueError, OSError) as exc:
            return None, None, f"trace {path} unreadable: {exc}"
        window = None
        try:
            end = pd.Timestamp(str(row.timestamp)).timestamp()
            start = end - float(row.wall_s)
            if trace["t_abs"].min() <= start and trace["t_abs"].max() >= end:
                window = (start, end)
        except (ValueError, TypeError):
            pass
        title = f"{model_label(row.model)}, {int(row.steps)} steps, {row.experiment} sweep"
        return trace, window, title
    return None, None, "the trace files named in trace_path were not found next to the run tables"
