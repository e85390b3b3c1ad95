#!/usr/bin/env bash
# Device call 1 of 3 (one H200, < 9 min): every sweep of AudioLDM 2, Make-An-Audio 2 and Make-An-Audio.
#
#   bash scripts/gpu_sweeps_1.sh     # tables data/h200/<experiment>.csv (+ traces); settings: scripts/lib_sweeps.sh
#
# Estimate from the H200 smoke run (data/smoke/models_gpu.csv: one 100-step generation takes AudioLDM 2 7.3 s,
# Make-An-Audio 2.3 s, Make-An-Audio 2 0.6 s; these models are launch-bound, so a batch of 10 costs ~2x one clip):
#   audioldm2: steps x2 80 s, batch x1 ~160 s, duration/guidance/precision x1 ~66 s, quality ~24 s  -> ~350 s
#   make-an-audio: steps 26 s, batch ~51 s, quality ~24 s -> ~120 s;  make-an-audio-2: ~70 s
#   (each model + ~17 s of imports, build, idle baseline, warm-up)  =>  ~530 s: the budget may cut the last
#   quality rows; re-run to finish. Pairs already in data/h200 are skipped.
source "$(dirname "$0")/lib_sweeps.sh"
sweep_model audioldm2 "$STUDY,$NEW,quality"
sweep_model make-an-audio-2 "$STUDY,quality"
sweep_model make-an-audio "$STUDY,quality"
finish
