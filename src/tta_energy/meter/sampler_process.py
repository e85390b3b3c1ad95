"""Entry point of the sampler process: ``python -m tta_energy.meter.sampler_process '<json spec>'``."""

from __future__ import annotations

import json
import sys

from tta_energy.meter.sampler import run_child

if __name__ == "__main__":
    sys.exit(run_child(json.loads(sys.argv[1])))
