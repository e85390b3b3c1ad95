"""scripts/gpu_preflight.py: names a missing runtime module before GPU time is spent on a device call."""

from __future__ import annotations

import sys
from pathlib import Path

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
