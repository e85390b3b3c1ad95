"""Every user error of ``tta-energy`` is one line on stderr and exit status 2 (run as the installed command).

The bad inputs of a test run as concurrent processes (each costs ~1 s of imports), and each must be refused
before torch is imported or anything is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tta_energy.errors import CudaContextLost, TtaError

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINT = Path(sys.executable).with_name("tta-energy")
pytestmark = pytest.mark.skipif(not ENTRY_POINT.exists(), reason="tta-energy is not installed next to python")


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("TTA_ENERGY_DEBUG", None)
    return env


def run_all(cases: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run ``tta-energy ARGS`` for every case at once; results in the order of ``cases``."""
    procs = [subprocess.Popen([str(ENTRY_POINT), *args], cwd=cwd, env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in cases]
    results = []
    for args, proc in zip(cases, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results


def assert_one_error_line(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert result.returncode == 2, (result.args, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), (result.args, result.stderr)
    assert fragment in lines[0], (result.args, lines[0])


USAGE_CASES: list[tuple[list[str], str]] = [
    (["levers", "explain"], "Missing argument 'spec'"),
    (["describe"], "Missing option '--model'"),
    (["import-study"], "Missing argument 'path'"),
    (["sweep", "--model", "tango", "--experiment", "steps", "--bogus"], "No such option: --bogus"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["generate", "--model", "audioldm", "--prompt", "rain", "--steps", "ten", "--duration-s", "1", "--out",
      "x.wav"], "Invalid value for '--steps'"),
    (["analyze", "--runs", "data/h200", "data/study", "--out-dir", "x"],
     "repeat it for several (--runs A --runs B)"),
]


def test_usage_errors_are_one_line_with_the_help_to_read(tmp_path: Path) -> None:
    for (_, fragment), result in zip(USAGE_CASES, run_all([a for a, _ in USAGE_CASES], tmp_path),
                                     strict=True):
        assert_one_error_line(result, fragment)
        assert "--help'" in result.stderr  # where to read what is allowed


GEN = ["generate", "--model", "audioldm", "--prompt", "rain", "--duration-s", "1"]
SWEEP = ["sweep", "--model", "audioldm", "--experiment", "steps", "--no-progress"]
GENERATE_CASES: list[tuple[list[str], str]] = [
    ([*GEN, "--steps", "10", "--device", "tpu9", "--out", "a.wav"], "unknown device 'tpu9': use cpu, cuda"),
    ([*GEN, "--steps", "1000000000", "--out", "a.wav"], "steps must be <= 1000"),
    ([*GEN, "--steps", "0", "--out", "a.wav"], "steps must be >= 1, got 0"),
    ([*GEN, "--steps", "10", "--batch", "0", "--out", "a.wav"], "must be >= 1, got 0"),
    ([*GEN, "--steps", "10", "--guidance-scale", "-4", "--out", "a.wav"], "guidance scale must be >= 0"),
    # --guidance (its name before) is still read
    ([*GEN, "--steps", "10", "--guidance", "1", "--negative-prompt", "dog", "--out", "a.wav"],
     "--negative-prompt has no effect at --guidance-scale 1 (<= 1 turns guidance off)"),
    ([*GEN, "--steps", "10", "--guidance-scale", "inf", "--out", "a.wav"], "guidance scale must be a finite"),
    ([*GEN, "--steps", "10", "--dtype", "half", "--out", "a.wav"], "unknown dtype 'half'"),
    (["generate", "--model", "audioldm", "--prompt", " ", "--steps", "10", "--duration-s", "1", "--out",
      "a.wav"], "the prompt is empty"),
    ([*GEN, "--steps", "10", "--out", "/proc/tta-energy-test/a.wav"], "/proc/tta-energy-test"),
    (["describe", "--model", "audioldm", "--size", "huge"], "unknown size 'huge': use full or tiny"),
    (["generate", "--model", "stable-audio-open", "--size", "tiny", "--prompt", "rain", "--steps", "10",
      "--duration-s", "5", "--out", "a.wav"], "maximum of 1.49 s (tiny size)"),
    (["estimate", "--model", "tangoo", "--steps", "50"], "unknown model 'tangoo': choose one of"),
    (["estimate", "--model", "tango", "--steps", "50"], "no data/h200 under the current folder: give --runs"),
]
SWEEP_CASES: list[tuple[list[str], str]] = [
    ([*SWEEP, "--country", "ZZZ"], "unknown country code 'ZZZ'"),
    ([*SWEEP, "--out", "a.csv", "--out-dir", "runs"], "--out and --out-dir both name the output"),
    ([*SWEEP, "--grid", "2000"], "steps must be <= 1000"),
    (["sweep", "--model", "make-an-audio-2", "--experiment", "steps", "--grid", "3,10"],
     "LDM's uniform DDIM spacing cannot run 3 steps"),
    ([*SWEEP, "--out", "/proc/tta-energy-test/steps.csv"], "output folder /proc/tta-energy-test does not"),
    ([*SWEEP, "--out-dir", "/proc/tta-energy-test"], "cannot be written"),
    ([*SWEEP, "--dtype", "float8"], "unknown dtype 'float8'"),
    (["sweep", "--model", "tango", "--size", "tiny", "--experiment", "steps", "--duration-s", "5"],
     "tango (tiny size) always generates 0.96 s of audio"),
    (["sweep", "--model", "stable-audio-open", "--size", "tiny", "--experiment", "duration", "--grid", "1,2"],
     "maximum of 1.49 s (tiny size)"),
]


@pytest.mark.parametrize("cases", [GENERATE_CASES, SWEEP_CASES], ids=["generate", "sweep"])
def test_bad_values_are_refused_before_any_work(tmp_path: Path, cases: list[tuple[list[str], str]]) -> None:
    for (_, fragment), result in zip(cases, run_all([a for a, _ in cases], tmp_path), strict=True):
        assert_one_error_line(result, fragment)
    assert not any(tmp_path.iterdir())  # nothing written, not even an empty folder


def test_no_check_imports_torch() -> None:
    """The early checks run without torch: a refused command never pays for importing it."""
    generate = ["generate", "--model", "tango", "--prompt", "x", "--steps", "0", "--duration-s", "1", "--out",
                "x.wav"]
    sweep = ["sweep", "--model", "tango", "--experiment", "steps", "--grid", "5000"]
    tiny = ["sweep", "--model", "tango", "--size", "tiny", "--experiment", "steps", "--duration-s", "5"]
    code = ("import sys\nfrom tta_energy.cli.main import run_app, app\n"
            f"assert run_app(app, {generate!r}) == 2\nassert run_app(app, {sweep!r}) == 2\n"
            f"assert run_app(app, {tiny!r}) == 2\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_command_line_starts_without_the_analysis_libraries() -> None:
    """Loading the command (every subcommand registered) imports no torch, pandas or scipy: each command
    imports what it needs when it runs, so `--help` and a refused command stay quick."""
    code = ("import sys\nimport tta_energy.cli.main\n"
            "heavy = [m for m in ('torch', 'pandas', 'scipy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_version_and_debug(tmp_path: Path) -> None:
    version, debug, script_help = run_all(
        [["--version"], ["--debug", "describe", "--model", "audioldm", "--size", "huge"], []], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("tta-energy ")
    # --debug shows where it came from; the line and the exit status (2: bad input) stay what they are
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == "error: unknown size 'huge': use full or tiny"
    assert script_help.returncode == 2 and "Usage: tta-energy" in script_help.stdout + script_help.stderr


@pytest.mark.parametrize(("raised", "status", "line"), [
    (lambda: TtaError("bad value"), 2, "error: bad value"),
    (lambda: CudaContextLost("x", "CUDA error: unspecified launch failure"), 5,
     "error: the CUDA context was lost"),
    (lambda: ZeroDivisionError("a bug"), 1, "error: ZeroDivisionError: a bug")])
def test_debug_adds_the_traceback_and_keeps_the_line_and_the_exit_status(capsys, monkeypatch, raised, status,
                                                                        line):
    import typer

    from tta_energy.cli.main import DEBUG_ENV, run_app

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    app = typer.Typer()

    @app.command()
    def fail() -> None:
        raise raised()

    @app.command()
    def other() -> None:  # a group, as tta-energy is
        """Unused."""

    assert run_app(app, ["fail"]) == status
    plain = capsys.readouterr().err.splitlines()
    assert len(plain) == 1 and plain[0].startswith(line)
    assert run_app(app, ["--debug", "fail"]) == status
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):" and err[-1] == plain[0].removesuffix(
        " (run with --debug for the traceback)")


def test_a_model_script_has_its_own_usage_and_no_model_option(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "inferences" / "tango.py"), "--help"], env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "Usage: tango.py [OPTIONS]" in result.stdout and "--model" not in result.stdout


@contextmanager
def holding(lock: str) -> Iterator[None]:
    """A second, real process that enters ``lock`` (a with-statement's context, in Python) and holds it until
    the block ends; afterwards it has ended cleanly."""
    code = ("import sys\nfrom pathlib import Path\n"
            "from tta_energy.experiments import campaign, distributed, runner\n"
            "ctx = distributed.context_from_env()\n"
            f"with {lock}:\n"
            "    print('locked', flush=True)\n"
            "    sys.stdin.readline()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], env=_env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("done\n", timeout=60)
    assert holder.returncode == 0


def test_a_second_writer_of_a_table_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    """Two real processes: one holds the table's lock as a running sweep does, the other is refused at once
    with one line; once the first is done the lock is free again."""
    table = tmp_path / "steps.csv"
    sweep = f"runner.SweepOptions(model='audioldm', experiments=('steps',), out=Path({str(table)!r}))"
    with holding(f"runner.table_locks({sweep}, ctx)"):
        (second,) = run_all([["sweep", "--model", "audioldm", "--experiment", "steps", "--size", "tiny",
                              "--device", "cpu", "--no-codecarbon", "--out", str(table)]], tmp_path)
    assert_one_error_line(second, f"another sweep or campaign is writing {table}")
    assert not table.exists()  # the refused sweep wrote nothing
    from filelock import FileLock

    from tta_energy.experiments.resume import lock_path

    with FileLock(lock_path(table), timeout=0):  # released when its holder ended
        pass


@pytest.mark.parametrize("holder", ["campaign", "sweep"])
def test_a_campaign_run_is_refused_while_another_run_writes_its_tables(tmp_path: Path, tiny_campaign: Path,
                                                                       holder: str) -> None:
    """A campaign run takes the sweep's locks: while another campaign run (or a sweep of one of its tables)
    holds them, a second run is refused with one line before it measures or writes anything."""
    spec, out = tiny_campaign, tmp_path / "tables"
    out.mkdir()
    steps = out / "steps.csv"
    lock = {"campaign": f"campaign.campaign_locks(campaign.load_campaign({str(spec)!r}), "
                        "{'quality', 'steps'}, ctx)",
            "sweep": f"runner.table_locks(runner.SweepOptions(model='tango', experiments=('steps',), "
                     f"out=Path({str(steps)!r})), ctx)"}[holder]
    with holding(lock):
        (second,) = run_all([["campaign", "run", "--campaign", str(spec), "--device", "cpu",
                              "--no-codecarbon", "--no-progress", "--no-trace"]], tmp_path)
    busy = out / ("quality.csv" if holder == "campaign" else "steps.csv")  # the first table it holds
    assert_one_error_line(second, f"another sweep or campaign is writing {busy}")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == []  # nothing written


def test_an_extra_argument_suggests_repeating_an_option_only_where_one_repeats(capsys):
    from tests.conftest import refused

    line = refused(capsys, ["schema", "extra"], "unexpected extra argument")
    assert "repeat it" not in line
    refused(capsys, ["analyze", "--runs", "data/h200", "data/study", "--out-dir", "x"], "(--runs A --runs B)")


@pytest.mark.parametrize(("argv", "option", "switch"), [
    (["sweep", "--model", "audioldm", "--experiment", "steps", "--no-codecarbon", "--country", "FRA"],
     "--country", "--no-codecarbon"),
    (["sweep", "--model", "audioldm", "--experiment", "quality", "--no-save-audio", "--audio-dir", "clips"],
     "--audio-dir", "--no-save-audio"),
    (["campaign", "run", "--campaign", "campaigns/h200.toml", "--no-codecarbon", "--country", "FRA"],
     "--country", "--no-codecarbon"),
    (["score", "--out", "scores.csv", "--no-cache", "--cache", "embeddings"], "--cache", "--no-cache"),
])
def test_an_option_whose_setting_a_switch_turns_off_is_refused_not_ignored(capsys, monkeypatch, argv, option,
                                                                           switch):
    from tests.conftest import refused

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    refused(capsys, argv, option, switch, absent=(Path("clips"), Path("scores.csv"), Path("embeddings")))
