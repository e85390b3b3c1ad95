#!/usr/bin/env bash
# Sourced by scripts/gpu_sweeps_*.sh: where the tables go, the call's time budget, one sweep command, and
# bringing the results back. Not a device call by itself.
#
# Variables (environment):
#   DATA      folder of the run tables                            (default data/h200)
#   BUDGET_S  wall-clock seconds this call may use                (default 510: a device call stops at 600 s)
#   IDLE_S    idle-power baseline before each model's sweep, s    (default 3)
#   PYTHON    interpreter                                          (default python3)
#   SWEEP_ARGS  more options for every sweep (e.g. "--size tiny --device cpu --dtype float32" for a CPU dry run)
#   OUT       set by the device machine: the log and one tar of the tables and traces this call wrote go to
#             $OUT/h200/ (a device call returns at most 8 files, 2 folders deep)
#
# What each model runs (one process per model: one build, idle baseline and warm-up for all its experiments):
#   the study's sweeps  steps (REPEATS_STEPS, default 2) and batch (REPEATS_BATCH, default 1);
#   the new sweeps      duration, guidance, precision (REPEATS_NEW, default 1), for AudioLDM, AudioLDM 2,
#                       Stable Audio Open and Tango;
#   the quality sweep's energy: the first QUALITY_LIMIT (default 10) captions of each bundled caption file at
#                       QUALITY_STEPS (default 10) steps, no WAV kept (random weights make noise).
# The study used 5 repeats and the issue asks for 30 captions at every step count: that is ~3x the GPU time
# this project has (the three calls already take ~25 min); the variables restore them.
# MIN_WINDOW (default 1 s): generations shorter than that are repeated inside one meter window and reported
# per call, the method the meter validation supports for short windows.
#
# Every sweep is resumable: a call cut short by its budget (exit status 3 of tta-energy sweep) is finished by
# running the same script again after scripts/gpu_collect.sh has put the returned tables back into data/h200.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
DATA=${DATA:-data/h200}
BUDGET_S=${BUDGET_S:-510}
IDLE_S=${IDLE_S:-3}
MIN_WINDOW=${MIN_WINDOW:-1}
REPEATS_STEPS=${REPEATS_STEPS:-2}
REPEATS_BATCH=${REPEATS_BATCH:-1}
REPEATS_NEW=${REPEATS_NEW:-1}
QUALITY_LIMIT=${QUALITY_LIMIT:-10}
QUALITY_STEPS=${QUALITY_STEPS:-10}
# experiment groups (the scripts call: sweep_model MODEL "$STUDY,$NEW,quality")
STUDY=steps,batch
NEW=duration,guidance,precision
CALL=${CALL:-$(basename "$0" .sh)-$(date -u +%Y%m%dT%H%M%SZ)}
T0=$SECONDS
INCOMPLETE=""
FAILED=""
mkdir -p "$DATA/traces"
TRACE_MARK=$(mktemp)
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/h200"
  exec > >(tee -a "$OUT/h200/log-$CALL.txt") 2>&1
  TEE_PID=$!
fi
echo "call $CALL on $(hostname) at $(date -u +%FT%TZ); budget ${BUDGET_S}s; tables in $DATA"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || true
"$PY" scripts/gpu_preflight.py || exit 1  # a missing wheel fails here, not as error rows mid-sweep

# sweep MODEL EXPERIMENTS [more tta-energy sweep options]
sweep() {
  local model=$1 experiments=$2
  shift 2
  local remaining=$((BUDGET_S - (SECONDS - T0) - 20))  # margin: process start, merge, packing
  if ((remaining < 45)); then
    echo "== SKIPPED (call budget spent): $model $experiments"
    INCOMPLETE=1
    return
  fi
  echo "== $model $experiments (time budget ${remaining}s, at $((SECONDS - T0))s)"
  "$PY" -m tta_energy sweep --model "$model" --experiment "$experiments" --out-dir "$DATA" \
    --idle-s "$IDLE_S" --time-budget "$remaining" --no-progress ${SWEEP_ARGS:-} "$@"
  local rc=$?
  if ((rc == 3)); then
    INCOMPLETE=1
  elif ((rc != 0)); then
    echo "== FAILED (exit $rc): $model $experiments"
    FAILED=1
  fi
}

# sweep_model MODEL EXPERIMENTS: sweep with the settings above for each experiment listed
sweep_model() {
  local model=$1 experiments=$2 e
  local args=(--min-window "$MIN_WINDOW")
  for e in ${experiments//,/ }; do
    case $e in
      steps) args+=(--repeats "steps=$REPEATS_STEPS") ;;
      batch) args+=(--repeats "batch=$REPEATS_BATCH") ;;
      duration | guidance | precision) args+=(--repeats "$e=$REPEATS_NEW") ;;
      quality) args+=(--grid "quality=$QUALITY_STEPS" --limit "$QUALITY_LIMIT" --no-save-audio) ;;
    esac
  done
  sweep "$model" "$experiments" "${args[@]}"
}

finish() {
  "$PY" -m tta_energy summary --data "$DATA" || true
  if [[ -n "${OUT:-}" ]]; then
    # one tar of the tables and traces this call wrote (a device call returns at most 8 files)
    find "$DATA" -maxdepth 1 -name '*.csv' -newer "$TRACE_MARK" | sort > "$TRACE_MARK.list"
    find "$DATA/traces" -type f -newer "$TRACE_MARK" | sort >> "$TRACE_MARK.list"
    if [[ -s "$TRACE_MARK.list" ]]; then
      tar cf "$OUT/h200/results-$CALL.tar" -T "$TRACE_MARK.list"
    fi
  fi
  echo "call $CALL finished in $((SECONDS - T0)) s${INCOMPLETE:+; INCOMPLETE: run it again to finish}${FAILED:+; some sweeps FAILED}"
  if [[ -n "${TEE_PID:-}" ]]; then
    exec 1>&- 2>&-
    wait "$TEE_PID" 2>/dev/null || true  # the log is complete before the call returns
  fi
  if [[ -n "$FAILED" ]]; then
    exit 1
  elif [[ -n "$INCOMPLETE" ]]; then
    exit 3
  fi
}
