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


def test_precompile_writes_each_packages_bytecode_under_the_prefix_once(tmp_path):
    """scripts/device_precompile.py: the named packages' bytecode lands under PYTHONPYCACHEPREFIX, where a
    later process's import finds it; a second run finds it current; without the prefix it refuses, and so it
    does, before any work, a prefix where no file can be made (it said every file current, all failed, exit 0)
    and a package this interpreter does not find (it was skipped without a word)."""
    import fnmatch
    import importlib.util
    import os
    import subprocess

    package = tmp_path / "src" / "precompiled_pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n", encoding="utf-8")
    (package / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (package / "sub" / "leaf.py").write_text("def f():\n    return 2\n", encoding="utf-8")
    prefix = tmp_path / "pycache"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src"), "PYTHONPYCACHEPREFIX": str(prefix)}
    script = [sys.executable, str(ROOT / "scripts" / "device_precompile.py"), "precompiled_pkg"]

    first = subprocess.run(script, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    leaf = package / "sub" / "leaf.py"
    # where the import system looks for leaf.py's bytecode under this prefix
    wanted = subprocess.run([sys.executable, "-c", "import importlib.util, sys; "
                             f"print(importlib.util.cache_from_source({str(leaf)!r}))"],
                            env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(wanted).is_file() and Path(wanted).is_relative_to(prefix)
    assert not (package / "sub" / "__pycache__").exists()  # nothing next to the sources
    assert "(0 failed)" in first.stdout and first.stdout.count("\n") == 1
    compiled = int(first.stdout.split()[2])
    assert compiled > 3  # the package's three files and the standard library's
    stamp = Path(wanted).stat().st_mtime_ns
    second = subprocess.run(script, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and int(second.stdout.split()[2]) == compiled
    assert Path(wanted).stat().st_mtime_ns == stamp  # current: not written again
    assert importlib.util.find_spec("precompiled_pkg") is None  # the test's own process never saw it

    bare = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"}
    refused = subprocess.run(script, env=bare, capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "PYTHONPYCACHEPREFIX is not set" in refused.stderr
    assert refused.stderr.count("\n") == 1

    fresh = tmp_path / "fresh" / "pycache"
    for prefix, names, said in [
        (fresh, ["precompiled_pkg", "absent_pkg", "absent.sub"],
         "PACKAGE=absent_pkg, absent.sub: this interpreter finds no such package; name packages it imports, "
         "or none for the device's list"),
        (tmp_path / "src" / "precompiled_pkg" / "__init__.py" / "pycache", [],
         f"PYTHONPYCACHEPREFIX={tmp_path}/src/precompiled_pkg/__init__.py/pycache: no file can be made there "
         "(Not a directory); give a folder this user can write"),
        *([(Path("/proc/x"), [], "PYTHONPYCACHEPREFIX=/proc/x: no file can be made there (*); give a folder "
                                 "this user can write")]  # the system's word for why, even as root
          if Path("/proc/self").is_dir() else []),
    ]:
        refused = subprocess.run([*script[:2], *names], env={**env, "PYTHONPYCACHEPREFIX": str(prefix)},
                                 capture_output=True, text=True, check=False)
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
        assert fnmatch.fnmatchcase(refused.stderr, f"error: {said}\n"), refused.stderr
        assert refused.stderr.count("\n") == 1
    assert not (tmp_path / "fresh").exists()  # nothing made


def test_device_scripts_exit_statuses_are_the_packages_and_no_two_share_a_number():
    """scripts/device_exits.sh copies statuses of tta_energy.cli.exits: a copy that drifted would make a
    device script read a command's status as another (a sweep's all-failed as nothing left, say)."""
    import re

    from tta_energy.cli import exits

    shell = dict(re.findall(r"^([A-Z_]+_EXIT)=(\d+)$", (ROOT / "scripts" / "device_exits.sh").read_text(),
                            re.MULTILINE))
    assert set(shell) == {"CONTEXT_LOST_EXIT", "NOTHING_LEFT_EXIT"}
    for name, value in shell.items():
        assert int(value) == getattr(exits, name), name
    package = {name: value for name, value in vars(exits).items() if name.endswith("_EXIT")}
    assert len(set(package.values())) == len(package), package
