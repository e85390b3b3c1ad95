"""The GPU's ceiling: TFLOP per joule of a bf16 matrix-product loop, measured with the project's meter.

    python benchmarks/ceiling.py [--seconds 5] [--n 8192] [--out data/h200/ceiling.csv]

The same measurement opens and closes every levers sweep (``tta-energy levers run``), whose configurations
are reported as a fraction of it; this script runs it alone. Logic: ``tta_energy.levers.ceiling``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tta_energy.levers.ceiling import measure_ceiling_once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the measured loop")
    parser.add_argument("--n", type=int, default=8192, help="matrix size (n x n x n products)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=None, help="append the result to this CSV")
    args = parser.parse_args()
    row = measure_ceiling_once(device=args.device, seconds=args.seconds, n=args.n, out=args.out)
    print(json.dumps(row, indent=1, default=str))


if __name__ == "__main__":
    main()
