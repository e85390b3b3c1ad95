"""The levers experiment's files: the raw folder's side tables and how a row is appended to them."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy import schema
from tta_energy.errors import lost_cuda_context
from tta_energy.fileio import csv_text, read_csv_exact
from tta_energy.levers.spec import LeversError

RUNS_FILE = "levers_runs.csv"
EQUIVALENCE_FILE = "levers_equivalence.csv"
CONFIGS_FILE = "levers_configs.csv"
CEILING_FILE = "levers_ceiling.csv"
PROFILE_FILE = "levers_profile.csv"
COMPILE_FILE = "levers_compile.csv"
#: the report built from the raw folders (tta_energy.levers.report): one row per configuration and cell
LEVERS_TABLE = "levers.csv"
#: beside it: the summary, its figure, and each target's status (tta_energy.levers.summary.TARGET_COLUMNS)
SUMMARY_FILE = "levers_summary.md"
FIGURE_FILE = "levers.png"
TARGETS_FILE = "levers_targets.csv"


def append_csv(path: Path, row: dict[str, object]) -> None:
    """Append one row to a side table (header on creation), one write + fsync like the run table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    schema.repair_tail(path)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, encoding="utf-8") as fh:
            header = next(csv.reader([fh.readline()]))
        if header != list(row):
            raise LeversError(f"{path} has columns {', '.join(header)}; cannot append a row with other "
                              "columns")
    schema.append_line(path, _csv_line(list(row)), _csv_line([schema._format(v) for v in row.values()]))


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def unique_folders(dirs: Sequence[Path | str]) -> list[Path]:
    """The raw folders in their order, each once (a folder named twice would count every row twice)."""
    return list(dict.fromkeys(Path(d).resolve() for d in dirs))


@dataclass(frozen=True)
class TableColumns:
    """What reading a table checks: ``keys`` are in the header and filled in every row; ``required`` (the
    values a reader uses) are in the header, possibly empty; ``numeric`` columns (and those ending in
    ``numeric_suffix``), where present, hold numbers or nothing."""

    keys: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    numeric_suffix: str | None = None
    required: tuple[str, ...] = ()

    def is_numeric(self, column: str) -> bool:
        return column in self.numeric or (self.numeric_suffix is not None
                                          and column.endswith(self.numeric_suffix))


#: the side tables' checked columns (what the levers writers put in them; ``required``: the values the report
#: reads; older tables lack some optional columns, e.g. ``precision`` of the ceiling or ``setup_s`` of the
#: configurations)
SIDE_COLUMNS: dict[str, TableColumns] = {
    CONFIGS_FILE: TableColumns(
        keys=("run_id", "model", "optimize", "steps", "waveforms_per_prompt", "status"),
        numeric=("steps", "waveforms_per_prompt", "latent_length", "gflop_per_step", "gflop_per_generation",
                 "denoiser_calls_nominal", "gflop", "setup_s", "setup_J")),
    EQUIVALENCE_FILE: TableColumns(
        keys=("run_id", "model", "optimize", "steps", "waveforms_per_prompt"),
        numeric=("steps", "waveforms_per_prompt", "repeat", "rel_error_latents", "rel_error_audio"),
        required=("rel_error_latents", "rel_error_audio")),
    CEILING_FILE: TableColumns(
        keys=("run_id", "when"),
        numeric=("n", "iterations", "wall_s", "gpu_energy_J", "tflop_per_s", "tflop_per_J", "power_W"),
        required=("n", "tflop_per_s", "tflop_per_J", "power_W")),
    COMPILE_FILE: TableColumns(
        keys=("run_id", "model", "optimize", "waveforms_per_prompt"),
        numeric=("waveforms_per_prompt", "aot_cache_hits", "aot_cache_misses"),
        required=("aot_cache_hits", "aot_cache_misses")),
    PROFILE_FILE: TableColumns(
        keys=("run_id", "model", "optimize", "waveforms_per_prompt"),
        numeric=("waveforms_per_prompt", "gflop_per_step"), numeric_suffix="_ms",
        required=("eager_step_ms", "graph_step_ms", "matmul_ms", "conv_ms", "attention_ms", "other_ms",
                  "kernel_ms", "flop_bound_ms")),
}


def check_folder_appendable(folder: Path) -> None:
    """The tables a levers run appends to in ``folder``, where they exist, are levers tables: its run table a
    run table (:func:`tta_energy.schema.check_appendable`), each side table with its keys and required
    columns. Checked before the ceiling or any model, so that a wrong folder is refused with one line instead
    of failing every model once measured."""
    schema.check_appendable(folder / RUNS_FILE, LeversError)
    for name, columns in SIDE_COLUMNS.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            continue
        header = schema.csv_columns(path)
        missing = [c for c in dict.fromkeys((*columns.keys, *columns.required)) if c not in header]
        if missing:
            raise LeversError(f"{path} is not a levers table (it lacks {', '.join(missing)}): give --out-dir "
                              "a new folder or one that a levers run wrote")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_table(path: Path, columns: TableColumns, what: str) -> pd.DataFrame:
    """A CSV table (a side table, a levers table) read as :func:`pandas.read_csv` reads it, after checking it:
    UTF-8, a header with ``columns``' keys and required columns, every row with the header's number of
    fields, the keys filled and numbers where numbers belong. A last line cut by a killed writer is not a row
    (the next append removes it), as in a run table. Anything else raises :class:`LeversError`: one line
    naming the file, the line and the column."""
    text = csv_text(path, what, LeversError)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        needed = list(dict.fromkeys((*columns.keys, *columns.required)))
        missing = [c for c in needed if c not in header]
        if missing:
            raise LeversError(f"{path}: a {what} needs the column(s) {', '.join(missing)} (it requires "
                              f"{', '.join(needed)}); its header has {', '.join(header)}")
        numeric = [(i, c) for i, c in enumerate(header) if columns.is_numeric(c)]
        keys = [(header.index(c), c) for c in columns.keys]
        for fields in reader:
            line = reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                raise LeversError(f"{path}: line {line} has {len(fields)} field(s) where the header has "
                                  f"{len(header)}: a damaged row (delete that line)")
            for i, c in keys:
                if not fields[i].strip():
                    raise LeversError(f"{path}: line {line}: column '{c}' is empty (every row names it)")
            for i, c in numeric:
                value = fields[i].strip()
                if value and not _is_number(value):
                    raise LeversError(f"{path}: line {line}: column '{c}' holds {value!r}, not a number")
    except csv.Error as exc:
        raise LeversError(f"{path}: not a well-formed CSV (line {reader.line_num}: {exc})") from None
    frame = read_csv_exact(io.StringIO(text))
    # a header without rows reads as text columns: numbers stay numbers when such a table joins the others
    untyped = {c: "float64" for _, c in numeric if not pd.api.types.is_numeric_dtype(frame[c])}
    return frame.astype(untyped) if untyped else frame


def read_side_table(path: Path) -> pd.DataFrame:
    """One side table (named as :data:`SIDE_COLUMNS` names it), checked by :func:`read_table`."""
    path = Path(path)
    return read_table(path, SIDE_COLUMNS[path.name], "levers side table")


def read_side(dirs: Sequence[Path], name: str) -> pd.DataFrame:
    """One side table of every raw folder that has it, concatenated (empty when none has). An absent table is
    no rows (a run that measured nothing, an older folder); a present one is checked (:func:`read_table`)."""
    frames = [read_side_table(d / name) for d in dirs if (d / name).is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_runs_of(dirs: Sequence[Path]) -> pd.DataFrame:
    """The generation rows (:data:`RUNS_FILE`, the run-record schema) of every raw folder that has them,
    concatenated in folder order, each folder's rows in the order they were measured (empty when none has)."""
    frames = [schema.read_runs(d / RUNS_FILE) for d in dirs if (d / RUNS_FILE).is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


#: what one warm-up cost is taken per: a configuration of one run at one step count and batch size
WARMUP_KEYS = ["run_id", "model", "optimize", "steps", "waveforms_per_prompt"]


def warmups(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first and the second warm-up (``wall_s``, ``gpu_energy_J``, indexed by :data:`WARMUP_KEYS`) of
    each configuration in ``runs`` that finished one; the second frame holds only those with two."""
    warm = runs[(runs["status"] == "ok") & runs["is_warmup"].astype(bool)].sort_values("repeat")

    def nth(i: int) -> pd.DataFrame:
        rows = warm.groupby(WARMUP_KEYS, dropna=False).nth(i)
        return rows.set_index(WARMUP_KEYS)[["wall_s", "gpu_energy_J"]]

    return nth(0), nth(1)


def first_over_second(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """What each first warm-up cost over the second, the steady one, of the configurations with both (the
    frames of :func:`warmups`): ``compile_s``, ``compile_J``, never below 0, with :data:`WARMUP_KEYS`."""
    return (first.loc[second.index] - second).clip(lower=0.0).reset_index().rename(
        columns={"wall_s": "compile_s", "gpu_energy_J": "compile_J"})


#: the columns naming one configuration at one batch size within one run (a run of ``levers run``)
UNIT_IN_RUN = ["run_id", "model", "optimize", "waveforms_per_prompt"]


def warmup_compilations(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration of ``runs`` with two finished warm-ups, the one-time cost of its first
    (:func:`first_over_second`). A unit cut by its time budget after its warm-ups leaves its compilation
    here, and nowhere else."""
    return first_over_second(*warmups(runs))


def compile_cache_hit_share(table: pd.DataFrame, compiles: pd.DataFrame) -> pd.Series:
    """Per row of ``table``, the share of its configuration's compiled graphs (at that batch size and run)
    that the compile cache served (AOT autograd's hits over hits and misses, ``levers_compile.csv``): 0 where
    everything was compiled anew, so ``compile_s`` is what a fresh machine pays; more where an earlier call
    on the same machine, or a model with the same architecture earlier in the run, left its graphs in the
    cache. NaN where nothing was compiled or the run predates the count."""
    keys = UNIT_IN_RUN
    if compiles.empty:
        return pd.Series(np.nan, index=table.index, dtype="float64")
    sums = compiles.groupby(keys, as_index=False)[["aot_cache_hits", "aot_cache_misses"]].sum()
    total = sums["aot_cache_hits"] + sums["aot_cache_misses"]
    sums["share"] = (sums["aot_cache_hits"] / total).where(total > 0)
    merged = table[keys].merge(sums[[*keys, "share"]], on=keys, how="left")
    return pd.Series(merged["share"].to_numpy(dtype="float64"), index=table.index)


def ceiling_rows(ceiling: pd.DataFrame, precision: str) -> pd.DataFrame:
    """The ceiling rows of one operand precision (tables written before the fp8 ceiling are all bf16)."""
    if ceiling.empty or "precision" not in ceiling:
        return ceiling if precision == "bf16" else ceiling.iloc[0:0]
    return ceiling[ceiling["precision"].fillna("bf16") == precision]


#: the columns :func:`context_losses` gives
CONTEXT_LOSS_COLUMNS = ["run_id", "model", "optimize", "steps", "waveforms_per_prompt", "is_warmup", "error",
                        "gpu_uuid"]
#: the status (``levers_configs.csv``) of a configuration that lost the CUDA context while it was applied
#: (a capture, the timing of its attention backends), before any generation of it: ``STATUS: error`` (what
#: later calls go by is its runs row: :func:`context_losses`)
CONTEXT_LOST_STATUS = "lost the CUDA context"


def context_losses(runs: pd.DataFrame) -> pd.DataFrame:
    """The configurations that lost the process's CUDA context: per run, the first row whose error is such a
    loss (:func:`tta_energy.errors.lost_cuda_context`; rows are appended as measured, and the run's later rows
    failed because of it, not by their own configuration). A configuration whose applying lost it (a capture,
    a timing) has such a row too: a warm-up row with the error, written before the process stops."""
    if runs.empty or "error" not in runs.columns:
        return pd.DataFrame(columns=CONTEXT_LOSS_COLUMNS)
    lost = runs[(runs["status"] == "error") & runs["error"].map(lost_cuda_context)]
    return lost.drop_duplicates("run_id", keep="first")[CONTEXT_LOSS_COLUMNS].reset_index(drop=True)


#: the columns :func:`generation_failures` gives
FAILURE_COLUMNS = ["run_id", "model", "optimize", "steps", "waveforms_per_prompt", "is_warmup", "status",
                   "error"]


def failure_where(row: object) -> str:
    """Where a row of :func:`generation_failures` failed, as the dry run and the summary say it:
    ``warm-up (oom)``, ``generation (error)``."""
    return f"{'warm-up' if row.is_warmup else 'generation'} ({row.status})"


def generation_failures(runs: pd.DataFrame) -> pd.DataFrame:
    """Warm-ups and generations that failed (out of memory, an error, NaN audio) in a run that measured no
    generation of that configuration at that batch size; the first per run, configuration, batch size and
    step count (a warm-up's few steps stand for every step count). A lost CUDA context is
    :func:`context_losses`' (the run's later rows fail by it, not by their own configuration)."""
    if runs.empty or "error" not in runs.columns:
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    keys = UNIT_IN_RUN
    measured = runs[schema.measured_generations(runs)][keys].drop_duplicates()
    failed = runs[(runs["status"] != "ok") & ~runs["error"].map(lost_cuda_context)]
    failed = failed.merge(measured, on=keys, how="left", indicator=True)
    failed = failed[failed["_merge"] == "left_only"]
    failed = failed.assign(steps=failed["steps"].where(~failed["is_warmup"].astype(bool)))
    return failed.drop_duplicates([*keys, "steps"])[FAILURE_COLUMNS].reset_index(drop=True)
