#!/usr/bin/env bash
# Device call 1 of 3 (one H200, < 9 min): the study's steps and batch sweeps for the four lighter models,
# full size, random weights, the study's settings (prompt, 10 s, dtype, guidance).
#
#   bash scripts/gpu_sweeps_1.sh            # writes data/h200/steps.csv, data/h200/batch.csv (+ traces)
#
# Estimate (study's A40 times / 2, the brief's rule; these models are launch-bound, so 2x is about right):
#   steps x3 repeats: audioldm 23 s, audioldm2 50 s, make-an-audio ~18 s, make-an-audio-2 ~21 s
#   batch x2 repeats: audioldm 72 s, audioldm2 150 s, make-an-audio ~40 s, make-an-audio-2 ~50 s
#   + ~0.2 s of meter window edges per generation (224 generations) + ~17 s per model (imports, build, idle
#   baseline, warm-up)  =>  ~540 s: the budget (510 s) may leave a few AudioLDM 2 batch pairs; re-run to finish
REPEATS_STEPS=${REPEATS_STEPS:-3}
REPEATS_BATCH=${REPEATS_BATCH:-2}
source "$(dirname "$0")/lib_sweeps.sh"
for model in audioldm make-an-audio make-an-audio-2 audioldm2; do
  sweep "$model" steps,batch --repeats "steps=$REPEATS_STEPS" --repeats "batch=$REPEATS_BATCH"
done
finish
