"""Read the "Diffused Responsibility" study's published data into the project's run-record schema.

The study's repository (https://github.com/rickgiantsteps/diffusionGenAudio-energy-consumption) keeps one
CodeCarbon CSV per tracker, with the setting of a row encoded only in its file name and ``project_name``
(the tree is located and its files read by :mod:`.study_tree`). This module turns

* ``results/inference_steps/<Model>/<Model>-emissions-run<k>.csv``                -> experiment ``steps``
* ``results/batch_size/<Model>/[batch<b>/]<Model>-emissions-batch<b>[-n<i>]-run<k>.csv`` -> ``batch``
* ``results/quality_metrics/emissions/<M>/<M>_<dataset>.csv``                      -> ``quality``
* ``sanitycheck/Emissions/<M>/<M>_<dataset>.csv`` (full data sets, if present)    -> ``quality_full``

into schema rows (``source='study'``, energies in joules next to the untouched kWh columns), and the CLAP /
FAD score files and the sanity-check files into tidy score tables. It also reads the study's own aggregate
files (``<Model>-mean.csv``, ``total.csv``, ...) so that reproductions can be checked against them.

``PATH`` may be a clone of the repository or just a copy of its ``results/`` tree; ``sanitycheck/`` and
``inferences/quality_metrics/`` are looked for next to ``results/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tta_energy import markdown, schema
from tta_energy.analysis.study_tree import (
    AUDIOLDM_BATCH_WEIGHTS,
    DATASETS,
    NUMERIC_CODECARBON,
    STEPS_RE,
    STUDY_SETTINGS,
    StudyFormatError,
    StudyTree,
    canonical_model,
    denoiser_calls,
    locate_study,
    model_dirs,
    parse_steps,
    read_codecarbon_records,
    rel_path,
    study_defaults,
)
from tta_energy.errors import first_line
from tta_energy.fileio import own_output_folder, read_csv_exact, staging_folder
from tta_energy.levers.spec import DEFAULT_SPEC
from tta_energy.models.catalogue import BUILTIN_NAMES
from tta_energy.study import STUDY_DURATION_S, STUDY_GPU_NAME, STUDY_PROMPT, STUDY_STRUCT_CAPTION

J_PER_KWH = schema.J_PER_KWH


#: The study's models: the catalogue's built-in ones, in its order.
CANONICAL_MODELS: tuple[str, ...] = BUILTIN_NAMES


# --------------------------------------------------------------------------------------------------------
# Building schema rows


def _config_id(**parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return "study-" + hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]


#: Per-row facts the readers attach to each CodeCarbon record before the schema frame is built.
_META = (
    "experiment",
    "model",
    "steps",
    "repeat",
    "clips_per_call",
    "weights",
    "prompt",
    "dataset",
    "caption_id",
    "batch_call_index",
    "study_file",
)


def _schema_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    """Schema rows (plus in-memory columns ``batch_call_index`` and ``study_file``) from tagged records."""
    rec = pd.DataFrame.from_records(records)
    n = len(rec)
    out = pd.DataFrame({name: np.full(n, value, dtype=object) for name, value in schema.empty_row().items()})
    models = rec["model"].to_numpy()
    settings = [study_defaults(m) for m in models]
    clips = rec["clips_per_call"].astype(int).to_numpy()
    steps = rec["steps"].astype(int).to_numpy()
    out["source"] = "study"
    out["run_id"] = "study/" + rec["experiment"] + "/" + rec["model"]
    out["experiment"] = rec["experiment"]
    out["repeat"] = rec["repeat"].astype(int)
    out["is_warmup"] = False
    out["model"] = models
    out["weights"] = rec["weights"]
    out["size"] = "full"
    out["dtype"] = [dtype for dtype, _, _ in settings]
    out["optimize"] = DEFAULT_SPEC
    out["steps"] = steps
    out["denoiser_calls"] = [denoiser_calls(m, s, c) for m, s, c in zip(models, steps, clips, strict=True)]
    out["n_prompts"] = 1
    out["waveforms_per_prompt"] = clips
    out["n_clips"] = clips
    out["duration_s"] = STUDY_DURATION_S
    out["audio_seconds"] = STUDY_DURATION_S * clips
    out["guidance_scale"] = [scale for _, scale, _ in settings]
    out["negative_prompt"] = [negative for _, _, negative in settings]
    out["prompt"] = rec["prompt"]
    out["dataset"] = rec["dataset"]
    out["caption_id"] = rec["caption_id"]
    out["status"] = "ok"
    out["error"] = ""
    out["wall_s"] = rec["duration"]  # CodeCarbon's duration: not synchronised, but the only time logged
    out["gpu_energy_J"] = rec["gpu_energy"] * J_PER_KWH
    out["gpu_energy_method"] = "study_codecarbon"
    out["meter_window_s"] = rec["duration"]
    out["meter_calls"] = 1
    out["cpu_energy_J"] = rec["cpu_energy"] * J_PER_KWH
    out["ram_energy_J"] = rec["ram_energy"] * J_PER_KWH
    out["cpu_energy_method"] = "study_codecarbon"
    out["co2_kg"] = rec["emissions"]
    for col in NUMERIC_CODECARBON:  # kept exactly as the study logged them (kWh, s, kg)
        out[col] = rec[col]
    out["gpu_name"] = STUDY_GPU_NAME
    out["codecarbon_version"] = rec["codecarbon_version"]
    out["timestamp"] = rec["timestamp"]
    out["config_id"] = [
        _config_id(model=m, experiment=e, weights=w, steps=int(s), clips=int(c), dataset=d)
        for m, e, w, s, c, d in zip(
            models, rec["experiment"], rec["weights"], steps, clips, rec["dataset"], strict=True
        )
    ]
    out["batch_call_index"] = rec["batch_call_index"].astype(int)
    out["study_file"] = rec["study_file"]
    return out


def _tag(records: list[dict[str, object]], **meta: object) -> list[dict[str, object]]:
    base = {"dataset": "", "caption_id": "", "batch_call_index": 0} | meta
    return [r | base for r in records]


def _prompt_for(model: str) -> str:
    return STUDY_STRUCT_CAPTION if model == "make-an-audio-2" else STUDY_PROMPT


_RUN_RE = re.compile(r"-emissions-run(\d+)\.csv$")
_BATCH10_RE = re.compile(r"-emissions-batch(\d+)-run(\d+)\.csv$")
_BATCH_CALL_RE = re.compile(r"-emissions-batch(\d+)-n(\d+)-run(\d+)\.csv$")


def import_steps(tree: StudyTree) -> pd.DataFrame:
    """Experiment 1: one row per (run, step count) and model; ``repeat`` = run - 1."""
    records: list[dict[str, object]] = []
    for mdir in model_dirs(tree.steps_dir):
        model = canonical_model(mdir.name)
        files = sorted(
            (f for f in mdir.iterdir() if f.is_file() and _RUN_RE.search(f.name)),
            key=lambda f: int(_RUN_RE.search(f.name).group(1)),
        )
        if not files:
            raise StudyFormatError(
                f"{rel_path(mdir, tree.root)}: no <Model>-emissions-run<k>.csv files (empty experiment)"
            )
        for f in files:
            run = int(_RUN_RE.search(f.name).group(1))
            rel = rel_path(f, tree.root)
            for r in read_codecarbon_records(f, tree.root):
                records += _tag(
                    [r],
                    experiment="steps",
                    model=model,
                    steps=parse_steps(str(r["project_name"]), rel),
                    repeat=run - 1,
                    clips_per_call=1,
                    weights=STUDY_SETTINGS[model].weights,
                    prompt=_prompt_for(model),
                    study_file=rel,
                )
    if not records:
        raise StudyFormatError(f"{rel_path(tree.steps_dir, tree.root)}: no model folders (empty experiment)")
    return _schema_frame(records)


def import_batch(tree: StudyTree) -> pd.DataFrame:
    """Experiment 2: one row per call; ``repeat`` = run - 1; the 10/b calls of a run make its 10 clips."""
    records: list[dict[str, object]] = []
    for mdir in model_dirs(tree.batch_dir):
        model = canonical_model(mdir.name)
        weights = AUDIOLDM_BATCH_WEIGHTS if model == "audioldm" else STUDY_SETTINGS[model].weights
        found: list[tuple[int, int, int, Path]] = []  # (batch, run, call, file)
        for f in mdir.iterdir():
            m = _BATCH10_RE.search(f.name)
            if f.is_file() and m:
                found.append((int(m.group(1)), int(m.group(2)), 0, f))
            elif f.is_dir():
                for g in f.iterdir():
                    m = _BATCH_CALL_RE.search(g.name)
                    if g.is_file() and m:
                        found.append((int(m.group(1)), int(m.group(3)), int(m.group(2)), g))
        if not found:
            raise StudyFormatError(
                f"{rel_path(mdir, tree.root)}: no <Model>-emissions-batch<b>[-n<i>]-run<k>.csv "
                f"files (empty experiment)"
            )
        # the order of the study's scripts: batch 10 first, then 5, 2, 1; runs ascending; calls ascending
        for batch, run, call, f in sorted(found, key=lambda t: (-t[0], t[1], t[2])):
            rel = rel_path(f, tree.root)
            records += _tag(
                read_codecarbon_records(f, tree.root),
                experiment="batch",
                model=model,
                steps=100,
                repeat=run - 1,
                clips_per_call=batch,
                weights=weights,
                prompt=_prompt_for(model),
                batch_call_index=call,
                study_file=rel,
            )
    if not records:
        raise StudyFormatError(f"{rel_path(tree.batch_dir, tree.root)}: no model folders (empty experiment)")
    return _schema_frame(records)


_QUALITY_FILE_RE = re.compile(r"^(.+)_(audiocaps|clotho)\.csv$")


@dataclass
class CaptionIndex:
    """Caption files of the quality experiment: file stem -> (file_name, caption), per dataset."""

    by_dataset: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    def lookup(self, dataset: str, stem: str) -> tuple[str, str]:
        entry = self.by_dataset.get(dataset, {}).get(stem)
        return entry if entry is not None else (f"{stem}.wav", "")


def _caption_keys(file_name: str) -> set[str]:
    """Stems a caption's file may appear under in ``project_name``: the study's scripts cut the file name at
    its first dot (``20070918.galloping.horse.wav`` -> ``20070918``); the plain stem is accepted too."""
    return {file_name.split(".")[0], Path(file_name).stem}


def read_captions(tree: StudyTree) -> CaptionIndex:
    """``inferences/quality_metrics/CLAP/{audiocaps,clotho}_captions.csv`` when present."""
    index = CaptionIndex()
    if tree.quality_inferences is None:
        return index
    for dataset in DATASETS:
        f = tree.quality_inferences / "CLAP" / f"{dataset}_captions.csv"
        if not f.is_file():
            continue
        df = _read_study_csv(f, rel_path(f, tree.root), dtype=str, keep_default_na=False)
        for col in ("file_name", "caption"):
            if col not in df.columns:
                raise StudyFormatError(f"{rel_path(f, tree.root)}: missing column '{col}'")
        entries: dict[str, tuple[str, str] | None] = {}
        for fn, cap in zip(df["file_name"], df["caption"], strict=True):
            for key in _caption_keys(fn):
                # a key two captions share identifies neither: such rows keep '<stem>.wav' and no prompt
                entries[key] = None if key in entries and entries[key] != (fn, cap) else (fn, cap)
        index.by_dataset[dataset] = {k: v for k, v in entries.items() if v is not None}
    return index


def _quality_records(
    folder: Path, tree: StudyTree, captions: CaptionIndex, experiment: str
) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for mdir in model_dirs(folder):
        model = canonical_model(mdir.name)
        files = sorted(f for f in mdir.iterdir() if f.is_file() and _QUALITY_FILE_RE.match(f.name))
        if not files:
            raise StudyFormatError(
                f"{rel_path(mdir, tree.root)}: no <M>_audiocaps.csv / <M>_clotho.csv files (empty experiment)"
            )
        for f in files:
            dataset = _QUALITY_FILE_RE.match(f.name).group(2)
            rel = rel_path(f, tree.root)
            for r in read_codecarbon_records(f, tree.root):
                name = str(r["project_name"])
                steps = parse_steps(name, rel)
                # '<M>_<dataset>-<x>-steps-<caption file stem>': the stem may hold spaces and dashes
                stem = name[STEPS_RE.search(name).end() :].removeprefix("-")
                file_name, caption = captions.lookup(dataset, stem)
                if model == "make-an-audio-2" and caption:
                    caption = f"<{caption.lower()} & all>"  # the structured caption the MAA2 script built
                records += _tag(
                    [r],
                    experiment=experiment,
                    model=model,
                    steps=steps,
                    repeat=0,
                    clips_per_call=1,
                    weights=STUDY_SETTINGS[model].weights,
                    prompt=caption,
                    dataset=dataset,
                    caption_id=file_name,
                    study_file=rel,
                )
    return records


def import_quality(tree: StudyTree, captions: CaptionIndex | None = None) -> pd.DataFrame:
    """Experiment 3: one row per generation (300 captions x 6 step counts x 2 data sets, one pass)."""
    folder = tree.quality_dir / "emissions"
    if not folder.is_dir():
        raise StudyFormatError(f"{rel_path(folder, tree.root)}: missing (quality experiment's emission logs)")
    records = _quality_records(folder, tree, captions or read_captions(tree), "quality")
    if not records:
        raise StudyFormatError(f"{rel_path(folder, tree.root)}: no model folders (empty experiment)")
    return _schema_frame(records)


def import_quality_full(tree: StudyTree, captions: CaptionIndex | None = None) -> pd.DataFrame | None:
    """The sanity check's generations on the full data sets (``sanitycheck/Emissions``), when published."""
    if tree.sanitycheck is None or not (tree.sanitycheck / "Emissions").is_dir():
        return None
    records = _quality_records(
        tree.sanitycheck / "Emissions", tree, captions or CaptionIndex(), "quality_full"
    )
    return _schema_frame(records) if records else None


# --------------------------------------------------------------------------------------------------------
# Score files

SCORE_COLUMNS: tuple[str, ...] = (
    "source",
    "model",
    "dataset",
    "steps",
    "metric",
    "value",
    "scope",
    "caption_id",
    "score_file",
)
METRICS: dict[str, str] = {"clap": "clap_score", "fad": "fad_score"}


def _read_study_csv(path: Path, where: str, **kwargs: Any) -> pd.DataFrame:
    """One of the study's CSV files, read exactly; a file that is empty, not UTF-8 or not CSV is refused in
    one line naming it (``where``)."""
    try:
        return read_csv_exact(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise StudyFormatError(f"{where}: empty file") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise StudyFormatError(f"{where}: not a readable UTF-8 CSV ({first_line(exc)})") from None


def read_score_file(path: Path, metric: str, scope: str, tree_root: Path | None = None) -> pd.DataFrame:
    """One ``<M>_clap_scores.csv`` / ``<M>_fad_scores.csv`` as tidy rows (model, data set, steps, value)."""
    where = rel_path(path, tree_root)
    df = _read_study_csv(path, where, dtype={"model": str, "baseline": str})
    value_col = METRICS[metric]
    missing = [c for c in ("model", "steps", "baseline", value_col) if c not in df.columns]
    if missing:
        raise StudyFormatError(f"{where}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise StudyFormatError(f"{where}: no rows")
    for col in ("steps", value_col):
        num = pd.to_numeric(df[col], errors="coerce")
        if num.isna().any():
            i = int(np.flatnonzero(num.isna().to_numpy())[0])
            raise StudyFormatError(
                f"{where}: column '{col}' holds non-numeric {df[col].iloc[i]!r} (data row {i + 1})"
            )
        df[col] = num
    bad = ~df["baseline"].isin(DATASETS)
    if bad.any():
        raise StudyFormatError(
            f"{where}: column 'baseline' holds {df['baseline'][bad].iloc[0]!r}, expected audiocaps or clotho"
        )
    return pd.DataFrame(
        {
            "source": "study",
            "model": [canonical_model(m) for m in df["model"]],
            "dataset": df["baseline"].to_numpy(),
            "steps": df["steps"].astype(int).to_numpy(),
            "metric": metric,
            "value": df[value_col].astype("float64").to_numpy(),
            "scope": scope,
            "caption_id": "",
            "score_file": where,
        }
    )


def _score_files(folder: Path, metric: str) -> list[Path]:
    suffix = f"_{metric}_scores.csv"
    return (
        sorted(f for f in folder.iterdir() if f.is_file() and f.name.endswith(suffix))
        if folder.is_dir()
        else []
    )


def import_scores(tree: StudyTree) -> pd.DataFrame:
    """CLAP and FAD scores of the 300-caption subsets (``scope='subset'``) and the full sets (``'full'``)."""
    frames = []
    for metric, folder_name in (("clap", "CLAP"), ("fad", "FAD")):
        files = _score_files(tree.quality_dir / folder_name, metric)
        if not files and tree.quality_inferences is not None:  # where the study's scripts wrote them
            files = _score_files(tree.quality_inferences / folder_name / "output", metric)
        frames += [read_score_file(f, metric, "subset", tree.root) for f in files]
        if tree.sanitycheck is not None:
            frames += [
                read_score_file(f, metric, "full", tree.root)
                for f in _score_files(tree.sanitycheck / folder_name, metric)
            ]
    if not frames:
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    scores = pd.concat(frames, ignore_index=True)
    dup = scores.duplicated(["model", "dataset", "steps", "metric", "scope"])
    if dup.any():
        row = scores[dup].iloc[0]
        raise StudyFormatError(
            f"{row['score_file']}: duplicate score for {row['model']} {row['dataset']} "
            f"{row['steps']} steps ({row['metric']}, {row['scope']})"
        )
    return scores


def import_published_sanity(tree: StudyTree) -> pd.DataFrame | None:
    """``sanitycheck/{clap,fad}_analysis.csv`` (the study's own statistics), when present."""
    if tree.sanitycheck is None:
        return None
    frames = []
    for metric in METRICS:
        f = tree.sanitycheck / f"{metric}_analysis.csv"
        if not f.is_file():
            continue
        df = _read_study_csv(f, rel_path(f, tree.root))
        need = ("model", "baseline", "ancova_interaction_pvalue", "pearson_correlation", "pearson_pvalue")
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise StudyFormatError(f"{rel_path(f, tree.root)}: missing column(s) {', '.join(missing)}")
        frames.append(
            pd.DataFrame(
                {
                    "metric": metric,
                    "model": [canonical_model(m) for m in df["model"]],
                    "dataset": df["baseline"],
                    "pearson_r": df["pearson_correlation"],
                    "pearson_p": df["pearson_pvalue"],
                    "ancova_p": df["ancova_interaction_pvalue"],
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else None


# --------------------------------------------------------------------------------------------------------
# The whole study

IMPORT_NOTE = "IMPORT.md"
#: the study's own sanity statistics (``sanitycheck/{clap,fad}_analysis.csv``), tidy
PUBLISHED_SANITY = "published_sanity.csv"
#: the study's aggregate files (means, standard deviations, batch totals, quality sums) in J, tidy
PUBLISHED_AGGREGATES = "published_aggregates.csv"
#: what an import writes of the study's own numbers beside its run tables (neither a run nor a score table)
PUBLISHED_FILES: tuple[str, ...] = (PUBLISHED_SANITY, PUBLISHED_AGGREGATES)


@dataclass
class StudyData:
    """Everything imported from one copy of the study."""

    tree: StudyTree
    runs: dict[str, pd.DataFrame]  # experiment -> schema rows (plus the 'study_file' column)
    scores: pd.DataFrame
    published_sanity: pd.DataFrame | None
    #: the study's own aggregate files in J (``compare.study_aggregates``), which a reproduction is checked
    #: against
    published_aggregates: pd.DataFrame | None = None

    def all_runs(self) -> pd.DataFrame:
        return pd.concat(list(self.runs.values()), ignore_index=True)


def load_study(path: str | Path) -> StudyData:
    """Import every experiment found in the tree. A tree needs at least one experiment."""
    tree = locate_study(path)
    captions = read_captions(tree)
    runs: dict[str, pd.DataFrame] = {}
    if tree.steps_dir.is_dir():
        runs["steps"] = import_steps(tree)
    if tree.batch_dir.is_dir():
        runs["batch"] = import_batch(tree)
    if (tree.quality_dir / "emissions").is_dir():
        runs["quality"] = import_quality(tree, captions)
    full = import_quality_full(tree, captions)
    if full is not None:
        runs["quality_full"] = full
    if not runs:
        raise StudyFormatError(
            f"{tree.results}: no experiment data (inference_steps, batch_size or quality_metrics/emissions)"
        )
    for name, df in runs.items():
        extra = [c for c in df.columns if c not in schema.COLUMN_NAMES]
        runs[name] = pd.concat(
            [schema.validate(df[list(schema.COLUMN_NAMES)], f"{name} rows of {tree.root}"), df[extra]], axis=1
        )
    from tta_energy.analysis.compare import study_aggregates

    aggregates = study_aggregates(tree)
    return StudyData(
        tree=tree, runs=runs, scores=import_scores(tree), published_sanity=import_published_sanity(tree),
        published_aggregates=aggregates if not aggregates.empty else None,
    )


def check_output_folder(out: str | Path) -> Path:
    """``out`` when import-study may write there: absent, empty, or an earlier import's (it holds the
    provenance note); checked before the study is read, so a refused folder costs nothing."""
    return own_output_folder(Path(out), "--out-dir", "import-study",
                             lambda folder: (folder / IMPORT_NOTE).is_file(), f"it would hold {IMPORT_NOTE}")


def write_study(data: StudyData, out: str | Path) -> list[Path]:
    """Write the run tables, ``scores.csv`` and a provenance note into ``out`` atomically (all or nothing).

    The files are written into a temporary sibling folder that replaces ``out`` only once all are complete.
    """
    out = check_output_folder(out)
    staging = staging_folder(out)
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary data folder
    try:
        written = []
        for name, df in data.runs.items():
            # a schema run table holds the schema's columns only; rows keep the study's file order
            schema.write_runs(schema.run_table_path(staging, name), df[list(schema.COLUMN_NAMES)])
            written.append(schema.run_table_path(out, name))
        _write_csv(staging / "scores.csv", data.scores)
        written.append(out / "scores.csv")
        if data.published_sanity is not None:
            _write_csv(staging / PUBLISHED_SANITY, data.published_sanity)
            written.append(out / PUBLISHED_SANITY)
        if data.published_aggregates is not None:
            _write_csv(staging / PUBLISHED_AGGREGATES, data.published_aggregates)
            written.append(out / PUBLISHED_AGGREGATES)
        (staging / IMPORT_NOTE).write_text(_import_note(data), encoding="utf-8")
        written.append(out / IMPORT_NOTE)
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format=None, lineterminator="\n")
    path.write_text(buf.getvalue(), encoding="utf-8")


def _replace_dir(staging: Path, out: Path) -> None:
    """Swap ``staging`` into place as ``out`` (the old ``out`` is removed only after the swap)."""
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{staging.name[-8:]}")
        out.rename(backup)
    try:
        staging.rename(out)
    except BaseException:
        if backup is not None:
            backup.rename(out)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _import_note(data: StudyData) -> str:
    lines = [
        "# Imported from the Diffused Responsibility study",
        "",
        "Written by `tta-energy import-study`; do not edit: re-run the command instead.",
        "",
    ]

    def models(df: pd.DataFrame) -> str:
        return ", ".join(sorted(df["model"].unique())) if len(df) else ""

    rows = [(f"{name}.csv", len(df), models(df)) for name, df in data.runs.items()]
    rows.append(("scores.csv", len(data.scores), models(data.scores)))
    for name, df in ((PUBLISHED_SANITY, data.published_sanity),
                     (PUBLISHED_AGGREGATES, data.published_aggregates)):
        if df is not None:
            rows.append((name, len(df), models(df)))
    lines += [
        markdown.table(["table", "rows", "models"], rows),
        "",
        "Conventions: `source=study`, `gpu_name=NVIDIA A40`, energies in J = CodeCarbon kWh x 3.6e6 "
        "(the kWh columns are kept unchanged), `repeat` = run index - 1, `denoiser_calls` = iterations "
        "actually run (Make-An-Audio (2) at 150 steps: 167; Tango batch 10: two passes).",
        "",
    ]
    return "\n".join(lines)
