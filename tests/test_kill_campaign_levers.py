"""``campaign run`` and ``levers run --plan`` stopped mid-call as a GPU machine stops them: SIGTERM (what
``timeout -s TERM`` sends at the device scripts' hard limit, to the whole process group), SIGINT (Ctrl-C) and
SIGKILL. A stop
loses at most the generation in flight: the rows written stay whole and valid, the campaign's runs log holds
only complete lines, and the next call measures what is missing (no (configuration, repeat) twice, no cell
of the stopped call taken as done when it is not). The stored fp32 references are never left half-written.

Each stop is a real ``python -m tta_energy`` process (tiny models on the CPU) in its own session, stopped
once its table holds a given number of lines, a moment into the next generation (each measured window lasts
at least ``MIN_WINDOW_S``, so the stop lands inside a generation rather than after the run's end).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY_CAMPAIGN
from tta_energy import schema
from tta_energy.cli.exits import NOTHING_LEFT_EXIT
from tta_energy.cli.main import main
from tta_energy.experiments import campaign as cp
from tta_energy.levers import calls, experiment, references, tables
from tta_energy.models.base import GenerationOutput

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

MIN_WINDOW_S = 0.3
#: SIGTERM is the device scripts' hard stop (``timeout -s TERM``), SIGINT a Ctrl-C
STOPS = [pytest.param(signal.SIGKILL, id="SIGKILL"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def child_env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def stopped_at(args: list[str], table: Path, target_lines: int, sig: signal.Signals,
               seed: int) -> subprocess.CompletedProcess:
    """Run ``python -m tta_energy ARGS``; once ``table`` holds ``target_lines`` lines, wait a random moment
    (a small part of one measured window) and send ``sig`` to its process group, as ``timeout`` does."""
    # SIGINT as in a foreground command, also when the tests run in the background (where a shell ignores it)
    proc = subprocess.Popen([sys.executable, "-m", "tta_energy", *args], env=child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.monotonic()
    while lines(table) < target_lines and proc.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before it was stopped: {proc.communicate()[1][-2000:]}"
    # a tenth of a window at most: the signal must land before the next row even when this process is
    # scheduled late on a loaded machine (the tests below count the rows written before it)
    time.sleep(random.Random(seed).uniform(0.0, MIN_WINDOW_S / 10))
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_stopped_as_asked(done: subprocess.CompletedProcess, sig: signal.Signals) -> None:
    if sig == signal.SIGKILL:
        assert done.returncode == -signal.SIGKILL
    else:  # a clean stop: one error line, the status of an interrupted command, no traceback
        assert done.returncode == 130, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1] == "error: interrupted"


def measured_ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame["is_warmup"].astype(bool) & (frame["status"] == "ok")]


def test_an_interrupted_command_says_so_in_one_line(tiny_campaign, monkeypatch, capsys):
    """A KeyboardInterrupt inside a command (typer turns it into a silent exit status) is one error line."""

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cp, "run_campaign", interrupted)
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "run", "--campaign", str(tiny_campaign), "--device", "cpu"])
    assert exc.value.code == 130 and capsys.readouterr().err == "error: interrupted\n"


# --- campaign run ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [*STOPS, pytest.param(signal.SIGINT, id="SIGINT")])
def test_a_stopped_campaign_run_keeps_its_rows_and_the_next_run_finishes_the_cells(tmp_path, capsys, sig):
    path = tmp_path / "c.toml"
    path.write_text(TINY_CAMPAIGN.format(out=tmp_path / "tables").replace(
        "min_window_s = 0", f"min_window_s = {MIN_WINDOW_S}"), encoding="utf-8")
    tables_dir = tmp_path / "tables"
    steps, log = tables_dir / "steps.csv", tables_dir / cp.RUNS_LOG
    args = ["campaign", "run", "--campaign", str(path), "--device", "cpu", "--no-codecarbon", "--no-progress"]
    # header, warm-up and first row of one model: stopped while the other model builds, warms up or measures
    done = stopped_at(args, steps, 3 + (sig != signal.SIGKILL), sig, seed=int(sig))
    assert_stopped_as_asked(done, sig)
    kept = steps.read_bytes()
    assert kept.endswith(b"\n") and not (tables_dir / "quality.csv").exists()  # stopped in the first tier
    main(["summary", "--runs", str(tables_dir)])  # exit status 0: every table valid
    assert "1 of 1 run table(s) valid" in capsys.readouterr().out
    first = schema.read_runs(steps)
    assert len(measured_ok(first)) >= 1 and len(measured_ok(first)) < 4  # work was left for the next run
    stopped_run = str(first["run_id"].iloc[0])
    # the runs log: complete lines only; a call stopped by SIGINT or SIGTERM is logged (its wall time counts)
    logged = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    if sig == signal.SIGKILL:
        assert not logged  # killed before its line: the call is missing, nothing is cut
    else:
        assert log.read_bytes().endswith(b"\n") and len(logged) == 1
        assert logged[0]["run_id"] == stopped_run and logged[0]["interrupted"] is True
        assert logged[0]["stopped_by"] == f"interrupted ({signal.Signals(sig).name})"  # the signal it was
        assert logged[0]["rows"] == {"steps": len(measured_ok(first))} and logged[0]["wall_s"] > 0

    main(args)  # the same command resumes
    said = capsys.readouterr().out
    assert "3 cells, 0 done" in said
    assert steps.read_bytes().startswith(kept)  # every line written before the stop, byte for byte
    main(["summary", "--runs", str(tables_dir)])
    assert "2 of 2 run table(s) valid" in capsys.readouterr().out
    # what an uninterrupted run measures (tests/test_campaign.py): steps 2 models x 2 repeats, quality 2
    # captions once; each (configuration, repeat) once, whichever run measured it
    for experiment_name, per_config in (("steps", [0, 1]), ("quality", [0])):
        table = tables_dir / f"{experiment_name}.csv"
        assert schema.check_table(table).problems == []
        rows = measured_ok(schema.read_runs(table))
        assert len(rows) == 2 * len(per_config)
        assert rows.groupby("config_id")["repeat"].apply(lambda r: sorted(r.astype(int))).tolist() == [
            per_config] * 2
    main(["campaign", "status", "--campaign", str(path), "--json"])
    cells = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(cells) == 3 and all(c["done"] for c in cells)
    assert sorted(c["n"] for c in cells if c["experiment"] == "steps") == [2, 2]
    resumed = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    assert len(resumed) == len(logged) + 1 and not resumed[-1].get("interrupted")
    steps_rows = measured_ok(schema.read_runs(steps))
    assert resumed[-1]["rows"] == {"quality": 2, "steps": int((steps_rows["run_id"] != stopped_run).sum())}


# --- levers run --plan --done ------------------------------------------------------------------------------
LEVERS_PLAN = ('[levers]\nmodels = ["audioldm"]\nspecs = ["none", "channels-last"]\nsteps = [2]\n'
               'batches = [1]\nrepeats = 3\nduration_s = 1.0\n')
#: the plan's two cells (model, spec, steps, batch) and their repeats
CELLS = {("audioldm", "none", 2, 1), ("audioldm", "channels-last", 2, 1)}
REPEATS = 3


@pytest.mark.parametrize("sig", STOPS)
def test_a_stopped_levers_call_keeps_its_rows_and_the_next_call_measures_what_is_missing(tmp_path, capsys,
                                                                                         monkeypatch, sig):
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(LEVERS_PLAN, encoding="utf-8")
    refs = tmp_path / "refs"
    base = ["levers", "run", "--plan", str(plan_file), "--size", "tiny", "--device", "cpu", "--idle-s", "0",
            "--ceiling-s", "0.02", "--ceiling-n", "32", "--min-window-s", str(MIN_WINDOW_S), "--no-profile",
            "--no-report", "--references", str(refs), "--done", str(tmp_path / "partplan-*"),
            "--history", "", "--time-budget-s", "600"]
    part1, part2 = tmp_path / "partplan-1", tmp_path / "partplan-2"
    runs1 = part1 / tables.RUNS_FILE
    # lines: header, 3 warm-ups (fp32, none, channels-last), the fp32 reference, then 3 rounds of both
    # specs; stopped in the last round (SIGKILL: after its first row, SIGTERM: before it)
    target = 1 + 3 + 1 + 2 * (REPEATS - 1) + (sig == signal.SIGKILL)
    done = stopped_at([*base, "--out-dir", str(part1)], runs1, target, sig, seed=int(sig))
    assert_stopped_as_asked(done, sig)
    assert runs1.read_bytes().endswith(b"\n")
    first = schema.read_runs(runs1)  # every row valid
    assert schema.check_table(runs1).problems == []
    assert len(first) == target - 1
    for side in (tables.CONFIGS_FILE, tables.EQUIVALENCE_FILE, tables.CEILING_FILE):
        assert (part1 / side).read_bytes().endswith(b"\n") and len(pd.read_csv(part1 / side)) >= 1
    counts = measured_ok(first).groupby("optimize").size().to_dict()
    assert counts["fp32"] == 1 and sorted([counts["none"], counts["channels-last"]]) == (
        [REPEATS - 1, REPEATS] if sig == signal.SIGKILL else [REPEATS - 1, REPEATS - 1])
    # the reference was measured before the stop and stored whole: the next call loads it
    assert [p.name for p in refs.iterdir() if p.name.startswith(".")] == []
    assert len(list(refs.glob("*.npz"))) == 1

    # what the stopped call holds: a cell is done only with its repeats and the default's in that run, so
    # the cell cut short is left, and with it the default its reduction needs
    earlier = calls.read_earlier_runs([part1], size="tiny", duration_s=1.0, seed=0)
    done_cells = earlier.done({"audioldm": (("none", ((2, 1),), REPEATS),
                                            ("channels-last", ((2, 1),), REPEATS))})
    assert ("audioldm", "channels-last", 2, 1) not in done_cells
    assert done_cells <= {("audioldm", "none", 2, 1)}
    main([*base, "--dry-run"])
    said = capsys.readouterr().out
    assert f"cells done by earlier calls: {len(done_cells)} of 2" in said
    assert "audioldm batch 1: none, channels-last" in said

    kept = runs1.read_bytes()
    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})  # FLOPs are not this test's subject
    main([*base, "--out-dir", str(part2)])
    assert "fp32 references loaded" in capsys.readouterr().out
    second = measured_ok(schema.read_runs(part2 / tables.RUNS_FILE))
    assert second.groupby("optimize").size().to_dict() == {"none": REPEATS, "channels-last": REPEATS}
    assert runs1.read_bytes() == kept  # a later call writes only its own part
    with pytest.raises(SystemExit) as exc:
        main([*base, "--out-dir", str(tmp_path / "partplan-3")])
    assert exc.value.code == NOTHING_LEFT_EXIT
    assert "nothing left to measure (2 of 2 cells done)" in capsys.readouterr().out

    main(["levers", "report", str(part1), str(part2), "--out-dir", str(tmp_path / "report")])
    capsys.readouterr()
    report = pd.read_csv(tmp_path / "report" / "levers.csv")
    assert {"none", "channels-last"} <= set(report["optimize"])
    assert (tmp_path / "report" / "levers_summary.md").is_file()


# --- stored fp32 references --------------------------------------------------------------------------------
def _key(steps: int = 2) -> references.ReferenceKey:
    return references.ReferenceKey(model="audioldm", size="tiny", weights="random", steps=steps, batch=1,
                                   duration_s=1.0, seed=0, prompt="rain", code="0" * 16, torch="2",
                                   device="cpu")


def _output() -> GenerationOutput:
    waves = np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32)
    return GenerationOutput(waves, 16000, 2, np.ones((1, 8, 4, 4), np.float32))


def _store_slowly(folder: str) -> None:
    """Store a reference whose bytes are written in pieces, the process killing itself (SIGKILL) after the
    third: a kill mid-write at a known point, whatever the machine's load."""

    def write_bytes(self: Path, data: bytes) -> int:
        with open(self, "wb") as fh:
            for piece, i in enumerate(range(0, len(data), 1024)):
                fh.write(data[i:i + 1024])
                fh.flush()
                if piece == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
        return len(data)

    Path.write_bytes = write_bytes  # this forked child only
    references.store_reference(_key(), Path(folder), _output(), 1.5)


def test_a_reference_killed_mid_write_is_not_stored_and_a_damaged_one_is_computed_again(tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    child = multiprocessing.get_context("fork").Process(target=_store_slowly, args=(str(folder),))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    left = list(folder.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".")  # only the hidden temporary, part-written
    assert left[0].stat().st_size == 3 * 1024
    assert not _key().path(folder).exists()
    assert references.load_reference(_key(), folder) is None  # nothing stored: the next call computes it
    assert references.stored_keys(folder, "audioldm", "tiny", 2) == []

    # a file damaged after it was stored (cut in transfer, emptied) is unreadable: computed again, not used
    references.store_reference(_key(), folder, _output(), 1.5)
    stored = _key().path(folder).read_bytes()
    loaded = references.load_reference(_key(), folder)
    assert loaded is not None and loaded[1] == 1.5
    assert np.array_equal(loaded[0].waveforms, _output().waveforms)
    for damaged in (stored[: len(stored) // 2], stored[:-40], b""):
        _key().path(folder).write_bytes(damaged)
        assert references.load_reference(_key(), folder) is None
        assert references.stored_keys(folder, "audioldm", "tiny", 2) == []
    # the next call's store replaces it whole: what is read back is what it wrote
    references.store_reference(_key(), folder, _output(), 2.5)
    reloaded = references.load_reference(_key(), folder)
    assert reloaded is not None and reloaded[1] == 2.5
    expected = _output()
    assert np.array_equal(reloaded[0].waveforms, expected.waveforms)
    assert np.array_equal(reloaded[0].latents, expected.latents)
    assert (reloaded[0].sample_rate, reloaded[0].denoiser_calls) == (16000, 2)


def test_stale_references_of_this_device_are_pruned_others_kept(tmp_path):
    """A reference of another code or torch version on this device can never be loaded again: pruned, so the
    folder a device call carries stays small; another device's references and unreadable files stay."""
    folder = tmp_path / "refs"
    current = _key()
    old_code = dataclasses.replace(current, code="1" * 16)
    old_torch = dataclasses.replace(current, torch="1")
    other_device = dataclasses.replace(current, code="1" * 16, device="NVIDIA H200")
    for key in (current, old_code, old_torch, other_device):
        references.store_reference(key, folder, _output(), 1.5)
    (folder / "cut-10steps-b1-0.npz").write_bytes(b"PK")
    removed = references.prune_stale(folder, "cpu", "2", "0" * 16)
    assert sorted(removed) == sorted([old_code.path(folder), old_torch.path(folder)])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [current.path(folder).name, other_device.path(folder).name, "cut-10steps-b1-0.npz"])
    assert references.load_reference(current, folder) is not None
    assert references.prune_stale(folder, "cpu", "2", "0" * 16) == []  # nothing more to remove
