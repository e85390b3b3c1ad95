"""``tta-energy import-study``, ``analyze`` and ``estimate``: the study's data as run tables; its analysis;
the energy of a planned job from the measured steps sweep."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tta_energy.cli import checks
from tta_energy.errors import TtaError
from tta_energy.intervals import CONFIDENCE, DEFAULT_RESAMPLES, check_resamples
from tta_energy.models import catalogue

if TYPE_CHECKING:  # numpy and pandas load when a command runs, not when the command line starts
    import pandas as pd


def register(app: typer.Typer) -> None:
    @app.command("import-study")
    def import_study_cmd(
        path: Path = typer.Argument(
            ..., help="a copy of the study's repository, or just its results/ folder"
        ),
        out_dir: Path = typer.Option(Path("data/study"), help="folder for the run tables, scores.csv and the "
                                     "study's own numbers (published_aggregates.csv, published_sanity.csv)"),
    ) -> None:
        """Import the study's CodeCarbon logs, CLAP/FAD scores and sanity-check files as run-record tables."""
        from rich.progress import Progress, SpinnerColumn, TextColumn

        from tta_energy.analysis import study_import

        study_import.check_output_folder(out_dir)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True,
                      disable=not sys.stdout.isatty()) as progress:  # a pipe gets no blank spinner line
            progress.add_task(f"reading {path}", total=None)
            data = study_import.load_study(path)
            progress.add_task(f"writing {out_dir}", total=None)
            written = study_import.write_study(data, out_dir)
        counts = ", ".join(f"{name} {len(df)}" for name, df in data.runs.items())
        typer.echo(
            f"imported {counts} rows and {len(data.scores)} scores from {data.tree.root} "
            f"into {out_dir} ({len(written)} files)"
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
        out_dir: Path = typer.Option(..., help="folder for the analysis tables and a README.md that lists "
                                     "them (+ reproduction.csv when the study's aggregate files are given)"),
        drop_study_warmup: bool = typer.Option(
            False, help="drop the first call of each of the study's scripts (its unflagged CUDA warm-up)"
        ),
        bootstrap: int = typer.Option(DEFAULT_RESAMPLES,
                                      help="bootstrap resamples for front frequencies (0: none)"),
        seed: int = typer.Option(0, help="seed of the bootstrap"),
        figures: bool = typer.Option(
            False, "--figures", help="also draw the standard figures (those the notebooks draw) into "
            "OUT_DIR/figures with an index.md; a figure whose tables are absent is listed there as skipped"
        ),
    ) -> None:
        """Write the analysis tables (energies in joules) and a README.md that says what each holds."""
        from rich.progress import Progress, SpinnerColumn, TextColumn

        from tta_energy.analysis import tables

        check_resamples(bootstrap)
        checks.seed(seed)

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True,
                      disable=not sys.stdout.isatty()) as progress:  # a pipe gets no blank spinner line
            progress.add_task("analysing", total=None)
            written, result = tables.analyze(
                study,
                runs or [],
                out_dir,
                scores=scores or [],
                drop_study_warmup=drop_study_warmup,
                n_boot=bootstrap,
                seed=seed,
                figures=figures,
            )
        sizes = ", ".join(f"{name} {len(df)}" for name, df in result.tables.items())
        line = f"wrote {len(written)} files to {out_dir}: {sizes} rows"
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

    @app.command("estimate")
    def estimate_cmd(
        model: str = typer.Option(..., "--model", "-m", help=f"the model: {catalogue.help_text()}"),
        steps: int = typer.Option(..., help="denoising steps per clip (any count the model's sampler runs)"),
        clips: int = typer.Option(1, help="clips to make (10 s each, one per generation)"),
        runs: list[Path] = typer.Option(
            None, help="run tables or folders of them (repeatable; default data/h200 under the current "
            "folder); the steps sweep is fitted without the study's first call per script (its CUDA warm-up)"
        ),
        confidence: float = typer.Option(CONFIDENCE, help="level of both intervals"),
        json_lines: bool = typer.Option(False, "--json", help="one JSON object per platform, one per line"),
    ) -> None:
        """GPU energy of CLIPS clips of MODEL at STEPS steps on each measured GPU, from its steps sweep.

        Per platform (GPU, dtype, who measured), a least-squares line of every run's GPU energy against its
        denoiser calls (10-s clips, batch 1, the model's measured dtype, eager), evaluated at the calls of
        STEPS: the mean energy per clip with its confidence interval, the interval of a single generation,
        the total in kWh and GPU hours. Outside the measured step counts it is an extrapolation.
        """
        from tta_energy.analysis import estimate, summaries, tables
        from tta_energy.schema import read_many

        checks.model(model)
        estimate.planned_calls(model, steps, clips, confidence)  # the request, before any table is read
        if not runs:
            if not DEFAULT_RUNS.is_dir():
                raise TtaError(f"no {DEFAULT_RUNS} under the current folder: give --runs PATH (run tables or "
                               "folders of them)")
            runs = [DEFAULT_RUNS]
        run_files = tables.run_tables_in(runs)
        usable = summaries.usable_runs(read_many(run_files), drop_study_warmup=True)
        result = estimate.estimate_energy(usable, model, steps, clips, confidence)
        if json_lines:
            typer.echo(result.to_json(orient="records", lines=True).rstrip("\n"))
            return
        _print_estimate(result, model)


#: Where ``estimate`` reads run tables when none are given (relative to the current folder).
DEFAULT_RUNS = Path("data/h200")


#: Columns of ``estimate``'s table when written to a file or a pipe.
WIDE_OUTPUT = 160


def _number(value: float) -> str:
    """Four significant digits without an exponent; n/a for NaN."""
    if value != value:
        return "n/a"
    import numpy as np

    return np.format_float_positional(value, precision=4, unique=False, fractional=False, trim="-")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _span(low: float, high: float) -> str:
    return "n/a" if low != low or high != high else f"{_number(low)}–{_number(high)}"


def _print_estimate(result: pd.DataFrame, model: str) -> None:
    """One table row per platform, then one line saying what each fit saw and where it extrapolates."""
    from rich.console import Console
    from rich.table import Table

    first = result.iloc[0]
    level = f"{first['confidence']:.0%}"
    table = Table("GPU", "calls", f"J per clip\nmean, {level} CI", f"one clip\n{level} [J]",
                  f"total kWh\nmean, {level} CI", "GPU h", "measured\nJ (runs)",
                  title=f"{catalogue.label(model)}: {first['clips']} clip(s) at {first['steps']} steps")
    for column in table.columns:
        column.overflow = "fold"  # numbers wrap, never cut to an ellipsis
    basis = []
    for r in result.itertuples(index=False):
        measured = "n/a" if not r.measured_n else f"{_number(r.measured_mean_J)} ({r.measured_n})"
        per_clip = _span(r.gpu_energy_J_per_clip_ci_low, r.gpu_energy_J_per_clip_ci_high)
        total = _span(r.energy_kWh_total_ci_low, r.energy_kWh_total_ci_high)
        table.add_row(f"{r.gpu_name}\n{r.dtype}, {r.source}", str(r.denoiser_calls),
                      f"{_number(r.gpu_energy_J_per_clip)}\n{per_clip}",
                      _span(r.single_generation_J_low, r.single_generation_J_high),
                      f"{_number(r.energy_kWh_total)}\n{total}", _number(r.gpu_h_total), measured)
        where = ("inside the measured range" if r.inside_measured_range
                 else f"extrapolated beyond the measured {r.measured_calls_min}–{r.measured_calls_max} calls")
        basis.append(f"{r.gpu_name} {r.dtype}: OLS over {r.n_generations} generations at "
                     f"{r.measured_steps or 'no'} steps; "
                     f"{_count(r.steps, 'step')} = {_count(r.denoiser_calls, 'denoiser call')}, {where}"
                     + (f"; the {r.measured_n} runs measured at {r.steps} steps average "
                        f"{_number(r.measured_mean_J)} J, outside the line's interval (the line averages "
                        "over step counts; prefer the measured mean)" if r.measured_outside_line else ""))
    console = Console()
    if not console.is_terminal:  # a file or a pipe: as wide as the table needs, not rich's 80 columns
        console.width = max(console.width, WIDE_OUTPUT)
    console.print(table)
    typer.echo("; ".join(basis))
