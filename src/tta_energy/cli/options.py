"""The options the measuring commands (``sweep``, ``campaign run``) share, declared once so that each has one
name, default and help wherever it appears, the names of the options in seconds that several commands take,
and the one rule that reads CodeCarbon's two of them."""

from __future__ import annotations

import typer

from tta_energy.cli import checks
from tta_energy.devices import DEVICE_HELP
from tta_energy.study import STUDY_COUNTRY

DEVICE = typer.Option(None, help=DEVICE_HELP)
CODECARBON = typer.Option(True, "--codecarbon/--no-codecarbon", help="CPU/RAM energy and CO2 (CodeCarbon)")
COUNTRY = typer.Option(STUDY_COUNTRY, help="ISO 3166 alpha-3 code of the grid carbon intensity (CodeCarbon; "
                                           "the default is the study's)")
TRACE = typer.Option(True, "--trace/--no-trace", help="write the power/temperature trace")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="show a progress bar")

# Seconds carry their unit in the option's name, as in the tables' and plan files' keys (duration_s,
# min_window_s); the name without it still works, as the older spelling.
DURATION_S_FLAGS = ("--duration-s", "--duration")
MIN_WINDOW_S_FLAGS = ("--min-window-s", "--min-window")
TIME_BUDGET_S_FLAGS = ("--time-budget-s", "--time-budget")


def codecarbon_country(ctx: typer.Context, codecarbon: bool, country: str) -> str:
    """``--country`` as CodeCarbon takes it; refused beside ``--no-codecarbon``, which would ignore it (only
    when the user wrote it: its default is no choice)."""
    checks.not_with(not codecarbon and bool(checks.given_options(ctx, {"country": "--country"})),
                    "--country", "--no-codecarbon")
    return checks.country(country) if codecarbon else country
