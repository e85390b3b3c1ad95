#!/usr/bin/env bash
# Device call on the 2-GPU machine (nvidia-h200-x2, < 9 min): the whole steps sweep on one GPU, then sharded
# over two GPUs with torchrun; writes data/validation/scaling.csv (model, n_gpus, wall_s, speedup, ...).
#
#   bash scripts/gpu_scaling.sh                       # MODEL=audioldm2 REPEATS=10
#
# Goal: >= 1.8x for the whole command. The fixed cost of a run (imports, model build, idle baseline, warm-up:
# ~15 s) is paid in parallel but not divided, so the measured part must be >= 8x it: AudioLDM 2's steps grid
# takes ~18 s a repeat on one H200 (the study's A40 time / 2, + ~0.2 s of meter edges per generation), so 10
# repeats (~180 s) are needed; with 5 the whole-command speed-up would be ~1.7x while the measuring span
# (also in the table) would still be ~1.95x. Estimate: ~195 s + ~105 s = ~5 min (REPEATS=5: ~3.5 min).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
MODEL=${MODEL:-audioldm2}
REPEATS=${REPEATS:-10}
GPUS=${GPUS:-2}
CSV=data/validation/scaling.csv
"$PY" -m tta_energy.experiments.scaling --model "$MODEL" --gpus "$GPUS" --out "$CSV" --work-dir outputs/scaling \
  -- --experiment steps --size full --weights random --repeats "$REPEATS" --idle-s 1 --no-progress --no-trace
rc=$?
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/validation"
  cp "$CSV" "$OUT/validation/" 2>/dev/null || true
  cp outputs/scaling/*.csv "$OUT/validation/" 2>/dev/null || true
fi
exit $rc
