#!/usr/bin/env bash
# Device call 2 of 3 (one H200, < 9 min): the study's steps and batch sweeps for the three heavy models
# (Stable Audio Open fp16, Tango and Tango 2 fp32), full size, random weights, the study's settings.
#
#   bash scripts/gpu_sweeps_2.sh            # adds to data/h200/steps.csv and data/h200/batch.csv
#
# Estimate: by the brief's rule (A40 / 2) steps x3 = SAO 66 s, Tango ~70 s, Tango 2 ~70 s and batch x2 =
# SAO 360 s, Tango ~180 s, Tango 2 ~180 s: ~950 s, over one call. These models are compute-bound (SAO's DiT
# runs 4.5 TFLOP a step on 47.55 s of latents), where an H200 is ~5x an A40 (fp16 990 vs 150 TFLOP/s dense):
# then ~400 s, + ~0.2 s of meter edges per generation (168) + ~20 s per model => ~490 s. The time budget stops
# the call in time either way; if it prints INCOMPLETE, run it again (after gpu_collect.sh) to finish.
REPEATS_STEPS=${REPEATS_STEPS:-3}
REPEATS_BATCH=${REPEATS_BATCH:-2}
source "$(dirname "$0")/lib_sweeps.sh"
for model in stable-audio-open tango tango2; do
  sweep "$model" steps,batch --repeats "steps=$REPEATS_STEPS" --repeats "batch=$REPEATS_BATCH"
done
finish
