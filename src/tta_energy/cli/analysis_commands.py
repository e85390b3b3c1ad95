"""``tta-energy import-study`` and ``tta-energy analyze``: the study's data as run tables; its analysis."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("import-study")
    def import_study_cmd(
        path: Path = typer.Argument(
            ..., help="a copy of the study's repository, or just its results/ folder"
        ),
        out: Path = typer.Option(Path("data/study"), help="folder for the run tables and scores.csv"),
    ) -> None:
        """Import the study's CodeCarbon logs, CLAP/FAD scores and sanity-check files as run-record tables."""
        from rich.progress import Progress, SpinnerColumn, TextColumn

        from tta_energy.analysis import study_import

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True) as progress:
            progress.add_task(f"reading {path}", total=None)
            data = study_import.load_study(path)
            progress.add_task(f"writing {out}", total=None)
            written = study_import.write_study(data, out)
        counts = ", ".join(f"{name} {len(df)}" for name, df in data.runs.items())
        typer.echo(
            f"imported {counts} rows and {len(data.scores)} scores from {data.tree.root} "
            f"into {out} ({len(written)} files)"
        )

    @app.command("analyze")
    def analyze_cmd(
        study: Path = typer.Option(
            None, help="a copy of the study (repository or results/), imported in memory"
        ),
        runs: list[Path] = typer.Option(
            None, help="run tables or folders of them (repeatable); score tables found there are used too"
        ),
        scores: list[Path] = typer.Option(
            None, help="extra score tables (model, dataset, steps, metric, value)"
        ),
        out: Path = typer.Option(..., help="folder for the analysis tables and a README.md that lists them "
                                 "(+ reproduction.csv with --study)"),
        drop_study_warmup: bool = typer.Option(
            False, help="drop the first call of each of the study's scripts (its unflagged CUDA warm-up)"
        ),
        bootstrap: int = typer.Option(1000, help="bootstrap resamples for front frequencies (0: none)"),
        seed: int = typer.Option(0, help="seed of the bootstrap"),
        figures: bool = typer.Option(
            False, "--figures", help="also draw the standard figures (those the notebooks draw) into "
            "OUT/figures with an index.md; a figure whose tables are absent is listed there as skipped"
        ),
    ) -> None:
        """Write the analysis tables (energies in joules) and a README.md that says what each holds."""
        from rich.progress import Progress, SpinnerColumn, TextColumn

        from tta_energy.analysis import tables

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True) as progress:
            progress.add_task("analysing", total=None)
            written, result = tables.analyze(
                study,
                runs or [],
                out,
                scores=scores or [],
                drop_study_warmup=drop_study_warmup,
                n_boot=bootstrap,
                seed=seed,
                figures=figures,
            )
        sizes = ", ".join(f"{name} {len(df)}" for name, df in result.tables.items())
        line = f"wrote {len(written)} files to {out}: {sizes} rows"
        if "reproduction" in result.extra:
            rep = result.extra["reproduction"]
            line += f"; {int(rep['matches'].sum())}/{len(rep)} of the study's aggregates reproduced"
        typer.echo(line)
        if figures:
            from tta_energy.analysis import plots

            index = written[-1]
            entries = plots.read_manifest(index.parent).values()
            drawn = sum(e["status"] == "drawn" for e in entries)
            typer.echo(f"drew {drawn} figures ({len(entries) - drawn} skipped, reasons in {index}) into "
                       f"{index.parent}")
