"""What the per-model scripts in ``inferences/`` run: ``tta-energy sweep --model <their model> ...``.

``python inferences/tango.py --experiment steps`` is ``tta-energy sweep --model tango --experiment steps``:
the study's settings are the sweep's defaults (prompt, 10 s, the model's dtype, negative prompt and guidance,
the study's grids and repeats); every option of ``tta-energy sweep`` is accepted except ``--model``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tta_energy.models.catalogue import BUILTIN_MODELS, entry

#: script name in inferences/ -> canonical model name (the built-in models have one each; a plugin's model
#: gets its own script from its package, calling :func:`run_model_script`)
SCRIPTS: dict[str, str] = {e.script: e.name for e in BUILTIN_MODELS}


def run_model_script(model: str, argv: Sequence[str] | None = None) -> None:
    """Run ``tta-energy sweep`` for ``model`` with the script's arguments (``sys.argv[1:]`` by default)."""
    import typer

    from tta_energy.cli import sweep_commands
    from tta_energy.cli.exits import USAGE_EXIT
    from tta_energy.cli.main import run_app

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("--model", "-m") or a.startswith("--model=") for a in args):
        sys.stderr.write(f"error: this script runs {model} only; leave out --model "
                         "(or use tta-energy sweep --model NAME)\n")
        sys.exit(USAGE_EXIT)
    script = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    sweep_commands.register(script, fixed_model=model)  # one command: its usage line is the script's
    status = run_app(script, args, prog_name=f"{entry(model).script}.py")
    if status:
        sys.exit(status)
