#!/usr/bin/env bash
# Device call on the 2-GPU machine (nvidia-h200-x2, < 9 min): the whole steps sweep on one GPU, then sharded
# over two GPUs with torchrun; writes data/validation/scaling.csv (model, n_gpus, wall_s, speedup, ...).
#
#   bash scripts/gpu_scaling.sh                       # MODEL=audioldm2 REPEATS=5
#
# Goal: >= 1.8x for the whole command. The fixed cost of a run (imports, model build, idle baseline, warm-up:
# ~15-20 s) is paid in parallel but not divided, so the measured part must be >= 8x it: AudioLDM 2's steps grid
# takes ~40 s a repeat on one H200 (data/smoke/models_gpu.csv: 7.3 s per 100-step generation), so 5 repeats
# (~200 s) do; the measuring span (first generation start to last end, also in the table) shows the sweep's
# own speed-up without the fixed cost. Estimate: ~220 s on one GPU + ~120 s on two = ~6 min with the start.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
PY=${PYTHON:-python3}
"$PY" scripts/gpu_preflight.py || exit 1  # a missing wheel fails here, before GPU time is spent
MODEL=${MODEL:-audioldm2}
REPEATS=${REPEATS:-5}
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
