#!/usr/bin/env bash
# Device call 6 (second H200 session, 2026-11-29), one H200, < 10 min: the energy-levers targets' cell for all
# 7 models (scripts/gpu_levers.sh 4: 100 steps; none, graphs, fp16 at batch 1; max at batch 1 and 10; 2 rounds)
# -> $OUT/levers/ (collect: scripts/gpu_levers.sh collect FILES_AT).
set -u
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
export BUDGET_S=${BUDGET_S:-545} REPEATS=${REPEATS:-2}
bash scripts/gpu_levers.sh 4
