"""Validate the GPU energy meter against ground truth, side by side with Zeus and CodeCarbon.

On the GPU machine (one H200; about 5.5 minutes: a hard internal budget of 300 s after start-up):
    PYTHONPATH=src python3 benchmarks/meter_validation.py --out data/validation
Anywhere, on a simulated GPU in virtual time (exercises the protocol and the summary, not the hardware):
    python benchmarks/meter_validation.py --dry-run --quick --out /tmp/meter-dry

Writes OUT/meter.csv (one row per method and measured window), OUT/meter_summary.md (targets met or not, what
the peers reach) and, on a GPU, OUT/meter_trace.csv.gz (power/temperature/SM-clock trace of the run).
The protocol lives in tta_energy.experiments.meter_validation; the method in docs/meter.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tta_energy.experiments.meter_validation.protocol import Config, Validation
from tta_energy.experiments.meter_validation.report import check_targets, target_status, write_outputs
from tta_energy.experiments.meter_validation.rigs import GpuRig, SimulatedRig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/validation"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="fewer windows and trials (under 3 minutes)")
    parser.add_argument("--dry-run", action="store_true", help="simulated GPU, virtual time (no GPU needed)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    config = Config.quick() if args.quick else Config()
    config.seed = args.seed
    args.out.mkdir(parents=True, exist_ok=True)
    rig = SimulatedRig(args.seed) if args.dry_run else GpuRig(args.out, args.device, log)
    validation = Validation(rig, config, log)
    try:
        frame = validation.run()
    finally:
        rig.close()
    csv_path, md_path = write_outputs(args.out, frame, validation, dry_run=args.dry_run)
    targets = check_targets(frame)
    met = sum(bool(t["met"]) for t in targets)
    for t in targets:
        log(target_status(t))
    log(f"{len(frame)} rows -> {csv_path}, summary -> {md_path}; {met}/{len(targets)} targets met "
        f"in {validation.elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
