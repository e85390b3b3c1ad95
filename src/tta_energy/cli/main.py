"""Entry point of ``tta-energy``: builds the typer app from the command modules, and its one error path."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
import typing
from collections.abc import Sequence
from pathlib import Path

import typer
import typer.main
from typer._click import core as click_core
from typer._click import exceptions as click_exceptions

from tta_energy.cli.exits import CONTEXT_LOST_EXIT, FAILURE_EXIT, INTERRUPTED_EXIT, USAGE_EXIT
from tta_energy.errors import CudaContextLost, Terminated, TtaError, first_line

#: set to 1 for the traceback of every error (the same as ``tta-energy --debug ...``)
DEBUG_ENV = "TTA_ENERGY_DEBUG"

app = typer.Typer(
    name="tta-energy",
    help="Measure, analyse and reduce the inference energy of text-to-audio diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from tta_energy.provenance import package_version

        typer.echo(f"tta-energy {package_version('tta-energy') or 'unknown'}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="show the traceback of an error (for bug reports)"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Measure, analyse and reduce the inference energy of text-to-audio diffusion models."""


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


def _fail(message: str, status: int) -> int:
    typer.echo(f"error: {message}", err=True)
    return status


def user_error_line(exc: BaseException) -> str | None:
    """The one line a user error shows, or None when ``exc`` is not a user error (a bug)."""
    if isinstance(exc, TtaError):
        return first_line(exc)
    if isinstance(exc, click_exceptions.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        message = exc.format_message().splitlines()[0].rstrip()
        repeatable = [p.opts[0] for p in (exc.ctx.command.params if exc.ctx is not None else ())
                      if getattr(p, "multiple", False) and p.opts and p.opts[0].startswith("--")]
        if message.startswith("Got unexpected extra argument") and repeatable:  # `--runs a b`
            option = repeatable[0]
            hint = (f"; an option given once takes one value: repeat it for several ({option} A {option} B)"
                    + hint)
        return message + hint
    if isinstance(exc, click_exceptions.ClickException):
        return exc.format_message()
    if isinstance(exc, OSError) and exc.filename2:  # a rename (a file written whole): the path it goes to
        return f"{exc.strerror or type(exc).__name__}: {exc.filename2}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or first_line(exc)} (choose a folder you can write to)"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {exc.filename or first_line(exc)}"
    if isinstance(exc, NotADirectoryError | FileExistsError) and isinstance(exc.filename, str | bytes):
        from tta_energy.fileio import folder_path

        try:  # a folder was made or listed where a file stands: say a folder is expected
            folder_path(Path(os.fsdecode(exc.filename)), "path")
        except TtaError as refused:
            return first_line(refused)
    if isinstance(exc, IsADirectoryError | NotADirectoryError | FileExistsError):
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({first_line(exc)})"
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return None


def _names_a_path(param: object) -> bool:
    """Whether a command's option or argument takes a path (``Path``, ``list[Path]``, ``Path | None``)."""
    descriptor = getattr(param, "type_descriptor", None)  # typer's record of the annotation
    if descriptor is None:  # typers that hand click a click.Path type
        return type(getattr(param, "type", None)).__name__ == "Path"
    pending = [descriptor.annotation]
    while pending:
        annotation = pending.pop()
        if annotation is Path:
            return True
        pending.extend(typing.get_args(annotation))
    return False


def argv_problem(group: click_core.Command, args: Sequence[str]) -> str | None:
    """What is wrong with ``args`` before click reads them, in one line, else None:

    * a path given as an empty string: pathlib reads '' as '.', so ``--out-dir ''`` (an unset shell
      variable, say) would write into the current folder; every path must be named, ``.`` for that folder;
    * an option that takes one value given twice: click keeps the last silently (``sweep -e steps -e batch``
      would measure batch only); options that take several say so in their help, and take them all."""
    if "--help" in args:  # help is shown whatever else the line holds
        return None
    cmd, i = group, 0
    while i < len(args) and args[i] in getattr(cmd, "commands", {}):
        cmd, i = cmd.commands[args[i]], i + 1
    by_name = {name: p for p in cmd.params for name in (*p.opts, *getattr(p, "secondary_opts", ()))}
    paths = [p for p in cmd.params if p.param_type_name == "argument" and _names_a_path(p)]
    positional = (getattr(paths[0], "metavar", None) or paths[0].name).upper() if paths else None
    empty = "'': an empty path names no file or folder (give . for the current folder)"
    given: set[str] = set()
    while i < len(args):
        token = args[i]
        if token == "--":  # what follows is positional
            return f"{positional} {empty}" if positional and "" in args[i + 1:] else None
        name, equals, value = token.partition("=")
        spelled = name if token.startswith("--") else token  # the option as the line names it
        param = by_name.get(spelled)
        if param is None:
            if token.startswith("-") and token != "-":  # an unknown option: click names it
                return None
            if token == "" and positional:
                return f"{positional} {empty}"
            i += 1
            continue
        if equals:
            value, i = value, i + 1
        elif getattr(param, "is_flag", False):
            i += 1
            continue
        else:
            value, i = (args[i + 1] if i + 1 < len(args) else None), i + 2
        if value == "" and _names_a_path(param):
            return f"{spelled} {empty}"
        if param.name in given and not getattr(param, "multiple", False):
            return f"{spelled} is given twice: it takes one value (give it once)"
        given.add(param.name)
    return None


def run_app(command: typer.Typer, argv: Sequence[str] | None = None, prog_name: str | None = None) -> int:
    """Run a typer app; every error becomes one line on stderr (``--debug``: after its traceback).

    Returns the exit status, with ``--debug`` or not: 0, 2 for a user error, 1 for anything unexpected, 5 when
    the CUDA context was lost, 130 when interrupted, or what the command itself exits with.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != "--debug"]  # accepted anywhere on the line, not only before the command
    try:
        group = typer.main.get_command(command)  # what calling the typer app builds, built once here
        problem = argv_problem(group, args)
        if problem is not None:
            return _fail(problem, USAGE_EXIT)
        status = group(args=args, prog_name=prog_name, standalone_mode=False)
    except SystemExit:
        raise
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return USAGE_EXIT
    except (KeyboardInterrupt, typer.Abort):
        return _fail("interrupted", INTERRUPTED_EXIT)
    except CudaContextLost as exc:
        if debug:
            traceback.print_exc()
        return _fail(first_line(exc), CONTEXT_LOST_EXIT)
    except Exception as exc:
        if debug:  # the traceback too; the line and the exit status are the same as without it
            traceback.print_exc()
        line = user_error_line(exc)
        if line is not None:
            return _fail(line, USAGE_EXIT)
        hint = "" if debug else " (run with --debug for the traceback)"
        return _fail(f"{type(exc).__name__}: {first_line(exc, '')}{hint}", FAILURE_EXIT)
    if status == INTERRUPTED_EXIT:  # what typer returns, silently, for a KeyboardInterrupt inside a command
        return _fail("interrupted", INTERRUPTED_EXIT)
    return status if isinstance(status, int) else 0


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """``tta-energy``: run the app; a non-zero status leaves through ``SystemExit``.

    SIGTERM stops a command as SIGINT does (the generation in flight is lost, the rows written stay, a
    campaign logs the stopped call): the device scripts' hard limit sends it, and unlike SIGINT it is not
    ignored by a command that a non-interactive shell started in the background."""
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, _terminate)
    status = run_app(app, argv)
    if status:
        sys.exit(status)
