"""Sharding a sweep over several GPUs (and nodes) with ``torchrun``.

``torchrun --nproc-per-node N -m tta_energy sweep ...`` starts N processes; each one is a rank with one
GPU (``cuda:LOCAL_RANK``) and its own energy meter measuring that GPU only. The (configuration, repeat) pairs
still to do are split over the ranks by expected cost (longest first onto the least-loaded rank), each rank
appends its rows to its own shard file (``steps.csv`` -> ``steps.rank<k>.csv``), and after a barrier rank 0
merges the shards into the output table (atomically, sorted, deduplicated) and removes them.

The process group only coordinates (barriers, small broadcasts): it uses the ``gloo`` backend over TCP even
on GPUs, so no NCCL communicator is created and no GPU memory or NVLink traffic is spent on it. Initialisation
is ``env://`` (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` set by torchrun), so the same
command runs across nodes. Under SLURM, one torchrun per node::

    srun --nodes=2 --ntasks-per-node=1 torchrun --nnodes 2 --nproc-per-node 4 \\
        --rdzv-backend c10d --rdzv-endpoint "$(scontrol show hostnames $SLURM_NODELIST | head -1):29500" \\
        -m tta_energy sweep --model tango --experiment steps --out /shared/fs/steps.csv

(``scripts/slurm_sweep.sh``). The output folder must be on a file system every node sees: rank 0 reads the
other ranks' shard files to merge them.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: barriers wait for the slowest rank's whole shard, so the timeout is long (settable for very long sweeps)
DEFAULT_TIMEOUT_S = float(os.environ.get("TTA_ENERGY_DIST_TIMEOUT_S", 24 * 3600))


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env(env: dict[str, str] | None = None) -> DistContext:
    """Rank, world size and local rank as torchrun (or SLURM + torchrun) set them; 0/1/0 otherwise."""
    env = dict(os.environ) if env is None else env

    def _int(name: str, default: int) -> int:
        try:
            return int(env.get(name, default))
        except ValueError:
            return default

    return DistContext(rank=_int("RANK", 0), world_size=_int("WORLD_SIZE", 1),
                       local_rank=_int("LOCAL_RANK", 0))


def init(ctx: DistContext, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Join the process group (gloo, env://) when running under torchrun with more than one process."""
    if not ctx.is_distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", init_method="env://", rank=ctx.rank,
                                world_size=ctx.world_size, timeout=_dt.timedelta(seconds=timeout_s))


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast(ctx: DistContext, obj: T) -> T:
    """Rank 0's ``obj`` on every rank (a picklable object)."""
    if not ctx.is_distributed:
        return obj
    import torch.distributed as dist

    box: list[Any] = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(ctx: DistContext, obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order."""
    if not ctx.is_distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


@contextmanager
def process_group(ctx: DistContext) -> Iterator[None]:
    """Be in the process group (under torchrun) for the block. A block that ends normally leaves it together:
    a barrier, then each rank destroys its group, so no rank tears its connections down while another still
    uses them (gloo can abort a process that loses a peer mid-operation). A block that raises leaves at once:
    another rank may be gone, and a barrier would wait for it until the timeout."""
    init(ctx)
    try:
        yield
    except BaseException:
        shutdown(ctx)
        raise
    try:
        barrier(ctx)
    finally:
        shutdown(ctx)


def shutdown(ctx: DistContext) -> None:
    if ctx.is_distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def assign(items: Sequence[T], world_size: int, cost: Callable[[T], float]) -> list[list[int]]:
    """Indices of ``items`` per rank, balancing the summed cost (longest-processing-time-first greedy).

    Deterministic: every rank computes the same split from the same list. Within a rank the indices keep the
    order of ``items`` (so the randomised order of the sweep is preserved).
    """
    if world_size < 1:
        raise ValueError("world_size must be >= 1")
    heap = [(0.0, r) for r in range(world_size)]
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(items)), key=lambda k: (-cost(items[k]), k)):
        load, r = heapq.heappop(heap)
        shards[r].append(i)
        heapq.heappush(heap, (load + cost(items[i]), r))
    return [sorted(s) for s in shards]
