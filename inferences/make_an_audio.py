"""Energy sweeps of Make-An-Audio (maa1_full.ckpt; fp32, scale 3).

The study's settings are the defaults (its prompt, 10 s, grids and repeats, the model's dtype and guidance).

    python inferences/make_an_audio.py --experiment steps            # the study's inference-steps grid
    python inferences/make_an_audio.py --experiment batch --repeats 3
    python inferences/make_an_audio.py --experiment quality --caption-limit 30 --weights /path/to/weights
    python inferences/make_an_audio.py --help                        # every option of tta-energy sweep

Same as ``tta-energy sweep --model make-an-audio ...``; all logic lives in the tta_energy package.
"""

import sys
from pathlib import Path

# run from a clone without `pip install -e .`: the package is in ../src
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tta_energy.experiments.scripts import run_model_script  # noqa: E402

if __name__ == "__main__":
    run_model_script("make-an-audio")
