"""The ``levers`` sweep: what each energy lever saves, whether it keeps the output, and how close to the GPU's
own limit the best configuration gets (issue 7).

For each model, in one process and one meter session:

1. the GPU's ceiling: a bf16 matrix-product loop measured with the project's meter (TFLOP per joule), at the
   start and at the end of the run (:func:`measure_ceiling`);
2. the model is built once in fp32 (random weights unless given); every lever configuration is a deep copy
   with :func:`tta_energy.optimize.apply_levers` applied, so all configurations share the same weights;
3. the fp32 eager reference (``fp32``) generates at each step count, batch 1, seed ``seed`` with TF32 off: its
   final latents and waveforms are the reference of the equivalence check;
4. one warm-up generation per (configuration, batch size), recorded with ``is_warmup=True``: it holds the
   one-time cost of compilation / graph capture (its energy minus a steady generation's);
5. ``repeats`` rounds; in each, every (configuration, steps, batch) cell once, in a seeded random order; every
   batch-1 output is compared with the reference (relative error of latents and waveforms);
6. one denoiser step of the ``max`` configuration is timed eagerly, as a CUDA graph, and profiled by kernel
   category (matrix products, convolutions, attention, other), which is what the summary quotes as the limit.

Files (under ``out_dir``): ``levers_runs.csv`` (the run-record schema; ``optimize`` holds the lever spec),
``levers_equivalence.csv``, ``levers_configs.csv`` (what each spec applied or skipped, FLOPs from
``describe``), ``levers_ceiling.csv``, ``levers_profile.csv``. :func:`build_report` turns one or more such
folders into ``levers.csv`` (one row per model x spec x steps x batch, with the extra columns
``rel_error_latents, rel_error_audio, flop_per_joule, fraction_of_ceiling, compile_s, compile_J,
payoff_clips``), ``levers_summary.md`` and ``levers.png``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import io
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tta_energy import schema
from tta_energy.errors import TtaError
from tta_energy.experiments.grids import STUDY_PROMPT, Config, config_id
from tta_energy.experiments.runner import (
    Item,
    RowContext,
    SweepOptions,
    free_memory,
    make_meter,
    measure_one,
    new_run_id,
    now_iso,
    one_line,
)
from tta_energy.fileio import atomic_path, write_csv_atomic, write_text_atomic
from tta_energy.models.base import GenerationOutput, GenerationRequest, PhaseHook, no_phases
from tta_energy.optimize import (
    DenoiserWrapper,
    apply_levers,
    error_tolerance,
    is_lossless,
    parse_levers,
    relative_error,
)

EXPERIMENT = "levers"
#: Three tiers keep a run of all seven models inside a lent GPU's call: the default and the combination
#: over the whole grid (steps x batch); CUDA graphs alone at batch 1 (both step counts: its one-time capture
#: cost is the warm-up at the smaller one); every other lever alone at the largest step count, batch 1. A
#: spec that turns out to be the same configuration as an earlier one for a model (fp16 where the default
#: is fp16, a lever that does not fit the model) is dropped with a note.
FULL_GRID_SPECS: tuple[str, ...] = ("none", "max")
BATCH1_SPECS: tuple[str, ...] = ("graphs",)
SINGLE_SPECS: tuple[str, ...] = ("fp16", "bf16", "sdpa-best", "channels-last", "fuse-qkv")
#: Inductor compilation (a minute or more of CPU per model and shape): for the models of ``compile_models``
COMPILE_SPECS: tuple[str, ...] = ("compile", "compile-graphs")
#: Stable Audio Open only: compute just the requested length (changes the output)
TRIM_SPECS: tuple[tuple[str, bool], ...] = (("trim-latents", False), ("max,trim-latents", True))
REFERENCE_SPEC = "fp32"
#: relative cost of a model's levers sweep (measured order of magnitude on an H200, used only to share a
#: call's time budget between its models)
MODEL_COST: dict[str, float] = {"audioldm": 1.0, "audioldm2": 1.4, "make-an-audio": 1.0,
                                "make-an-audio-2": 0.7, "stable-audio-open": 1.6, "tango": 1.9,
                                "tango2": 1.9}

#: Issue 7's targets: whole generation, 10 s, 100 steps, batch 1, best lossless configuration vs ``none``
REDUCTION_TARGETS: dict[str, float] = {"audioldm": 4.0, "audioldm2": 4.0, "make-an-audio": 3.0,
                                       "make-an-audio-2": 3.0, "stable-audio-open": 1.6, "tango": 1.5,
                                       "tango2": 1.5}
#: best configuration at any batch size: fraction of the ceiling's FLOP per joule
CEILING_TARGETS: dict[str, float] = {"stable-audio-open": 0.6, "tango": 0.6, "tango2": 0.6}
DEFAULT_CEILING_TARGET = 0.4

#: A plain eager run at a precision whose waveform differs this much from fp32 makes the waveform comparison
#: uninformative at that precision (random-weight vocoders can output ~1e-10, which underflows in fp16); the
#: latents still decide.
UNINFORMATIVE_ERROR = 0.5

RUNS_FILE = "levers_runs.csv"
EQUIVALENCE_FILE = "levers_equivalence.csv"
CONFIGS_FILE = "levers_configs.csv"
CEILING_FILE = "levers_ceiling.csv"
PROFILE_FILE = "levers_profile.csv"


class LeversError(TtaError):
    """A levers sweep that cannot run as asked; one line."""


@dataclass
class LeversOptions:
    """Everything ``tta-energy levers run`` takes."""

    models: tuple[str, ...]
    out_dir: Path = Path("data/h200/levers")
    full_specs: tuple[str, ...] = FULL_GRID_SPECS
    batch1_specs: tuple[str, ...] = BATCH1_SPECS
    single_specs: tuple[str, ...] = SINGLE_SPECS
    #: models that also get COMPILE_SPECS (Inductor) at the largest step count, batch 1
    compile_models: tuple[str, ...] = ()
    #: models measured with the full-grid specs and the reference only (e.g. tango2: tango's architecture)
    lean_models: tuple[str, ...] = ()
    trim: bool = True  # Stable Audio Open's trim-latents specs
    steps: tuple[int, ...] = (10, 100)
    batches: tuple[int, ...] = (1, 10)
    repeats: int = 3
    duration_s: float = 10.0
    prompt: str = STUDY_PROMPT
    seed: int = 0
    size: str = "full"
    weights: str = "random"
    device: str | None = None
    ceiling_s: float = 5.0
    ceiling_n: int = 8192
    idle_s: float = 5.0
    #: a generation shorter than this is repeated inside one meter window (energy per call): the counter
    #: updates every ~100 ms, so sub-second windows carry a large edge error. Warm-ups are never repeated.
    min_window_s: float = 1.0
    codecarbon: bool = False
    profile: bool = True
    time_budget_s: float | None = None
    progress: Callable[[str], None] = print


@dataclass(frozen=True)
class LeverPlan:
    """One lever spec of one model and the (steps, batch) cells it is measured at."""

    spec: str
    cells: tuple[tuple[int, int], ...]
    repeats: int
    reference: bool = False


@dataclass
class CeilingResult:
    """The GPU's bf16 matrix-product limit as measured by the project's meter."""

    n: int
    iterations: int
    wall_s: float
    gpu_energy_J: float
    device: str

    @property
    def flop(self) -> float:
        return 2.0 * self.n ** 3 * self.iterations

    @property
    def tflop_per_s(self) -> float:
        return self.flop / self.wall_s / 1e12

    @property
    def tflop_per_J(self) -> float:
        return self.flop / self.gpu_energy_J / 1e12 if self.gpu_energy_J > 0 else float("nan")

    @property
    def power_W(self) -> float:
        return self.gpu_energy_J / self.wall_s if self.wall_s > 0 else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Small file helpers
# ---------------------------------------------------------------------------------------------------------
def append_csv(path: Path, row: dict[str, object]) -> None:
    """Append one row to a side table (header on creation), one write + fsync like the run table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    schema.repair_tail(path)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, encoding="utf-8") as fh:
            header = next(csv.reader([fh.readline()]))
        if header != list(row):
            raise LeversError(f"{path} has columns {', '.join(header)}; cannot append a row with other "
                              "columns")
    schema.append_line(path, _csv_line(list(row)), _csv_line([schema._format(v) for v in row.values()]))


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------------
# The ceiling
# ---------------------------------------------------------------------------------------------------------
def measure_ceiling(meter: Any, device: str = "cuda", seconds: float = 5.0, n: int = 8192) -> CeilingResult:
    """A bf16 ``n x n x n`` matrix-product loop of about ``seconds``, inside the meter's window.

    Random operands (zeros run faster on this hardware and would flatter the ceiling), one output buffer, a
    short calibration first so that the loop length is fixed before the measured window opens."""
    import torch

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32  # CPU bf16 matmul is an emulation
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    c = torch.empty(n, n, device=dev, dtype=dtype)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def loop(iterations: int) -> None:
        for _ in range(iterations):
            torch.matmul(a, b, out=c)
        sync()

    loop(3)  # cuBLAS handle and heuristics, clocks up
    t0 = time.perf_counter()
    loop(5)
    per = max((time.perf_counter() - t0) / 5, 1e-6)
    iterations = max(3, int(seconds / per))
    _, m = meter.measure(lambda phases: loop(iterations))
    return CeilingResult(n=n, iterations=iterations, wall_s=float(m.wall_s),
                         gpu_energy_J=float(m.gpu_energy_J), device=str(dev))


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------
def lever_plans(model: str, opts: LeversOptions) -> list[LeverPlan]:
    """The reference, then the three tiers (see :data:`FULL_GRID_SPECS`) and the model-specific specs."""
    from tta_energy.models.registry import adapter_class

    if not opts.steps or not opts.batches:
        raise LeversError("need at least one step count and one batch size")
    full = tuple((s, b) for b in sorted(set(opts.batches)) for s in sorted(set(opts.steps)))
    small = min(opts.batches)
    batch1 = tuple((s, small) for s in sorted(set(opts.steps)))
    single = ((max(opts.steps), small),)
    plans = [LeverPlan(REFERENCE_SPEC, batch1, 1, reference=True)]
    plans += [LeverPlan(parse_levers(s).spec, full, opts.repeats) for s in opts.full_specs]
    if model in opts.lean_models:
        return plans
    plans += [LeverPlan(parse_levers(s).spec, batch1, opts.repeats) for s in opts.batch1_specs]
    specs = list(opts.single_specs) + (list(COMPILE_SPECS) if model in opts.compile_models else [])
    plans += [LeverPlan(parse_levers(s).spec, single, opts.repeats) for s in specs]
    cls = adapter_class(model)
    if opts.trim and hasattr(cls, "latent_frames_for"):
        plans += [LeverPlan(s, full if on_full else single, opts.repeats) for s, on_full in TRIM_SPECS]
    seen: dict[str, LeverPlan] = {}
    for p in plans:  # a spec listed twice keeps its first (largest) plan
        seen.setdefault(p.spec, p)
    return list(seen.values())


def lever_signature(adapter: Any) -> tuple:
    """What a configuration actually runs: two specs with the same signature are the same configuration."""
    rec = adapter.applied_levers
    return (rec.dtype, tuple(sorted(rec.applied)), rec.notes.get("sdpa"), rec.notes.get("latent_frames"))


# ---------------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------------
class RecordingAdapter:
    """Passes everything to the adapter and keeps the last generation's output (for the equivalence check)."""

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter
        self.last: GenerationOutput | None = None

    def generate(self, request: GenerationRequest, phases: PhaseHook = no_phases) -> GenerationOutput:
        self.last = None
        out = self._adapter.generate(request, phases)
        self.last = out
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


#: How the fp32 reference runs its convolutions, all without TF32: cuDNN's heuristic choice, cuDNN timing
#: its engines (``cudnn.benchmark``), or PyTorch's own kernels (cuDNN off: im2col + SGEMM). The strict-fp32
#: AudioLDM UNet ran at 0.84 s per step on the H200 (158 W; data/h200/levers/part1), cuDNN's fp32
#: convolutions being the suspect: a 100-step reference would outlast the model's share of a device call.
#: Each mode is timed on one denoiser step (times in levers_configs.csv) and the fastest kept.
REFERENCE_CONV_MODES = ("cudnn", "cudnn-benchmark", "native")
#: denoising steps of the reference's warm-up: it only absorbs lazy set-up, its energy is not reported
REFERENCE_WARMUP_STEPS = 2


@contextlib.contextmanager
def strict_fp32(conv_mode: str = "cudnn") -> Iterator[None]:
    """No TF32 in matrix products or convolutions: the reference is plain fp32 (``conv_mode``: see
    :data:`REFERENCE_CONV_MODES`; none of them changes the precision)."""
    import torch

    if conv_mode not in REFERENCE_CONV_MODES:
        raise LeversError(f"unknown reference convolution mode {conv_mode!r}: "
                          f"choose one of {', '.join(REFERENCE_CONV_MODES)}")
    cudnn = torch.backends.cudnn
    saved = (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.enabled)
    torch.backends.cuda.matmul.allow_tf32 = False
    cudnn.allow_tf32 = False
    cudnn.benchmark = conv_mode == "cudnn-benchmark"
    cudnn.enabled = conv_mode != "native"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.enabled = saved


def select_reference_conv(adapter: Any, duration_s: float, repeats: int = 2) -> tuple[str, dict[str, float]]:
    """The fastest :data:`REFERENCE_CONV_MODES` entry for one fp32 denoiser step: (mode, ms per mode)."""
    from tta_energy.optimize import time_denoiser_step

    settings = {mode: functools.partial(strict_fp32, mode) for mode in REFERENCE_CONV_MODES}
    timings = time_denoiser_step(adapter, duration_s, settings, repeats)
    if not timings:
        raise LeversError(f"the fp32 reference of {adapter.name} runs under no convolution mode")
    return min(timings, key=timings.__getitem__), timings


@dataclass
class Prepared:
    plan: LeverPlan
    adapter: Any
    recorder: RecordingAdapter
    dtype: str
    failed: str = ""
    conv_mode: str = "cudnn"  # the reference's convolutions (REFERENCE_CONV_MODES)


@dataclass
class ModelRun:
    """State of one model's sweep inside :func:`run_levers`."""

    model: str
    opts: LeversOptions
    run_id: str
    meter: Any
    provenance: dict[str, object]
    trace_path: str
    deadline: float | None = None  # perf_counter time after which no generation starts
    references: dict[int, GenerationOutput] = field(default_factory=dict)
    measured: int = 0
    stopped: bool = False
    #: seconds each (spec, steps, batch) took last, to predict whether the next one fits the budget
    walls: dict[tuple[str, int, int], float] = field(default_factory=dict)
    flops_cache: dict[tuple, dict] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return Path(self.opts.out_dir)

    def predicted_s(self, spec: str, steps: int, batch: int) -> float:
        """The last wall time of this cell, else the warm-up's (at fewer steps) scaled by steps, else 0."""
        if (spec, steps, batch) in self.walls:
            return self.walls[(spec, steps, batch)]
        known = [(s, w) for (sp, s, b), w in self.walls.items() if sp == spec and b == batch]
        return max((w * steps / s for s, w in known), default=0.0)

    def budget_left(self, spec: str = "", steps: int = 0, batch: int = 0) -> bool:
        """True when a generation of this cell is predicted to end before the model's deadline."""
        if self.deadline is None:
            return True
        return time.perf_counter() + self.predicted_s(spec, steps, batch) < self.deadline

    def config(self, steps: int, batch: int) -> Config:
        return Config(experiment=EXPERIMENT, model=self.model, steps=steps, prompts=(self.opts.prompt,),
                      waveforms_per_prompt=batch, duration_s=self.opts.duration_s, seed=self.opts.seed)

    def row_context(self, spec: str) -> RowContext:
        sweep = SweepOptions(model=self.model, experiments=(EXPERIMENT,), size=self.opts.size,
                             weights=self.opts.weights, optimize=spec, seed=self.opts.seed)
        return RowContext(sweep, self.run_id, 0, self.provenance, self.trace_path)

    def measure(self, p: Prepared, steps: int, batch: int, repeat: int, warmup: bool) -> dict[str, object]:
        cfg = self.config(steps, batch)
        item = Item(cfg, repeat, config_id(cfg, size=self.opts.size, weights=self.opts.weights,
                                           optimize=p.plan.spec, dtype=p.dtype), p.dtype)
        guard = strict_fp32(p.conv_mode) if p.plan.reference else contextlib.nullcontext()
        saved = self.meter.min_window_s
        if warmup:  # the one-time cost is in the first call only
            self.meter.min_window_s = 0.0
        try:
            with guard:
                row = measure_one(self.meter, p.recorder, self.row_context(p.plan.spec), EXPERIMENT, item,
                                  warmup)
        finally:
            self.meter.min_window_s = saved
        schema.append_row(self.out_dir / RUNS_FILE, row)
        if row["status"] == "ok":
            calls = row.get("meter_calls")
            per_call = float(row["wall_s"])
            repeated = calls if isinstance(calls, int | float) and not math.isnan(float(calls)) else 1
            self.walls[(p.plan.spec, steps, batch)] = per_call * max(1.0, float(repeated))
        if not warmup:
            self.measured += 1
        return row


def _nominal_calls(adapter: Any, steps: int) -> float:
    """Denoiser calls for ``steps`` (NaN where the model's sampler cannot run that many steps)."""
    try:
        return float(adapter.denoiser_calls(steps))
    except TtaError:
        return float("nan")


def _describe_flops(model: str, opts: LeversOptions, adapter: Any, plan: LeverPlan,
                    cache: dict[tuple, dict]) -> dict[tuple[int, int], dict]:
    """GFLOP per cell from ``describe`` on a meta-device copy with the same latent length (``cache``: one
    description per latent length and batch)."""
    from tta_energy.models.describe import describe_adapter
    from tta_energy.models.registry import build_model

    meta = None
    latent_length = getattr(adapter, "latent_length", None)
    out: dict[tuple[int, int], dict] = {}
    for batch in sorted({b for _, b in plan.cells}):
        key = (model, latent_length, batch)
        if key not in cache:
            if meta is None:
                meta = build_model(model, size=opts.size, weights="random", device="meta", dtype="float32")
                if latent_length is not None and hasattr(meta, "latent_length"):
                    meta.latent_length = latent_length
            cache[key] = {"describe": describe_adapter(meta, duration_s=opts.duration_s, batch=batch),
                          "calls": {s: _nominal_calls(meta, s) for s in opts.steps}}
        d = cache[key]["describe"]
        for steps in sorted({s for s, b in plan.cells if b == batch}):
            calls = cache[key]["calls"].get(steps, float(steps))
            total = calls * float(d["gflop_per_step"]) + float(d["gflop_per_generation"])
            out[(steps, batch)] = {"gflop_per_step": float(d["gflop_per_step"]),
                                   "gflop_per_generation": float(d["gflop_per_generation"]),
                                   "denoiser_calls_nominal": calls, "gflop": total}
    return out


def weights_fingerprint(adapter: Any) -> float:
    """Sum of every parameter (float64): equal across builds when every configuration has the same weights."""
    import torch

    total = torch.zeros((), dtype=torch.float64, device=adapter.device)
    seen: set[int] = set()
    for module in adapter.components().values():
        for param in module.parameters():
            if id(param) not in seen:
                seen.add(id(param))
                total += param.detach().to(torch.float64).sum()
    return float(total)


def _build(run: ModelRun) -> Any:
    """The model in fp32 exactly as the study's code builds it; random replicas are seeded, so every build has
    the same weights (checked through :func:`weights_fingerprint`). Each configuration gets its own build:
    levers change modules in place, and some modules cannot be deep-copied (weight-norm convolutions)."""
    from tta_energy.models.registry import build_model

    o = run.opts
    return build_model(run.model, size=o.size, weights=o.weights, device=_device(o), dtype="float32")


def _prepare(run: ModelRun, plans: list[LeverPlan]) -> tuple[list[Prepared], list[str]]:
    """A fresh fp32 build per spec with its levers applied; duplicates and failures dropped with a note."""
    prepared: list[Prepared] = []
    notes: list[str] = []
    signatures: dict[tuple, str] = {}
    fingerprint: float | None = None
    for plan in sorted(plans, key=lambda p: not p.reference):  # the reference first
        adapter = None
        try:
            adapter = _build(run)
            fp = weights_fingerprint(adapter)
            fingerprint = fp if fingerprint is None else fingerprint
            if not math.isclose(fp, fingerprint, rel_tol=1e-12, abs_tol=1e-9):
                raise LeversError(f"weights differ from the reference build (fingerprint {fp!r} vs "
                                  f"{fingerprint!r}); the equivalence check needs identical weights")
            adapter = apply_levers(adapter, plan.spec, duration_s=run.opts.duration_s)
        except (TtaError, RuntimeError, ValueError) as exc:
            notes.append(f"{plan.spec}: not run ({one_line(exc)})")
            _write_config_row(run, plan, None, f"not run: {one_line(exc)}", {})
            del adapter
            free_memory()
            continue
        sig = lever_signature(adapter)
        if sig in signatures and not plan.reference:
            notes.append(f"{plan.spec}: same configuration as {signatures[sig]} for {run.model}; "
                         "not repeated")
            _write_config_row(run, plan, adapter, f"same as {signatures[sig]}", {})
            del adapter
            free_memory()
            continue
        if not plan.reference:
            signatures.setdefault(sig, plan.spec)
        prepared.append(Prepared(plan, adapter, RecordingAdapter(adapter), adapter.applied_levers.dtype))
    return prepared, notes


def _write_config_row(run: ModelRun, plan: LeverPlan, adapter: Any | None, status: str,
                      flops: dict[tuple[int, int], dict]) -> None:
    rec = getattr(adapter, "applied_levers", None) if adapter is not None else None
    for (steps, batch) in plan.cells:
        f = flops.get((steps, batch), {})
        append_csv(run.out_dir / CONFIGS_FILE, {
            "run_id": run.run_id, "model": run.model, "optimize": plan.spec, "steps": steps,
            "waveforms_per_prompt": batch, "status": status,
            "dtype": rec.dtype if rec else "", "applied": "+".join(rec.applied) if rec else "",
            "skipped": json.dumps(rec.skipped) if rec else "", "notes": json.dumps(rec.notes) if rec else "",
            "changes_behaviour": bool(rec.levers.changes_behaviour) if rec else False,
            "latent_length": getattr(adapter, "latent_length", np.nan) if adapter is not None else np.nan,
            "gflop_per_step": f.get("gflop_per_step", np.nan),
            "gflop_per_generation": f.get("gflop_per_generation", np.nan),
            "denoiser_calls_nominal": f.get("denoiser_calls_nominal", np.nan),
            "gflop": f.get("gflop", np.nan),
        })


def _record_equivalence(run: ModelRun, p: Prepared, steps: int, batch: int, repeat: int) -> None:
    out = p.recorder.last
    ref = run.references.get(steps)
    if batch != 1 or out is None or ref is None:
        return
    append_csv(run.out_dir / EQUIVALENCE_FILE, {
        "run_id": run.run_id, "model": run.model, "optimize": p.plan.spec, "dtype": p.dtype, "steps": steps,
        "waveforms_per_prompt": batch, "repeat": repeat,
        "rel_error_latents": relative_error(out.latents, ref.latents),
        "rel_error_audio": relative_error(out.waveforms, ref.waveforms),
    })


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


def _profile(run: ModelRun, prepared: list[Prepared], ceiling_tflops: float) -> None:
    import torch

    if not torch.cuda.is_available() or not run.opts.profile:
        return
    for p in prepared:
        if p.plan.spec not in ("max", "none") or p.failed:
            continue
        for batch in sorted({b for _, b in p.plan.cells}):
            if not run.budget_left():
                return
            try:
                res = profile_step(p.adapter, run.opts.duration_s, batch)
            except Exception as exc:  # profiling is diagnostic: a failure is noted, never fatal
                run.opts.progress(f"{run.model} {p.plan.spec}: step profile failed ({one_line(exc)})")
                continue
            flops = _describe_flops(run.model, run.opts, p.adapter, LeverPlan(p.plan.spec, ((1, batch),), 1),
                                    run.flops_cache)
            gflop = flops[(1, batch)]["gflop_per_step"]
            append_csv(run.out_dir / PROFILE_FILE, {
                "run_id": run.run_id, "model": run.model, "optimize": p.plan.spec,
                "waveforms_per_prompt": batch, **{k: round(float(v), 4) for k, v in res.items()},
                "gflop_per_step": gflop,
                "flop_bound_ms": gflop / ceiling_tflops if ceiling_tflops > 0 else np.nan,
            })
            free_memory()


def _run_model(run: ModelRun, ceiling_tflops: float) -> list[str]:
    import torch

    opts = run.opts
    say = opts.progress
    plans = lever_plans(run.model, opts)
    prepared, notes = _prepare(run, plans)
    for note in notes:
        say(f"{run.model}: {note}")
    reference = next((p for p in prepared if p.plan.reference), None)
    if reference is not None:
        reference.conv_mode, conv_ms = select_reference_conv(reference.adapter, opts.duration_s)
        reference.adapter.applied_levers.notes.update(reference_conv=reference.conv_mode,
                                                      reference_conv_ms=conv_ms)
    for p in prepared:
        flops = _describe_flops(run.model, opts, p.adapter, p.plan, run.flops_cache)
        _write_config_row(run, p.plan, p.adapter, "ok", flops)
        say(f"{run.model} {p.plan.spec}: {p.adapter.applied_levers.summary()}")
    # warm-ups: the one-time cost (compilation, capture, lazy init) of each configuration and batch size
    if reference is None:
        say(f"{run.model}: no fp32 reference; the equivalence check is left out")
    warm_steps = min(opts.steps)  # cheap; where the plan has this cell too, it gives the one-time cost
    for p in prepared:  # the reference is first: it also takes the process's one-time CUDA/cuBLAS set-up
        for batch in sorted({b for _, b in p.plan.cells}):
            if not run.budget_left():
                run.stopped = True
                break
            steps = min(warm_steps, REFERENCE_WARMUP_STEPS) if p.plan.reference else warm_steps
            row = run.measure(p, steps, batch, 0, warmup=True)
            if row["status"] != "ok":
                p.failed = str(row.get("error", row["status"]))
                say(f"{run.model} {p.plan.spec}: warm-up failed ({p.failed}); configuration left out")
                break
    # the reference outputs (fp32 eager, batch 1)
    for steps, batch in reference.plan.cells if reference is not None else ():
        if reference.failed or not run.budget_left():  # no reference, no equivalence: not skipped by a guess
            break
        row = run.measure(reference, steps, batch, 0, warmup=False)
        if row["status"] == "ok" and reference.recorder.last is not None and batch == 1:
            out = reference.recorder.last
            run.references[steps] = GenerationOutput(out.waveforms, out.sample_rate, out.denoiser_calls,
                                                     None if out.latents is None else out.latents.cpu())
            _record_equivalence(run, reference, steps, batch, 0)
    # measured rounds: every cell once per round, seeded random order
    rounds = max(p.plan.repeats for p in prepared)
    target = (max(opts.steps), min(opts.batches))
    for repeat in range(rounds):
        cells = [(p, s, b) for p in prepared
                 if not p.plan.reference and not p.failed and repeat < p.plan.repeats
                 for s, b in p.plan.cells]
        random.Random(f"{opts.seed}-{run.model}-{repeat}").shuffle(cells)
        # the targets' cell (most steps, batch 1) first, still in random order among its specs: a round cut by
        # the time budget then still holds the comparison the targets need
        cells.sort(key=lambda cell: (cell[1], cell[2]) != target)
        for p, steps, batch in cells:
            if not run.budget_left(p.plan.spec, steps, batch):
                run.stopped = True
                continue  # a shorter cell later in the round may still fit
            row = run.measure(p, steps, batch, repeat, warmup=False)
            if row["status"] == "ok":
                _record_equivalence(run, p, steps, batch, repeat)
            p.recorder.last = None
        if run.stopped:
            break
    if not run.stopped:
        _profile(run, prepared, ceiling_tflops)
    for p in prepared:  # free the graphs' memory pools before the next model
        if isinstance(p.adapter.denoiser, DenoiserWrapper):
            p.adapter.denoiser = p.adapter.denoiser.base_module
    del prepared
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return notes


def _device(opts: LeversOptions) -> str:
    import torch

    if opts.device is not None:
        if opts.device.startswith("cuda") and not torch.cuda.is_available():
            raise LeversError("--device cuda was asked for but torch sees no GPU (use --device cpu)")
        return opts.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check(opts: LeversOptions) -> None:
    from tta_energy.models.registry import MODEL_NAMES

    if not opts.models:
        raise LeversError("no model given")
    for m in opts.models:
        if m not in MODEL_NAMES:
            raise LeversError(f"unknown model {m!r}: choose one of {', '.join(MODEL_NAMES)}")
    if opts.repeats < 1:
        raise LeversError(f"--repeats must be >= 1, got {opts.repeats}")
    if any(s < 1 for s in opts.steps) or any(b < 1 for b in opts.batches):
        raise LeversError("steps and batch sizes must be >= 1")
    if not opts.duration_s > 0:
        raise LeversError(f"--duration must be > 0 s, got {opts.duration_s}")
    if opts.min_window_s < 0:
        raise LeversError(f"--min-window must be >= 0 s, got {opts.min_window_s}")
    if opts.ceiling_s <= 0 or opts.ceiling_n < 16:
        raise LeversError("--ceiling-s must be > 0 and --ceiling-n >= 16")
    for s in (*opts.full_specs, *opts.batch1_specs, *opts.single_specs):
        parse_levers(s)  # a bad spec fails before any model is built
    for m in (*opts.compile_models, *opts.lean_models):
        if m not in opts.models:
            raise LeversError(f"{m} is named in --compile-models/--lean-models but not in --models")


def run_levers(opts: LeversOptions) -> Path:
    """Run the levers sweep for every model of ``opts``; returns the output folder."""
    _check(opts)
    say = opts.progress
    device = _device(opts)
    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    start = time.perf_counter()
    trace = out_dir / "traces" / f"levers-{run_id}.csv.gz"
    trace.parent.mkdir(parents=True, exist_ok=True)
    sweep = SweepOptions(model=opts.models[0], experiments=(EXPERIMENT,), codecarbon=opts.codecarbon,
                         min_window_s=opts.min_window_s)
    meter = make_meter(sweep, device, trace)
    with meter:
        provenance = dict(meter.provenance())
        if opts.idle_s > 0:
            meter.measure_idle(opts.idle_s)
        ceilings = [_ceiling_row(meter, device, opts, run_id, "start", provenance)]
        say(f"ceiling (start): {ceilings[0].tflop_per_J:.3f} TFLOP/J, {ceilings[0].tflop_per_s:.0f} TFLOP/s, "
            f"{ceilings[0].power_W:.0f} W")
        reserve = opts.ceiling_s + 5.0  # the closing ceiling measurement
        for i, model in enumerate(opts.models):
            deadline = None
            if opts.time_budget_s is not None:
                left = opts.time_budget_s - (time.perf_counter() - start) - reserve
                weights = [MODEL_COST.get(m, 1.0) * (0.5 if m in opts.lean_models else 1.0)
                           for m in opts.models[i:]]
                deadline = time.perf_counter() + max(0.0, left) * weights[0] / sum(weights)
                if left <= 0:
                    say(f"{model}: not started (time budget spent)")
                    continue
            run = ModelRun(model, opts, run_id, meter, provenance, meter.trace_file, deadline)
            t0 = time.perf_counter()
            try:
                _run_model(run, ceilings[0].tflop_per_s)
            except Exception as exc:  # one model failing never loses the others' rows
                say(f"{model}: levers sweep failed ({one_line(exc)})")
                free_memory()
            say(f"{model}: {run.measured} generations measured in {time.perf_counter() - t0:.0f} s"
                + (" (stopped: time budget)" if run.stopped else ""))
        end = _ceiling_row(meter, device, opts, run_id, "end", provenance)
        say(f"ceiling (end): {end.tflop_per_J:.3f} TFLOP/J, {end.tflop_per_s:.0f} TFLOP/s, "
            f"{end.power_W:.0f} W")
    return out_dir


def ceiling_record(res: CeilingResult, run_id: str, when: str,
                   provenance: dict[str, object]) -> dict[str, object]:
    """One row of ``levers_ceiling.csv``."""
    return {"run_id": run_id, "when": when, "device": res.device, "gpu_name": provenance.get("gpu_name", ""),
            "n": res.n, "iterations": res.iterations, "wall_s": res.wall_s, "gpu_energy_J": res.gpu_energy_J,
            "tflop_per_s": res.tflop_per_s, "tflop_per_J": res.tflop_per_J, "power_W": res.power_W,
            "timestamp": now_iso()}


def _ceiling_row(meter: Any, device: str, opts: LeversOptions, run_id: str, when: str,
                 provenance: dict[str, object]) -> CeilingResult:
    res = measure_ceiling(meter, device, opts.ceiling_s, opts.ceiling_n)
    append_csv(Path(opts.out_dir) / CEILING_FILE, ceiling_record(res, run_id, when, provenance))
    return res


def measure_ceiling_once(device: str | None = None, seconds: float = 5.0, n: int = 8192,
                         out: Path | None = None) -> dict[str, object]:
    """The ceiling on its own (``tta-energy levers ceiling``, ``benchmarks/ceiling.py``): one meter session,
    one loop; the row is appended to ``out`` when given."""
    if seconds <= 0 or n < 16:
        raise LeversError("the ceiling loop needs seconds > 0 and n >= 16")
    dev = _device(LeversOptions(models=(), device=device))
    meter = make_meter(SweepOptions(model="", experiments=(EXPERIMENT,), codecarbon=False), dev, None)
    with meter:
        res = measure_ceiling(meter, dev, seconds, n)
        row = ceiling_record(res, new_run_id(), "standalone", dict(meter.provenance()))
    if out is not None:
        append_csv(Path(out), row)
    return row


# ---------------------------------------------------------------------------------------------------------
# Report: levers.csv, levers_summary.md, levers.png
# ---------------------------------------------------------------------------------------------------------
LEVERS_COLUMNS: tuple[str, ...] = (
    "run_id", "model", "size", "weights", "optimize", "dtype", "applied", "skipped", "changes_behaviour",
    "duration_s", "steps", "waveforms_per_prompt", "repeats", "wall_s", "gpu_energy_J", "gpu_energy_J_std",
    "energy_per_clip_J", "energy_per_10s_clip_J", "energy_per_step_J", "denoising_share", "reduction_vs_none",
    "gflop", "rel_error_latents", "rel_error_audio", "yardstick_latents", "yardstick_audio",
    "tolerance_latents", "tolerance_audio", "lossless", "flop_per_joule", "ceiling_flop_per_joule",
    "fraction_of_ceiling", "compile_s", "compile_J",
    "payoff_clips",
)


def _read_side(dirs: Sequence[Path], name: str) -> pd.DataFrame:
    frames = [pd.read_csv(d / name) for d in dirs if (d / name).is_file() and (d / name).stat().st_size > 0]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _yardsticks(eq: pd.DataFrame) -> dict[tuple[str, str, str, int], tuple[float, float]]:
    """Per (run, model, dtype, steps): the plain eager error at that precision (``none`` or the precision
    lever alone), the precision's normal error against fp32."""
    out: dict[tuple[str, str, str, int], tuple[float, float]] = {}
    if eq.empty:
        return out
    # not the reference itself (its error is 0 by definition): at fp32 the yardstick is `none` where that is
    # fp32, i.e. what PyTorch's defaults (cuDNN's TF32 convolutions) do to the study's own configuration
    plain = {"none", "fp16", "bf16"}
    groups = eq.groupby(["run_id", "model", "optimize", "dtype", "steps"])
    for (run_id, model, optimize, dtype, steps), g in groups:
        if optimize not in plain:
            continue
        key = (run_id, model, dtype, int(steps))
        out.setdefault(key, (float(g["rel_error_latents"].max()), float(g["rel_error_audio"].max())))
    return out


def levers_table(dirs: Sequence[Path]) -> pd.DataFrame:
    """One row per (run, model, spec, steps, batch): energy, equivalence, FLOP/J vs ceiling, compile cost."""
    frames = [schema.read_runs(d / RUNS_FILE) for d in dirs if (d / RUNS_FILE).is_file()]
    if not frames:
        raise LeversError(f"no {RUNS_FILE} under {', '.join(map(str, dirs))}")
    runs = pd.concat(frames, ignore_index=True)
    runs = runs[runs["experiment"] == EXPERIMENT]
    eq = _read_side(dirs, EQUIVALENCE_FILE)
    cfg = _read_side(dirs, CONFIGS_FILE)
    ceil = _read_side(dirs, CEILING_FILE)
    keys = ["run_id", "model", "optimize", "steps", "waveforms_per_prompt"]
    ok = runs[(runs["status"] == "ok") & (~runs["is_warmup"])].copy()
    if ok.empty:
        raise LeversError("no measured levers rows with status ok")
    ok["clip_s"] = ok["audio_seconds"] / ok["n_clips"].astype(float)
    agg = ok.groupby(keys, dropna=False).agg(
        size=("size", "first"), weights=("weights", "first"), dtype=("dtype", "first"),
        duration_s=("duration_s", "first"),
        repeats=("gpu_energy_J", "size"), wall_s=("wall_s", "mean"), gpu_energy_J=("gpu_energy_J", "mean"),
        gpu_energy_J_std=("gpu_energy_J", "std"), n_clips=("n_clips", "first"), clip_s=("clip_s", "mean"),
        energy_denoising_J=("energy_denoising_J", "mean"), denoiser_calls=("denoiser_calls", "mean"),
    ).reset_index()
    agg["energy_per_clip_J"] = agg["gpu_energy_J"] / agg["n_clips"].astype(float)
    agg["energy_per_10s_clip_J"] = agg["energy_per_clip_J"] * 10.0 / agg["clip_s"]
    agg["energy_per_step_J"] = agg["energy_denoising_J"] / agg["denoiser_calls"]
    agg["denoising_share"] = agg["energy_denoising_J"] / agg["gpu_energy_J"]
    none = agg[agg["optimize"] == "none"].set_index(["run_id", "model", "steps", "waveforms_per_prompt"])
    idx = pd.MultiIndex.from_frame(agg[["run_id", "model", "steps", "waveforms_per_prompt"]])
    none_clip = none["energy_per_clip_J"].reindex(idx).to_numpy()
    agg["reduction_vs_none"] = none_clip / agg["energy_per_clip_J"].to_numpy()
    # what was applied, FLOPs
    if not cfg.empty:
        c = cfg[cfg["status"] == "ok"].drop_duplicates(keys)
        agg = agg.merge(c[[*keys, "applied", "skipped", "changes_behaviour", "gflop"]], on=keys, how="left")
    else:
        for col in ("applied", "skipped", "changes_behaviour", "gflop"):
            agg[col] = np.nan
    agg["changes_behaviour"] = agg["changes_behaviour"].map(lambda v: str(v).lower() == "true")
    # equivalence (batch-1 error of the same spec and steps applies to every batch of the spec)
    yard = _yardsticks(eq)
    if not eq.empty:
        worst = eq.groupby(["run_id", "model", "optimize", "steps"]).agg(
            rel_error_latents=("rel_error_latents", "max"), rel_error_audio=("rel_error_audio", "max")
        ).reset_index()
        agg = agg.merge(worst, on=["run_id", "model", "optimize", "steps"], how="left")
    else:
        agg["rel_error_latents"] = np.nan
        agg["rel_error_audio"] = np.nan
    # where the plain run at this precision was measured at another step count only, its largest error
    any_steps: dict[tuple[str, str, str], tuple[float, float]] = {}
    for (run_id, model, dtype, _), (lat, wav) in yard.items():
        old = any_steps.get((run_id, model, dtype), (-np.inf, -np.inf))
        any_steps[(run_id, model, dtype)] = (max(old[0], lat), max(old[1], wav))
    ys = [yard.get((r.run_id, r.model, r.dtype, int(r.steps)),
                   any_steps.get((r.run_id, r.model, r.dtype), (np.nan, np.nan))) for r in agg.itertuples()]
    agg["yardstick_latents"] = [y[0] for y in ys]
    agg["yardstick_audio"] = [y[1] for y in ys]
    agg["tolerance_latents"] = [error_tolerance(r.dtype, r.yardstick_latents) for r in agg.itertuples()]
    agg["tolerance_audio"] = [error_tolerance(r.dtype, r.yardstick_audio) for r in agg.itertuples()]
    agg["lossless"] = [r.optimize == REFERENCE_SPEC or (
        is_lossless(r.optimize, r.dtype, r.rel_error_latents, r.yardstick_latents)
        and (r.yardstick_audio >= UNINFORMATIVE_ERROR
             or is_lossless(r.optimize, r.dtype, r.rel_error_audio, r.yardstick_audio)))
        for r in agg.itertuples()]
    # FLOP per joule against the ceiling measured in the same run
    agg["flop_per_joule"] = agg["gflop"] * 1e9 / agg["gpu_energy_J"]
    if not ceil.empty:
        per_run = ceil.groupby("run_id")["tflop_per_J"].mean() * 1e12
        agg["ceiling_flop_per_joule"] = agg["run_id"].map(per_run)
    else:
        agg["ceiling_flop_per_joule"] = np.nan
    agg["fraction_of_ceiling"] = agg["flop_per_joule"] / agg["ceiling_flop_per_joule"]
    # one-time cost: warm-up minus a steady generation of the same cell; payoff against none's energy per clip
    warm = runs[(runs["status"] == "ok") & (runs["is_warmup"])]
    w = warm.groupby(keys)[["wall_s", "gpu_energy_J"]].mean().rename(
        columns={"wall_s": "warm_wall_s", "gpu_energy_J": "warm_J"}).reset_index()
    steady = agg.merge(w, on=keys, how="inner")
    steady["compile_s"] = (steady["warm_wall_s"] - steady["wall_s"]).clip(lower=0.0)
    steady["compile_J"] = (steady["warm_J"] - steady["gpu_energy_J"]).clip(lower=0.0)
    cost = steady[["run_id", "model", "optimize", "waveforms_per_prompt", "compile_s", "compile_J"]]
    agg = agg.merge(cost, on=["run_id", "model", "optimize", "waveforms_per_prompt"], how="left")
    saving = none_clip - agg["energy_per_clip_J"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        payoff = np.where(saving > 0, agg["compile_J"].to_numpy() / saving, np.inf)
    payoff = np.where(np.isnan(none_clip), np.nan, payoff)  # no `none` in the same run and cell: unknown
    agg["payoff_clips"] = np.where(agg["optimize"] == "none", np.nan, np.ceil(payoff))
    agg["payoff_clips"] = agg["payoff_clips"].where(agg["compile_J"].notna(), np.nan)
    return agg.reindex(columns=list(LEVERS_COLUMNS)).sort_values(
        ["model", "waveforms_per_prompt", "steps", "optimize"]).reset_index(drop=True)


def _ratio(x: float) -> str:
    """A reduction or saving factor: ``4.21x``, or ``n/a``."""
    return f"{x:.2f}x" if np.isfinite(x) else "n/a"


def _fmt(x: float, spec: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def target_cell(table: pd.DataFrame) -> tuple[int, int]:
    """(steps, batch) of the whole-generation target: 100 steps, batch 1 where measured, else the largest step
    count and the smallest batch (a short test run)."""
    steps = 100 if (table["steps"] == 100).any() else int(table["steps"].max())
    batch = 1 if (table["waveforms_per_prompt"] == 1).any() else int(table["waveforms_per_prompt"].min())
    return steps, batch


def _limits_text(model: str, best: pd.Series | None, profile: pd.DataFrame) -> str:
    """What the measurements say limits a model: the eager share of the generation outside the denoising
    loop, launch gaps, the kernel mix of a step, and the time its FLOPs would take at the ceiling's rate."""
    parts = []
    if best is not None and math.isfinite(float(best.get("denoising_share", np.nan))):
        other = 1.0 - float(best["denoising_share"])
        parts.append(f"outside the denoising loop (text encoding, decoding, vocoder; eager) {other:.0%} of "
                     f"`{best['optimize']}`'s energy")
    rows = profile[profile["model"] == model] if not profile.empty else profile
    for r in rows.sort_values(["optimize", "waveforms_per_prompt"]).itertuples() if not rows.empty else ():
        k = max(float(r.kernel_ms), 1e-9)
        mix = (f"matmul {r.matmul_ms / k:.0%}, conv {r.conv_ms / k:.0%}, attention {r.attention_ms / k:.0%}, "
               f"other (elementwise, normalisation, copies: memory-bound) {r.other_ms / k:.0%}")
        if r.optimize == "none":
            busy = k / max(float(r.eager_step_ms), 1e-9)
            parts.append(f"`none` batch {r.waveforms_per_prompt}: an eager step takes "
                         f"{_fmt(r.eager_step_ms)} ms with kernels busy {_fmt(r.kernel_ms)} ms ({busy:.0%}; "
                         f"the rest is launch overhead)")
        else:
            graph = float(r.graph_step_ms)
            parts.append(f"`{r.optimize}` batch {r.waveforms_per_prompt}: a step takes {_fmt(graph)} ms as "
                         f"a CUDA graph ({_fmt(r.eager_step_ms)} ms eager); kernels {_fmt(r.kernel_ms)} ms: "
                         f"{mix}; its FLOPs at the ceiling's rate would take "
                         f"{_fmt(r.flop_bound_ms, '.3f')} ms "
                         f"({r.flop_bound_ms / graph if graph > 0 else float('nan'):.0%} of the step)")
    return "; ".join(parts) if parts else "no step profile measured"


def summary_markdown(table: pd.DataFrame, ceiling: pd.DataFrame, profile: pd.DataFrame) -> str:
    """The short markdown summary: each target met or missed (by how much, and the measured limits)."""
    steps, batch = target_cell(table)
    duration = float(table["duration_s"].iloc[0]) if "duration_s" in table else 10.0
    lines = ["# Energy levers: summary", ""]
    if not ceiling.empty:
        c = ceiling
        gpu = ", ".join(sorted({str(g) for g in c.get("gpu_name", pd.Series(dtype=str)).dropna() if str(g)}))
        lines.append(f"Ceiling (bf16 {int(c['n'].iloc[0])}^3 matrix products, measured with the project's "
                     f"meter at the start and end of each run{', ' + gpu if gpu else ''}): "
                     f"{_fmt(c['tflop_per_J'].mean(), '.3f')} TFLOP/J (range "
                     f"{_fmt(c['tflop_per_J'].min(), '.3f')}-{_fmt(c['tflop_per_J'].max(), '.3f')}), "
                     f"{_fmt(c['tflop_per_s'].mean(), '.3g')} TFLOP/s at "
                     f"{_fmt(c['power_W'].mean(), '.0f')} W.")
        lines.append("")
    lines += ["Lossless: final latents and waveform of the same seed and weights within max(2 x the "
              "plain eager error at the same precision, a floor: fp32 1e-4, fp16 2e-3, bf16 1.6e-2) of the "
              "fp32 eager reference (relative L2 error; the waveform is not judged at a precision whose "
              f"plain eager waveform error is >= {UNINFORMATIVE_ERROR}). `trim-latents` changes the model's "
              "behaviour and is never lossless.", "",
              f"## Whole generation, {duration:g} s, {steps} steps, batch {batch}: best lossless "
              "configuration vs `none`",
              "", "| model | `none` J/clip | best lossless | J/clip | reduction | target | met |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    misses: list[str] = []
    unmeasured: list[str] = []
    cell = table[(table["steps"] == steps) & (table["waveforms_per_prompt"] == batch)]
    for model in sorted(table["model"].unique()):
        rows = cell[cell["model"] == model]
        none = rows[(rows["optimize"] == "none") & rows["energy_per_clip_J"].notna()]
        cand = rows[rows["lossless"] & (rows["optimize"] != REFERENCE_SPEC)
                    & rows["reduction_vs_none"].notna()]
        target = REDUCTION_TARGETS.get(model, float("nan"))
        if none.empty or cand.empty:
            lines.append(f"| {model} | n/a | n/a | n/a | n/a | {target}x | not measured |")
            unmeasured.append(f"- {model}: no GPU energy for `none` and a lossless configuration at {steps} "
                              f"steps, batch {batch}")
            continue
        best = cand.loc[cand["energy_per_clip_J"].idxmin()]
        none = none[none["run_id"] == best["run_id"]]  # the reduction is against the same run's default
        red = float(best["reduction_vs_none"])
        met = red >= target
        lines.append(f"| {model} | {none['energy_per_clip_J'].iloc[0]:.1f} | `{best['optimize']}` | "
                     f"{best['energy_per_clip_J']:.1f} | {red:.2f}x | {target}x | {'yes' if met else 'no'} |")
        if not met:
            outside = float(best["energy_per_clip_J"]) * (1.0 - float(best["denoising_share"]))
            bound = float(none["energy_per_clip_J"].iloc[0]) / outside if outside > 0 else float("nan")
            # the FLOP/J the whole generation would need for the target, against the ceiling of the same run
            need = (float(best["gflop"]) * 1e9 * target / float(none["energy_per_clip_J"].iloc[0])
                    / float(best["ceiling_flop_per_joule"]))
            reached = float(best["fraction_of_ceiling"]) * 100
            misses.append(f"- **{model}**: {red:.2f}x, short of {target}x by a factor {target / red:.2f}. "
                          f"With the rest of the generation as measured, even a free denoising loop would "
                          f"give at most {_fmt(bound)}x. The target needs {_fmt(need * 100, '.0f')}% of the "
                          f"ceiling's FLOP per joule over the whole generation at batch {batch}; "
                          f"`{best['optimize']}` reaches {_fmt(reached, '.0f')}%. "
                          "Measured: " + _limits_text(model, best, profile) + ".")
    lines += ["", "## Best configuration at any batch size: FLOP per joule against the ceiling", "",
              "| model | configuration | steps | batch | TFLOP/J | fraction of ceiling | target | met |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model in sorted(table["model"].unique()):
        # not the reference: it runs with TF32 and cuDNN off, a yardstick nobody would deploy
        rows = table[(table["model"] == model) & table["lossless"] & table["fraction_of_ceiling"].notna()
                     & (table["optimize"] != REFERENCE_SPEC)]
        target = CEILING_TARGETS.get(model, DEFAULT_CEILING_TARGET)
        if rows.empty:
            lines.append(f"| {model} | n/a | | | | n/a | {target:.0%} | not measured |")
            unmeasured.append(f"- {model}: no FLOP per joule (GPU energy or ceiling missing)")
            continue
        best = rows.loc[rows["fraction_of_ceiling"].idxmax()]
        frac = float(best["fraction_of_ceiling"])
        met = frac >= target
        lines.append(f"| {model} | `{best['optimize']}` | {int(best['steps'])} | "
                     f"{int(best['waveforms_per_prompt'])} | {best['flop_per_joule'] / 1e12:.3f} | "
                     f"{frac:.0%} | {target:.0%} | {'yes' if met else 'no'} |")
        if not met:
            misses.append(f"- **{model}** (ceiling): {frac:.0%} of the ceiling's FLOP/J, short of "
                          f"{target:.0%} by {(target - frac) * 100:.0f} points (`{best['optimize']}`, "
                          f"{int(best['steps'])} steps, batch {int(best['waveforms_per_prompt'])}). "
                          "Measured: "
                          + _limits_text(model, best, profile) + ".")
    lines += ["", "## Targets missed and what limits them", ""]
    if misses:
        lines += misses
    elif unmeasured:
        lines.append("No measured target was missed; some were not measured:")
    else:
        lines.append("All targets met.")
    lines += unmeasured
    flagged = table[(~table["lossless"]) & (table["optimize"] != REFERENCE_SPEC)
                    & (table["waveforms_per_prompt"] == table["waveforms_per_prompt"].min())]
    lines += ["", "## Levers that change the output beyond the precision's normal error", ""]
    if flagged.empty:
        lines.append("None.")
    else:
        for r in flagged.drop_duplicates(["model", "optimize"]).itertuples():
            why = "changes the model's behaviour by design" if r.changes_behaviour else (
                f"latents error {_fmt(r.rel_error_latents, '.2e')} (tolerance "
                f"{_fmt(r.tolerance_latents, '.2e')}), waveform {_fmt(r.rel_error_audio, '.2e')} (tolerance "
                f"{_fmt(r.tolerance_audio, '.2e')})")
            lines.append(f"- {r.model} `{r.optimize}` ({r.dtype}): {why}")
    trims = table[table["optimize"].str.contains("trim-latents", regex=False)
                  & table["energy_per_clip_J"].notna()]
    if not trims.empty:
        lines += ["", "## Stable Audio Open: computing only the requested length (`trim-latents`, changes "
                  "the output)", "",
                  "| configuration | steps | batch | J/clip | same without trim | saving |",
                  "| --- | --- | --- | --- | --- | --- |"]
        keyed = table.set_index(["run_id", "model", "optimize", "steps", "waveforms_per_prompt"])
        for r in trims.itertuples():
            base = ",".join(t for t in r.optimize.split(",") if t != "trim-latents") or "none"
            key = (r.run_id, r.model, base, r.steps, r.waveforms_per_prompt)
            other = float(keyed["energy_per_clip_J"].get(key, np.nan))
            lines.append(f"| `{r.optimize}` | {r.steps} | {r.waveforms_per_prompt} | "
                         f"{r.energy_per_clip_J:.1f} | `{base}` {_fmt(other, '.1f')} | "
                         f"{_ratio(other / r.energy_per_clip_J)} |")
    every = cell[cell["energy_per_clip_J"].notna()]
    every = every.sort_values(["model", "energy_per_clip_J"])
    if not every.empty:
        lines += ["", f"## Every configuration at {steps} steps, batch {batch}", "",
                  "Reductions are against `none` of the same run (`run`); n/a where that run did not measure "
                  "`none` in this cell.", "",
                  "| model | configuration | dtype | J/clip | J/step | reduction vs `none` | latents error | "
                  "lossless | run |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in every.itertuples():
            lines.append(f"| {r.model} | `{r.optimize}` | {r.dtype} | {r.energy_per_clip_J:.1f} | "
                         f"{_fmt(r.energy_per_step_J, '.3f')} | {_ratio(r.reduction_vs_none)} | "
                         f"{_fmt(r.rel_error_latents, '.1e')} | {'yes' if r.lossless else 'no'} | "
                         f"{r.run_id} |")
    comp = table[table["compile_J"].notna() & (table["steps"] == steps) & (table["optimize"] != "none")
                 & (table["optimize"] != REFERENCE_SPEC)]
    if not comp.empty:
        lines += ["", f"## One-time cost (compilation, graph capture, lazy set-up) and payoff, {steps} steps",
                  "",
                  "| model | configuration | batch | one-time s | one-time J | pays off after (clips) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in comp.itertuples():
            pay = ("n/a" if np.isnan(r.payoff_clips) else "never" if not math.isfinite(r.payoff_clips)
                   else "at once" if r.payoff_clips == 0 else f"{int(r.payoff_clips)}")
            lines.append(f"| {r.model} | `{r.optimize}` | {r.waveforms_per_prompt} | "
                         f"{_fmt(r.compile_s, '.1f')} | {_fmt(r.compile_J, '.0f')} | {pay} |")
    lines.append("")
    return "\n".join(lines)


def plot_levers(table: pd.DataFrame, path: Path) -> None:
    """Two panels: reduction vs ``none`` at 100 steps batch 1 (targets marked) and fraction of the ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    cell = table[(table["steps"] == 100) & (table["waveforms_per_prompt"] == 1)
                 & (table["optimize"] != REFERENCE_SPEC) & table["reduction_vs_none"].notna()]
    runs = table["repeats"].dropna().astype(int)
    n_text = (f"n = {runs.min()}" if runs.min() == runs.max() else f"n = {runs.min()}-{runs.max()}") + \
        " runs per bar, no interval"
    # legends go beside the panels so that no bar is hidden; only configurations with a bar are listed
    fig, axes = plt.subplots(1, 2, figsize=(16, 5), constrained_layout=True)
    if not cell.empty:
        sns.barplot(data=cell, x="model", y="reduction_vs_none", hue="optimize", ax=axes[0],
                    hue_order=sorted(cell["optimize"].unique()), errorbar=None)
        for i, model in enumerate(sorted(cell["model"].unique(), key=list(cell["model"].unique()).index)):
            t = REDUCTION_TARGETS.get(model)
            if t:
                axes[0].hlines(t, i - 0.45, i + 0.45, colors="k", linestyles="--")
        axes[0].set_ylabel("energy reduction vs none [x], 100 steps, batch 1")
        axes[0].set_ylim(bottom=0)
        axes[0].set_title(f"whole generation (dashed: target; {n_text})")
        axes[0].tick_params(axis="x", rotation=30)
        sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="configuration")
    frac = table[table["fraction_of_ceiling"].notna() & (table["steps"] == 100)
                 & table["optimize"].isin(["none", "graphs", "max"])]
    if not frac.empty:
        frac = frac.assign(config=frac["optimize"] + ", batch " + frac["waveforms_per_prompt"].astype(str))
        sns.barplot(data=frac, x="model", y="fraction_of_ceiling", hue="config", ax=axes[1], errorbar=None)
        ceiling = float(frac["ceiling_flop_per_joule"].median()) / 1e12
        axes[1].set_ylabel("FLOP/J as a fraction of the measured bf16 matmul ceiling")
        axes[1].set_ylim(bottom=0)
        axes[1].set_title(f"against the measured bf16 matmul ceiling ({ceiling:.2f} TFLOP/J), 100 steps")
        axes[1].tick_params(axis="x", rotation=30)
        sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="configuration")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:  # the suffix tells savefig the format
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)


def build_report(dirs: Sequence[Path], out_dir: Path) -> tuple[Path, Path, Path]:
    """``levers.csv``, ``levers_summary.md`` and ``levers.png`` in ``out_dir`` from the raw folders."""
    dirs = [Path(d) for d in dirs]
    table = levers_table(dirs)
    ceiling = _read_side(dirs, CEILING_FILE)
    profile = _read_side(dirs, PROFILE_FILE)
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / "levers.csv", out_dir / "levers_summary.md"
    fig_path = out_dir / "levers.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(csv_path, table)
    write_text_atomic(md_path, summary_markdown(table, ceiling, profile))
    plot_levers(table, fig_path)
    return csv_path, md_path, fig_path


def plan_text(models: Sequence[str], opts: LeversOptions) -> list[str]:
    """A readable plan: per model, each spec with its cells and repeats (``levers run --dry-run``)."""
    lines = []
    for model in models:
        for p in lever_plans(model, opts):
            cells = ", ".join(f"{s} steps x{b}" for s, b in p.cells)
            tag = " (reference)" if p.reference else ""
            lines.append(f"{model}: {p.spec} [{cells}] x{p.repeats}{tag}")
    return lines
