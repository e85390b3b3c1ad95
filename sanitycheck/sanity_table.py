"""Print the study's sanity-check statistics: 300-caption subsets vs full data sets.

    python sanitycheck/sanity_table.py                       # the imported copy in data/study
    python sanitycheck/sanity_table.py PATH                  # a copy of the study (repository or results/)
    python sanitycheck/sanity_table.py PATH --csv out.csv    # also write the table

The statistics are computed by ``tta_energy.analysis.sanity`` (Pearson r between the subset and full-set
scores ordered by steps; OLS ``score ~ steps * C(group)`` and the p-value of its interaction term). Where the
study's own ``clap_analysis.csv`` / ``fad_analysis.csv`` are available their values are shown next to ours.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from tta_energy.analysis import sanity, study_import, tables
from tta_energy.errors import TtaError

REPO = Path(__file__).resolve().parents[1]


def load(path: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Scores and published statistics from a study tree or from an ``import-study`` folder."""
    if (path / "scores.csv").is_file():
        return tables.read_scores(path / "scores.csv"), tables.find_published_sanity([path])
    data = study_import.load_study(path)
    return data.scores, data.published_sanity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=REPO / "data" / "study",
        help="a copy of the study, or an import-study folder (default: data/study)",
    )
    parser.add_argument("--csv", type=Path, default=None, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    try:
        scores, published = load(args.path)
        table = sanity.sanity_table(scores, published)
    except TtaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    headers = {
        "metric": "metric",
        "model": "model",
        "dataset": "data set",
        "n_steps": "n",
        "pearson_r": "Pearson r",
        "pearson_p": "p (r)",
        "ancova_p": "p (steps:group)",
        "mean_shift_full_minus_subset": "shift full-subset",
        "published_pearson_r": "study's r",
        "published_ancova_p": "study's p (steps:group)",
    }
    shown = [c for c in headers if c in table.columns]
    out = Table(
        *(headers[c] for c in shown), title=f"Sanity check: 300-caption subsets vs full sets ({args.path})"
    )
    for row in table[shown].itertuples(index=False):
        out.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    Console(width=max(140, shutil.get_terminal_size().columns)).print(out)
    if args.csv is not None:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
