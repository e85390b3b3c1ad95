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
set -euo pipefail
MODEL=${1:?model}
EXPERIMENT=${2:?experiment}
OUT_DIR=${3:?shared output folder}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
GPUS_PER_NODE=${SLURM_GPUS_PER_NODE:-4}
srun torchrun --nnodes "$SLURM_JOB_NUM_NODES" --nproc-per-node "${GPUS_PER_NODE##*:}" \
  --rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$HEAD:29500" \
  -m tta_energy sweep --model "$MODEL" --experiment "$EXPERIMENT" --out-dir "$OUT_DIR" --no-progress
