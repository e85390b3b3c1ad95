"""Every ``tta-energy`` command the docs quote names a command and options the command line has.

A renamed option or command leaves a page that a reader copies and gets an error from; these tests read
the command lines in the Markdown pages (fenced shell blocks and inline code) and check each against the
Typer app, so the docs and the CLI cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from tta_energy.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "README.md"]
#: how a page calls the command line: the installed script or the package's module
INVOCATION = re.compile(r"(?:tta-energy|python -m tta_energy)((?: [^`\n#|;&)]*)?)")


def quoted_code(text: str) -> list[str]:
    """The code a Markdown page quotes: each fenced shell block (continuation lines joined) and each inline
    code span outside the fences."""
    fences = re.compile(r"```(?:bash|sh|shell|console)\n(.*?)```", re.S)
    blocks = [re.sub(r"\\\n\s*", " ", block) for block in fences.findall(text)]
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    return blocks + re.findall(r"`([^`\n]+)`", outside)


def quoted_commands(text: str) -> list[str]:
    """The argument lists after each ``tta-energy`` in the code of ``text`` (up to a comment or a pipe)."""
    return [" ".join(m.group(1).split()) for code in quoted_code(text) for m in INVOCATION.finditer(code)]


def unknown_parts(argv: list[str]) -> list[str]:
    """What in ``argv`` (the arguments after ``tta-energy``) the command line does not have: a subcommand
    under a group, or a ``--long`` option of the command it reaches (its name before any ``=``). ``...``
    stands for what a page leaves out."""
    command = typer.main.get_command(app)
    path: list[str] = []
    while hasattr(command, "commands") and argv and not argv[0].startswith("-") and argv[0] != "...":
        if argv[0] not in command.commands:
            return [f"command {' '.join([*path, argv[0]])!r}"]
        path.append(argv[0])
        command = command.commands[argv.pop(0)]
    options = {"--help"} | {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
    return [f"option {a.split('=')[0]} of {' '.join(path) or 'tta-energy'!r}" for a in argv
            if a.startswith("--") and a.split("=")[0] not in options]


def test_the_pages_quote_commands() -> None:
    # the reading below finds what it should: the README's two commands and the campaign's verbs
    readme = quoted_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert any(c.startswith("sweep ") for c in readme)
    campaign = quoted_commands((ROOT / "docs" / "campaign.md").read_text(encoding="utf-8"))
    assert {c.split()[1] for c in campaign if c.startswith("campaign ")} >= {"plan", "run", "status", "cost",
                                                                              "collect"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_command_exists_with_its_options(page: Path) -> None:
    problems = []
    for line in quoted_commands(page.read_text(encoding="utf-8")):
        try:
            argv = shlex.split(line)
        except ValueError:  # an unclosed quote: the span is prose around a command, not a command
            continue
        problems += [f"{part} in `tta-energy {line}`" for part in unknown_parts(argv)]
    assert not problems, "\n".join(problems)


def test_a_renamed_option_or_command_is_caught() -> None:
    assert unknown_parts(["sweep", "--model", "tango", "--step", "10"]) == ["option --step of 'sweep'"]
    assert unknown_parts(["campaign", "plans"]) == ["command 'campaign plans'"]
    assert unknown_parts(["campaign", "run", "--time-budget-s=60"]) == []
    page = "run `tta-energy sweep --help` or\n```bash\ntta-energy levers run \\\n  --plan P\n```"
    assert quoted_commands(page) == ["levers run --plan P", "sweep --help"]
    assert unknown_parts(["levers", "..."]) == []
