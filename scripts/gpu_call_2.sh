#!/usr/bin/env bash
# Device call 2 of this project's H200 session (2026-11-29), one H200, < 10 min:
#   1. the meter validation benchmark, full protocol (~5.5 min) -> $OUT/validation/
#   2. the study's steps sweep (2 repeats) for AudioLDM, Make-An-Audio, Make-An-Audio 2, AudioLDM 2, then the
#      batch sweep (1 repeat) for the lightest ones, until the call's budget is spent -> $OUT/h200/
# Generations shorter than 1 s are repeated inside one meter window (--min-window 1: energy per call), the
# method the validation supports for short windows. Wheels in .whl (../shared/tools/device-wheels.sh + torchsde,
# trampoline). Rerun: OUT=out bash scripts/gpu_call_2.sh ; then bash scripts/gpu_collect.sh out
set -u
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
OUT=${OUT:-out}
mkdir -p "$OUT/validation"
START=$SECONDS
timeout 380 python3 benchmarks/meter_validation.py --out "$OUT/validation"
export BUDGET_S=$((575 - (SECONDS - START)))
source scripts/lib_sweeps.sh
for model in audioldm make-an-audio make-an-audio-2 audioldm2; do
  sweep "$model" steps --repeats 2 --min-window 1
done
for model in make-an-audio-2 make-an-audio audioldm; do
  sweep "$model" batch --repeats 1 --min-window 1
done
finish
