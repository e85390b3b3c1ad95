#!/usr/bin/env bash
# One device call for the card the device machine has. A call for an H200 may start an H100 (the device lends
# both under one name), and a campaign refuses a card other than its own: this script measures the next call
# of the first plan file, in the order given, that names this machine's card (its `gpu`) and has work left.
#
#   bash scripts/gpu_call.sh [PLAN ...]   # on the device; default: campaigns/h200.toml campaigns/h200_levers.toml
#                                         # campaigns/h100_levers.toml
#   GPU_CALL_DRY=1 bash scripts/gpu_call.sh   # print the command it would run, run nothing
#
# A campaign file runs `scripts/gpu_campaign.sh run --time-budget $CAMPAIGN_BUDGET_S` (default 480, with
# HARD_LIMIT_S=540 unless set); a levers plan runs `scripts/gpu_levers.sh plan PLAN`. Collect what comes back
# with the script the call ran (its files come back under campaign/ or levers/). Exit 4: no plan names this
# card or has work left. Environment: PYTHON (default python3).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
(($#)) || set -- campaigns/h200.toml campaigns/h200_levers.toml campaigns/h100_levers.toml
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
[[ -n "$card" ]] || { echo "error: nvidia-smi names no GPU on this machine" >&2; exit 2; }
echo "this machine's card: $card"

plan_kind_and_gpu() {  # FILE -> "campaign GPU" or "levers GPU" (GPU empty: any card)
  "$PY" -c 'import sys
from tta_energy.errors import TtaError
from tta_energy.fileio import read_toml
try:
    if "levers" in read_toml(sys.argv[1], TtaError, "plan file"):
        from tta_energy.levers.plan import read_levers_plan
        print("levers", read_levers_plan(sys.argv[1]).gpu or "")
    else:
        from tta_energy.experiments.campaign_spec import load_campaign
        print("campaign", load_campaign(sys.argv[1]).gpu or "")
except TtaError as exc:
    sys.exit(f"error: {exc}")' "$1"
}

for plan in "$@"; do
  read -r kind gpu < <(plan_kind_and_gpu "$plan") || exit 2
  [[ -n "$kind" ]] || exit 2
  if [[ -n "$gpu" && "${card,,}" != *"${gpu,,}"* ]]; then
    echo "$plan: measures on an $gpu, not this card"
    continue
  fi
  if [[ "$kind" == campaign ]]; then
    if ! "$PY" -m tta_energy campaign status --campaign "$plan" --json \
         | "$PY" -c 'import json, sys; sys.exit(0 if any(not json.loads(l)["done"] for l in sys.stdin if l.strip()) else 1)'
    then
      echo "$plan: every cell done"
      continue
    fi
    cmd=(env CAMPAIGN="$plan" HARD_LIMIT_S="${HARD_LIMIT_S:-540}" bash scripts/gpu_campaign.sh run
         --time-budget "${CAMPAIGN_BUDGET_S:-480}")
  else
    if PYTHON="$PY" bash scripts/gpu_levers.sh dry "$plan" | grep -q "nothing left to measure"; then
      echo "$plan: nothing left to measure"
      continue
    fi
    cmd=(bash scripts/gpu_levers.sh plan "$plan")
  fi
  echo "$plan: ${cmd[*]}"
  [[ -n "${GPU_CALL_DRY:-}" ]] && exit 0
  exec "${cmd[@]}"
done
echo "no plan of $* names this card ($card) with work left" >&2
exit 4
