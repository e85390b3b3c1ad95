#!/usr/bin/env bash
# Device call 3 of 3 (one H200, < 9 min): every sweep of Tango and Tango 2.
#
#   bash scripts/gpu_sweeps_3.sh     # tables data/h200/<experiment>.csv (+ traces); settings: scripts/lib_sweeps.sh
#
# Estimate from the H200 smoke run (one 100-step generation: Tango 4.0 s, Tango 2 4.1 s, fp32):
#   tango: steps x2 44 s, batch x1 ~140 s (10 clips as 8 + 2, the study's split), duration (10.24 s only) /
#     guidance / precision x1 ~20 s (+2 builds), quality ~24 s  -> ~255 s
#   tango2: steps x2 46 s, batch x1 ~140 s, quality ~24 s -> ~225 s
#   =>  ~480 s
source "$(dirname "$0")/lib_sweeps.sh"
sweep_model tango "$STUDY,$NEW,quality"
sweep_model tango2 "$STUDY,quality"
finish
