"""torch.compile's on-disk caches and this process's compilation counters: where Inductor and Triton keep
compiled kernels between device calls, how long each phase of compilation took, and how much AOT autograd's
cache served (the levers table's ``compile_s`` and ``levers_compile.csv``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: the environment variables that place Inductor's and Triton's on-disk caches
COMPILE_CACHE_VARIABLES = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}


def use_compile_cache(folder: Path) -> dict[str, str]:
    """Point Inductor's caches (FX graphs, AOT autograd, kernels) and Triton's at ``folder``, so that a
    folder carried to the GPU machine and brought back holds compiled kernels for the next call; returns the
    variables set. Call before the first compilation."""
    folder = Path(folder).resolve()
    env = {var: str(folder / sub) for var, sub in COMPILE_CACHE_VARIABLES.items()}
    env.update(TORCHINDUCTOR_FX_GRAPH_CACHE="1", TORCHINDUCTOR_AUTOGRAD_CACHE="1")
    for var, value in env.items():
        os.environ[var] = value
    for sub in COMPILE_CACHE_VARIABLES.values():
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return env


def compile_time_by_phase(top: int = 8) -> list[tuple[str, float]]:
    """Seconds this process spent in each phase of ``torch.compile`` (Dynamo's own timers: tracing, AOT,
    Inductor's lowering and code generation, waiting for Triton), the ``top`` largest; empty without a
    compilation. Diagnostic: it tells which phase to attack when compilation dominates a device call."""
    utils = sys.modules.get("torch._dynamo.utils")
    metrics = getattr(utils, "compilation_time_metrics", None) if utils is not None else None
    if not metrics:
        return []
    totals = {name: float(sum(times)) for name, times in metrics.items() if times}
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def compile_cache_counts() -> dict[str, int]:
    """Graphs Dynamo compiled in this process and AOT autograd's cache hits and misses; empty without a
    compilation. Diagnostic: hits where attention candidates' blocks should have compiled anew would show a
    candidate running another's kernel."""
    utils = sys.modules.get("torch._dynamo.utils")
    counters = getattr(utils, "counters", None) if utils is not None else None
    if not counters or not counters["stats"].get("unique_graphs"):
        return {}
    aot = counters["aot_autograd"]
    return {"graphs": int(counters["stats"]["unique_graphs"]),
            "aot_cache_hits": int(aot["autograd_cache_hit"]),
            "aot_cache_misses": int(aot["autograd_cache_miss"])}


def cache_use_since(before: dict[str, int]) -> tuple[int, int]:
    """AOT autograd cache (hits, misses) since ``before`` (:func:`compile_cache_counts` then)."""
    after = compile_cache_counts()
    return (after.get("aot_cache_hits", 0) - before.get("aot_cache_hits", 0),
            after.get("aot_cache_misses", 0) - before.get("aot_cache_misses", 0))
