#!/usr/bin/env bash
# Device call 5 (second H200 session, 2026-11-29), one H200, < 10 min: the study's batch sweep (1 repeat) for the
# three compute-bound models, Stable Audio Open, Tango and Tango 2 -> $OUT/h200/ (collect: scripts/gpu_collect.sh).
#
# Estimate from data/h200/steps.csv and levers part 1 (100 steps, batch 1: SAO 4.0 s, Tango/Tango 2 4.0 s in
# fp32; batch 10: SAO ~17 s, Tango ~33 s as 8 + 2): SAO ~135 s, Tango ~190 s, Tango 2 ~190 s. Whatever the
# budget cuts is finished by scripts/gpu_call_7.sh (the sweep resumes from data/h200).
set -u
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
export BUDGET_S=${BUDGET_S:-530}
source scripts/lib_sweeps.sh
sweep_model stable-audio-open batch
sweep_model tango batch
sweep_model tango2 batch
finish
