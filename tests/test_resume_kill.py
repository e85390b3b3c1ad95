"""A sweep killed with SIGKILL at random points, then resumed, records each (configuration, repeat) once.

Eleven kill trials on one table (tiny AudioLDM on the CPU, steps {1, 2, 3} x 8 repeats), then a run to the
end:

* the first trial is a real ``python -m tta_energy sweep`` process, killed once it has written rows;
* ten more are the same command started from a fork server that has the package imported already (a fresh
  interpreter would spend most of each trial importing torch), killed either after a random delay from their
  start (planning, building, warming up) or a random moment after 1-3 new rows (mid-generation, mid-append);
* a last real ``python -m tta_energy sweep`` finishes the grid.

Then: the file parses line by line, validates against the schema, and every pair appears exactly once.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tta_energy import schema

STEPS, REPEATS = (1, 2, 3), 8  # 24 pairs: more than 11 interrupted trials can finish


def sweep_args(out: Path) -> list[str]:
    return ["sweep", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--dtype", "float32",
            "--duration-s", "1", "--experiment", "steps", "--grid", ",".join(map(str, STEPS)),
            "--repeats", str(REPEATS), "--idle-s", "0", "--no-progress", "--no-codecarbon", "--out", str(out)]


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_lines(path: Path, alive, target: int, timeout_s: float = 120.0) -> bool:
    """Wait until ``path`` holds ``target`` complete lines; False if the process ended first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if lines(path) >= target:
            return True
        if not alive():
            return False
        time.sleep(0.005)
    return False


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkill_at_random_points_then_resume(tmp_path, monkeypatch):
    rng = random.Random(1234)
    out = tmp_path / "steps.csv"
    killed = 0

    # trial 1: the real command line, killed inside the generation after its second row
    proc = subprocess.Popen([sys.executable, "-m", "tta_energy", *sweep_args(out)], env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for_lines(out, lambda: proc.poll() is None, 3)  # header + warm-up + one measured row
    time.sleep(rng.uniform(0.0, 0.1))
    proc.send_signal(signal.SIGKILL)
    killed += proc.wait() == -signal.SIGKILL

    # trials 2-11: the same main() forked from a server that has imported the package
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # read by the fork server when it starts
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tta_energy.cli.main", "tta_energy.experiments.runner",
                                "tta_energy.models.audioldm", "diffusers", "transformers"])
    from tta_energy.cli.main import main

    first_row_s = 2.0  # time from start to the first row, updated from the trials
    for trial in range(10):
        before = lines(out)
        p = ctx.Process(target=main, args=(sweep_args(out),))
        t0 = time.monotonic()
        p.start()
        if trial % 2 == 0:  # after 1-3 new rows, somewhere in the next generation or append
            wait_for_lines(out, p.is_alive, before + rng.randint(1, 3))
            first_row_s = time.monotonic() - t0
            time.sleep(rng.uniform(0.0, 0.05))
        else:  # anywhere from start-up (planning, building, warm-up) to the first rows
            time.sleep(rng.uniform(0.0, 1.2 * first_row_s))
        alive = p.is_alive()
        p.kill()
        p.join(30)
        killed += alive and p.exitcode == -signal.SIGKILL

    # the last run finishes the grid
    done = subprocess.run([sys.executable, "-m", "tta_energy", *sweep_args(out)], env=child_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert killed >= 10  # the trials died mid-run (the grid is too large for them to finish it)
    measured_now = re.search(r": (\d+) measured", done.stdout)  # the kills left work for the last run
    assert measured_now and int(measured_now.group(1)) > 0, done.stdout

    raw = out.read_text()
    assert raw.endswith("\n")
    parsed = list(csv.reader(raw.splitlines()))
    assert parsed[0] == list(schema.COLUMN_NAMES)
    assert all(len(r) == len(parsed[0]) for r in parsed[1:])  # no torn line survived
    df = schema.read_runs(out)  # validates every row
    measured = df[~df["is_warmup"]]
    pairs = list(zip(measured["config_id"], measured["repeat"].astype(int), strict=True))
    assert len(pairs) == len(set(pairs)) == len(STEPS) * REPEATS
    assert sorted(measured["steps"].astype(int)) == sorted(list(STEPS) * REPEATS)
    assert (measured["status"] == "ok").all()
    assert (measured["denoiser_calls"] == measured["steps"]).all()
    assert (measured["wall_s"] > 0).all() and (measured["run_id"] != "").all()
    assert pd.to_datetime(measured["timestamp"], utc=True).notna().all()
    assert 1 <= df["is_warmup"].sum() <= 12  # at most one warm-up per process
