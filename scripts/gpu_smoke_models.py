#!/usr/bin/env python
"""GPU smoke test of every model: full size, random weights, fp16 on the GPU, 10 s at 10 and 100 steps.

For each model: build, one short warm-up generation (not recorded), then one measured generation per step
count: wall time, GPU energy (tta_energy.meter, else the raw NVML counter), peak GPU memory, whether the
audio is finite. Rows are appended to ``--out`` (default data/smoke/models_gpu.csv); a model that fails to
build or generate gets rows with status=error and the script goes on with the next model.

    python scripts/gpu_smoke_models.py                      # all models whose adapter imports
    python scripts/gpu_smoke_models.py --model audioldm,audioldm2 --out data/smoke/models_gpu.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tta_energy.cli import checks
from tta_energy.errors import TtaError
from tta_energy.experiments.smoke import append_rows, check_smoke_table, importable_models, smoke_model
from tta_energy.models.catalogue import SIZES, model_names
from tta_energy.study import STUDY_DURATION_S


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="comma-separated model names (default: all that import)")
    parser.add_argument("--out", default="data/smoke/models_gpu.csv", help="CSV to append rows to")
    parser.add_argument("--steps", default="10,100", help="comma-separated step counts")
    parser.add_argument("--duration-s", "--duration", dest="duration", type=float, default=STUDY_DURATION_S,
                        help="audio seconds per clip")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None, help="default: each model's (float16)")
    parser.add_argument("--size", default="full", choices=SIZES)
    parser.add_argument("--warmup-steps", type=int, default=2,
                        help="steps of the unrecorded warm-up (0: none)")
    args = parser.parse_args(argv)

    try:  # the commands' checks: one error line and exit 2 before any model is built
        steps = checks.comma_integers(args.steps, "--steps")
        for count in steps:
            checks.at_least_one(count, "--steps", "denoising steps")
        names = [checks.model(m).name for m in checks.comma_list(args.model, "--model")]
        checks.positive(args.duration, "--duration-s", unit="s")
        checks.device(args.device)
        checks.dtype(args.dtype)
        checks.positive(args.warmup_steps, "--warmup-steps", allow_zero=True)
        check_smoke_table(Path(args.out))
    except TtaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = names or list(importable_models(list(model_names())))
    failed = 0
    for name in names:
        rows = smoke_model(name, steps, device=args.device, size=args.size, dtype=args.dtype,
                           duration_s=args.duration, warmup_steps=args.warmup_steps)
        append_rows(args.out, rows)  # after each model: a later crash keeps what was measured
        failed += sum(r["status"] != "ok" for r in rows)
    print(f"{len(names)} model(s), {failed} row(s) not ok -> {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
