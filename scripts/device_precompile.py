"""Compile, once per device call and in parallel, the bytecode of the packages its Python processes import.

    PYTHONPYCACHEPREFIX=/tmp/pycache python3 scripts/device_precompile.py [PACKAGE ...]

The device machine's packages come without bytecode it can use: each Python process of a call compiled
about 2,300 modules from source again (10 s of a campaign run's start on an H100, in a profile of
`tta-energy campaign run`), and a call starts several such processes (its checks, the preflight, the run and
its meter's sampler). With ``PYTHONPYCACHEPREFIX`` (``scripts/device_env.sh`` sets it, so every process of the
call reads and writes there) this compiles the packages named below (or the ones given) on all cores before
the first of them starts; files whose bytecode is already current are skipped, so a second call on a warm
machine pays almost nothing. It prints one line: files compiled, failed, seconds. Exit 0 also when a few
files fail (a module that does not compile is never imported); exit 2 on bad use, one line before any work
(a prefix where no file can be made, or a package named that this interpreter does not find; of the default
list, absent ones are skipped).
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: the packages the campaign and levers processes import (``python -X importtime`` of a campaign run on the
#: device: each with at least ~20 modules), and this repository's own
PACKAGES = (
    "torch", "torchvision", "torchaudio", "torchao", "triton", "transformers", "diffusers", "peft",
    "accelerate", "huggingface_hub", "tokenizers", "safetensors", "scipy", "sympy", "mpmath", "sklearn",
    "numpy", "pandas", "narwhals", "pyarrow", "rich", "pygments", "typer", "click", "codecarbon", "rapidfuzz",
    "joblib", "torchsde", "trampoline", "httpx", "httpcore", "h11", "urllib3", "requests", "PIL", "jinja2",
    "yaml", "fsspec", "filelock", "tqdm", "dateutil", "psutil", "pynvml", "soundfile", "soxr", "opt_einsum",
    "tta_energy",
)
#: folders of the standard library that no process imports
STDLIB_SKIPPED = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "site-packages",
                  "dist-packages", "__pycache__", "venv", "pydoc_data"}


def _find(name: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def package_files(names: tuple[str, ...] | list[str]) -> list[str]:
    """The ``.py`` files of the packages ``names`` that this interpreter finds (absent ones are skipped)
    and of the standard library (less :data:`STDLIB_SKIPPED`), each once."""
    roots: list[Path] = []
    for name in names:
        spec = _find(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            roots.extend(Path(p) for p in spec.submodule_search_locations)
        elif spec.origin and spec.origin.endswith(".py"):
            roots.append(Path(spec.origin))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    roots.extend(p for p in stdlib.iterdir() if p.name not in STDLIB_SKIPPED
                 and (p.is_dir() or p.suffix == ".py"))
    files: dict[str, None] = {}
    for root in roots:
        if root.is_file():
            files[str(root)] = None
            continue
        for path in root.rglob("*.py"):
            if "__pycache__" not in path.parts:
                files[str(path)] = None
    return list(files)


def unwritable(folder: str) -> str | None:
    """Why no file can be made in ``folder`` (or in the folders it needs made), or None: a file is made and
    removed there, or, while it does not exist, in its nearest existing parent (nothing is left behind)."""
    probed = Path(folder)
    while not probed.exists() and probed != probed.parent:
        probed = probed.parent
    try:
        with tempfile.NamedTemporaryFile(dir=probed, prefix=".probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _compile(path: str) -> bool:
    return bool(compileall.compile_file(path, quiet=2))


def main(argv: list[str]) -> int:
    if any(a.startswith("-") for a in argv):
        print("usage: python3 scripts/device_precompile.py [PACKAGE ...]", file=sys.stderr)
        return 2
    if not sys.pycache_prefix:
        print("error: PYTHONPYCACHEPREFIX is not set: the bytecode would go next to the sources, where the "
              "device's packages may not be writable; set it (scripts/device_env.sh does)", file=sys.stderr)
        return 2
    # a prefix where no file can be made would fail every file, and the line would still say current
    why = unwritable(sys.pycache_prefix)
    if why:
        print(f"error: PYTHONPYCACHEPREFIX={sys.pycache_prefix}: no file can be made there ({why}); give a "
              "folder this user can write", file=sys.stderr)
        return 2
    unknown = [name for name in argv if _find(name) is None]
    if unknown:
        print(f"error: PACKAGE={', '.join(unknown)}: this interpreter finds no such package; name packages "
              "it imports, or none for the device's list", file=sys.stderr)
        return 2
    start = time.perf_counter()
    files = package_files(argv or list(PACKAGES))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        ok = list(pool.map(_compile, files, chunksize=64))
    print(f"bytecode of {len(files)} files current in {sys.pycache_prefix} ({ok.count(False)} failed) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
