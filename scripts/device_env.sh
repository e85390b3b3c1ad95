#!/usr/bin/env bash
# Sourced from the repository root before a device command (`source scripts/device_env.sh; python3 -m tta_energy
# campaign run ...`, gpu_scaling.sh, gpu_levers.sh): installs the wheels carried in .whl/ (the packages the
# device machine's Python 3.12 lacks, e.g. torchsde, trampoline, soxr, torchao for fp8) into
# /tmp/site without touching the image's own packages, puts them and src/ on PYTHONPATH, and keeps every library
# offline. Elsewhere (no .whl/, or another Python: an
# installed checkout, pip install -e .) it only sets the environment.
# Sourced twice in one call (scripts/gpu_call.sh, then the script it runs), it installs once.
# one line "HH:MM:SS UTC what": the device scripts mark their steps, so that a call's output says where its wall
# time outside the measurement went
stamp() { echo "$(date -u +%T) UTC $*"; }
if [[ -n "${TTA_ENERGY_WHEELS_INSTALLED:-}" ]]; then
  export PYTHONPATH=/tmp/site:$PWD/src:$PWD
elif [[ -d .whl ]] && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  # the machine's packages have no bytecode it can use: every process of the call would compile thousands of
  # modules again; they all read and write it here, compiled once on all cores (scripts/device_precompile.py)
  export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-/tmp/pycache}
  stamp "installing the carried wheels"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src:$PWD TTA_ENERGY_WHEELS_INSTALLED=1
  python3 scripts/device_precompile.py || echo "WARNING: the packages' bytecode was not compiled ahead" >&2
else
  export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
source scripts/device_exits.sh  # the exit statuses the device scripts share
