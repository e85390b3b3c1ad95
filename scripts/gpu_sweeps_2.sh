#!/usr/bin/env bash
# Device call 2 of 3 (one H200, < 9 min): every sweep of Stable Audio Open and AudioLDM.
#
#   bash scripts/gpu_sweeps_2.sh     # tables data/h200/<experiment>.csv (+ traces); settings: scripts/lib_sweeps.sh
#
# Estimate from the H200 smoke run (one 100-step generation: Stable Audio Open 4.0 s, AudioLDM 4.3 s; SAO is
# compute-bound, its DiT always runs 47.55 s of latents, so a batch of 10 costs ~7x one clip):
#   stable-audio-open: steps x2 44 s, batch x1 ~170 s, duration/guidance/precision x1 ~45 s (+2 builds),
#     quality ~24 s  -> ~305 s
#   audioldm: steps x2 48 s, batch x1 ~90 s, duration/guidance/precision x1 ~40 s, quality ~24 s -> ~215 s
#   =>  ~520 s: the budget may cut the last quality rows; re-run to finish.
source "$(dirname "$0")/lib_sweeps.sh"
sweep_model stable-audio-open "$STUDY,$NEW,quality"
sweep_model audioldm "$STUDY,$NEW,quality"
finish
