#!/usr/bin/env bash
# The energy-levers sweep on one lent H200: two device calls of < 9 min each cover all 7 models at
# full size with random weights; a third, optional call adds Inductor compilation for two models.
#
#   bash scripts/gpu_levers.sh 1      # audioldm, audioldm2, make-an-audio, make-an-audio-2      (~8 min)
#   bash scripts/gpu_levers.sh 2      # stable-audio-open, tango, tango2 (tango2: none and max only)  (~8.5 min)
#   bash scripts/gpu_levers.sh 3      # optional: torch.compile / compile-graphs for audioldm and stable-audio-open
#   bash scripts/gpu_levers.sh 4      # the targets' cell for all 7 models in one call (~9 min): 100 steps only;
#                                     # none, graphs and fp16 at batch 1, max at batch 1 and 10, 2 rounds
#   bash scripts/gpu_levers.sh 5      # part 4's grid for the models its budget cut: AudioLDM 2, Make-An-Audio 2,
#                                     # Stable Audio Open (~6 min)
#   bash scripts/gpu_levers.sh plan PLAN [MODELS]  # a levers plan file (campaigns/h200_levers.toml), its
#                                     # models or the comma list MODELS of them; price it first here with
#                                     # tta-energy levers run --plan PLAN [-m MODELS] --dry-run. Inductor's
#                                     # caches go to .cache/compile (carry it), the fp32 references to
#                                     # data/h200/levers/references; both come back for the next call
#   bash scripts/gpu_levers.sh collect FILES_AT    # here, after each call: unpack + rebuild the report
#
# Each call measures the GPU's ceiling (bf16 8192^3 matmul loop, TFLOP/J) at its start and end with the same
# meter, then per model: the fp32 eager reference, one warm-up per configuration and batch size (its one-time
# cost: capture / compilation), and 3 rounds of every (configuration, steps, batch) cell in a seeded random
# order (grid and tiers: docs/levers.md). A per-call time budget is shared between the models; what does not
# fit is left out of the last round and said so in the log.
#
# Writes data/h200/levers/part<N>/ (levers_runs.csv in the run-record schema, levers_equivalence.csv,
# levers_configs.csv, levers_ceiling.csv, levers_profile.csv, traces/) and rebuilds data/h200/levers.csv,
# data/h200/levers_summary.md and data/h200/levers.png from every part present. On the device machine ($OUT
# set) it returns: levers-part<N>.tar.gz (the part's folder), the three report files and the log (5 files).
#
# Environment: PYTHON (default python3: the image's torch 2.11; diffusers/transformers as for
# scripts/gpu_sweeps_*.sh), BUDGET_S (seconds this call may use, default 520), REPEATS (default 3),
# LEVERS_ARGS (more options for 'tta-energy levers run', e.g. a CPU dry run:
# LEVERS_ARGS="--size tiny --device cpu --steps 2 --batches 1,2 --repeats 1 --duration 1 --ceiling-n 64").
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-520}
REPEATS=${REPEATS:-3}
PART=${1:-}
ROOT=data/h200/levers

report() {
  local parts=()
  for d in "$ROOT"/part*; do [[ -f "$d/levers_runs.csv" ]] && parts+=("$d"); done
  ((${#parts[@]})) && "$PY" -m tta_energy levers report "${parts[@]}" --out-dir data/h200
}

if [[ "$PART" == collect ]]; then
  [[ $# -eq 2 && -d "$2" ]] || { echo "usage: $0 collect FILES_AT" >&2; exit 2; }
  found=0
  for tarball in "$2"/levers/levers-part*.tar.gz "$2"/levers-part*.tar.gz; do
    [[ -e "$tarball" ]] || continue
    tar xzf "$tarball" && found=1  # paths inside: data/h200/levers/part<N>/... (and references/)
  done
  for tarball in "$2"/levers/compile-cache.tar.gz "$2"/compile-cache.tar.gz; do
    [[ -e "$tarball" ]] && tar xzf "$tarball"  # paths inside: .cache/compile/... (git-ignored; carry it)
  done
  mkdir -p data/h200/logs
  for log in "$2"/levers/log-levers-*.txt "$2"/log-levers-*.txt; do [[ -e "$log" ]] && cp "$log" data/h200/logs/; done
  ((found)) || { echo "no levers-part*.tar.gz under $2" >&2; exit 2; }
  report
  exit $?
fi

case "$PART" in
  1) MODELS=audioldm,audioldm2,make-an-audio,make-an-audio-2; EXTRA=() ;;
  2) MODELS=stable-audio-open,tango,tango2; EXTRA=(--lean-models tango2) ;;
  3) MODELS=audioldm,stable-audio-open
     EXTRA=(--batches 1 --full none --batch1 "" --single "" --no-trim --compile-models "$MODELS") ;;
  4) MODELS=make-an-audio-2,make-an-audio,audioldm,audioldm2,tango,tango2,stable-audio-open
     # fp16 alone is the yardstick of max's error where the default is fp32 (Make-An-Audio (2), Tango (2));
     # batching alone at 100 steps is the batch sweep (data/h200/batch.csv)
     EXTRA=(--steps 100 --full max --batch1 "none graphs" --single fp16 --no-trim) ;;
  5) MODELS=audioldm2,make-an-audio-2,stable-audio-open  # what part 4's budget left out (data/README.md)
     EXTRA=(--steps 100 --full max --batch1 "none graphs" --single fp16 --no-trim) ;;
  plan)
    [[ $# -ge 2 && -f "$2" ]] || { echo "usage: $0 plan PLAN.toml [MODELS]" >&2; exit 2; }
    MODELS=${3:-}
    source scripts/device_env.sh  # wheels carried in .whl/ (torchao for fp8)
    mkdir -p .cache/compile
    EXTRA=(--plan "$2" --compile-cache .cache/compile --references "$ROOT/references")
    PART=plan-$(date -u +%Y%m%dT%H%M%S) ;;
  *) echo "usage: $0 1|2|3|4|5 | plan PLAN [MODELS] | collect FILES_AT" >&2; exit 2 ;;
esac
OUTDIR=$ROOT/part$PART
if [[ -e "$OUTDIR/levers_runs.csv" ]]; then
  OUTDIR=$ROOT/part$PART-$(date -u +%Y%m%dT%H%M%S)  # never mix two calls' rows in one part folder
fi
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/levers"
  exec > >(tee -a "$OUT/levers/log-levers-$PART.txt") 2>&1
  TEE_PID=$!
fi
T0=$SECONDS
echo "levers part $PART on $(hostname) at $(date -u +%FT%TZ); models $MODELS; budget ${BUDGET_S}s; raw in $OUTDIR"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || true
"$PY" scripts/gpu_preflight.py || exit 1  # a missing wheel fails here, not as error rows mid-sweep
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,temperature.gpu --format=csv || true
if [[ "$PART" == plan-* ]]; then  # the plan sets models (filtered by MODELS), cells and repeats
  "$PY" -m tta_energy levers run ${MODELS:+--models "$MODELS"} --out-dir "$OUTDIR" \
    --time-budget $((BUDGET_S - 60)) --no-report "${EXTRA[@]}" ${LEVERS_ARGS:-}
else
  "$PY" -m tta_energy levers run --models "$MODELS" --out-dir "$OUTDIR" --repeats "$REPEATS" \
    --time-budget $((BUDGET_S - 60)) --no-report "${EXTRA[@]}" ${LEVERS_ARGS:-}
fi
rc=$?
report || echo "report failed (the raw tables are complete; rebuild with: $0 collect FILES_AT)"
if [[ -n "${OUT:-}" ]]; then
  refs=(); [[ -d "$ROOT/references" ]] && refs=("$ROOT/references")
  tar czf "$OUT/levers/levers-part$PART.tar.gz" "$OUTDIR" "${refs[@]}"
  [[ -d .cache/compile ]] && tar czf "$OUT/levers/compile-cache.tar.gz" .cache/compile
  for f in data/h200/levers.csv data/h200/levers_summary.md data/h200/levers.png; do
    [[ -e "$f" ]] && cp "$f" "$OUT/levers/"
  done
fi
echo "levers part $PART finished in $((SECONDS - T0)) s (exit $rc)"
if [[ -n "${TEE_PID:-}" ]]; then
  exec 1>&- 2>&-
  wait "$TEE_PID" 2>/dev/null || true
fi
exit $rc
