"""Before a device call spends GPU time: can this interpreter import what the sweeps and levers need?

    python3 scripts/gpu_preflight.py      # exit 0, or one line naming what is missing and exit 1

The device machine's image has torch, transformers, numpy, pandas, scipy, nvidia-ml-py, typer and rich; the
rest comes as wheels carried in .whl/ (torchsde, trampoline, soxr, built for its Python 3.12) and
installed with ``--no-deps``, so a forgotten one would otherwise surface as error rows in the middle of a
sweep (soxr would: AudioLDM 2 ranks its waveforms with CLAP on soxr-resampled audio at batch > 1).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

#: import name -> why the GPU path needs it
DEVICE_MODULES: dict[str, str] = {
    "torch": "everything", "numpy": "everything", "pandas": "run tables", "scipy": "meter, vocoders",
    "transformers": "text encoders", "diffusers": "UNets, DiTs, VAEs, schedulers", "safetensors": "weights",
    "torchsde": "Stable Audio Open's scheduler", "soxr": "AudioLDM 2's CLAP ranking at batch > 1",
    "soundfile": "WAV output", "yaml": "bundled configs", "pynvml": "the energy meter",
    "codecarbon": "the study's CodeCarbon columns", "typer": "the command line", "rich": "the command line",
}


#: the modules carried as wheels and installed with --no-deps: imported, not just found, so that a
#: dependency of theirs missing from .whl/ stops the preflight too
IMPORTED = ("diffusers", "codecarbon", "torchsde", "soxr", "soundfile")


def missing_modules() -> list[str]:
    missing = []
    for name in DEVICE_MODULES:
        try:
            if name in IMPORTED:
                importlib.import_module(name)
            elif importlib.util.find_spec(name) is None:
                missing.append(name)
        except ImportError:
            missing.append(name)
    return missing


if __name__ == "__main__":
    if sys.argv[1:]:
        print(f"error: this check takes no arguments, got {' '.join(sys.argv[1:])!r}", file=sys.stderr)
        sys.exit(2)
    absent = missing_modules()
    if absent:
        sys.exit("error: missing Python modules on this machine: "
                 + ", ".join(f"{m} ({DEVICE_MODULES[m]})" for m in absent)
                 + "; carry their wheels (built for this machine's Python) in .whl/: `make device-wheels` "
                 "fetches them")
    print(f"preflight: {len(DEVICE_MODULES)} modules importable")
