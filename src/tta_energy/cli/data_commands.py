"""``tta-energy schema`` and ``tta-energy summary``: the run record and what is in ``data/``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tta_energy.errors import TtaError

# schema (and with it pandas) is imported inside the commands: every other command starts without it


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema_cmd() -> None:
        """Print the run-record schema: one row per measured generation."""
        from tta_energy import schema

        table = Table("column", "type", "required", "meaning")
        for c in schema.COLUMNS:
            table.add_row(c.name, c.dtype, "yes" if c.required else "", c.description)
        Console().print(table)

    @app.command("summary")
    def summary_cmd(
        runs: Path = typer.Option(Path("data"), "--runs", "--data",
                                  help="folder of run tables (searched recursively), as analyze's --runs"),
    ) -> None:
        """Validate every run table under RUNS (encoding, schema, cut lines, repeated pairs) and print rows,
        models and energy per table; exit status 2 when a table is invalid or there is none."""
        import pandas as pd

        from tta_energy import schema

        if not runs.is_dir():
            state = "is not a folder" if runs.exists() else "does not exist"
            raise TtaError(f"--runs {runs} {state}: give the folder of run tables")
        from tta_energy.experiments.grids import EXPERIMENTS
        from tta_energy.experiments.resume import unsharded
        from tta_energy.levers.tables import RUNS_FILE

        candidates = sorted(runs.rglob("*.csv"))
        # a CSV is a run table when its header says so (a damaged one too: it is then reported invalid) or its
        # name does (an experiment's table or shard, the levers' run table); one that cannot be read as text
        # (not UTF-8, empty) cannot say what it is, and is checked as a run table
        run_names = {*EXPERIMENTS, Path(RUNS_FILE).stem}
        tables = [p for p in candidates if schema.is_run_table(p) or not schema.csv_header(p)
                  or unsharded(p).stem in run_names]
        other = len(candidates) - len(tables)
        if not tables:  # the line analyze and estimate refuse such a folder with
            from tta_energy.analysis.tables import no_run_tables

            raise no_run_tables([runs], candidates, then="; give --runs the folder of run tables")
        out = Table("table", "rows", "ok", "models", "GPU energy [J] (sum of ok rows)")
        invalid = []
        for path in tables:
            check = schema.check_table(path)
            invalid += [f"{path}: {problem}" for problem in check.problems]
            if check.frame is None:
                out.add_row(str(path), "invalid", "", "", "", style="red")
                continue
            df = check.frame
            ok = df[df["status"] == "ok"]
            energy = ok["gpu_energy_J"].sum(min_count=1)  # NaN (shown n/a) when no GPU energy was measured
            out.add_row(str(path), str(len(df)), str(len(ok)), ", ".join(sorted(df["model"].unique())),
                        "n/a" if pd.isna(energy) else f"{energy:.1f}",
                        style="red" if check.problems else None)
        out.columns[0].overflow = "fold"  # whole paths (folded), never cut to the same prefix
        Console().print(out)
        for line in invalid:
            typer.echo(f"invalid: {line}", err=True)
        valid = len(tables) - len({line.split(": ", 1)[0] for line in invalid})
        typer.echo(f"{valid} of {len(tables)} run table(s) valid under {runs} ({other} other CSV file(s) "
                   "skipped)")
        if invalid:
            raise TtaError(f"{len(tables) - valid} invalid run table(s) under {runs} (listed above)")
