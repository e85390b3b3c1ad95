"""The GPU's ceiling: TFLOP per joule of a bf16 matrix-product loop, measured with the project's meter.

    python benchmarks/ceiling.py [--ceiling-s 5] [--ceiling-n 8192] [--precision bf16|fp8]
        [--out data/h200/ceiling.csv]

The same measurement opens and closes every levers sweep (``tta-energy levers run``), whose configurations
are reported as a fraction of it. This script is ``tta-energy levers ceiling`` under the benchmarks' name
(same options, same one-line refusals, e.g. of a CPU); the logic is ``tta_energy.levers.ceiling``.
"""

from __future__ import annotations

import sys

from tta_energy.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["levers", "ceiling", *sys.argv[1:]]))
