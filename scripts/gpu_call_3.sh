#!/usr/bin/env bash
# Device call 3 of this project's H200 session (2026-11-29), one H200, < 10 min:
#   1. the steps sweep (2 repeats) for AudioLDM 2 (the pairs call 2 left), Stable Audio Open, Tango, Tango 2,
#      then the batch sweep (1 repeat) for AudioLDM, within 300 s  -> $OUT/h200/
#   2. a first, small levers run (issue 7) for AudioLDM and Stable Audio Open within ~230 s -> $OUT/levers/
# Rerun: OUT=out bash scripts/gpu_call_3.sh ; then bash scripts/gpu_collect.sh out ; bash scripts/gpu_levers.sh collect out
set -u
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
export BUDGET_S=300
(
  source scripts/lib_sweeps.sh
  sweep audioldm2 steps --repeats 2 --min-window 1
  for model in stable-audio-open tango tango2; do
    sweep "$model" steps --repeats 2 --min-window 1
  done
  sweep audioldm batch --repeats 1 --min-window 1
  finish
)
BUDGET_S=230 REPEATS=2 LEVERS_ARGS="--models audioldm,stable-audio-open" bash scripts/gpu_levers.sh 1
# at most 8 files come back: the figure is rebuilt by 'gpu_levers.sh collect', the logs are in the output
rm -f "${OUT:-out}/levers/levers.png" "${OUT:-out}"/h200/log-*.txt
