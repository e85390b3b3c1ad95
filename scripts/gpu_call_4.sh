#!/usr/bin/env bash
# Device call 4 of this project's H200 session (2026-11-29), one H200, ~6 min (what the session's GPU time left):
# the two Tango 2 steps pairs call 3 left, the batch sweep (1 repeat) for Make-An-Audio 2 and AudioLDM, and the
# new duration/guidance/precision sweeps (1 repeat) for AudioLDM -> $OUT/h200/
set -u
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
export BUDGET_S=${BUDGET_S:-320}
source scripts/lib_sweeps.sh
[[ -n "${SKIP_DONE:-}" ]] || sweep tango2 steps --repeats 2 --min-window 1
[[ -n "${SKIP_DONE:-}" ]] || sweep make-an-audio-2 batch --repeats 1 --min-window 1
sweep audioldm batch,duration,guidance,precision --repeats batch=1 --repeats duration=1 --repeats guidance=1 --repeats precision=1 --min-window 1
finish
