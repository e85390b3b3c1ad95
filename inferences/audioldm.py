"""Energy sweeps of AudioLDM (cvssp/audioldm-s-full-v2 in the study; fp16, guidance 2.5).

The study's settings are the defaults (its prompt, 10 s, grids and repeats, the model's dtype and guidance).

    python inferences/audioldm.py --experiment steps            # the study's inference-steps grid
    python inferences/audioldm.py --experiment batch --repeats 3
    python inferences/audioldm.py --experiment quality --caption-limit 30 --weights /path/to/weights
    python inferences/audioldm.py --help                        # every option of tta-energy sweep

Same as ``tta-energy sweep --model audioldm ...``; all logic lives in the tta_energy package.
"""

import sys
from pathlib import Path

# run from a clone without `pip install -e .`: the package is in ../src
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tta_energy.experiments.scripts import run_model_script  # noqa: E402

if __name__ == "__main__":
    run_model_script("audioldm")
