"""Test data for the analysis tests: the study's subset, a synthetic full 7-model tree, synthetic H200 runs.

The full tree is built from the study's published results for 3 models (``../shared/paper-data`` or
$TTA_ENERGY_PAPER_DATA: unmodified files of its repository) by copying AudioLDM's files into
the Make-An-Audio and Tango folders and AudioLDM 2's into the Make-An-Audio 2 and Tango 2 folders, renaming
files and ``project_name`` prefixes as the study's repository names them. The numbers are
therefore AudioLDM's, which is all an import test needs: folder names, file names and model names.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

#: Per-model copies: (source folder, new folder) for experiments 1-2 and for experiment 3 / score files.
STEPS_BATCH_COPIES = [
    ("AudioLDM", "Make-an-Audio"),
    ("AudioLDM", "Tango"),
    ("AudioLDM2", "Make-an-Audio-2"),
    ("AudioLDM2", "Tango2"),
]
QUALITY_COPIES = [("AudioLDM", "MAA"), ("AudioLDM", "Tango"), ("AudioLDM2", "MAA2"), ("AudioLDM2", "Tango2")]

#: The study's published sanity statistics for AudioLDM 2 (sanitycheck/clap_analysis.csv and fad_analysis.csv
#: of its repository, commit 8374d05): the check values of the sanity tests.
PUBLISHED_SANITY = {
    ("clap", "audiocaps"): (0.9830224205916108, 0.00042991051036591845, 0.7551414619120596),
    ("clap", "clotho"): (0.9454257844818288, 0.004386247078192689, 0.8427008372794119),
    ("fad", "audiocaps"): (0.945493820621963, 0.0043754185385179835, 0.9242370500252819),
    ("fad", "clotho"): (0.9615143239132077, 0.0021932194188694306, 0.9634484134721533),
}


def paper_data_path() -> Path | None:
    """``../shared/paper-data`` relative to the repository (CI has it there), or $TTA_ENERGY_PAPER_DATA."""
    env = os.environ.get("TTA_ENERGY_PAPER_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "paper-data")
    return next((c for c in candidates if (c / "results").is_dir()), None)


def require_paper_data() -> Path:
    path = paper_data_path()
    if path is None:
        pytest.skip("the study's data subset (../shared/paper-data) is not next to the repository")
    return path


@functools.lru_cache(maxsize=1)
def load_paper_data():
    """The study's subset imported once per test session."""
    from tta_energy.analysis import study_import

    return study_import.load_study(require_paper_data())


def _rename_project(text: str, old: str, new: str) -> str:
    """Rewrite the ``project_name`` prefix of every row of a CodeCarbon CSV."""
    rows = list(csv.reader(io.StringIO(text)))
    col = rows[0].index("project_name")
    for row in rows[1:]:
        name = row[col]
        for sep in ("-inference", "_"):
            if name.startswith(old + sep):
                row[col] = new + name[len(old) :]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _truncate(text: str, rows: int | None) -> str:
    if rows is None:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[: rows + 1])


def _copy_model_dir(src: Path, dst: Path, old: str, new: str, quality_rows: int | None = None) -> None:
    for f in src.rglob("*"):
        if f.is_dir():
            continue
        rel = f.relative_to(src)
        name = f.name.replace(old, new, 1) if f.name.startswith(old) else f.name
        target = dst / rel.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = f.read_text(encoding="utf-8")
        if "project_name" in text.splitlines()[0]:
            text = _truncate(_rename_project(text, old, new), quality_rows)
        elif text.startswith("model,"):  # <M>_emissions.csv: model column
            text = text.replace(f"\n{old},", f"\n{new},")
        target.write_text(text, encoding="utf-8")


def _copy_score(src: Path, dst: Path, old_model: str, new_model: str) -> None:
    text = src.read_text(encoding="utf-8").replace(f"\n{old_model},", f"\n{new_model},")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text, encoding="utf-8")


def build_full_tree(dst: Path, *, quality_rows: int | None = None) -> Path:
    """A study repository with all 7 models (see the module docstring); ``quality_rows`` truncates logs."""
    src = require_paper_data()
    shutil.copytree(src, dst)
    if quality_rows is not None:
        for f in (dst / "results" / "quality_metrics" / "emissions").rglob("*_*.csv"):
            if not f.name.endswith("_emissions.csv"):
                f.write_text(_truncate(f.read_text(encoding="utf-8"), quality_rows), encoding="utf-8")
    for experiment in ("inference_steps", "batch_size"):
        for old, new in STEPS_BATCH_COPIES:
            _copy_model_dir(src / "results" / experiment / old, dst / "results" / experiment / new, old, new)
    for old, new in QUALITY_COPIES:
        _copy_model_dir(
            src / "results" / "quality_metrics" / "emissions" / old,
            dst / "results" / "quality_metrics" / "emissions" / new,
            old,
            new,
            quality_rows,
        )
        for metric, folder in (("clap", "CLAP"), ("fad", "FAD")):
            for base in (
                dst / "results" / "quality_metrics" / folder,
                dst / "inferences" / "quality_metrics" / folder / "output",
            ):
                _copy_score(
                    base / f"{old}_{metric}_scores.csv", base / f"{new}_{metric}_scores.csv", old, new
                )
    # the sanity check's second model, and the study's own statistics files
    sanity = dst / "sanitycheck"
    for metric, folder in (("clap", "CLAP"), ("fad", "FAD")):
        _copy_score(
            sanity / folder / f"AudioLDM2_{metric}_scores.csv",
            sanity / folder / f"SAO_{metric}_scores.csv",
            "AudioLDM2sanity",
            "SAOsanity",
        )
        lines = [
            "model,baseline,ancova_interaction_pvalue,ancova_satisfactory,pearson_correlation,pearson_pvalue,"
            "correlation_satisfactory"
        ]
        for dataset in ("audiocaps", "clotho"):
            r, p, ancova = PUBLISHED_SANITY[(metric, dataset)]
            lines.append(f"AudioLDM2,{dataset},{ancova!r},True,{r!r},{p!r},True")
        (sanity / f"{metric}_analysis.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    full = sanity / "Emissions" / "AudioLDM2"
    full.mkdir(parents=True)
    for dataset in ("audiocaps", "clotho"):
        raw = src / "results" / "quality_metrics" / "emissions" / "AudioLDM2" / f"AudioLDM2_{dataset}.csv"
        (full / f"AudioLDM2_{dataset}.csv").write_text(
            _truncate(raw.read_text(encoding="utf-8"), 24), encoding="utf-8"
        )
    return dst


# --------------------------------------------------------------------------------------------------------
# Synthetic measurements of this project (for the H200 comparison, phases and power trace)

PHASE_SHARES = {"text_encoding": 0.02, "denoising": 0.90, "decoding": 0.05, "vocoder": 0.03}
H200_SCALE = 0.4


def make_h200_runs(folder: Path, study_steps: pd.DataFrame) -> Path:
    """``folder/steps.csv``: the study's steps rows re-labelled as this project's H200 sweep, 0.4x the energy,
    split into phases, with a warm-up row per model and a gzip power trace under ``folder/traces``."""
    from tta_energy import schema

    runs = study_steps[list(schema.COLUMN_NAMES)].copy()
    runs["source"] = "tta-energy"
    runs["gpu_name"] = "NVIDIA H200"
    runs["gpu_energy_method"] = "nvml_counter"
    runs["cpu_energy_method"] = "estimate"
    runs["gpu_energy_J"] = runs["gpu_energy_J"] * H200_SCALE
    runs["gpu_energy"] = runs["gpu_energy_J"] / schema.J_PER_KWH
    for phase, share in PHASE_SHARES.items():
        runs[f"energy_{phase}_J"] = runs["gpu_energy_J"] * share
        runs[f"time_{phase}_s"] = runs["wall_s"] * share
    runs["repeat"] = runs["repeat"].astype(int)
    start = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    ends = start + np.cumsum(runs["wall_s"].to_numpy() + 2.0)
    runs["timestamp"] = [pd.Timestamp(e, unit="s", tz="UTC").isoformat() for e in ends]
    runs["trace_path"] = "traces/h200-steps.csv.gz"
    warmups = runs.groupby("model").head(1).copy()
    warmups["is_warmup"] = True
    warmups["gpu_energy_J"] = warmups["gpu_energy_J"] * 50  # a warm-up that must never reach a summary
    runs = pd.concat([warmups, runs], ignore_index=True)
    folder.mkdir(parents=True, exist_ok=True)
    schema.write_runs(folder / "steps.csv", runs)
    # a power trace at 10 Hz: idle 80 W, 400 W during each generation
    t = np.arange(start - 5, ends[-1] + 5, 0.1)
    power = np.full(len(t), 80.0)
    for end, wall in zip(ends, runs["wall_s"].iloc[len(warmups) :], strict=True):
        power[(t >= end - wall) & (t <= end)] = 400.0
    (folder / "traces").mkdir(exist_ok=True)
    with gzip.open(folder / "traces" / "h200-steps.csv.gz", "wt", encoding="utf-8") as fh:
        pd.DataFrame({"t": t, "power_W": power, "temperature_C": 40.0}).to_csv(fh, index=False)
    return folder / "steps.csv"


# --------------------------------------------------------------------------------------------------------
# Synthetic duration, guidance and precision sweeps (energies chosen so that the arithmetic is known)


def make_parameter_runs() -> pd.DataFrame:
    """Rows of the three sweeps beyond the study on one synthetic H200, plus rows no summary may use.

    duration, Stable Audio Open (47.55 s of latents whatever is asked): 5 s -> 90, 96 J; 10 s -> 100, 110 J.
    guidance, Tango: scale 3 -> 200, 220 J; scale 1 -> 120, 130 J; scale 5 -> 400 J; its duration row uses 3.
    precision, Stable Audio Open: float32 800 J, float16 150 J, bfloat16 140 J.
    A warm-up row (10^6 J) and an error row (10^6 J) in each sweep must never reach a mean.
    """
    from tta_energy import schema

    def row(experiment, model, dtype, duration_s, scale, energy, **extra):
        latent = 47.55 if model == "stable-audio-open" else 10.24
        audio = duration_s if model == "stable-audio-open" else 10.24
        return (
            schema.empty_row()
            | {
                "source": "tta-energy",
                "gpu_name": "NVIDIA H200",
                "experiment": experiment,
                "model": model,
                "size": "full",
                "dtype": dtype,
                "steps": 100,
                "denoiser_calls": 100,
                "n_prompts": 1,
                "waveforms_per_prompt": 1,
                "n_clips": 1,
                "duration_s": duration_s,
                "audio_seconds": audio,
                "latent_seconds": latent,
                "guidance_scale": scale,
                "status": "ok",
                "gpu_energy_J": energy,
                "wall_s": energy / 400.0,
                "timestamp": "2026-01-01T00:00:00+00:00",
            }
            | extra
        )

    sao, tango = "stable-audio-open", "tango"
    rows = [
        *(row("duration", sao, "float16", 5.0, 7.0, e) for e in (90.0, 96.0)),
        *(row("duration", sao, "float16", 10.0, 7.0, e) for e in (100.0, 110.0)),
        row("duration", tango, "float32", 10.0, 3.0, 210.0),
        *(row("guidance", tango, "float32", 10.0, 3.0, e) for e in (200.0, 220.0)),
        *(row("guidance", tango, "float32", 10.0, 1.0, e) for e in (120.0, 130.0)),
        row("guidance", tango, "float32", 10.0, 5.0, 400.0),
        row("precision", sao, "float32", 10.0, 7.0, 800.0),
        row("precision", sao, "float16", 10.0, 7.0, 150.0),
        row("precision", sao, "bfloat16", 10.0, 7.0, 140.0),
    ]
    for experiment, model, dtype, duration_s, scale in (
        ("duration", sao, "float16", 10.0, 7.0),
        ("guidance", tango, "float32", 10.0, 1.0),
        ("precision", sao, "float16", 10.0, 7.0),
    ):
        rows.append(row(experiment, model, dtype, duration_s, scale, 1e6, is_warmup=True))
        rows.append(row(experiment, model, dtype, duration_s, scale, 1e6, status="error"))
    return pd.DataFrame(rows)
