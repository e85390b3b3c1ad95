#!/usr/bin/env bash
# The exit statuses the device scripts share, sourced by scripts/device_env.sh and, before the wheels' install,
# by scripts/gpu_call.sh: copies of those of src/tta_energy/cli/exits.py, kept equal by a test.

# a process that lost its CUDA context (tta_energy.cli.exits.CONTEXT_LOST_EXIT); a fresh process is started
# after one only with this many seconds left, since it pays its model builds and warm-ups first
CONTEXT_LOST_EXIT=5
FRESH_PROCESS_MIN_S=150
# nothing left to measure (tta_energy.cli.exits.NOTHING_LEFT_EXIT): `scripts/gpu_campaign.sh run` when the
# campaign's run logged no line, `scripts/gpu_levers.sh plan` when its plan had none (scripts/gpu_call.sh then hands the call to the next
# plan), and scripts/gpu_call.sh when no plan names the machine's card or none has work left for it
NOTHING_LEFT_EXIT=6
