#!/usr/bin/env bash
#SBATCH --job-name=tta-energy-sweep
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --time=04:00:00
# Example: a sweep sharded over every GPU of several SLURM nodes (one torchrun per node, c10d rendezvous on
# the first node). The output folder must be on a file system all nodes share: rank 0 merges the shards.
#
#   sbatch scripts/slurm_sweep.sh tango steps /shared/tta-energy/data/cluster
# Environment: PYTHON (default python3), the interpreter with tta-energy installed.
set -euo pipefail
if (($# != 3)); then
  echo "usage: sbatch scripts/slurm_sweep.sh MODEL EXPERIMENT SHARED_OUT_DIR (got $# argument(s))" >&2
  exit 2
fi
MODEL=$1 EXPERIMENT=$2 OUT_DIR=$3
if [[ -z "${SLURM_JOB_NODELIST:-}" ]]; then
  echo "error: SLURM_JOB_NODELIST is not set: submit this script with sbatch (it runs inside a SLURM job)" >&2
  exit 2
fi
# the model and experiment checked once here, not by every rank after srun has started them all
"${PYTHON:-python3}" -c 'import sys
from tta_energy.cli import checks
from tta_energy.errors import TtaError
from tta_energy.experiments.grids import spec
try:
    checks.model(sys.argv[1])
    for name in checks.comma_list(sys.argv[2], "--experiment", absent_means_all=False):
        spec(name)
except TtaError as exc:
    sys.exit(f"error: {exc}")' "$MODEL" "$EXPERIMENT" || exit 2
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
GPUS_PER_NODE=${SLURM_GPUS_PER_NODE:-4}
srun torchrun --nnodes "$SLURM_JOB_NUM_NODES" --nproc-per-node "${GPUS_PER_NODE##*:}" \
  --rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$HEAD:29500" \
  -m tta_energy sweep --model "$MODEL" --experiment "$EXPERIMENT" --out-dir "$OUT_DIR" --no-progress
