#!/usr/bin/env bash
# Session 3's last device call (~9.5 min): the quality sweep's energy for the three models `gpu_next.sh sweeps`
# had not reached (first 30 captions of each caption file at 10 steps), one process per model so that the
# budget cannot cut a model's quality rows for another model's steps repeats; then, with what is left, the steps
# sweep's repeats 3-5 of Tango (resumes: pairs already in data/h200 are skipped).
set -u
cd "$(dirname "$0")/.."
source scripts/device_env.sh
export BUDGET_S=${BUDGET_S:-565} QUALITY_LIMIT=${QUALITY_LIMIT:-30} REPEATS_STEPS=${REPEATS_STEPS:-5} \
  CALL=${CALL:-gpu_call_12-$(date -u +%Y%m%dT%H%M%SZ)}
source scripts/lib_sweeps.sh
for model in tango tango2 stable-audio-open; do
  sweep_model "$model" quality
done
sweep_model tango steps
finish
