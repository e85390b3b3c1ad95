"""``tta-energy analyze``: load run and score tables, compute the analysis tables, write all or nothing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tta_energy import markdown, schema
from tta_energy.analysis import compare, efficiency, pareto, sanity, study_import, study_tree, summaries
from tta_energy.analysis.summaries import AnalysisError
from tta_energy.errors import TtaError
from tta_energy.fileio import own_output_folder, read_csv_exact, staging_folder, warn_if_cut
from tta_energy.intervals import DEFAULT_RESAMPLES, check_resamples

#: The analysis tables and the columns each has at least (header-only tables keep these).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "steps_summary": (
        "model",
        "steps",
        "n_runs",
        "gpu_energy_J_mean",
        "gpu_energy_J_std",
        "energy_J_mean",
        "codecarbon_duration_s_mean",
    ),
    "steps_fit": ("model", "slope_J_per_step", "intercept_J", "r2"),
    "batch_summary": (
        "model",
        "n_clips",
        "gpu_energy_J_per_10_clips_mean",
        "gpu_energy_J_per_10_clips_std",
        "ratio_to_batch1",
    ),
    "pareto": ("dataset", "metric", "model", "steps", "gpu_energy_J_mean", "score", "pareto_optimal"),
    "sanity": ("metric", "model", "dataset", "pearson_r", "pearson_p", "ancova_p"),
    "quality_energy": ("model", "steps", "dataset", "n_captions", "gpu_energy_J_mean", "welch_p"),
    "host_summary": ("model", "n_generations", "gpu_busy_fraction_mean", "power_W_mean",
                     "denoising_J_per_call_mean", "cpu_time_per_wall_mean"),
    "efficiency": ("model", "gflop_per_call", "slope_J_per_call", "denoiser_tflop_per_J",
                   "generation_tflop_per_J", "ceiling_tflop_per_J"),
    "batch_efficiency": ("model", "n_prompts", "waveforms_per_prompt", "n_runs", "denoising_tflop_per_J",
                         "ceiling_tflop_per_J"),
}

#: Where ``analyze --figures`` draws the figures, under its output folder (:mod:`.figures`).
FIGURES_FOLDER = "figures"
#: A figures folder's index page: every figure with its one-line explanation
#: (:func:`tta_energy.analysis.reproduce.write_index`). Here, not beside the figures' code, so that
#: ``analyze`` can look for earlier figures without importing matplotlib.
INDEX_FILE = "index.md"

SCORE_REQUIRED = ("model", "dataset", "steps", "metric", "value")
PUBLISHED_SANITY = study_import.PUBLISHED_SANITY


@dataclass
class AnalysisInput:
    runs: pd.DataFrame
    scores: pd.DataFrame | None = None
    published_sanity: pd.DataFrame | None = None
    study_tree: study_tree.StudyTree | None = None
    #: the study's aggregate files in J (``published_aggregates.csv`` of an import, or read from the tree)
    published_aggregates: pd.DataFrame | None = None
    sources: list[str] = field(default_factory=list)  # what was read, for the README
    ceilings: pd.DataFrame | None = None  # bf16 matmul ceilings found with the runs (read_ceilings)


def is_score_table(path: Path) -> bool:
    return set(SCORE_REQUIRED) <= schema.csv_header(path)


#: tables given or found with the runs that are read on their own (the study's published numbers, the bf16
#: ceilings of :func:`.efficiency.read_ceilings`), never as run or score tables
SIDE_TABLES = (*study_import.PUBLISHED_FILES, efficiency.CEILING_FILE)


def find_tables(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """Run tables and score tables among ``paths`` (folders are searched recursively; :data:`SIDE_TABLES`
    are passed over)."""
    runs: list[Path] = []
    scores: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            candidates = sorted(p.rglob("*.csv"))
        elif p.is_file():
            candidates = [p]
        else:
            raise TtaError(f"{p}: no such file or folder")
        for c in candidates:
            if c.resolve() in seen or c.name in SIDE_TABLES:
                continue
            seen.add(c.resolve())
            if schema.is_run_table(c):
                runs.append(c)
            elif is_score_table(c):
                scores.append(c)
            elif p.is_file():
                raise schema.SchemaError(
                    f"{c}: neither a run table (schema header) nor a score table "
                    f"(columns {', '.join(SCORE_REQUIRED)})"
                )
    return runs, scores


def run_tables_in(paths: Sequence[str | Path]) -> list[Path]:
    """The run tables among ``paths`` (:func:`find_tables`); none is one line naming how many CSV files were
    found there and passed over as another kind (a header that is not a run table's, or not text)."""
    runs, scores = find_tables(paths)
    if not runs:
        raise _no_run_tables(paths, scores)
    return runs


def _no_run_tables(paths: Sequence[str | Path], scores: list[Path]) -> TtaError:
    """The error of :func:`run_tables_in` for ``paths``, where :func:`find_tables` found only ``scores``."""
    csvs = {c for p in map(Path, paths) for c in (p.rglob("*.csv") if p.is_dir() else [p])}
    passed = sorted(c for c in csvs if c not in scores and c.name not in SIDE_TABLES)
    return no_run_tables(paths, passed, see="; `tta-energy summary` checks a table")


def no_run_tables(paths: Sequence[str | Path], passed: Sequence[Path], *, see: str = "",
                  then: str = "") -> TtaError:
    """The one line of every command that found no run table under ``paths``: how many CSV files were
    passed over as another kind (``passed``) and one of them; ``see`` adds to the pointer to the schema,
    ``then`` says what to do."""
    why = (f": {len(passed)} CSV file(s) there, such as {passed[0]}, have no run table's header (see "
           f"`tta-energy schema`{see})") if passed else ""
    return TtaError(f"no run tables under {', '.join(map(str, paths))}{why}{then}")


def find_published(paths: Iterable[str | Path], name: str) -> pd.DataFrame | None:
    """A file of the study's own numbers that ``import-study`` wrote (``published_sanity.csv``,
    ``published_aggregates.csv``) in or under ``paths``, if any: the first found."""
    for p in map(Path, paths):
        found = sorted(p.rglob(name)) if p.is_dir() else [p] if p.name == name else []
        if found:
            return read_csv_exact(found[0])
    return None


def find_published_sanity(paths: Iterable[str | Path]) -> pd.DataFrame | None:
    """The study's own sanity statistics (``published_sanity.csv`` written by ``import-study``), if given."""
    return find_published(paths, PUBLISHED_SANITY)


def check_score_file(path: Path) -> None:
    """A ``--scores`` table: an existing file (score tables in a folder are found through ``--runs``); else
    one line naming the option and what it takes."""
    takes = (f"give a score table (a CSV file with columns {', '.join(SCORE_REQUIRED)}); --runs finds the "
             "score tables in a folder")
    if path.is_dir():
        raise TtaError(f"--scores {path} is a folder: {takes}")
    if not path.is_file():
        raise TtaError(f"--scores {path} does not exist: {takes}")


def read_scores(path: Path) -> pd.DataFrame:
    df = read_csv_exact(
        path,
        dtype={"model": str, "dataset": str, "metric": str, "caption_id": str, "scope": str, "source": str},
        keep_default_na=False,
        na_values=[""],
    )
    missing = [c for c in SCORE_REQUIRED if c not in df.columns]
    if missing:
        raise schema.SchemaError(f"{path}: missing column(s) {', '.join(missing)}")
    for col in ("steps", "value"):
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna()
        if bad.any():
            raise schema.SchemaError(f"{path}: column '{col}' holds non-numeric {df[col][bad].iloc[0]!r}")
        df[col] = num
    df["steps"] = df["steps"].astype(int)
    for col, default in (("source", "tta-energy"), ("scope", "subset"), ("caption_id", "")):
        if col not in df.columns:
            df[col] = default
        df[col] = df[col].fillna(default).astype(str)
    return df


def refuse_repeated_rows(names: Sequence[str], frames: Sequence[pd.DataFrame]) -> None:
    """Refuse run rows that two inputs both hold (:data:`schema.ROW_KEY`): the study given as a tree and as
    its import, a table and its copy. Counted twice they would skew every mean, count and fit; dropping one
    copy would guess which input the user meant and would hide inputs that only mostly overlap, so the one
    line names both and the user gives each measurement once."""
    seen: list[tuple[str, set[str]]] = []
    for name, frame in zip(names, frames, strict=True):
        keys = set(schema.row_keys(frame)) if len(frame) else set()
        for other, other_keys in seen:
            both = len(keys & other_keys)
            if both:
                raise TtaError(f"{both} run row(s) of {name} are also in {other}: the same measurements "
                               "given twice would count twice; give each table or study once")
        seen.append((name, keys))


def load_inputs(
    study: str | Path | None = None, runs: Sequence[str | Path] = (), scores: Sequence[str | Path] = ()
) -> AnalysisInput:
    """Runs and scores from a study tree (imported in memory) and/or run/score tables and folders."""
    if study is None and not runs:
        raise TtaError("give --study PATH (a copy of the study) or --runs PATH ... (run tables or folders)")
    for score_file in map(Path, scores):  # before any table is read
        check_score_file(score_file)
    frames, score_frames, sources = [], [], []
    run_sources: list[str] = []  # what each of ``frames`` came from, for the error naming a repeated row
    published = aggregates = None
    tree = None
    if study is not None:
        data = study_import.load_study(study)
        tree = data.tree
        frames.append(data.all_runs())
        if not data.scores.empty:
            score_frames.append(data.scores)
        published, aggregates = data.published_sanity, data.published_aggregates
        sources.append(f"study tree {tree.root}")
        run_sources.append(f"--study {study}")
    run_files, score_files = find_tables(runs) if runs else ([], [])
    if runs and not run_files:
        raise _no_run_tables(runs, score_files)
    for f in run_files:
        warn_if_cut(f)  # the row a killed writer was appending is left out, and said so
        # table_path: the power traces lie next to their table
        frames.append(schema.read_for_analysis(f).assign(table_path=str(f)))
        sources.append(str(f))
        run_sources.append(str(f))
    refuse_repeated_rows(run_sources, frames)
    for f in list(score_files) + [Path(s) for s in scores]:
        score_frames.append(read_scores(f))
        sources.append(str(f))
    if runs:  # the study's own numbers, as written next to an import
        published = published if published is not None else find_published_sanity(runs)
        if aggregates is None:
            aggregates = find_published(runs, study_import.PUBLISHED_AGGREGATES)
    all_runs = pd.concat(frames, ignore_index=True)
    all_scores = pd.concat(score_frames, ignore_index=True) if score_frames else None
    ceilings = efficiency.read_ceilings(runs)
    return AnalysisInput(all_runs, all_scores, published_sanity=published, study_tree=tree, sources=sources,
                         ceilings=ceilings, published_aggregates=aggregates)


@dataclass
class AnalysisResult:
    tables: dict[str, pd.DataFrame]
    notes: dict[str, str]  # table -> why it is empty
    extra: dict[str, pd.DataFrame]  # reproduction.csv, ...


def build_tables(
    inp: AnalysisInput,
    *,
    drop_study_warmup: bool = False,
    n_boot: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> AnalysisResult:
    """Compute the analysis tables; a table whose experiment is absent is empty, with a note saying why."""
    runs = summaries.usable_runs(inp.runs, drop_study_warmup=drop_study_warmup)
    tables: dict[str, pd.DataFrame] = {}
    notes: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], pd.DataFrame]) -> None:
        try:
            tables[name] = fn()
        except AnalysisError as exc:
            tables[name] = pd.DataFrame(columns=list(TABLE_COLUMNS[name]))
            notes[name] = str(exc)

    def fit() -> pd.DataFrame:
        if tables["steps_summary"].empty:
            raise AnalysisError(notes["steps_summary"])
        return summaries.steps_fit(tables["steps_summary"])

    attempt("steps_summary", lambda: summaries.steps_summary(runs))
    attempt("steps_fit", fit)
    attempt("batch_summary", lambda: summaries.batch_summary(runs))
    attempt("pareto", lambda: pareto.pareto_table(runs, inp.scores, n_boot=n_boot, seed=seed))
    attempt("sanity", lambda: sanity.sanity_table(inp.scores, inp.published_sanity))
    attempt("quality_energy", lambda: summaries.quality_energy_summary(runs))
    attempt("host_summary", lambda: summaries.host_summary(runs))
    attempt("efficiency", lambda: efficiency.efficiency_table(runs, inp.ceilings))
    attempt("batch_efficiency", lambda: efficiency.batch_efficiency(runs, inp.ceilings))
    if len(notes) == len(TABLE_COLUMNS):
        raise AnalysisError("nothing to analyse: " + "; ".join(f"{k}: {v}" for k, v in notes.items()))
    extra = {}
    if inp.published_aggregates is not None and not inp.published_aggregates.empty:
        extra["reproduction"] = compare.reproduction_table(
            inp.published_aggregates, tables["steps_summary"], tables["batch_summary"], tables["pareto"]
        )
    return AnalysisResult(tables, notes, extra)


#: the line of the README.md that ``analyze`` writes that marks a folder as its own
WRITTEN_BY = "Written by `tta-energy analyze`."


def check_output_folder(out: str | Path) -> Path:
    """``out`` when analyze may write there: absent, empty, or an earlier analyze's (its README.md says so).
    Analyze replaces its tables and README.md, so a folder of other files (a repository's root, say) is
    refused with one line before anything is read."""
    def ours(folder: Path) -> bool:
        readme = folder / "README.md"
        return readme.is_file() and WRITTEN_BY in readme.read_text(encoding="utf-8", errors="replace")

    return own_output_folder(Path(out), "--out-dir", "analyze", ours,
                             f"its README.md would say '{WRITTEN_BY}'")


def write_tables(result: AnalysisResult, out: str | Path, readme: str) -> list[Path]:
    """Write every table to a staging folder, then move the files into ``out`` (nothing on failure); ``out``
    is one :func:`check_output_folder` took."""
    out = Path(out)
    staging = staging_folder(out)
    try:
        # README.md first: a run stopped while moving the files leaves a folder the next run takes as its own
        names = ["README.md"]
        (staging / "README.md").write_text(readme, encoding="utf-8")
        for name, df in {**result.tables, **result.extra}.items():
            df.to_csv(staging / f"{name}.csv", index=False, lineterminator="\n")
            names.append(f"{name}.csv")
        out.mkdir(parents=True, exist_ok=True)
        for n in names:
            os.replace(staging / n, out / n)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / n for n in names]


def readme_text(
    inp: AnalysisInput, result: AnalysisResult, *, drop_study_warmup: bool, n_boot: int, seed: int
) -> str:
    """What each table holds, how it was made, and where it deliberately differs from the study."""
    lines = [
        "# Analysis tables",
        "",
        f"{WRITTEN_BY} Energies in joules (J); GPU energy per "
        "generation unless the column says otherwise. Rows are grouped by platform "
        "(`source, gpu_name, model, dtype, size`) before anything is averaged.",
        "",
        "Inputs:",
        *[f"- {s}" for s in inp.sources],
        "",
        f"Options: study warm-up rows {'excluded' if drop_study_warmup else 'included (as the study did)'}; "
        f"bootstrap resamples {n_boot} (seed {seed}); intervals are 95 %.",
        "",
    ]
    files = [
        ("steps_summary.csv", "per model x steps: n_runs, mean / sample std (ddof 1) / SEM / t interval of "
         "GPU energy; energy per second of audio (`gpu_energy_J_per_audio_s_mean`, J/s) and per 1000 clips "
         "(`gpu_energy_Wh_per_1000_clips_mean`, Wh: the AI Energy Score leaderboard's unit, batch 1); "
         "CodeCarbon total energy (`energy_J_*`) and duration (`codecarbon_duration_s_*`), per denoiser "
         "call; `gpu_energy_kWh_*` = the study's own arithmetic on its kWh column"),
        ("steps_fit.csv", "least squares of the per-step-count mean GPU energy vs nominal steps "
         "(`slope_J_per_step, intercept_J, r2`, the slope's standard error and t interval "
         "`slope_J_per_step_ci_low/high`; `n_points`: the step counts fitted) and vs denoiser calls actually "
         "made (`*_calls`)"),
        ("batch_summary.csv", "energy to make 10 clips at each batch size (per run: sum over its calls; then "
         "mean / std over runs), per clip, per second of audio (J/s), per 1000 clips (Wh), "
         "`ratio_to_batch1`; `study_error_J` is the error bar the study drew"),
        ("pareto.csv", "per data set x metric: each (model, steps) with mean GPU energy per generation, "
         "score, `pareto_optimal` (strict dominance), `front_frequency` under bootstrap, energy interval"),
        ("sanity.csv", "subset vs full-set scores: Pearson r / p, OLS `score ~ steps * C(group)` "
         "interaction p (`ancova_p`), mean shift; `published_*` = the study's own values where present"),
        ("quality_energy.csv", "the quality sweep's energy per caption, per model x steps x caption set: "
         "n_captions, mean / std / t interval, Spearman rho of energy vs caption length, "
         "`ratio_to_reference_dataset` (over AudioCaps) and Welch's t test between the two caption sets"),
        ("host_summary.csv", "the steps sweep's generations that carry host diagnostics, per model (all step "
         "counts together): `n_generations`, mean GPU busy fraction (share of NVML's utilisation samples "
         "with a kernel running) with its t interval, mean GPU power and idle power (W), `idle_energy_share` "
         "(idle power x wall time / energy), energy per denoiser call of the denoising phase "
         "(J), and the process's CPU time / wall time (`cpu_time_per_wall_*`)"),
        ("efficiency.csv", "the steps sweep's FLOP per joule, per platform and model: FLOPs of one denoiser "
         "call (`gflop_per_call`, classifier-free guidance, 10 s, batch 1, counted by `tta-energy describe`) "
         "over the energy of one call (`slope_J_per_call`: energy against denoiser calls over every run, "
         "`n_generations` of them), "
         "and of a whole generation at 100 steps (`generation_*`: denoiser calls plus text encoders, decoder "
         "and vocoder, over the mean energy), both in TFLOP/J with 95% intervals; `ceiling_tflop_per_J` is "
         "the same GPU's bf16 matrix-product ceiling where a `levers_ceiling.csv` was found with the runs, "
         "and `*_fraction_of_ceiling` the ratio to it"),
        ("batch_efficiency.csv", "the batch sweep's denoising phase in the same unit, per layout "
         "(`n_prompts` x `waveforms_per_prompt`): the FLOPs of one clip (one denoiser call x the sampler's "
         "iterations, `denoising_gflop_per_clip`) over the phase's energy per clip (`energy_denoising_J` "
         "summed over a run's calls over its clips; mean over its `n_runs` runs), TFLOP/J with a 95% "
         "interval over the runs (none with one), and the fraction of the same GPU's ceiling; rows without "
         "phase energies (the study's) say so in `reason`"),
        ("pareto_h200.csv", "written by `notebooks/03_quality_pareto.py` (`make reproduce`): the study's "
         "published scores against A40 and H200 energy per clip (H200 study default; best lossless levers "
         "where measured), `on_front_a40` / `on_front_h200_default` / `on_front_h200_levers` per point set "
         "and `front_change` (A40 -> H200 default: joins, leaves, stays, off)"),
        ("spread_h200.csv", "written by `make reproduce` (`tta_energy.analysis.reproduce`) from the H200's "
         "repeated sweeps: per experiment x model, `log(gpu_energy_J) ~ configuration + random intercept per "
         "process (run_id)` fitted by REML; `n_gpus`: the cards behind the processes; "
         "`between_process_sd_pct` / `within_process_sd_pct` (exp(SD) - 1, "
         "in percent), `between_process_share` of the variance with a parametric-bootstrap 95% interval "
         "(`bootstrap_draws` refits, seed 0), `gpu_busy_fraction_mean`, `energy_time_slope` / "
         "`energy_time_r2` (log energy on log wall time within configurations); NaN with a `reason` where "
         "the rows cannot separate processes from configurations"),
        ("cell_intervals_h200.csv", "written with spread_h200.csv: per cell of the H200's repeated sweeps, "
         "`n_runs`, `n_processes`, `gpu_energy_J_mean` and the 95% half-width relative to the mean from the "
         "repeats alone (`ci95_half_width_rel_repeats`, Student t: the campaign's rule) and with the process "
         "level counted "
         "(`ci95_half_width_rel_processes`: Wald interval of the cell's log mean in the mixed model with a "
         "random intercept per process)"),
    ]
    if "reproduction" in result.extra:
        rep = result.extra["reproduction"]
        files.append((
            "reproduction.csv",
            f"this project's numbers next to the study's aggregate files: "
            f"{int(rep['matches'].sum())} of {len(rep)} equal within relative {compare.REPRODUCTION_RTOL:g}",
        ))
    lines.append(markdown.table(["table", "content"], files))
    if result.notes:
        lines += ["", "Empty tables:"] + [f"- {k}: {v}" for k, v in result.notes.items()]
    lines += [
        "",
        "Where this project deliberately differs from the study's notebooks:",
        "- `gpu_energy_J_per_10_clips_std` is the standard deviation of the per-run totals for every batch "
        "size; the study drew a standard error for b = 1, 2, 5 and a standard deviation for b = 10 "
        "(kept in `study_error_J` / `study_error_kind`).",
        "- Scores and energies are joined on (model, data set, steps); the table printed by the study's "
        "`qualitymetrics_analysis.ipynb` has the AudioCaps and Clotho CLAP columns swapped.",
        "- `first_generation_included` flags means that contain the first call of one of the study's "
        "scripts (its CUDA warm-up, never discarded by the study); `--drop-study-warmup` removes those "
        "calls.",
        "- Fronts use the mean energy per generation (the study: the 300-clip sum; same fronts). "
        "Make-An-Audio (2) at 150 steps ran 167 iterations: see `denoiser_calls` and the `*_calls` fit.",
        "",
    ]
    return "\n".join(lines)


def analyze(
    study: str | Path | None,
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    scores: Sequence[str | Path] = (),
    drop_study_warmup: bool = False,
    n_boot: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    figures: bool = False,
    source_name: Callable[[str], str] | None = None,
) -> tuple[list[Path], AnalysisResult]:
    """Load, compute and write: the whole of ``tta-energy analyze``. With ``figures``, the standard figures
    and their ``index.md`` go to ``out/figures`` after the tables (:mod:`tta_energy.analysis.figures`).
    ``source_name`` names each input for the README (a temporary import after what it imported)."""
    check_resamples(n_boot)
    check_output_folder(out)
    inp = load_inputs(study, runs, scores)
    if source_name is not None:
        inp.sources = [source_name(s) for s in inp.sources]
    result = build_tables(inp, drop_study_warmup=drop_study_warmup, n_boot=n_boot, seed=seed)
    readme = readme_text(inp, result, drop_study_warmup=drop_study_warmup, n_boot=n_boot, seed=seed)
    written = write_tables(result, out, readme)
    if figures:
        from tta_energy.analysis.figures import write_figures  # matplotlib only when figures are asked for

        written.append(write_figures(inp, result, out, drop_study_warmup=drop_study_warmup))
    elif (Path(out) / FIGURES_FOLDER / INDEX_FILE).is_file():
        from tta_energy.analysis.figures import drop_figures

        drop_figures(out)  # an earlier run's figures would describe other tables than these
    return written, result
