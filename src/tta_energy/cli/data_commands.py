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
        data: Path = typer.Option(Path("data"), help="folder of run tables (searched recursively)"),
    ) -> None:
        """Validate every run table under DATA and print rows, models and energy per table."""
        import pandas as pd

        from tta_energy import schema

        if not data.is_dir():
            raise TtaError(f"{data}: not a folder")
        tables = sorted(p for p in data.rglob("*.csv") if schema.is_run_table(p))
        if not tables:
            typer.echo(f"no run tables under {data}")
            return
        out = Table("table", "rows", "ok", "models", "GPU energy [J] (sum of ok rows)")
        for path in tables:
            df = schema.read_runs(path)
            ok = df[df["status"] == "ok"]
            energy = ok["gpu_energy_J"].sum(min_count=1)  # NaN (shown n/a) when no GPU energy was measured
            out.add_row(str(path), str(len(df)), str(len(ok)), ", ".join(sorted(df["model"].unique())),
                        "n/a" if pd.isna(energy) else f"{energy:.1f}")
        Console().print(out)
        typer.echo(f"{len(tables)} run table(s) validated under {data}")
