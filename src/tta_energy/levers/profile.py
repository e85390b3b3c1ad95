"""Where a denoiser step's time goes: eager against CUDA-graph time, and the eager step's kernel time by
category (matrix products, convolutions, attention, other), which is what the levers summary quotes as the
limit of a configuration that misses its target."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _random_like(call_args: Sequence[Any], kwargs: dict[str, Any], seed: int) -> tuple[tuple, dict]:
    """The example call with every floating tensor refilled with random values (never time on zeros)."""
    import torch

    gen = torch.Generator().manual_seed(seed)

    def fill(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() > 1:
            return torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
        return x

    return tuple(fill(a) for a in call_args), {k: fill(v) for k, v in kwargs.items()}


KERNEL_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("flash", "fmha", "attention", "attn", "sdpa", "softmax")),
    ("conv", ("conv", "fprop", "dgrad", "wgrad", "implicit_convolve", "winograd")),
    ("matmul", ("gemm", "matmul", "cutlass", "xmma", "nvjet", "cublas", "sm90_")),
)


def kernel_category(name: str) -> str:
    """matmul, conv, attention or other (elementwise, normalisation, reductions, copies: memory-bound)."""
    low = name.lower()
    for category, keys in KERNEL_CATEGORIES:
        if any(k in low for k in keys):
            return category
    return "other"


def profile_step(adapter: Any, duration_s: float, batch: int, repeats: int = 10) -> dict[str, float]:
    """One denoiser step of ``adapter`` (levers applied): time eager (the wrappers below the CUDA graph) and
    graphed with CUDA events, and the eager step's kernel time by category (torch.profiler, CUPTI)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    call = adapter.denoiser_call(duration_s=duration_s, batch=batch)
    args, kwargs = _random_like(call.args, call.kwargs, seed=batch)
    graphed = adapter.denoiser
    eager = graphed.inner if type(graphed).__name__ == "CudaGraphDenoiser" else graphed

    def timed(fn: Callable[[], Any]) -> float:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / repeats

    result: dict[str, float] = {}
    with torch.inference_mode():
        result["eager_step_ms"] = timed(lambda: eager(*args, **kwargs))
        result["graph_step_ms"] = timed(lambda: graphed(*args, **kwargs)) if graphed is not eager else np.nan
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                eager(*args, **kwargs)
            torch.cuda.synchronize()
    totals = {"matmul": 0.0, "conv": 0.0, "attention": 0.0, "other": 0.0}
    for evt in prof.key_averages():
        device_us = float(getattr(evt, "self_device_time_total", getattr(evt, "self_cuda_time_total", 0.0)))
        if device_us <= 0:
            continue
        totals[kernel_category(evt.key)] += device_us / 1e3 / 3
    result.update({f"{k}_ms": v for k, v in totals.items()})
    result["kernel_ms"] = float(sum(totals.values()))
    return result
