"""Energy sweeps of Tango (declare-lab/tango-full; fp32, guidance 3, always 10.24 s).

The study's settings are the defaults (its prompt, 10 s, grids and repeats, the model's dtype and guidance).

    python inferences/tango.py --experiment steps            # the study's inference-steps grid
    python inferences/tango.py --experiment batch --repeats 3
    python inferences/tango.py --experiment quality --caption-limit 30 --weights /path/to/weights
    python inferences/tango.py --help                        # every option of tta-energy sweep

Same as ``tta-energy sweep --model tango ...``; all logic lives in the tta_energy package.
"""

import sys
from pathlib import Path

# run from a clone without `pip install -e .`: the package is in ../src
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tta_energy.experiments.scripts import run_model_script  # noqa: E402

if __name__ == "__main__":
    run_model_script("tango")
