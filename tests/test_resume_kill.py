"""A sweep killed with SIGKILL at random points, then resumed, records each (configuration, repeat) once.

Eleven kill trials on one table (tiny AudioLDM on the CPU, steps {1, 2, 3} x 3 repeats), then a run to the
end:

* the first trial is a real ``python -m tta_energy sweep`` process, killed once it has written rows;
* ten more are the same command started from a fork server that has the package imported already (a fresh
  interpreter would spend most of each trial importing torch), killed either after a random delay from their
  start or a random moment after their next row appeared (mid-generation, mid-append);
* a last real ``python -m tta_energy sweep`` finishes the grid.

Then: the file parses line by line, validates against the schema, and every pair appears exactly once.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tta_energy import schema

STEPS, REPEATS = (1, 2, 3), 3


def sweep_args(out: Path) -> list[str]:
    return ["sweep", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--dtype", "float32",
            "--duration", "1", "--experiment", "steps", "--grid", ",".join(map(str, STEPS)),
            "--repeats", str(REPEATS), "--idle-s", "0", "--no-progress", "--no-codecarbon", "--out", str(out)]


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_growth(path: Path, alive, start: int, timeout_s: float = 60.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if lines(path) > start:
            return True
        if not alive():
            return False
        time.sleep(0.01)
    return False


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkill_at_random_points_then_resume(tmp_path):
    rng = random.Random(1234)
    out = tmp_path / "steps.csv"
    killed = 0

    # trial 1: the real command line, killed after its first rows
    proc = subprocess.Popen([sys.executable, "-m", "tta_energy", *sweep_args(out)], env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for_growth(out, lambda: proc.poll() is None, 0, timeout_s=120)
    time.sleep(rng.uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    killed += proc.wait() == -signal.SIGKILL

    # trials 2-11: forked from a server that has imported the package; same code path from main() on
    os.environ["OMP_NUM_THREADS"] = "1"  # read by the fork server when it starts
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tta_energy.cli.main", "tta_energy.experiments.runner",
                                "tta_energy.models.audioldm", "diffusers", "transformers"])
    from tta_energy.cli.main import main

    for trial in range(10):
        before = lines(out)
        p = ctx.Process(target=main, args=(sweep_args(out),))
        t0 = time.monotonic()
        p.start()
        if trial % 2 == 0:  # anywhere: building, warming up, measuring, appending
            time.sleep(rng.uniform(0.0, 2.5))
        else:  # a random moment after the next row (inside the next generation or append)
            wait_for_growth(out, p.is_alive, before, timeout_s=60)
            time.sleep(rng.uniform(0.0, 0.15))
        p.kill()
        p.join(30)
        killed += p.exitcode == -signal.SIGKILL
        assert time.monotonic() - t0 < 90

    # the last run finishes the grid
    done = subprocess.run([sys.executable, "-m", "tta_energy", *sweep_args(out)], env=child_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert killed >= 8  # most trials died mid-run (a trial may finish before its kill once the grid is done)

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
