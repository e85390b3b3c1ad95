#!/usr/bin/env bash
# Device call (about 3 min): the tests marked `gpu`, which CI's CPU cannot run: the meter on real NVML, CUDA
# graphs, compilation, compiled blocks inside one CUDA graph, fp8. The log and a JUnit XML come back under
# $OUT/logs; keep them with the data:
#
#   bash scripts/gpu_tests.sh                      # on the device (carry .whl for torchao)
#   cp FILES_AT/logs/gpu-tests-* data/h200/logs/   # here, after the call
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # wheels from .whl/, PYTHONPATH, offline
PY=${PYTHON:-python3}
"$PY" scripts/gpu_preflight.py || exit 1
LOGS=${OUT:-outputs}/logs
mkdir -p "$LOGS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader | tee "$LOGS/gpu-tests-$STAMP.txt"
timeout -k 10 "${HARD_LIMIT_S:-480}" "$PY" -m pytest -m gpu -rfEsp -q -p no:cacheprovider --timeout 300 \
  --junitxml "$LOGS/gpu-tests-$STAMP.xml" $(grep -l "mark.gpu" tests/*.py) 2>&1 | tee -a "$LOGS/gpu-tests-$STAMP.txt"
exit "${PIPESTATUS[0]}"
