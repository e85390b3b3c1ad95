#!/usr/bin/env bash
# The exit statuses the device scripts share, sourced by scripts/device_env.sh and, before the wheels' install,
# by scripts/gpu_call.sh: copies of those of src/tta_energy/cli/exits.py, kept equal by a test.

# a process that lost its CUDA context (tta_energy.cli.exits.CONTEXT_LOST_EXIT); a fresh process is started
# after one only with this many seconds left, since it pays its model builds and warm-ups first
CONTEXT_LOST_EXIT=5
FRESH_PROCESS_MIN_S=150
# nothing left to measure (tta_energy.cli.exits.NOTHING_LEFT_EXIT): `tta-energy campaign run` and `levers run
# --plan` exit with it, and scripts/gpu_campaign.sh and gpu_levers.sh pass it on (scripts/gpu_call.sh then
# hands the call to the next plan); scripts/gpu_call.sh exits with it when no plan names the machine's card
# or none has work left for it
NOTHING_LEFT_EXIT=6
