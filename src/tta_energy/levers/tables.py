"""The levers experiment's files: the raw folder's side tables and how a row is appended to them."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tta_energy import schema
from tta_energy.levers.spec import LeversError

RUNS_FILE = "levers_runs.csv"
EQUIVALENCE_FILE = "levers_equivalence.csv"
CONFIGS_FILE = "levers_configs.csv"
CEILING_FILE = "levers_ceiling.csv"
PROFILE_FILE = "levers_profile.csv"


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


def read_side(dirs: Sequence[Path], name: str) -> pd.DataFrame:
    """One side table of every raw folder that has it, concatenated (empty when none has)."""
    frames = [pd.read_csv(d / name) for d in dirs if (d / name).is_file() and (d / name).stat().st_size > 0]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def ceiling_rows(ceiling: pd.DataFrame, precision: str) -> pd.DataFrame:
    """The ceiling rows of one operand precision (tables written before the fp8 ceiling are all bf16)."""
    if ceiling.empty or "precision" not in ceiling:
        return ceiling if precision == "bf16" else ceiling.iloc[0:0]
    return ceiling[ceiling["precision"].fillna("bf16") == precision]
