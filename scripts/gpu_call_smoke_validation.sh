#!/usr/bin/env bash
# Device call: GPU smoke of all 7 models (full size, random weights, fp16, 10 s at 10/100 steps) and the quick
# meter validation. Run from the repository root on a GPU machine; wheels carried in .whl (see
# ../shared/tools/device-wheels.sh, plus torchsde and trampoline for Stable Audio Open's scheduler, soxr for AudioLDM 2 at batch > 1).
#   OUT=/some/dir bash scripts/gpu_call_smoke_validation.sh
set -u
OUT=${OUT:-out}
if [[ -d .whl ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src:$PWD
else
  export PYTHONPATH=$PWD/src:$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT/smoke" "$OUT/validation"
nvidia-smi -L
python3 -m tta_energy meter info
timeout 330 python3 scripts/gpu_smoke_models.py --out "$OUT/smoke/models_gpu.csv"
timeout 210 python3 benchmarks/meter_validation.py --quick --out "$OUT/validation"
