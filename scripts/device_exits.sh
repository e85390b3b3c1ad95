#!/usr/bin/env bash
# The exit statuses the device scripts share, sourced by scripts/device_env.sh and, before any work, by
# scripts/gpu_call.sh, gpu_campaign.sh and gpu_levers.sh: copies of those of src/tta_energy/cli/exits.py, kept
# equal by a test; and their checks of a setting in seconds and of a path given (check_seconds, check_path).

# a process that lost its CUDA context (tta_energy.cli.exits.CONTEXT_LOST_EXIT); a fresh process is started
# after one only with this many seconds left, since it pays its model builds and warm-ups first
CONTEXT_LOST_EXIT=5
FRESH_PROCESS_MIN_S=150
# nothing left to measure (tta_energy.cli.exits.NOTHING_LEFT_EXIT): `tta-energy campaign run` and `levers run
# --plan` exit with it, and scripts/gpu_campaign.sh and gpu_levers.sh pass it on (scripts/gpu_call.sh then
# hands the call to the next plan); scripts/gpu_call.sh exits with it when no plan names the machine's card
# or none has work left for it
NOTHING_LEFT_EXIT=6

# check_seconds NAME MIN MAX WHAT [NOTE]: the variable NAME must hold a whole number of seconds from MIN to MAX
# (MAX empty: at least MIN), and is set to it in base 10 (0600 is 600, not octal); any other value stops the
# script before any work with one line on stderr, exit 2 (bad use):
#   error: NAME=VALUE: give WHAT in whole seconds, from MIN to MAX (NOTE)
check_seconds() {
  local name=$1 min=$2 max=$3 what=$4 note=${5:+ ($5)} value=${!1-}
  if [[ "$value" =~ ^[0-9]{1,6}$ ]] && ((10#$value >= min)) && { [[ -z "$max" ]] || ((10#$value <= max)); }; then
    printf -v "$name" %d "$((10#$value))"
    return 0
  fi
  local allowed="at least $min"
  [[ -z "$max" ]] || allowed="from $min to $max"
  echo "error: $name=$value: give $what in whole seconds, $allowed$note" >&2
  exit 2
}

# check_path NAME VALUE file|folder WHAT: VALUE must name an existing file (or folder); otherwise the script stops
# with one line on stderr, exit 2 (bad use):
#   error: NAME=VALUE: no such file (or: a folder, not a file; the path is empty); give WHAT
check_path() {
  local name=$1 value=$2 kind=$3 what=$4 wrong
  if [[ "$kind" == file && -f "$value" || "$kind" == folder && -d "$value" ]]; then
    return 0
  fi
  if [[ -z "$value" ]]; then
    wrong="the path is empty"
  elif [[ ! -e "$value" ]]; then
    wrong="no such $kind"
  elif [[ -d "$value" ]]; then
    wrong="a folder, not a file"
  else
    wrong="not a folder"
  fi
  echo "error: $name=$value: $wrong; give $what" >&2
  exit 2
}
