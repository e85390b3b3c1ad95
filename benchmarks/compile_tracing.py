"""How much of a compilation the ``compile-blocks`` lever saves, measured on a CPU: Dynamo's tracing and AOT
autograd of the denoiser as ``compile`` (the whole denoiser, one graph) and as ``compile-blocks`` (its
repeated blocks, one graph per block class and shape), through the levers' own code path.

    PYTHONPATH=src python benchmarks/compile_tracing.py --models audioldm tango --size tiny \
        --out benchmarks/results/compile_tracing.csv

Each (model, size, spec) runs in a fresh process (empty Dynamo caches) with Dynamo's ``aot_eager`` backend:
the tracing, guards and functionalisation of a GPU compilation without Inductor's code generation, which on
a GPU machine runs in parallel workers and on this CPU would build C++ for many minutes. Tracing time is the
first denoiser call less the median of the next calls. The GPU's compilation also lowers and generates
kernels for every op traced, so the ratio of traced ops (``calls_captured``) is the other half of the
estimate; the levers plan prices a block compilation as a whole one (``BLOCKS_COMPILE_SHARE``) until a
device call meters ``compile-blocks`` itself.
Block counts do not depend on the size for the UNets (tiny keeps every block); the DiTs have fewer blocks
in their tiny variants, so measure them at full size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SPECS = ("compile", "compile-blocks")


def measure(model: str, size: str, spec: str, calls: int = 3) -> dict[str, object]:
    """One (model, size, spec) in this process: seconds of the first call, of the later ones, and Dynamo's
    counts of graphs and traced calls."""
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    from tta_energy.levers.apply import apply_levers
    from tta_energy.levers.spec import parse_levers
    from tta_energy.models.registry import build_model

    torch.manual_seed(0)
    adapter = build_model(model, size=size, weights="random", device="cpu")
    levers = dataclasses.replace(parse_levers(spec), compile_backend="aot_eager")
    apply_levers(adapter, levers)
    call = adapter.denoiser_call(duration_s=adapter.defaults.duration_s or 10.0, batch=1)
    fn = adapter.denoiser  # the denoiser as the levers left it (call.module is the bare one)
    seconds = []
    with torch.inference_mode():
        for _ in range(calls):
            start = time.perf_counter()
            fn(*call.args, **call.kwargs)
            seconds.append(time.perf_counter() - start)
    later = statistics.median(seconds[1:])
    stats = counters["stats"]
    return {"model": model, "size": size, "spec": spec, "first_call_s": round(seconds[0], 3),
            "later_call_s": round(later, 3), "tracing_s": round(seconds[0] - later, 3),
            "graphs": int(stats["unique_graphs"]), "calls_captured": int(stats["calls_captured"]),
            "compiled_blocks": adapter.applied_levers.notes.get("compiled_blocks", ""),
            "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--size", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--out", type=Path, default=None, help="append the rows to this CSV")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # the child process: one measurement, printed as JSON
        print(json.dumps(measure(args.one[0], args.size, args.one[1])))
        return
    import pandas as pd

    from tta_energy.provenance import git_commit

    rows = []
    for model in args.models:
        for spec in SPECS:
            out = subprocess.run([sys.executable, __file__, "--models", model, "--size", args.size,
                                  "--one", model, spec], capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["commit"] = git_commit()
            row["command"] = "python benchmarks/compile_tracing.py " + " ".join(sys.argv[1:])
            print(row, flush=True)
            rows.append(row)
    if args.out:
        frame = pd.DataFrame(rows)
        if args.out.exists():
            frame = pd.concat([pd.read_csv(args.out), frame], ignore_index=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
