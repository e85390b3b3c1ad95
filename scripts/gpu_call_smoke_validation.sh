#!/usr/bin/env bash
# Device call: GPU smoke of all 7 models (full size, random weights, fp16, 10 s at 10/100 steps) and the quick
# meter validation. Run from the repository root on a GPU machine; wheels carried in .whl (see
# scripts/device_env.sh).
#   OUT=/some/dir bash scripts/gpu_call_smoke_validation.sh
set -u
OUT=${OUT:-out}
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
mkdir -p "$OUT/smoke" "$OUT/validation"
nvidia-smi -L
python3 -m tta_energy meter info
timeout 330 python3 scripts/gpu_smoke_models.py --out "$OUT/smoke/models_gpu.csv"
timeout 210 python3 benchmarks/meter_validation.py --quick --out "$OUT/validation"
