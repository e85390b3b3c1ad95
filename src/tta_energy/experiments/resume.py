"""Resuming a sweep: which (configuration, repeat) pairs are done, shard files, and merging them.

Rules (documented in ``tta-energy sweep --help``):

* rows are appended one at a time with :func:`tta_energy.schema.append_row` (one write + fsync); a
  process killed mid-write leaves at most a line without its newline, which
  :func:`tta_energy.schema.read_runs` ignores and the next append removes;
* a pair counts as done when a measured (non-warm-up) row of it has status ``ok``, ``oom`` or ``nan_audio``:
  those outcomes are properties of the configuration and re-running them would only repeat them;
* ``error`` rows are retried by default (an error may be transient, e.g. a full disk, or fixed since):
  before the sweep starts they are removed from the table with an atomic rewrite (temp file + rename), so
  that each pair still appears exactly once when the sweep completes. ``--keep-errors`` keeps them and skips
  those pairs.
* one writer per table: a sweep or campaign run holds the lock of every table it writes (a hidden
  ``.NAME.csv.lock`` next to it, :func:`hold_locks`) from before its first read to its end, and a second
  writer is refused at once: both would measure the pairs still missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy import schema

DONE_STATUSES: tuple[str, ...] = ("ok", "oom", "nan_audio")
Pair = tuple[str, int]

#: columns that order a merged table: experiment, model, warm-ups first, then the repeat and the configuration
SORT_COLUMNS: tuple[str, ...] = ("experiment", "model", "is_warmup", "repeat", "steps", "n_prompts",
                                 "waveforms_per_prompt", "duration_s", "guidance_scale", "dtype", "dataset",
                                 "caption_id", "config_id", "rank", "timestamp")


def read_table(path: str | Path) -> pd.DataFrame | None:
    """The rows of a run table, or None when the file is missing or holds not even a complete header."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if b"\n" not in head:
        return None  # killed while writing the header: nothing was recorded
    schema.check_appendable(path)
    try:
        return schema.read_runs(path)
    except schema.SchemaError as exc:
        if "empty run table" in str(exc):
            return None
        raise


def done_pairs(frames: Iterable[pd.DataFrame | None], keep_errors: bool = False) -> set[Pair]:
    """(config_id, repeat) pairs with a finished measured row (and ``error`` ones when ``keep_errors``)."""
    statuses = DONE_STATUSES + (("error",) if keep_errors else ())
    done: set[Pair] = set()
    for df in frames:
        if df is None or df.empty:
            continue
        rows = df[~df["is_warmup"] & df["status"].isin(statuses)]
        done.update(zip(rows["config_id"].astype(str), rows["repeat"].astype(int), strict=True))
    return done


def drop_errors(path: str | Path) -> int:
    """Remove measured ``error`` rows from a table (atomic rewrite); returns how many were removed."""
    df = read_table(path)
    if df is None:
        return 0
    bad = (~df["is_warmup"]) & (df["status"] == "error")
    if not bad.any():
        return 0
    schema.write_runs(path, df[~bad])
    return int(bad.sum())


def shard_path(out: str | Path, rank: int) -> Path:
    """The file rank ``rank`` writes under torchrun: ``steps.csv`` -> ``steps.rank1.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def unsharded(path: str | Path) -> Path:
    """The table a shard file belongs to (``steps.rank1.csv`` -> ``steps.csv``); any other path itself."""
    path = Path(path)
    found = re.fullmatch(r"(.+)\.rank\d+", path.stem)
    return path.with_name(found.group(1) + path.suffix) if found else path


def lock_path(table: str | Path) -> Path:
    """The lock file of a table: hidden, next to it (``.steps.csv.lock``)."""
    table = Path(table)
    return table.with_name(f".{table.name}.lock")


@contextmanager
def hold_locks(tables: Iterable[Path], error: type[Exception], elsewhere: str) -> Iterator[None]:
    """Hold the lock of each of ``tables`` until the block ends; when another process holds one, release
    those taken and raise ``error`` (the caller's error type) with one line naming the table and
    ``elsewhere``, the options that write somewhere else."""
    from filelock import FileLock, Timeout

    with ExitStack() as stack:
        for table in tables:
            try:
                stack.enter_context(FileLock(lock_path(table), timeout=0))
            except Timeout:
                raise error(f"another sweep or campaign is writing {table} (it holds {lock_path(table)}): "
                            f"wait for it to finish, or write elsewhere with {elsewhere}") from None
        yield


def shard_paths(out: str | Path) -> list[Path]:
    """Existing shard files of ``out`` (left by a finished or an interrupted torchrun sweep)."""
    out = Path(out)
    pattern = re.compile(re.escape(out.stem) + r"\.rank(\d+)" + re.escape(out.suffix) + "$")
    if not out.parent.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.parent.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def deduplicate(df: pd.DataFrame) -> pd.DataFrame:
    """One measured row per (config_id, repeat): a finished status beats ``error``, then the earliest wins.

    Warm-up rows are kept, except exact duplicates (same run, rank, configuration and time).
    """
    if df.empty:
        return df
    df = df.reset_index(drop=True)
    warm = df[df["is_warmup"]].drop_duplicates(subset=["run_id", "rank", "config_id", "timestamp"])
    measured = df[~df["is_warmup"]].copy()
    measured["_rank_status"] = np.where(measured["status"].isin(DONE_STATUSES), 0, 1)
    measured["_order"] = np.arange(len(measured))
    measured = measured.sort_values(["_rank_status", "timestamp", "_order"], kind="stable")
    measured = measured.drop_duplicates(subset=["config_id", "repeat"], keep="first")
    measured = measured.drop(columns=["_rank_status", "_order"])
    return pd.concat([warm, measured], ignore_index=True)


def sort_table(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in SORT_COLUMNS if c in df.columns]
    ascending = [c != "is_warmup" for c in cols]  # warm-ups (True) first
    df = df.sort_values(cols, ascending=ascending, kind="stable", na_position="first")
    return df.reset_index(drop=True)


def _merge(dest: Path, sources: Iterable[Path]) -> pd.DataFrame | None:
    """Rows of ``dest`` and ``sources``: deduplicated, sorted, written atomically to ``dest``."""
    frames = [f for f in [read_table(dest), *(read_table(p) for p in sources)] if f is not None]
    if not frames:
        return None
    merged = sort_table(deduplicate(pd.concat(frames, ignore_index=True)))
    schema.write_runs(dest, merged)
    return merged


def merge_shards(out: str | Path, remove: bool = True) -> pd.DataFrame | None:
    """Merge ``out`` and its shard files into ``out`` (atomically, sorted, deduplicated); remove the shards.

    A kill between the rewrite and the removal leaves shards whose rows are already in ``out``; the next merge
    deduplicates them away.
    """
    out = Path(out)
    shards = shard_paths(out)
    merged = _merge(out, shards)
    if merged is not None and remove:
        for p in shards:
            p.unlink(missing_ok=True)
    return merged


def merge_into(dest: str | Path, sources: Iterable[str | Path]) -> pd.DataFrame:
    """Merge run tables into ``dest`` (kept if it exists): deduplicated, sorted, written atomically.

    Used to bring the tables of separate device calls (each starting from its own copy) into one table.
    """
    dest = Path(dest)
    merged = _merge(dest, [Path(p) for p in sources])
    if merged is None:
        raise schema.SchemaError(f"nothing to merge into {dest}")
    return merged


def main(argv: list[str] | None = None) -> None:
    """``python -m tta_energy.experiments.resume DEST SOURCE...``: merge run tables into DEST."""
    import sys

    from tta_energy.cli.exits import USAGE_EXIT

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m tta_energy.experiments.resume DEST SOURCE [SOURCE...]", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    try:
        merged = merge_into(args[0], args[1:])
    except schema.SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    print(f"{args[0]}: {len(merged)} rows after merging {len(args) - 1} table(s)")


if __name__ == "__main__":
    main()
