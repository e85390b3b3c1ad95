"""The device-call scripts (scripts/lib_sweeps.sh, scripts/gpu_preflight.py) run on the CPU with tiny models:
the same code path a device call takes, so a broken script is caught before GPU time is spent on it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _preflight():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_preflight
    finally:
        sys.path.pop(0)
    return gpu_preflight


def test_preflight_names_a_missing_module(monkeypatch):
    preflight = _preflight()
    assert preflight.missing_modules() == []  # the test environment has every runtime dependency
    monkeypatch.setitem(preflight.DEVICE_MODULES, "no_such_module_tta", "a test")
    assert preflight.missing_modules() == ["no_such_module_tta"]


def test_lib_sweeps_runs_a_sweep_and_packs_its_tables(tmp_path):
    data, out = tmp_path / "h200", tmp_path / "out"
    env = dict(os.environ, DATA=str(data), OUT=str(out), PYTHON=sys.executable, BUDGET_S="400", IDLE_S="0.5",
               QUALITY_STEPS="2", QUALITY_LIMIT="1", CALL="test-call",
               SWEEP_ARGS="--size tiny --device cpu --dtype float32")
    script = "source scripts/lib_sweeps.sh; sweep_model make-an-audio-2 quality; finish"
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = pd.read_csv(data / "quality.csv")
    measured = table[~table["is_warmup"]]
    assert len(measured) == 2 and (measured["status"] == "ok").all()  # first caption of each caption file
    assert set(measured["dataset"]) == {"audiocaps", "clotho"}
    with tarfile.open(out / "h200" / "results-test-call.tar") as tar:
        names = tar.getnames()
    assert any(n.endswith("quality.csv") for n in names)  # (no power trace without a GPU)
    assert "preflight:" in (out / "h200" / "log-test-call.txt").read_text()
