"""Applying levers to a built model: precision, fused projections, channels-last, attention backend,
compilation and CUDA graphs.

:func:`apply_levers` changes an adapter in place (precision of its components, its ``denoiser`` attribute,
Stable Audio Open's ``latent_length``) and records what it did in ``adapter.applied_levers``. A lever the
device cannot run (CUDA graphs on a CPU) raises :class:`LeverError` when asked for by name and is skipped with
the reason when it comes from a level (``max``, ``graphs``); a lever that does not fit the model
(channels-last on a 1-D DiT) is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_flatten, tree_unflatten

from tta_energy.errors import first_line, reraise_if_context_lost
from tta_energy.levers.spec import LeverError, Levers, parse_levers
from tta_energy.models.base import ModelAdapter
from tta_energy.precision import canonical_dtype, torch_dtype


# ---------------------------------------------------------------------------------------------------------
# What was applied
# ---------------------------------------------------------------------------------------------------------
@dataclass
class AppliedLevers:
    """What :func:`apply_levers` did to an adapter: ``adapter.applied_levers``."""

    levers: Levers
    dtype: str
    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # lever -> reason
    notes: dict[str, object] = field(default_factory=dict)  # e.g. the attention backend chosen

    def summary(self) -> str:
        """One line: applied levers, then skipped ones with their reasons."""
        parts = [f"dtype={self.dtype}", "applied=" + ("+".join(self.applied) or "-")]
        parts += [f"{k}={v}" for k, v in self.notes.items()]
        parts += [f"skipped {k}: {v}" for k, v in self.skipped.items()]
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Wrappers that stand in for the denoiser (same call signature; attributes read through to the module)
# ---------------------------------------------------------------------------------------------------------
class DenoiserWrapper(torch.nn.Module):
    """Base of the wrappers: holds the wrapped callable as ``inner``; unknown attributes (``config``,
    ``dtype``...) are read from it, so adapters that read ``self.denoiser.config`` keep working."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    @property
    def base_module(self) -> torch.nn.Module:
        """The original denoiser under every wrapper."""
        module = self.inner
        while True:
            if isinstance(module, DenoiserWrapper):
                module = module.inner
            elif hasattr(module, "_orig_mod"):
                module = module._orig_mod
            else:
                return module


def _clone_output(out: Any) -> Any:
    """A copy of a denoiser output (tensor, tuple/list, or a diffusers ``BaseOutput``), so that the caller
    keeps its values after the next replay overwrites the graph's static output."""
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, tuple | list):
        return type(out)(_clone_output(o) for o in out)
    if isinstance(out, Mapping):
        return type(out)(**{k: _clone_output(v) for k, v in out.items()})
    return out


def _sdpa_backend(name: str) -> SDPBackend:
    return {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[name]


@functools.cache
def _has_set_priority() -> bool:
    return "set_priority" in inspect.signature(sdpa_kernel).parameters


def sdpa_preference(preferred: str, traceable: bool = False) -> tuple[list[SDPBackend], bool]:
    """The backends to enable to prefer one, and whether their order is a priority: the others stay allowed
    (in torch's order) for calls it cannot serve (e.g. flash attention with an arbitrary mask). Without
    ``set_priority`` (older torch), or ``traceable`` (inside a compiled region, where some torch releases
    cannot trace ``set_priority``), only the preferred backend and the math fallback are enabled."""
    if _has_set_priority() and not traceable:
        order = [preferred] + [b for b in ("cudnn", "flash", "efficient", "math") if b != preferred]
        return [_sdpa_backend(b) for b in order], True
    return [_sdpa_backend(preferred), _sdpa_backend("math")], False


def sdpa_context(preferred: str) -> contextlib.AbstractContextManager:
    """A context that prefers one SDPA backend in eager code (:func:`sdpa_preference`)."""
    backends, priority = sdpa_preference(preferred)
    return sdpa_kernel(backends, set_priority=True) if priority else sdpa_kernel(backends)


class SdpaDenoiser(DenoiserWrapper):
    """Calls the inner denoiser with one attention backend preferred.

    Under compilation the wrapper goes inside the compiled region (``traceable``): Dynamo reads the backend
    flags while tracing and bakes the kernel into the graph without guarding on them, so a context set
    outside a compiled module selects nothing after its first compilation. The backends are resolved here,
    not in ``forward``, so that tracing ``forward`` meets nothing but the context itself (no graph break)."""

    def __init__(self, inner: torch.nn.Module, backend: str, traceable: bool = False) -> None:
        super().__init__(inner)
        self.backend = backend
        self.traceable = traceable
        self._backends, self._priority = sdpa_preference(backend, traceable)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._priority:
            with sdpa_kernel(self._backends, set_priority=True):
                return self.inner(*args, **kwargs)
        with sdpa_kernel(self._backends):
            return self.inner(*args, **kwargs)


#: the first compute capability with TF32 tensor cores (Ampere)
TF32_MIN_CAPABILITY = (8, 0)
#: the float32 matrix-product precision the ``tf32`` lever sets (PyTorch's name for TF32 tensor cores)
TF32_MATMUL_PRECISION = "high"


def tf32_unavailable(device: torch.device) -> str | None:
    """Why ``device`` has no TF32 tensor cores, or None where it has them."""
    if device.type != "cuda":
        return f"TF32 tensor cores need an NVIDIA GPU of compute capability 8.0+; this device is {device}"
    capability = torch.cuda.get_device_capability(device)
    if capability < TF32_MIN_CAPABILITY:
        return (f"TF32 tensor cores need compute capability 8.0+; this GPU's is "
                f"{capability[0]}.{capability[1]}")
    return None


class Tf32Denoiser(DenoiserWrapper):
    """Calls the inner denoiser with its float32 matrix products on TF32 tensor cores, and puts the earlier
    setting back after the call, so the rest of the generation (text encoders, decoder, vocoder) and the
    configurations measured after it keep theirs. Outside the compiled module (a compilation at the first
    call compiles under the setting; Dynamo guards on it) and inside the manual CUDA graph (captured through
    it, so the graph holds TF32 kernels, and the step profile's eager timing runs it too)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(TF32_MATMUL_PRECISION)
        try:
            return self.inner(*args, **kwargs)
        finally:
            torch.set_float32_matmul_precision(saved)


class SdpaCompiler:
    """A ``torch.compile`` backend that lowers each graph with one attention backend preferred (``None``:
    torch's default choice), through the Dynamo backend ``inner`` (Inductor on the GPU).

    The attention kernel is chosen when a graph is lowered, from the backend flags set at that moment, and is
    then baked into the graph. Two caches would otherwise hand one backend's graph to another: Dynamo keeps
    the graphs of unequal backend callables apart (its backend-match check), and AOT autograd's cache, whose
    key is the graph before lowering and not the flags, gets the backend in its key (``cache_key_tag``). So
    blocks compiled for two attention backends never share a graph, while every block and configuration
    compiled for the same one do. A graph without attention is compiled as it is, so the blocks without
    attention (a UNet's ResNet blocks) share one cached graph across candidates."""

    def __init__(self, sdpa: str | None, inner: str = "inductor") -> None:
        self.sdpa = sdpa
        self.inner = inner

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        from torch._dynamo import lookup_backend

        compile_graph = lookup_backend(self.inner)
        if self.sdpa is None or not _attends(graph):  # no attention: one graph for every candidate
            return compile_graph(graph, example_inputs)
        backends, _ = sdpa_preference(self.sdpa, traceable=True)
        with sdpa_kernel(backends), self._own_cache_entries():
            return compile_graph(graph, example_inputs)

    def _own_cache_entries(self) -> contextlib.AbstractContextManager:
        """The backend in the compile caches' keys (without ``cache_key_tag``, older torch: no AOT autograd
        cache while lowering)."""
        import torch._functorch.config

        if hasattr(torch.compiler.config, "cache_key_tag"):
            tag = torch.compiler.config.cache_key_tag or ""
            return torch.compiler.config.patch(cache_key_tag=f"{tag}tta-sdpa={self.sdpa}")
        return torch._functorch.config.patch(enable_autograd_cache=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SdpaCompiler) and (self.sdpa, self.inner) == (other.sdpa, other.inner)

    def __hash__(self) -> int:
        return hash((self.sdpa, self.inner))

    def __repr__(self) -> str:
        return f"SdpaCompiler(sdpa={self.sdpa!r}, inner={self.inner!r})"


def _attends(graph: torch.fx.GraphModule) -> bool:
    """Whether a graph Dynamo captured calls scaled-dot-product attention (whose kernel the flags choose)."""
    return any(node.op == "call_function" and "scaled_dot_product" in str(getattr(node.target, "__name__",
                                                                                  node.target))
               for node in graph.graph.nodes)


def repeated_blocks(module: torch.nn.Module, class_names: Sequence[str]) -> list[torch.nn.Module]:
    """The outermost submodules of ``module`` whose class is named in ``class_names``, in module order."""
    found: list[torch.nn.Module] = []

    def visit(parent: torch.nn.Module) -> None:
        for child in parent.children():
            if type(child).__name__ in class_names:
                found.append(child)
            else:
                visit(child)

    visit(module)
    return found


class BlockCompiledDenoiser(DenoiserWrapper):
    """The denoiser with its repeated blocks compiled by one :class:`SdpaCompiler` (regional compilation), the
    glue between them eager, and the compiler's attention backend preferred in the eager parts too.

    Several of these may share one denoiser (the attention candidates of ``sdpa-best``): each call compiles
    the blocks for its own compiler first when another one was installed last (a cache hit after the first
    time). A CUDA graph captured around one of them keeps its kernels whatever is installed later."""

    def __init__(self, inner: torch.nn.Module, blocks: Sequence[torch.nn.Module],
                 compiler: SdpaCompiler) -> None:
        super().__init__(inner)
        self.compiler = compiler
        self._blocks = list(blocks)  # a plain list: the blocks stay registered under the denoiser only
        self._context = ((lambda: sdpa_context(compiler.sdpa)) if compiler.sdpa is not None
                         else contextlib.nullcontext)

    def _install(self) -> None:
        if getattr(self.inner, "_tta_block_compiler", None) == self.compiler:
            return
        for block in self._blocks:
            block.compile(backend=self.compiler, dynamic=False)
        object.__setattr__(self.inner, "_tta_block_compiler", self.compiler)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self._install()
        with self._context():
            return self.inner(*args, **kwargs)


class CompiledGraphsDenoiser(DenoiserWrapper):
    """``torch.compile(mode="reduce-overhead")``: marks each call as a new step of the CUDA graph trees and
    copies the output out of the graph's memory pool before the next replay reuses it."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        return _clone_output(self.inner(*args, **kwargs))


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_leaves: list[Any]
    static_output: Any


class CudaGraphDenoiser(DenoiserWrapper):
    """The denoiser replayed from a CUDA graph captured at the first call of each input signature.

    Tensor arguments are copied into static buffers before each replay; the signature (shapes, dtypes,
    strides, devices and the values of non-tensor arguments) selects the graph, so a new batch size captures
    a new graph. Non-tensor arguments must not change from step to step (pass the timestep as a tensor).
    """

    def __init__(self, inner: torch.nn.Module, warmup_calls: int = 2, max_graphs: int = 8) -> None:
        super().__init__(inner)
        self.warmup_calls = warmup_calls
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, _Captured] = {}

    @property
    def captures(self) -> int:
        return len(self._graphs)

    @staticmethod
    def _leaf_key(leaf: Any) -> tuple:
        if isinstance(leaf, torch.Tensor):
            return ("t", tuple(leaf.shape), tuple(leaf.stride()), leaf.dtype, str(leaf.device))
        try:
            hash(leaf)
        except TypeError:
            raise LeverError(f"cudagraph: the denoiser got an unhashable non-tensor argument of type "
                             f"{type(leaf).__name__}; it cannot be captured") from None
        return ("v", type(leaf).__name__, leaf)

    def _capture(self, key: tuple, leaves: list[Any], spec: Any) -> _Captured:
        if len(self._graphs) >= self.max_graphs:
            raise LeverError(f"cudagraph: more than {self.max_graphs} distinct denoiser call signatures "
                             "(a Python scalar argument that changes every step?); pass tensors instead")
        static = [torch.empty_like(x).copy_(x) if isinstance(x, torch.Tensor) else x for x in leaves]
        args, kwargs = tree_unflatten(static, spec)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_calls):  # allocator, cuBLAS workspaces, lazy inits: not in the graph
                self.inner(*args, **kwargs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                out = self.inner(*args, **kwargs)
        except Exception as exc:  # an operation that cannot be captured: name it in one line
            reraise_if_context_lost(exc, "a CUDA graph capture")
            raise LeverError(f"cudagraph: the denoiser cannot be captured: {first_line(exc)}") from None
        torch.cuda.synchronize()
        captured = _Captured(graph, static, out)
        self._graphs[key] = captured
        return captured

    @classmethod
    def signature(cls, args: tuple, kwargs: dict) -> tuple[tuple, list[Any], Any]:
        """(the graph's key, the leaves, the tree spec) of a call: its structure, each tensor's shape,
        strides, dtype and device, each other value, and the autograd mode. A call of another key captures
        another graph."""
        leaves, spec = tree_flatten((args, kwargs))
        key = (str(spec), tuple(cls._leaf_key(x) for x in leaves), torch.is_inference_mode_enabled(),
               torch.is_grad_enabled())
        return key, leaves, spec

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        key, leaves, spec = self.signature(args, kwargs)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(key, leaves, spec)
        else:
            for buf, x in zip(entry.static_leaves, leaves, strict=True):
                if isinstance(x, torch.Tensor) and x is not buf:
                    buf.copy_(x)
        entry.graph.replay()
        return _clone_output(entry.static_output)


# ---------------------------------------------------------------------------------------------------------
# Fused attention projections (one GEMM for q, k, v)
# ---------------------------------------------------------------------------------------------------------
class FusedProjectionsProcessor:
    """diffusers' ``AttnProcessor2_0`` computation with fused projections: ``to_qkv`` (one GEMM) where query,
    key and value read the same input, ``to_q`` + ``to_kv`` where key and value read a context.

    Unlike diffusers' ``FusedAttnProcessor2_0``, it also serves attention layers built for cross-attention but
    called without a context (AudioLDM's ``attn2`` attends to itself), which become self-attention exactly as
    in ``AttnProcessor2_0``.
    """

    def __call__(self, attn: Any, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if encoder_hidden_states is None and hasattr(attn, "to_qkv"):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query = attn.to_q(hidden_states)
            if encoder_hidden_states is None:
                encoder_hidden_states = hidden_states
            elif attn.norm_cross:
                encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
            if hasattr(attn, "to_kv"):
                key, value = attn.to_kv(encoder_hidden_states).chunk(2, dim=-1)
            else:  # a self-attention layer (to_qkv) called with a context: unfused path
                key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                       dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def fuse_attention_projections(module: torch.nn.Module) -> tuple[int, int]:
    """Fuse q/k/v projections of every diffusers ``Attention`` in ``module`` that runs the plain
    ``AttnProcessor2_0`` (others, e.g. Stable Audio's rotary processor, are left alone).

    Returns (fused layers, attention layers)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    fused = total = 0
    processor = FusedProjectionsProcessor()
    for sub in module.modules():
        if not isinstance(sub, Attention):
            continue
        total += 1
        if type(sub.processor) is not AttnProcessor2_0 or getattr(sub, "to_k", None) is None:
            continue
        sub.fuse_projections(fuse=True)
        for name in ("to_qkv", "to_kv"):
            if hasattr(sub, name):
                getattr(sub, name).requires_grad_(False)
        sub.set_processor(processor)
        fused += 1
    return fused, total


# ---------------------------------------------------------------------------------------------------------
# Attention backend selection
# ---------------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: untimed calls before a step is timed: kernel selection and lazy set-up, compilation, and CUDA graph
#: trees, which run the first call eagerly, record the second and replay from the third
WARMUP_CALLS = 3


def _time_call(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    for _ in range(WARMUP_CALLS):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def time_denoiser_step(adapter: ModelAdapter, duration_s: float,
                       settings: dict[str, Callable[[], contextlib.AbstractContextManager]],
                       repeats: int = 3, batch: int = 1) -> dict[str, float]:
    """Milliseconds of one denoiser step of ``adapter`` at ``batch`` under each setting (a context manager
    factory); a setting whose step raises ``RuntimeError`` is left out."""
    call = adapter.denoiser_call(duration_s=duration_s, batch=batch)
    fn = getattr(call.module, call.method)
    timings: dict[str, float] = {}
    with torch.inference_mode():
        for name, setting in settings.items():
            try:
                with setting():
                    seconds = _time_call(lambda: fn(*call.args, **call.kwargs), adapter.device, repeats)
            except RuntimeError as exc:
                reraise_if_context_lost(exc, f"timing {name} on {adapter.name}'s denoiser")
                continue
            timings[name] = round(seconds * 1e3, 4)
    return timings


def available_sdpa_backends(device: torch.device) -> list[str]:
    """Backends torch can run on ``device`` at all (cudnn needs CUDA; flash on CPU is torch's CPU kernel)."""
    if device.type == "cuda":
        return ["cudnn", "flash", "efficient", "math"]
    return ["flash", "math"]


def unrunnable_levers(levers: Levers, device: torch.device) -> dict[str, str]:
    """The levers of ``levers`` that ``device`` cannot run at all, each with the reason: CUDA graphs and
    the CUDA-only attention backends off a GPU, float8 off compute capability 8.9+, TF32 off 8.0+. Whether
    a lever fits the model (channels-last on a 1-D DiT) is known only once it is applied."""
    out: dict[str, str] = {}
    graphs = f"CUDA graphs need a CUDA device; this device is {device}"
    if device.type != "cuda" and levers.compile_mode == "reduce-overhead":
        out["compile-graphs"] = graphs
    if device.type != "cuda" and levers.cudagraph:
        out["cudagraph"] = graphs
    if levers.sdpa not in (None, "best") and levers.sdpa not in available_sdpa_backends(device):
        out[f"sdpa-{levers.sdpa}"] = (f"the {levers.sdpa} attention backend needs CUDA; this device is "
                                      f"{device}")
    fp8 = fp8_unavailable(device) if levers.fp8 else None
    if fp8:
        out["fp8"] = fp8
    tf32 = tf32_unavailable(device) if levers.tf32 else None
    if tf32:
        out["tf32"] = tf32
    return out


def select_sdpa_backend(adapter: ModelAdapter, duration_s: float, repeats: int = 3,
                        batch: int = 1) -> tuple[str, dict[str, float]]:
    """The backend with the fastest eager denoiser step on ``adapter.denoiser_call`` at ``batch``:
    (name, ms each). A backend that fails on the model's shapes is left out."""
    settings = {b: functools.partial(sdpa_context, b) for b in available_sdpa_backends(adapter.device)}
    timings = time_denoiser_step(adapter, duration_s, settings, repeats, batch)
    if not timings:
        raise LeverError(f"sdpa-best: no attention backend runs {adapter.name}'s denoiser on "
                         f"{adapter.device}")
    return min(timings, key=timings.__getitem__), timings



#: execution modes whose candidates each cost a compilation
COMPILED_MODES = ("compile", "compile-graphs", "compile+cudagraph", "compile-blocks",
                  "compile-blocks+cudagraph")
#: attention backends timed under compilation (the eager ranking's fastest)
COMPILED_SDPA_CANDIDATES = 2
#: compiled variants Dynamo keeps per code object (its default is 8): compiled blocks add one per block shape,
#: dtype, batch size and attention candidate on each block class's forward (AudioLDM's ResNet blocks: 17
#: shapes), and entries of earlier configurations of the call are never freed
RECOMPILE_LIMIT = 1024


def compilations(levers: Levers | str) -> int:
    """How many times applying ``levers`` compiles the denoiser: one per attention-backend candidate for
    ``sdpa-best`` under compilation, one for other compiled specs, none without compilation; 0 for a spec
    that does not parse (an unknown name in an old table)."""
    try:
        levers = parse_levers(levers)
    except LeverError:
        return 0
    if levers.compile_mode is None:
        return 0
    return COMPILED_SDPA_CANDIDATES if levers.sdpa == "best" else 1


def execution_mode(levers: Levers, graphs: bool, compiled: bool) -> str:
    """How the denoiser runs under ``levers``: eager, cudagraph, compile, compile-graphs, compile+cudagraph,
    compile-blocks or compile-blocks+cudagraph (``graphs``/``compiled``: whether capture and compilation
    were actually applied on this device)."""
    if compiled and levers.compile_mode == "reduce-overhead":
        return "compile-graphs"
    if compiled:
        name = "compile-blocks" if levers.compile_scope == "blocks" else "compile"
        return f"{name}+cudagraph" if graphs else name
    return "cudagraph" if graphs else "eager"


def time_denoiser_chains(adapter: ModelAdapter, duration_s: float, chains: Mapping[str, torch.nn.Module],
                         repeats: int = 3, batch: int = 1) -> dict[str, float]:
    """Milliseconds of one denoiser step at ``batch`` through each ready chain (name -> the denoiser as it
    will run: captured graph, compiled module...); a chain that raises ``RuntimeError`` is left out. The
    first :data:`WARMUP_CALLS` calls of each chain are untimed."""
    call = adapter.denoiser_call(duration_s=duration_s, batch=batch)
    timings: dict[str, float] = {}
    with torch.inference_mode():
        for name, chain in chains.items():
            try:
                seconds = _time_call(lambda c=chain: c(*call.args, **call.kwargs), adapter.device, repeats)
            except RuntimeError as exc:
                reraise_if_context_lost(exc, f"timing {name} on {adapter.name}'s denoiser")
                continue
            timings[name] = round(seconds * 1e3, 4)
    return timings


# ---------------------------------------------------------------------------------------------------------
# Float8 linear layers (Hopper/Ada): torchao
# ---------------------------------------------------------------------------------------------------------
#: the torchao release the fp8 lever is written against (built for torch 2.11+); installed on the GPU machine
TORCHAO_VERSION = "0.17.0"
#: where fp8 applies: linear layers inside the denoiser's transformer blocks (attention projections and
#: feed-forward; a DiT's whole body, a UNet's attention layers)
FP8_SCOPE = "transformer_blocks."
#: float8 matrix products (torch._scaled_mm) need every matrix dimension to be a multiple of 16
FP8_ALIGNMENT = 16
#: the first compute capability with float8 tensor cores (Ada: 8.9, Hopper: 9.0)
FP8_MIN_CAPABILITY = (8, 9)


def fp8_targets(module: torch.nn.Module) -> list[str]:
    """Qualified names of the linear layers the fp8 lever converts: inside transformer blocks, both
    dimensions multiples of :data:`FP8_ALIGNMENT`."""
    return [name for name, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) and FP8_SCOPE in f"{name}."
            and m.in_features % FP8_ALIGNMENT == 0 and m.out_features % FP8_ALIGNMENT == 0]


def fp8_unavailable(device: torch.device) -> str | None:
    """Why float8 matrix products cannot run on ``device`` (None when they can)."""
    if device.type != "cuda":
        return ("float8 matrix products need an NVIDIA GPU of compute capability 8.9+; "
                f"this device is {device}")
    cap = torch.cuda.get_device_capability(device)
    if cap < FP8_MIN_CAPABILITY:
        return (f"float8 matrix products need compute capability 8.9+ (Ada, Hopper); "
                f"{torch.cuda.get_device_name(device)} is {cap[0]}.{cap[1]}")
    return None


#: the least absolute maximum a float8 activation row is scaled by (see :func:`convert_fp8`)
FP8_ACTIVATION_FLOOR = 1e-12


def convert_fp8(module: torch.nn.Module, device: torch.device) -> int:
    """Convert :func:`fp8_targets` to float8 (e4m3) weights and dynamically scaled float8 activations with
    torchao (scales per row in bf16, whose kernels torchao has; per tensor at other precisions); returns how
    many layers were converted. Raises :class:`LeverError` (one line) without
    torchao, without a GPU of compute capability 8.9+, or when the denoiser has no such layer."""
    reason = fp8_unavailable(device)
    if reason:
        raise LeverError(f"fp8: {reason}")
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            PerRow,
            PerTensor,
            quantize_,
        )
    except ImportError:
        raise LeverError(f"fp8: needs torchao (pip install torchao=={TORCHAO_VERSION})") from None
    targets = set(fp8_targets(module))
    if not targets:
        raise LeverError("fp8: the denoiser has no linear layer in transformer blocks with dimensions that "
                         f"are multiples of {FP8_ALIGNMENT}")
    dtype = next(module.parameters()).dtype
    granularity = PerRow() if dtype == torch.bfloat16 else PerTensor()
    # set_inductor_config would switch the whole process to TF32 matrix products and coordinate-descent
    # tuning: every fp32 configuration measured after this one would then run in another precision
    # an all-zero activation row (a masked text token's key or value input) gets a zero scale per row, and
    # torchao 0.17 quantizes it to 0/0 = NaN, which the attention spreads over the whole output (seen on a
    # GPU: tiny Stable Audio Open's latents all non-finite); a floor under the row's maximum keeps it zero
    quantize_(module, Float8DynamicActivationFloat8WeightConfig(granularity=granularity,
                                                                set_inductor_config=False,
                                                                activation_value_lb=FP8_ACTIVATION_FLOOR),
              filter_fn=lambda _m, fqn: fqn in targets)
    return len(targets)


def _capture_example(adapter: ModelAdapter, graphed: CudaGraphDenoiser, duration_s: float,
                     batch: int = 1) -> None:
    """Capture (and replay once) the denoiser on ``adapter.denoiser_call``'s inputs at ``batch``, as generate
    does: inside inference mode. Raises :class:`LeverError` when it cannot be captured."""
    call = adapter.denoiser_call(duration_s=duration_s, batch=batch)
    try:
        with torch.inference_mode():
            graphed(*call.args, **call.kwargs)
        torch.cuda.synchronize(adapter.device)
    except RuntimeError as exc:
        reraise_if_context_lost(exc, f"capturing {adapter.name}'s denoiser")
        raise LeverError(f"cudagraph: {first_line(exc)}") from None


# ---------------------------------------------------------------------------------------------------------
# Applying levers
# ---------------------------------------------------------------------------------------------------------
#: Inductor settings that libraries switch process-wide (torchao's recommended settings): they change the
#: kernels, and the time, of every later compilation
INDUCTOR_SETTINGS = ("coordinate_descent_tuning", "coordinate_descent_check_all_directions",
                     "force_fuse_int_mm_with_mul", "triton.unique_kernel_names")


def global_numerics() -> dict[str, object]:
    """The process-wide settings that change what a generation computes or how it is compiled: the float32
    matrix-product precision, TF32 in matrix products and convolutions, and :data:`INDUCTOR_SETTINGS`."""
    state: dict[str, object] = {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
    }
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        for name in INDUCTOR_SETTINGS:
            state[f"inductor.{name}"] = functools.reduce(getattr, name.split("."), inductor)
    return state


@contextlib.contextmanager
def preserved_numerics() -> Iterator[None]:
    """Whatever runs inside leaves :func:`global_numerics` as it found them: a lever changes its own
    configuration, never the precision of the configurations measured after it in the same process."""
    saved = global_numerics()
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(str(saved["float32_matmul_precision"]))
        torch.backends.cuda.matmul.allow_tf32 = bool(saved["matmul.allow_tf32"])
        torch.backends.cudnn.allow_tf32 = bool(saved["cudnn.allow_tf32"])
        inductor = sys.modules.get("torch._inductor.config")
        for key, value in saved.items():
            if key.startswith("inductor.") and inductor is not None:
                *parents, leaf = key.removeprefix("inductor.").split(".")
                setattr(functools.reduce(getattr, parents, inductor), leaf, value)


def _convolution_rank(module: torch.nn.Module) -> int | None:
    """2 when the module has 2-D convolutions (a UNet over a mel image), 1 for 1-D only, None without."""
    if any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):
        return 2
    if any(isinstance(m, torch.nn.Conv1d) for m in module.modules()):
        return 1
    return None


def apply_levers(adapter: ModelAdapter, levers: Levers | str, *, duration_s: float | None = None,
                 dtype: str | None = None, batch: int = 1) -> ModelAdapter:
    """Apply ``levers`` to ``adapter`` in place and return it; ``adapter.applied_levers`` says what was done.

    ``duration_s`` and ``batch`` are the generation the levers are tuned for (Stable Audio Open's
    ``trim-latents``, the attention-backend timing, the example CUDA graph capture: under compilation
    with static shapes, timing at another batch size would compile a graph that is never used); default:
    the model's default duration, one waveform per prompt. Apply once per adapter: build (or
    deep-copy) a fresh adapter for each configuration. ``dtype`` is the precision asked for besides the
    levers (a sweep's resolved precision); the levers' own precision wins, and without either the model runs
    in its default precision (:func:`tta_energy.precision.generation_precision`).
    """
    with preserved_numerics():
        return _apply_levers(adapter, parse_levers(levers), duration_s, dtype, batch)


def _apply_levers(adapter: ModelAdapter, levers: Levers, duration_s: float | None, dtype: str | None,
                  batch: int) -> ModelAdapter:
    if getattr(adapter, "applied_levers", None) is not None:
        raise LeverError(f"levers were already applied to this {adapter.name} adapter; build a fresh one")
    duration_s = adapter.defaults.at_size(adapter.size).duration_s if duration_s is None else duration_s
    device = adapter.device
    if device.type == "meta" and (levers.cudagraph or levers.compile_mode or levers.sdpa):
        raise LeverError("levers that run the model (graphs, compile, sdpa) cannot be applied on the meta "
                         "device")
    record = AppliedLevers(levers=levers, dtype="")
    cannot = unrunnable_levers(levers, device)

    def unavailable(lever: str, reason: str) -> None:
        """A lever the device cannot run: an error when asked for by name, skipped when implied by a level."""
        if lever in levers.implied:
            record.skipped[lever] = reason
        else:
            raise LeverError(f"{lever}: {reason}")

    # 1. precision of every component
    precision = levers.precision_for(adapter.name, option=dtype)
    if torch_dtype(precision) != adapter.dtype:
        adapter.set_dtype(torch_dtype(precision))
    record.dtype = canonical_dtype(adapter.dtype)

    # 2. Stable Audio Open: the DiT on the requested length only (changes the output)
    if levers.trim_latents:
        if hasattr(adapter, "latent_length") and hasattr(adapter, "latent_frames_for"):
            full = int(adapter.latent_length)
            adapter.latent_length = min(full, int(adapter.latent_frames_for(duration_s)))
            record.applied.append("trim-latents")
            record.notes["latent_frames"] = f"{adapter.latent_length}/{full}"
        else:
            record.skipped["trim-latents"] = f"{adapter.name} already computes only the requested length"

    base = adapter.denoiser
    if isinstance(base, DenoiserWrapper) or hasattr(base, "_orig_mod"):
        raise LeverError(f"{adapter.name}'s denoiser is already wrapped; build a fresh adapter")

    # 3. fused q/k/v projections
    if levers.fuse_qkv:
        fused, total = fuse_attention_projections(base)
        if fused:
            record.applied.append("fuse-qkv")
            record.notes["fused_attention_layers"] = f"{fused}/{total}"
        else:
            record.skipped["fuse-qkv"] = (f"none of {total} attention layers runs diffusers' plain "
                                          "AttnProcessor2_0 (custom attention processors are not fused)")

    # 4. channels-last convolutions
    if levers.channels_last:
        rank = _convolution_rank(base)
        if rank == 2:
            base.to(memory_format=torch.channels_last)
            record.applied.append("channels-last")
        else:
            record.skipped["channels-last"] = ("the denoiser has no 2-D convolutions"
                                               if rank is None else "the denoiser's convolutions are 1-D")

    # 4b. float8 linear layers (changes the output)
    if levers.fp8:
        converted = convert_fp8(base, device)
        record.applied.append("fp8")
        record.notes["fp8_linear_layers"] = converted

    # 4c. TF32 matrix products: set from here to the end of applying (preserved_numerics puts the process's
    # setting back), so that compilations and captures made here use them; each call sets them again
    tf32 = False
    if levers.tf32:
        if "tf32" in cannot:
            unavailable("tf32", cannot["tf32"])
        elif record.dtype != "float32":
            record.skipped["tf32"] = f"the model runs in {record.dtype}; TF32 changes float32 matrix products"
        else:
            tf32 = True
            torch.set_float32_matmul_precision(TF32_MATMUL_PRECISION)

    # 5. compilation: each chain below compiles its own module (lazily, at its first call)
    compiling = levers.compile_mode is not None
    if "compile-graphs" in cannot:
        unavailable("compile-graphs", cannot["compile-graphs"])
        compiling = False
    blocks: list[torch.nn.Module] = []
    if compiling and levers.compile_scope == "blocks":
        blocks = repeated_blocks(base, adapter.repeated_blocks)
        if not blocks:
            declared = list(adapter.repeated_blocks) or "none"
            raise LeverError(f"compile-blocks: {adapter.name}'s denoiser has no repeated blocks to compile "
                             f"(its adapter declares {declared}): use compile, or set repeated_blocks on the "
                             "adapter")
        record.notes["compiled_blocks"] = len(blocks)
        record.applied.append("compile-blocks")
    elif compiling:
        record.applied.append("compile-graphs" if levers.compile_mode == "reduce-overhead" else "compile")

    def compiled(module: torch.nn.Module, backend: str | None) -> torch.nn.Module:
        # every configuration, attention candidate, block shape and batch size of a levers call adds an entry
        # on the same code object; past Dynamo's limit it would run the module eagerly under the
        # configuration's name, so the limit is raised and hitting it is made an error
        import torch._dynamo

        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
        if hasattr(config, "accumulated_recompile_limit"):
            config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 2 * RECOMPILE_LIMIT)
        if hasattr(config, "fail_on_recompile_limit_hit"):
            config.fail_on_recompile_limit_hit = True
        if levers.compile_scope == "blocks":
            return BlockCompiledDenoiser(module, blocks, SdpaCompiler(backend, levers.compile_backend))
        if backend is not None:
            module = SdpaDenoiser(module, backend, traceable=True)
        if levers.compile_backend == "inductor":
            out = torch.compile(module, mode=levers.compile_mode, dynamic=False)
        else:
            out = torch.compile(module, backend=levers.compile_backend, dynamic=False)
        return CompiledGraphsDenoiser(out) if levers.compile_mode == "reduce-overhead" else out

    # 6. CUDA graphs: captured once here on the example step, so that a backend or model that cannot be
    # captured is known now (and sdpa-best can take the next backend) rather than mid-measurement
    graphs = levers.cudagraph
    if graphs and "cudagraph" in cannot:
        unavailable("cudagraph", cannot["cudagraph"])
        graphs = False
    mode = execution_mode(levers, graphs, compiling)

    def chain_for(backend: str | None, capture: bool) -> torch.nn.Module:
        """The denoiser as it will run with ``backend`` preferred: the backend's context inside the compiled
        region (a compiled module per backend; compiled blocks: a compiler per backend), the CUDA graph
        outside."""
        if compiling:
            chain = compiled(base, backend)
        else:
            chain = base if backend is None else SdpaDenoiser(base, backend)
        if tf32:
            chain = Tf32Denoiser(chain)
        if capture:
            chain = CudaGraphDenoiser(chain)
            _capture_example(adapter, chain, duration_s, batch)
        return chain

    # 7. attention backend, timed in the execution mode it will run in (an eager ranking would miss what
    # capture and compilation change: a kernel fast eagerly can be slow inside a graph)
    failures: list[str] = []
    chains: dict[str, torch.nn.Module] = {}
    if levers.sdpa == "best":
        candidates = available_sdpa_backends(device)
        if mode in COMPILED_MODES:  # each candidate is one more compilation: time the eager two fastest
            _, eager_ms = select_sdpa_backend(adapter, duration_s, batch=batch)
            record.notes["sdpa_eager_ms"] = eager_ms
            candidates = sorted(eager_ms, key=eager_ms.__getitem__)[:COMPILED_SDPA_CANDIDATES]
        for backend in candidates:
            try:
                chains[backend] = chain_for(backend, graphs)
            except (LeverError, RuntimeError) as exc:
                reraise_if_context_lost(exc, f"preparing {adapter.name}'s denoiser with {backend} attention")
                failures.append(f"{backend}: {first_line(exc)}")
        timings = time_denoiser_chains(adapter, duration_s, chains, batch=batch) if chains else {}
        if timings:
            backend = min(timings, key=timings.__getitem__)
            denoiser = chains[backend]
            record.notes.update(sdpa=backend, sdpa_ms=timings, sdpa_timed_in=mode)
            record.applied.append("sdpa-best")
        elif graphs and "cudagraph" in levers.implied:  # no backend can be captured: eager, said so
            record.skipped["cudagraph"] = "; ".join(failures) or "no attention backend ran"
            backend, ms = select_sdpa_backend(adapter, duration_s, batch=batch)
            graphs = False
            denoiser = chain_for(backend, graphs)
            # compiled blocks are compiled in place: the base denoiser timed here runs them
            timed_in = (execution_mode(levers, False, compiling) if levers.compile_scope == "blocks"
                        else "eager")
            record.notes.update(sdpa=backend, sdpa_ms=ms, sdpa_timed_in=timed_in)
            record.applied.append("sdpa-best")
        else:
            raise LeverError(f"sdpa-best: no attention backend runs {adapter.name}'s denoiser in mode {mode}"
                             + (f" ({'; '.join(failures)})" if failures else ""))
    else:
        backend = None
        if levers.sdpa is not None:
            if f"sdpa-{levers.sdpa}" in cannot:
                unavailable(f"sdpa-{levers.sdpa}", cannot[f"sdpa-{levers.sdpa}"])
            else:
                backend = levers.sdpa
        try:
            denoiser = chain_for(backend, graphs)
        except LeverError as exc:
            if "cudagraph" not in levers.implied:
                raise
            record.skipped["cudagraph"] = str(exc)  # a level on a model that cannot be captured: eager
            graphs = False
            denoiser = chain_for(backend, graphs)
        if backend is not None:
            record.notes["sdpa"] = backend
            record.applied.append(f"sdpa-{levers.sdpa}")
    if graphs:
        record.applied.append("cudagraph")
    if tf32:
        record.applied.append("tf32")
    if failures:
        record.notes["capture_failures"] = failures
    if denoiser is not base:
        adapter.denoiser = denoiser
    adapter.applied_levers = record
    return adapter

