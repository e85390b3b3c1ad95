"""The study's published tree as it is on disk: where its folders are, the names and settings it uses for
each model, and how its raw CodeCarbon files are read (checked, one clear error naming file and column).

The study is "Diffused Responsibility" (Passoni et al., arXiv 2505.07615); its repository is
https://github.com/rickgiantsteps/diffusionGenAudio-energy-consumption. :mod:`.study_import` turns what is
read here into run-record rows and score tables.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tta_energy.errors import TtaError
from tta_energy.models.catalogue import entry


class StudyFormatError(TtaError):
    """The study's tree or one of its files is not as published; the message names the file and column."""



#: Every spelling the study uses for a model (folder names, short names, ``project_name`` prefixes).
_ALIASES: dict[str, str] = {
    "audioldm": "audioldm",
    "audioldm2": "audioldm2",
    "make-an-audio": "make-an-audio",
    "maa": "make-an-audio",
    "make-an-audio-2": "make-an-audio-2",
    "maa2": "make-an-audio-2",
    "stable audio open": "stable-audio-open",
    "stable-audio-open": "stable-audio-open",
    "sao": "stable-audio-open",
    "tango": "tango",
    "tango2": "tango2",
}

def canonical_model(name: str) -> str:
    """Map a study spelling (``Stable Audio Open``, ``SAO``, ``MAA2``, ``AudioLDM2sanity``) to canonical."""
    key = name.strip().lower()
    if key.endswith("sanity"):
        key = key[: -len("sanity")]
    try:
        return _ALIASES[key]
    except KeyError:
        raise StudyFormatError(
            f"unknown model name {name!r} in the study's data (known: {', '.join(sorted(set(_ALIASES)))})"
        ) from None


@dataclass(frozen=True)
class StudyModelSettings:
    """What the study ran for a model beyond the catalogue's defaults (precision, guidance scale and
    negative prompt are the catalogue's: :func:`study_defaults`)."""

    weights: str  # checkpoint id
    max_batch_per_pass: int | None = None  # Tango's generate_for_batch splits into passes of 8


STUDY_SETTINGS: dict[str, StudyModelSettings] = {
    "audioldm": StudyModelSettings("cvssp/audioldm-s-full-v2"),
    "audioldm2": StudyModelSettings("cvssp/audioldm2"),
    "stable-audio-open": StudyModelSettings("stabilityai/stable-audio-open-1.0"),
    "make-an-audio": StudyModelSettings("Text-to-Audio/Make-An-Audio:useful_ckpts/maa1_full.ckpt"),
    "make-an-audio-2": StudyModelSettings("bytedance/Make-An-Audio-2:useful_ckpts/maa2.ckpt"),
    "tango": StudyModelSettings("declare-lab/tango-full", max_batch_per_pass=8),
    "tango2": StudyModelSettings("declare-lab/tango2-full", max_batch_per_pass=8),
}


def study_defaults(model: str) -> tuple[str, float, str]:
    """(dtype, guidance scale, negative prompt) the study ran ``model`` with: the catalogue's defaults (no
    negative prompt is written as "")."""
    d = entry(model).defaults
    return d.dtype, d.guidance_scale, d.negative_prompt or ""


#: AudioLDM's batch experiment loaded another checkpoint than its other experiments.
AUDIOLDM_BATCH_WEIGHTS = "cvssp/audioldm"

DATASETS: tuple[str, ...] = ("audiocaps", "clotho")


def denoiser_iterations(model: str, steps: int) -> int:
    """Denoising iterations actually run for ``steps`` nominal steps, by the model's sampler spacing (the
    catalogue's): LDM's uniform DDIM of Make-An-Audio (2) runs 167 iterations for 150 steps, the diffusers
    and Tango schedulers exactly ``steps``."""
    return entry(model).defaults.denoiser_iterations(steps)


def denoiser_calls(model: str, steps: int, clips_per_call: int) -> int:
    """Denoiser forward passes of one call: iterations x passes (Tango makes 10 clips as 8 + 2)."""
    passes = 1
    limit = STUDY_SETTINGS[model].max_batch_per_pass
    if limit is not None:
        passes = -(-clips_per_call // limit)
    return denoiser_iterations(model, steps) * passes


# --------------------------------------------------------------------------------------------------------
# Locating the tree


@dataclass(frozen=True)
class StudyTree:
    root: Path
    results: Path
    sanitycheck: Path | None
    quality_inferences: Path | None  # inferences/quality_metrics

    @property
    def steps_dir(self) -> Path:
        return self.results / "inference_steps"

    @property
    def batch_dir(self) -> Path:
        return self.results / "batch_size"

    @property
    def quality_dir(self) -> Path:
        return self.results / "quality_metrics"


_EXPERIMENT_FOLDERS = ("inference_steps", "batch_size", "quality_metrics")


def locate_study(path: str | Path) -> StudyTree:
    """Locate ``results/``, ``sanitycheck/`` and ``inferences/quality_metrics/`` from a clone or results/."""
    path = Path(path)
    if not path.is_dir():
        raise StudyFormatError(
            f"{path}: not a folder (expected a copy of the study's repository or results/)"
        )
    if (path / "results").is_dir() and any((path / "results" / f).is_dir() for f in _EXPERIMENT_FOLDERS):
        results = path / "results"
    elif any((path / f).is_dir() for f in _EXPERIMENT_FOLDERS):
        results = path
    else:
        raise StudyFormatError(
            f"{path}: not a study tree: none of results/inference_steps, results/batch_size, "
            f"results/quality_metrics found (give the study's repository or its results/ folder)"
        )
    root = results.parent
    sanity = root / "sanitycheck"
    quality_inf = root / "inferences" / "quality_metrics"
    return StudyTree(
        root=root,
        results=results,
        sanitycheck=sanity if sanity.is_dir() else None,
        quality_inferences=quality_inf if quality_inf.is_dir() else None,
    )


def model_dirs(folder: Path) -> list[Path]:
    """The per-model subfolders of an experiment folder, sorted (hidden ones left out)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------------------------------------
# Reading CodeCarbon files

#: Columns every raw CodeCarbon row must have; the other 25 are ignored except those named below.
CODECARBON_REQUIRED: tuple[str, ...] = (
    "project_name",
    "duration",
    "emissions",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
)
NUMERIC_CODECARBON = ("duration", "emissions", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed")
_TEXT_CODECARBON = ("project_name", "timestamp", "codecarbon_version")


def rel_path(path: Path, tree_root: Path | None) -> str:
    """``path`` relative to the tree's root where it lies under it (how errors name a file)."""
    if tree_root is not None:
        try:
            return str(path.relative_to(tree_root))
        except ValueError:
            pass
    return str(path)


def read_codecarbon_records(path: Path, tree_root: Path | None = None) -> list[dict[str, object]]:
    """Read one raw CodeCarbon CSV: one dict per row with the text and numeric columns the import needs.

    Numbers are parsed with Python's ``float`` (correctly rounded), so the kWh values are the study's
    bit for bit. Errors name the file, the column and the data row.
    """
    where = rel_path(path, tree_root)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise StudyFormatError(f"{where}: not a readable CSV ({exc})") from None
    if header is None:
        raise StudyFormatError(f"{where}: empty file (no header, no rows)")
    index = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in CODECARBON_REQUIRED if c not in index]
    if missing:
        raise StudyFormatError(f"{where}: missing column(s) {', '.join(missing)}")
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise StudyFormatError(f"{where}: no rows (empty experiment)")
    records = []
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise StudyFormatError(
                f"{where}: data row {number} has {len(row)} fields, the header {len(header)}"
            )
        rec: dict[str, object] = {c: row[index[c]] if c in index else "" for c in _TEXT_CODECARBON}
        for col in NUMERIC_CODECARBON:
            cell = row[index[col]].strip()
            try:
                value = float(cell)
            except ValueError:
                what = "an empty value" if cell == "" else f"non-numeric {cell!r}"
                raise StudyFormatError(f"{where}: column '{col}' holds {what} (data row {number})") from None
            if not np.isfinite(value) or (col != "duration" and value < 0):
                raise StudyFormatError(
                    f"{where}: column '{col}' holds {cell!r} (data row {number}): "
                    f"expected a finite non-negative number"
                )
            rec[col] = value
        records.append(rec)
    return records


STEPS_RE = re.compile(r"(\d+)-steps")


def parse_steps(project_name: str, where: str) -> int:
    """The step count of a ``project_name``: first "digits followed by -steps" match, as the study did."""
    m = STEPS_RE.search(project_name)
    if m is None:
        raise StudyFormatError(
            f"{where}: column 'project_name' value {project_name!r} has no '<digits>-steps'"
        )
    return int(m.group(1))


