#!/usr/bin/env bash
# The next H200 session's device calls: what data/README.md lists as not yet measured, in the order it matters.
# Each is one device call (< 10 min) with `.whl` carried; after each, bring the results back here with
# `bash scripts/gpu_collect.sh FILES_AT` (sweeps) or `bash scripts/gpu_levers.sh collect FILES_AT` (levers)
# before the next call, so that resumed sweeps skip what is done.
#
#   bash scripts/gpu_next.sh sweeps    # issue 5: AudioLDM 2's guidance/precision and distinct-prompt batch row
#                                      # (~75 s), then the quality sweep's energy, first 30 captions of each
#                                      # caption file at 10 steps, all 7 models (~70 s each), and in the same
#                                      # model process the steps sweep's repeats 3-5 (the study's 5; ~60 s per
#                                      # model); exits 3 when the budget cut it: collect and run it again
#                                      # (about 2.3 calls in all)
#   bash scripts/gpu_next.sh levers    # issue 7: scripts/gpu_levers.sh 5 (AudioLDM 2, Make-An-Audio 2, Stable
#                                      # Audio Open at 100 steps; ~6 min)
#   bash scripts/gpu_next.sh scaling   # issue 5, on nvidia-h200-x2 only: scripts/gpu_scaling.sh (~6 min)
set -u
cd "$(dirname "$0")/.."
[[ "${1:-}" =~ ^(sweeps|levers|scaling)$ ]] || { echo "usage: $0 sweeps|levers|scaling" >&2; exit 2; }
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
case "$1" in
  sweeps)
    export BUDGET_S=${BUDGET_S:-530} QUALITY_LIMIT=${QUALITY_LIMIT:-30} REPEATS_STEPS=${REPEATS_STEPS:-5} CALL=${CALL:-gpu_next_sweeps-$(date -u +%Y%m%dT%H%M%SZ)}
    source scripts/lib_sweeps.sh
    sweep_model audioldm2 "batch,$NEW"  # resumes: only the pairs data/h200 does not hold
    for model in make-an-audio-2 audioldm make-an-audio audioldm2 tango tango2 stable-audio-open; do
      sweep_model "$model" quality,steps  # one build for both; steps resumes at repeat 3
    done
    finish ;;
  levers) BUDGET_S=${BUDGET_S:-545} REPEATS=${REPEATS:-2} exec bash scripts/gpu_levers.sh 5 ;;
  scaling) exec bash scripts/gpu_scaling.sh ;;
esac
