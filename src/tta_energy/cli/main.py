"""Entry point of ``tta-energy``: builds the typer app from the command modules."""

from __future__ import annotations

import importlib
import sys

import typer

from tta_energy.errors import TtaError

app = typer.Typer(
    name="tta-energy",
    help="Measure, analyse and reduce the inference energy of text-to-audio diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Each module defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "tta_energy.cli.data_commands",
    "tta_energy.cli.meter_commands",
    "tta_energy.cli.model_commands",
    "tta_energy.cli.sweep_commands",
    "tta_energy.cli.campaign_commands",
    "tta_energy.cli.analysis_commands",
    "tta_energy.cli.quality_commands",
    "tta_energy.cli.levers_commands",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> None:
    """Run the app; a :class:`TtaError` becomes one line on stderr and exit status 2."""
    try:
        app(args=argv, standalone_mode=False)
    except TtaError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
