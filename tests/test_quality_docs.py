"""docs/quality.md's Quick start runs as written on a fresh clone: its paths are where the sweep writes.

The commands themselves need a sweep and checkpoints (run by hand, see the docs); these tests pin what a
fresh clone decides: the folders the commands read are the sweep's defaults (or the ``--audio-dir`` the block
gives the sweep), and every output file goes into a folder that exists by then.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer

from tta_energy.cli.main import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "quality.md"


def _block(heading: str) -> list[list[str]]:
    """The commands (as argv, continuation lines joined, comments dropped) of the first bash block after
    ``heading``."""
    text = DOC.read_text(encoding="utf-8")
    body = text[text.index(f"\n{heading}\n") :]
    code = re.search(r"```bash\n(.*?)```", body, re.S)
    assert code is not None, heading
    joined = re.sub(r"\\\n", " ", code.group(1))
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def _option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def _sweep_default(name: str) -> str:
    command = typer.main.get_command(app).commands["sweep"]
    return str(next(p.default for p in command.params if p.name == name))


def test_score_a_sweep_reads_the_sweeps_default_audio_dir_and_writes_into_a_made_folder() -> None:
    commands = _block("### Score a sweep")
    audio_dir = _sweep_default("audio_dir")
    assert audio_dir == "outputs/audio"
    assert ["mkdir", "-p", "runs"] in commands
    made = commands.index(["mkdir", "-p", "runs"])
    scores = [(i, c) for i, c in enumerate(commands) if c[:2] == ["tta-energy", "score"]]
    assert [c.count("--tree") + c.count("--generated") for _, c in scores] == [1, 1]
    for i, argv in scores:
        assert i > made
        for folder in _option(argv, "--tree") + _option(argv, "--generated"):
            assert Path(folder).is_relative_to(audio_dir), folder
        for out in _option(argv, "--out") + _option(argv, "--per-clip"):
            assert Path(out).parent == Path("runs"), out


def test_offline_try_scores_the_tree_its_sweep_wrote_with_the_sweeps_limit() -> None:
    commands = _block("### Try it offline on a CPU (replica checkpoints)")
    sweep = next(c for c in commands if c[:2] == ["tta-energy", "sweep"])
    audio_dir, out_dir, limit = (_option(sweep, o)[0]
                                 for o in ("--audio-dir", "--out-dir", "--caption-limit"))
    assert "--size" in sweep and _option(sweep, "--device") == ["cpu"]
    checkpoints = re.findall(r"w\('([^']+)'", " ".join(next(c for c in commands if c[0] == "python")))
    scores = [c for c in commands if c[:2] == ["tta-energy", "score"]]
    assert len(scores) == 2
    for argv in scores:
        assert _option(argv, "--caption-limit") == [limit]
        for folder in _option(argv, "--tree") + _option(argv, "--generated") + _option(argv, "--reference"):
            assert Path(folder).is_relative_to(audio_dir), folder
        for out in _option(argv, "--out") + _option(argv, "--per-clip"):
            assert Path(out).parent == Path(out_dir), out  # the sweep made it
        for checkpoint in _option(argv, "--checkpoint") + _option(argv, "--fad-checkpoint"):
            assert checkpoint in checkpoints
