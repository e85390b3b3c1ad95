#!/usr/bin/env bash
# One device call for the card the device machine has. A call for an H200 may start an H100 (the device lends
# both under one name), and a campaign refuses a card other than its own: this script measures the next call
# of the first plan file, in the order given, that names this machine's card (its `gpu`) and has work left.
#
#   bash scripts/gpu_call.sh [PLAN ...]   # on the device; default: campaigns/h200.toml campaigns/h200_levers.toml
#                                         # (paths relative to the repository root; the H100 levers table,
#                                         # campaigns/h100_levers.toml, is complete: name it to measure it)
#   GPU_CALL_DRY=1 bash scripts/gpu_call.sh   # print the command it would run, run nothing
#
#   CALL_S=400 bash scripts/gpu_call.sh      # a call the device tool limits to 400 s (240 to 600, default 600)
#
# What earlier calls on a warm machine measured counts as done (both scripts' merge-earlier first). A campaign
# file runs `scripts/gpu_campaign.sh run --time-budget-s $CAMPAIGN_BUDGET_S` with HARD_LIMIT_S (defaults
# CALL_S - 120 and CALL_S - 60: the checks before the campaign and the packing after it fit the rest); a levers
# plan runs `scripts/gpu_levers.sh plan PLAN` with BUDGET_S (default CALL_S - 80). Each finds what is left itself,
# and one that found nothing left (exit 6) hands the call to the next plan. Collect what comes back with
# the script the call ran (its files come back under campaign/ or levers/). Exit 6: no plan names this card
# with work left; exit 2: a plan file or a check of it failed, or the call is too short for every unit a
# levers plan has left (one line). Environment: PYTHON (default python3); CALL_S, and HARD_LIMIT_S,
# CAMPAIGN_BUDGET_S and BUDGET_S when set, in whole seconds within it (BUDGET_S more than 60), and GPU_CALL_DRY
# (0 or 1): any other value is one error line, exit 2, before any work.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# the call's start, before the wheels' install: a campaign run logs it (call_start_utc), so that its cost counts
# the whole device call
export TTA_ENERGY_CALL_START=${TTA_ENERGY_CALL_START:-$(date -u +%FT%T.%3N+00:00)}
source scripts/device_exits.sh  # the exit statuses, and check_seconds
# the settings, checked before any work (one error line, exit 2): the device stops any command at 600 s
CALL_S=${CALL_S:-600}
check_seconds CALL_S 240 600 "the device call's limit"
[[ -z "${HARD_LIMIT_S:-}" ]] || check_seconds HARD_LIMIT_S 1 "$CALL_S" "the campaign run's hard stop" "at most CALL_S"
[[ -z "${CAMPAIGN_BUDGET_S:-}" ]] \
  || check_seconds CAMPAIGN_BUDGET_S 1 "$CALL_S" "the campaign run's --time-budget-s" "at most CALL_S"
[[ -z "${BUDGET_S:-}" ]] \
  || check_seconds BUDGET_S 61 "$CALL_S" "the levers call's time" "its run gets BUDGET_S - 60, at most CALL_S"
[[ "${GPU_CALL_DRY:-0}" =~ ^[01]$ ]] \
  || { echo "error: GPU_CALL_DRY=$GPU_CALL_DRY: give 1 (print the command, run nothing) or 0 (run it)" >&2; exit 2; }
for plan in "$@"; do
  check_path PLAN "$plan" file \
    "campaign or levers plan files (default: campaigns/h200.toml campaigns/h200_levers.toml)"
done
PY=${PYTHON:-python3}
(($#)) || set -- campaigns/h200.toml campaigns/h200_levers.toml
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | sed -n 1p)
[[ -n "$card" ]] || { echo "error: nvidia-smi names no GPU on this machine" >&2; exit 2; }

plan_of_card() {  # FILE CARD -> "KIND GPU MATCH": campaign or levers, the file's gpu (- for any), yes or no
  "$PY" -c 'import sys
from tta_energy.devices import names_gpu
from tta_energy.errors import TtaError
from tta_energy.fileio import read_toml
try:
    if "levers" in read_toml(sys.argv[1], TtaError, "plan file"):
        from tta_energy.levers.plan import read_levers_plan
        kind, gpu = "levers", read_levers_plan(sys.argv[1]).gpu
    else:
        from tta_energy.experiments.campaign_spec import load_campaign
        kind, gpu = "campaign", load_campaign(sys.argv[1]).gpu
except TtaError as exc:
    sys.exit(f"error: {exc}")
print(kind, gpu or "-", "yes" if gpu is None or names_gpu(gpu, sys.argv[2]) else "no")' "$1" "$2"
}

# which plans name this card, read before the wheels' install (the plan files need only the image's packages):
# a machine of another card is handed back in seconds
plans=() kinds=()
for plan in "$@"; do
  found=$(PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" plan_of_card "$plan" "$card") || exit 2
  read -r kind gpu match <<<"$found"
  if [[ "$match" != yes ]]; then
    echo "$plan: measures on an $gpu, not this card"
    continue
  fi
  plans+=("$plan") kinds+=("$kind")
done
if ((${#plans[@]} == 0)); then
  echo "no plan of $* names this card ($card)" >&2
  exit "$NOTHING_LEFT_EXIT"
fi
source scripts/device_env.sh  # wheels carried in .whl/ (the checks below read the tables with them)
stamp "this machine's card: $card (wheels installed)"
PYTHON="$PY" bash scripts/gpu_levers.sh merge-earlier || exit 2

for i in "${!plans[@]}"; do
  plan=${plans[$i]} kind=${kinds[$i]}
  if [[ "$kind" == campaign ]]; then
    cmd=(env CAMPAIGN="$plan" HARD_LIMIT_S="${HARD_LIMIT_S:-$((CALL_S - 60))}" bash scripts/gpu_campaign.sh run
         --time-budget-s "${CAMPAIGN_BUDGET_S:-$((CALL_S - 120))}")
    finished="every cell done"
  else
    cmd=(env BUDGET_S="${BUDGET_S:-$((CALL_S - 80))}" bash scripts/gpu_levers.sh plan "$plan")
    finished="nothing left to measure"
  fi
  if [[ "${GPU_CALL_DRY:-0}" == 1 ]]; then  # a preview: the plan's status or dry run says whether work is left
    if [[ "$kind" == campaign ]]; then
      CAMPAIGN="$plan" PYTHON="$PY" bash scripts/gpu_campaign.sh merge-earlier || exit 2
      status=$("$PY" -m tta_energy campaign status --campaign "$plan" --json) \
        || { echo "error: $plan: tta-energy campaign status failed (above)" >&2; exit 2; }
      left=$("$PY" -c 'import json, sys
print(sum(not json.loads(line)["done"] for line in sys.stdin if line.strip()))' <<<"$status") || exit 2
    else
      dry=$(PYTHON="$PY" bash scripts/gpu_levers.sh dry "$plan" 2>&1) \
        || { echo "error: $plan: the levers dry run failed: $(tail -n 1 <<<"$dry")" >&2; exit 2; }
      left=1
      grep -q "nothing left to measure" <<<"$dry" && left=0
      if grep -q "nothing left that fits this call" <<<"$dry"; then  # the run refuses it (exit 2)
        echo "$plan: no unit left fits a call of CALL_S=$CALL_S s (the run would be refused, exit 2)"
        continue
      fi
    fi
    if ((left == 0)); then
      echo "$plan: $finished"
      continue
    fi
    echo "$plan: ${cmd[*]}"
    exit 0
  fi
  # the run finds what is left itself (a status or dry-run process first would add its start-up to every
  # call); one that found nothing left exits NOTHING_LEFT_EXIT and the call goes on with the next plan
  echo "$plan: ${cmd[*]}"
  "${cmd[@]}"
  rc=$?
  if ((rc == NOTHING_LEFT_EXIT)); then
    echo "$plan: $finished"
    continue
  fi
  exit "$rc"
done
echo "no plan of ${plans[*]} has work left for this card ($card)" >&2
exit "$NOTHING_LEFT_EXIT"  # no plan has work left for this card
