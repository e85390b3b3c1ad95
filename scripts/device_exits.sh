#!/usr/bin/env bash
# Sourced by scripts/device_env.sh (and by scripts/gpu_call.sh before the wheels' install): what the device
# scripts share, the exit status of a process that lost its CUDA context, the least time left for which a
# fresh process is started after one, and the exit status of a call with nothing left to measure.
# tta_energy.cli.main.CONTEXT_LOST_EXIT; a fresh process pays its model builds and warm-ups first
CONTEXT_LOST_EXIT=5
FRESH_PROCESS_MIN_S=150
# exit status of `scripts/gpu_campaign.sh run` when the campaign had nothing left to measure (its run logged no
# line) and of `scripts/gpu_levers.sh plan` when its plan had none (scripts/gpu_call.sh then hands the call to
# the next plan), and of scripts/gpu_call.sh when no plan has work left for the machine's card or none
# names it
NOTHING_LEFT_EXIT=4
