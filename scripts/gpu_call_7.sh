#!/usr/bin/env bash
# Device call 7 (second H200 session, 2026-11-29), one H200, < 10 min, after scripts/gpu_collect.sh has merged
# call 5: what call 5 left of Tango 2's batch sweep; the batch sweep (1 repeat) of AudioLDM 2 and Make-An-Audio;
# duration/guidance/precision (1 repeat) for AudioLDM 2, Stable Audio Open and Tango; then the quality sweep's
# energy (first QUALITY_LIMIT captions of each caption file at 10 steps) model by model, cheapest first, as far
# as the budget goes -> $OUT/h200/.
set -u
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
export BUDGET_S=${BUDGET_S:-530}
source scripts/lib_sweeps.sh
sweep_model tango2 batch  # resumes: only the pairs call 5 did not reach
sweep_model make-an-audio batch
sweep_model tango "$NEW"
sweep_model stable-audio-open "$NEW"
sweep_model audioldm2 "batch,$NEW"
for model in make-an-audio-2 audioldm make-an-audio audioldm2 tango tango2 stable-audio-open; do
  sweep_model "$model" quality
done
finish
