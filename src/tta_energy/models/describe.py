"""Parameters, denoiser input shape and FLOPs of any registered model, without allocating its weights.

Works for every adapter through the :class:`~tta_energy.models.base.ModelAdapter` interface: the model is
built with random weights on the ``meta`` device (no memory, no compute), parameters are counted per
component, and FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` while running
``adapter.denoiser_call()`` (one denoising step, classifier-free guidance batch 2B) and
``adapter.per_generation_calls()`` (text encoders, decoder, vocoder: once per generation). Meta tensors
carry shapes, so the counter sees every matmul/convolution of a real forward (the call's inputs are
wrapped as fake tensors, see :func:`count_flops`). FLOP = 2 x multiply-add
(the counter's convention).

The denoiser input shape is the shape of the first tensor argument of ``denoiser_call()`` (adapters pass
the latent sample first), or of the first tensor keyword argument when there is no positional tensor.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from tta_energy.models.base import GenerationRequest, ModelAdapter, ModelError, ModuleCall
from tta_energy.models.catalogue import DESCRIBE_DURATION_S
from tta_energy.models.registry import build_model, check_request_shape

FLOP_METHOD = "torch.utils.flop_counter on the meta device"


def _fake(mode: FakeTensorMode, value: object) -> object:
    return mode.from_tensor(value) if isinstance(value, torch.Tensor) else value


def _count(call: ModuleCall, mode: FakeTensorMode | None) -> int:
    fn = getattr(call.module, call.method)
    args, kwargs = call.args, call.kwargs
    with contextlib.ExitStack() as stack:
        counter = stack.enter_context(FlopCounterMode(display=False))
        if mode is not None:
            args = tuple(_fake(mode, a) for a in args)
            kwargs = {k: _fake(mode, v) for k, v in kwargs.items()}
            stack.enter_context(mode)
        stack.enter_context(torch.no_grad())
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def count_flops(call: ModuleCall) -> int:
    """FLOPs of one call (2 x MAC), counted by torch's FLOP counter.

    First on the call's own tensors (meta: shapes only). Library code that peeks at values (transformers'
    padding checks call ``.item()``) fails on meta tensors; such a call is counted again with its inputs as
    fake tensors, which makes that code take its tracing path. The FLOPs are the same either way.
    """
    try:
        return _count(call, None)
    except (RuntimeError, NotImplementedError):
        return _count(call, FakeTensorMode(allow_non_fake_inputs=True))


def first_tensor_shape(call: ModuleCall) -> list[int]:
    for value in (*call.args, *call.kwargs.values()):
        if isinstance(value, torch.Tensor):
            return list(value.shape)
    raise ModelError(f"denoiser call of {call.name} has no tensor input")


def unique_param_count(modules: list[torch.nn.Module]) -> int:
    """Parameters of several modules, counting a shared tensor once."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def describe_adapter(adapter: ModelAdapter, duration_s: float = DESCRIBE_DURATION_S,
                     batch: int = 1) -> dict[str, Any]:
    """The description of a built adapter (any device; use ``meta`` for full sizes)."""
    components = adapter.components()
    if adapter.denoiser_name not in components:
        raise ModelError(f"{adapter.name}: denoiser component {adapter.denoiser_name!r} not in components()")
    step_call = adapter.denoiser_call(duration_s=duration_s, batch=batch)
    per_generation = {}
    for call in adapter.per_generation_calls(duration_s=duration_s, batch=batch):
        per_generation[call.name] = per_generation.get(call.name, 0.0) + count_flops(call) / 1e9
    gflop_per_step = count_flops(step_call) / 1e9
    description: dict[str, Any] = {
        "model": adapter.name,
        "size": adapter.size,
        "weights": adapter.weights,
        "total_params": unique_param_count(list(components.values())),
        "denoiser_params": unique_param_count([components[adapter.denoiser_name]]),
        "denoiser": f"{adapter.denoiser_name} ({type(components[adapter.denoiser_name]).__name__})",
        "denoiser_input_shape": first_tensor_shape(step_call),
        "gflop_per_step": round(gflop_per_step, 3),
        "gflop_once_per_generation": round(sum(per_generation.values()), 3),
        "gflop_once_per_generation_by_call": {k: round(v, 3) for k, v in per_generation.items()},
        "components": {k: unique_param_count([m]) for k, m in components.items()},
        "component_classes": {k: type(m).__name__ for k, m in components.items()},
        "duration_s": duration_s,
        # what the shapes and FLOPs are of: the audio the denoiser computes for duration_s (a fixed-length
        # model's own clip, Stable Audio Open's whole window)
        "latent_seconds": round(adapter.latent_seconds(duration_s), 4),
        "batch": batch,
        "cfg": True,
        "flop_method": FLOP_METHOD,
    }
    extra = getattr(adapter, "describe_extra", None)
    if callable(extra):
        description["notes"] = extra()
    return description


def describe_model(name: str, size: str = "full", duration_s: float | None = None,
                   batch: int = 1) -> dict[str, Any]:
    """Build ``name`` at ``size`` with random weights on the meta device and describe it.

    ``duration_s`` None: the stored table's 10 s. A duration given is checked first by the built model's own
    rule, the one ``generate`` applies (e.g. AudioLDM's one-latent-frame minimum)."""
    if duration_s is None:
        duration_s = DESCRIBE_DURATION_S
    else:
        check_request_shape(name, size, GenerationRequest(prompts=["x"], duration_s=duration_s))
    adapter = build_model(name, size=size, weights="random", device="meta", dtype="float32")
    return describe_adapter(adapter, duration_s=duration_s, batch=batch)


def write_table(path: str | Path | None = None) -> Path:
    """Describe every catalogue model at each size and the default duration; write the JSON table that
    ``tta-energy describe`` serves without building the model (tests/test_describe.py recomputes it)."""
    from tta_energy.fileio import write_json_atomic
    from tta_energy.models.catalogue import DESCRIBE_TABLE, SIZES, model_names

    default = Path(str(resources.files("tta_energy.models") / DESCRIBE_TABLE))
    target = Path(path) if path is not None else default
    write_json_atomic(target, {size: {name: describe_model(name, size) for name in model_names()}
                               for size in SIZES})
    return target


if __name__ == "__main__":
    print(f"wrote {write_table()}")
