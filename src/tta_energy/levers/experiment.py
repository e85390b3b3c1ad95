"""The ``levers`` experiment: what each energy lever saves, whether it keeps the output, and how close to the
GPU's own limit the best configuration gets.

For each model, in one process and one meter session:

1. the GPU's ceiling: a bf16 matrix-product loop measured with the project's meter (TFLOP per joule), at the
   start of the run and at the end of the call (:func:`tta_energy.levers.ceiling.measure_ceiling`; a call
   with time left goes on with further runs, each with its own ceiling, ``run_levers``);
2. the model is built once in fp32 (random weights unless given); every lever configuration is a deep copy
   with :func:`tta_energy.levers.apply.apply_levers` applied, so all configurations share the same weights;
3. the fp32 eager reference (``fp32``) generates at each step count, batch 1, seed ``seed`` with TF32 off: its
   final latents and waveforms are the reference of the equivalence check; they are stored under
   ``references_dir`` (:mod:`tta_energy.levers.references`) and a later call with the same key loads them
   instead (no reference build, warm-up or generation);
4. one warm-up generation per (configuration, batch size) at (at most) 10 steps, recorded with
   ``is_warmup=True``: it holds the one-time cost of compilation / graph capture (its energy minus a steady
   generation's: the same cell's, or a second warm-up's where the plan has no such cell);
5. ``repeats`` rounds; in each, every (configuration, steps, batch) cell once, in a seeded random order; every
   batch-1 output is compared with the reference (relative error of latents and waveforms);
6. one denoiser step of ``none`` and of the fastest measured configuration that keeps the computation is
   timed eagerly, as a CUDA graph, and profiled by kernel category (matrix products, convolutions,
   attention, other), which is what the summary quotes as the limit.

Files (under ``out_dir``): ``levers_runs.csv`` (the run-record schema; ``optimize`` holds the lever spec),
``levers_equivalence.csv``, ``levers_configs.csv`` (what each spec applied or skipped, FLOPs from
``describe``), ``levers_ceiling.csv``, ``levers_profile.csv``. :func:`tta_energy.levers.report.build_report`
turns one or more such
folders into ``levers.csv`` (one row per model x spec x steps x batch, with the extra columns
``rel_error_latents, rel_error_audio, tflop_per_J, fraction_of_ceiling, compile_s, compile_J,
payoff_clips``), ``levers_summary.md`` and ``levers.png``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tta_energy import schema
from tta_energy.devices import chosen_device, gpu_mismatch
from tta_energy.errors import (
    CudaContextLost,
    ModelError,
    TtaError,
    lost_cuda_context,
    positive_number,
    reraise_if_context_lost,
    seed_number,
)
from tta_energy.experiments.grids import Config, config_id
from tta_energy.experiments.runner import (
    Item,
    RowContext,
    SweepOptions,
    base_row,
    check_levers_device,
    free_memory,
    make_meter,
    mark_failed,
    measure_one,
    new_run_id,
    now_iso,
    one_line,
    stop_if_context_lost,
)
from tta_energy.fileio import DEFAULT_OUT_DIR
from tta_energy.levers.apply import DenoiserWrapper, apply_levers, compilations, time_denoiser_step
from tta_energy.levers.calls import SAME_AS
from tta_energy.levers.ceiling import (
    EXPERIMENT,
    CeilingResult,
    ceiling_matrix_n,
    ceiling_record,
    check_ceiling_loop,
    measure_ceiling,
)
from tta_energy.levers.compile_cache import (
    cache_use_since,
    compile_cache_counts,
    compile_time_by_phase,
    use_compile_cache,
)
from tta_energy.levers.equivalence import relative_error
from tta_energy.levers.plan import WARMUP_STEPS, Declared
from tta_energy.levers.profile import profile_step
from tta_energy.levers.references import (
    ReferenceKey,
    code_version,
    device_label,
    load_reference,
    store_reference,
)
from tta_energy.levers.spec import (
    BATCH1_SPECS,
    CEILING_S,
    COMPILE_SPECS,
    DEFAULT_BATCHES,
    DEFAULT_REPEATS,
    DEFAULT_SPEC,
    DEFAULT_STEPS,
    FULL_GRID_SPECS,
    REFERENCE_SPEC,
    SINGLE_SPECS,
    TRIM_SPECS,
    Levers,
    LeversError,
    parse_levers,
)
from tta_energy.levers.tables import (
    CEILING_FILE,
    COMPILE_FILE,
    CONFIGS_FILE,
    CONTEXT_LOST_STATUS,
    EQUIVALENCE_FILE,
    PROFILE_FILE,
    RUNS_FILE,
    append_csv,
    check_folder_appendable,
)
from tta_energy.meter import IDLE_BASELINE_S, MIN_WINDOW_S
from tta_energy.models import catalogue
from tta_energy.models.base import GenerationOutput, GenerationRequest, PhaseHook, no_phases
from tta_energy.precision import canonical_dtype
from tta_energy.study import STUDY_DURATION_S, STUDY_PROMPT

if TYPE_CHECKING:
    from tta_energy.levers.calls import Refill



@dataclass
class LeversOptions:
    """Everything ``tta-energy levers run`` takes."""

    models: tuple[str, ...]
    out_dir: Path = DEFAULT_OUT_DIR / "levers"
    full_specs: tuple[str, ...] = FULL_GRID_SPECS
    batch1_specs: tuple[str, ...] = BATCH1_SPECS
    single_specs: tuple[str, ...] = SINGLE_SPECS
    #: models that also get COMPILE_SPECS (Inductor) at the largest step count, batch 1
    compile_models: tuple[str, ...] = ()
    #: models measured with the full-grid specs and the reference only (e.g. tango2: tango's architecture)
    lean_models: tuple[str, ...] = ()
    trim: bool = True  # Stable Audio Open's trim-latents specs
    steps: tuple[int, ...] = DEFAULT_STEPS
    batches: tuple[int, ...] = DEFAULT_BATCHES
    repeats: int = DEFAULT_REPEATS
    duration_s: float = STUDY_DURATION_S
    prompt: str = STUDY_PROMPT
    seed: int = 0
    size: str = "full"
    weights: str = "random"
    device: str | None = None
    ceiling_s: float = CEILING_S
    #: None: :func:`tta_energy.levers.ceiling.ceiling_matrix_n` of the device
    ceiling_n: int | None = None
    idle_s: float = IDLE_BASELINE_S
    min_window_s: float = MIN_WINDOW_S
    codecarbon: bool = False
    profile: bool = True
    time_budget_s: float | None = None
    #: folder of the stored fp32 references (None: always compute them, store nothing)
    references_dir: Path | None = None
    #: Inductor's and Triton's caches (None: their defaults under /tmp, lost with the machine)
    compile_cache: Path | None = None
    #: seconds of one device call, for the dry run's split of the models into calls
    call_budget_s: float = 540.0
    #: per model, the declared (spec, cells, repeats) of a levers plan file; replaces the tiers above
    declared: Declared | None = None
    #: predicted seconds per model (a plan's call): the time budget is shared out in these proportions
    #: (else by the catalogue's relative cost)
    model_seconds: dict[str, float] | None = None
    #: the GPU a plan's table holds (its ``gpu``): a run on another is refused before anything is written
    gpu: str | None = None
    progress: Callable[[str], None] = print


@dataclass(frozen=True)
class LeverPlan:
    """One lever spec of one model (parsed once, here) and the (steps, batch) cells it is measured at."""

    levers: Levers
    cells: tuple[tuple[int, int], ...]
    repeats: int
    reference: bool = False

    @property
    def spec(self) -> str:
        """The canonical spec, as the tables store it."""
        return self.levers.spec


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------
def lever_plans(model: str, opts: LeversOptions) -> list[LeverPlan]:
    """The reference, then the three tiers (see :data:`FULL_GRID_SPECS`) and the model-specific specs."""
    from tta_energy.models.registry import adapter_class

    if opts.declared is not None:
        declared = opts.declared.get(model, ())
        steps = sorted({s for _, cells, _ in declared for s, _ in cells})
        plans = [LeverPlan(parse_levers(REFERENCE_SPEC), tuple((s, 1) for s in steps), 1, reference=True)]
        plans += [LeverPlan(parse_levers(spec), cells, repeats) for spec, cells, repeats in declared]
        return _first_of_each(plans)
    if not opts.steps or not opts.batches:
        raise LeversError("need at least one step count and one batch size")
    full = tuple((s, b) for b in sorted(set(opts.batches)) for s in sorted(set(opts.steps)))
    small = min(opts.batches)
    batch1 = tuple((s, small) for s in sorted(set(opts.steps)))
    single = ((max(opts.steps), small),)
    plans = [LeverPlan(parse_levers(REFERENCE_SPEC), batch1, 1, reference=True)]
    plans += [LeverPlan(parse_levers(s), full, opts.repeats) for s in opts.full_specs]
    if model in opts.lean_models:
        return plans
    plans += [LeverPlan(parse_levers(s), batch1, opts.repeats) for s in opts.batch1_specs]
    specs = list(opts.single_specs) + (list(COMPILE_SPECS) if model in opts.compile_models else [])
    plans += [LeverPlan(parse_levers(s), single, opts.repeats) for s in specs]
    cls = adapter_class(model)
    if opts.trim and hasattr(cls, "latent_frames_for"):
        plans += [LeverPlan(parse_levers(s), full if on_full else single, opts.repeats)
                  for s, on_full in TRIM_SPECS]
    return _first_of_each(plans)  # a spec listed twice keeps its first (largest) plan


def _first_of_each(plans: list[LeverPlan]) -> list[LeverPlan]:
    """A spec listed twice keeps its first plan."""
    seen: dict[str, LeverPlan] = {}
    for p in plans:
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
    #: seconds and GPU joules of applying the levers (capture, the attention-backend candidates' compilations,
    #: their timing): part of the configuration's one-time cost, with its first generation's extra
    setup_s: float = math.nan
    setup_J: float = math.nan
    #: AOT autograd cache hits and misses of applying the levers (the attention-backend candidates'
    #: compilations), counted into the first batch size's :data:`COMPILE_FILE` row
    setup_cache: tuple[int, int] = (0, 0)


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
    #: weights fingerprint of the reference build (from the stored references, else the first build)
    fingerprint: float | None = None
    measured: int = 0
    stopped: bool = False
    #: seconds each measured (spec, steps, batch) took last, to predict whether the next one fits the budget
    walls: dict[tuple[str, int, int], float] = field(default_factory=dict)
    #: the same for warm-ups (the first holds the one-time cost: compilation, capture)
    warmup_walls: dict[tuple[str, int, int], float] = field(default_factory=dict)
    #: (seconds, of which denoising) of one call of each steady generation: measured, a second warm-up (the
    #: steady baseline), or the only warm-up of a configuration that compiles nothing (CUDA graphs are
    #: captured while the levers are applied); what :meth:`predicted_s` scales to another step count
    steady: dict[tuple[str, int, int], tuple[float, float]] = field(default_factory=dict)
    flops_cache: dict[tuple, dict] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return Path(self.opts.out_dir)

    def predicted_s(self, spec: str, steps: int, batch: int) -> float:
        """Seconds a generation of this cell is expected to take: its last wall time; else a steady generation
        (:attr:`steady`) at this batch size and another step count, its denoising scaled by steps and the rest
        (text encoding, decoding) kept, at least the meter's window: the same configuration's, else the study
        default's (``none``: a configuration is taken to be no slower, as the plan prices one not measured);
        else the fp32 reference's measured generation at this batch size, scaled by steps (slower than any
        lever); else the configuration's warm-up, scaled by steps; else 0.

        A compiled configuration's first warm-up holds its compilation (30 s or more): scaled from 10 to 100
        steps it would predict minutes for a generation of about a second, and stop the model's rounds for
        nothing.
        """
        if (spec, steps, batch) in self.walls:
            return self.walls[(spec, steps, batch)]
        for source in dict.fromkeys((spec, DEFAULT_SPEC)):
            scaled = [wall - denoising + denoising * steps / s
                      for (sp, s, b), (wall, denoising) in self.steady.items() if sp == source and b == batch]
            if scaled:
                return max(max(scaled), self.opts.min_window_s)
        for walls, source in ((self.walls, REFERENCE_SPEC), (self.warmup_walls, spec)):
            known = [(s, w) for (sp, s, b), w in walls.items() if sp == source and b == batch]
            if known:
                return max(w * steps / s for s, w in known)
        return 0.0

    def budget_left(self, spec: str = "", steps: int = 0, batch: int = 0) -> bool:
        """True when a generation of this cell is predicted to end before the model's deadline."""
        if self.deadline is None:
            return True
        return time.perf_counter() + self.predicted_s(spec, steps, batch) < self.deadline

    def config(self, steps: int, batch: int) -> Config:
        return Config(experiment=EXPERIMENT, model=self.model, steps=steps, prompts=(self.opts.prompt,),
                      waveforms_per_prompt=batch, duration_s=self.opts.duration_s, seed=self.opts.seed)

    def row_context(self, levers: Levers) -> RowContext:
        sweep = SweepOptions(model=self.model, experiments=(EXPERIMENT,), size=self.opts.size,
                             weights=self.opts.weights, levers=levers, seed=self.opts.seed)
        return RowContext(sweep, self.run_id, 0, self.provenance, self.trace_path)

    def item(self, spec: str, dtype: str, steps: int, batch: int, repeat: int) -> Item:
        cfg = self.config(steps, batch)
        return Item(cfg, repeat, config_id(cfg, size=self.opts.size, weights=self.opts.weights, levers=spec,
                                           dtype=dtype), dtype)

    def write_context_loss(self, plan: LeverPlan, adapter: Any, error: str) -> None:
        """The row of a configuration whose applying (a capture, a timing) lost the CUDA context before any
        generation of it: a warm-up row at its first cell with the error, so that later calls count the loss
        (:func:`tta_energy.levers.tables.context_losses`, :func:`tta_energy.levers.calls.loss_cards`) as they
        do a generation's; and its configuration rows say so."""
        _write_config_row(self, plan, None, f"{CONTEXT_LOST_STATUS}: {error}", {})
        steps, batch = plan.cells[0]
        item = self.item(plan.spec, canonical_dtype(adapter.dtype), steps, batch, 0)
        row = base_row(self.row_context(plan.levers), EXPERIMENT, item, adapter, True)
        mark_failed(row, "error", error)
        row["timestamp"] = now_iso()
        schema.append_row(self.out_dir / RUNS_FILE, row)

    def measure(self, p: Prepared, steps: int, batch: int, repeat: int, warmup: bool) -> dict[str, object]:
        item = self.item(p.plan.spec, p.dtype, steps, batch, repeat)
        guard = strict_fp32(p.conv_mode) if p.plan.reference else contextlib.nullcontext()
        saved = self.meter.min_window_s
        if warmup:  # the one-time cost is in the first call only
            self.meter.min_window_s = 0.0
        try:
            with guard:
                row = measure_one(self.meter, p.recorder, self.row_context(p.plan.levers), EXPERIMENT, item,
                                  warmup)
        finally:
            self.meter.min_window_s = saved
        schema.append_row(self.out_dir / RUNS_FILE, row)
        stop_if_context_lost(row)
        if row["status"] == "ok":
            calls = row.get("meter_calls")
            per_call = float(row["wall_s"])
            repeated = calls if isinstance(calls, int | float) and not math.isnan(float(calls)) else 1
            walls = self.warmup_walls if warmup else self.walls
            walls[(p.plan.spec, steps, batch)] = per_call * max(1.0, float(repeated))
            if not warmup or repeat > 0 or compilations(p.plan.levers) == 0:  # no compilation in it
                denoising = float(row.get("time_denoising_s", math.nan))
                self.steady[(p.plan.spec, steps, batch)] = (per_call, denoising if math.isfinite(denoising)
                                                            else per_call)
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
                          "calls": {}}
        d = cache[key]["describe"]
        for steps in sorted({s for s, b in plan.cells if b == batch}):
            calls = cache[key]["calls"].setdefault(steps, _nominal_calls(adapter, steps))
            total = calls * float(d["gflop_per_step"]) + float(d["gflop_once_per_generation"])
            out[(steps, batch)] = {"gflop_per_step": float(d["gflop_per_step"]),
                                   "gflop_per_generation": float(d["gflop_once_per_generation"]),
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
    return build_model(run.model, size=o.size, weights=o.weights, device=chosen_device(o.device),
                       dtype="float32")


class StaleReferences(LeversError):
    """The stored fp32 references were computed with other weights than this build's."""


def _prepare(run: ModelRun, plans: list[LeverPlan],
             stored: bool = False) -> tuple[list[Prepared], list[str]]:
    """A fresh fp32 build per spec with its levers applied; duplicates and failures dropped with a note.
    With ``stored`` references, the first build's weights must be theirs (else :class:`StaleReferences`).
    Past the model's deadline nothing more is prepared (a compilation would only overrun the call)."""
    prepared: list[Prepared] = []
    notes: list[str] = []
    signatures: dict[tuple, str] = {}
    fingerprint = run.fingerprint
    unchecked = stored
    for plan in sorted(plans, key=lambda p: not p.reference):  # the reference first
        if run.deadline is not None and time.perf_counter() >= run.deadline:
            notes.append(f"{plan.spec}: not prepared (the model's share of the time budget is spent)")
            continue
        adapter = None
        try:
            adapter = _build(run)
            fp = weights_fingerprint(adapter)
            if fingerprint is None:
                fingerprint = fp
            elif not math.isclose(fp, fingerprint, rel_tol=1e-12, abs_tol=1e-9):
                if unchecked:  # the first build disagrees with the stored references, not with a build
                    raise StaleReferences(f"the stored fp32 references were computed with other weights "
                                          f"(fingerprint {fingerprint!r}, this build {fp!r})")
                raise LeversError(f"weights differ from the reference build (fingerprint {fp!r} vs "
                                  f"{fingerprint!r}); the equivalence check needs identical weights")
            unchecked = False
            counts = compile_cache_counts()
            adapter, setup = _apply_measured(run, adapter, plan)
            setup_cache = cache_use_since(counts)
        except StaleReferences:
            raise
        except Exception as exc:  # a configuration that cannot be applied (a library's TypeError or assertion
            # included: fp8 goes through torchao) never takes the model's other configurations with it
            if lost_cuda_context(exc) and adapter is not None:  # nothing more runs here: said, then stop
                run.write_context_loss(plan, adapter, exc.error if isinstance(exc, CudaContextLost)
                                       else one_line(exc))
            reraise_if_context_lost(exc, f"applying {plan.spec} to {run.model}")
            notes.append(f"{plan.spec}: not run ({one_line(exc)})")
            _write_config_row(run, plan, None, f"not run: {one_line(exc)}", {})
            del adapter
            free_memory()
            continue
        sig = lever_signature(adapter)
        if sig in signatures and not plan.reference:
            notes.append(f"{plan.spec}: same configuration as {signatures[sig]} for {run.model}; "
                         "not repeated")
            _write_config_row(run, plan, adapter, f"{SAME_AS} {signatures[sig]}", {})
            del adapter
            free_memory()
            continue
        if not plan.reference:
            signatures.setdefault(sig, plan.spec)
        prepared.append(Prepared(plan, adapter, RecordingAdapter(adapter), adapter.applied_levers.dtype,
                                 setup_s=setup.wall_s, setup_J=setup.gpu_energy_J, setup_cache=setup_cache))
    run.fingerprint = fingerprint
    return prepared, notes


def _apply_measured(run: ModelRun, adapter: Any, plan: LeverPlan) -> tuple[Any, Any]:
    """``apply_levers`` for ``plan`` in a meter window of its own: (the adapter, the window's measurement).
    The levers are tuned at the plan's smallest batch size (a device call measures one)."""
    window = run.meter.begin(align=False)
    try:
        adapter = apply_levers(adapter, plan.levers, duration_s=run.opts.duration_s,
                               batch=min(b for _, b in plan.cells))
    finally:
        run.meter.end(window)
    return adapter, run.meter.resolve(window)


def _write_config_row(run: ModelRun, plan: LeverPlan, adapter: Any | None, status: str,
                      flops: dict[tuple[int, int], dict], setup: Prepared | None = None) -> None:
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
            "setup_s": setup.setup_s if setup else np.nan, "setup_J": setup.setup_J if setup else np.nan,
        })


def _write_compile_row(run: ModelRun, p: Prepared, batch: int, warmup_cache: tuple[int, int]) -> None:
    """How much of a compiled configuration's one-time cost at ``batch`` (applying it, at the smallest batch
    size, and its warm-up) the compile cache served: a later call on a machine still warm, or a model with
    the same architecture compiled earlier in the process, finds its graphs there and compiles in a fraction
    of a fresh machine's time. Nothing for a configuration that compiles nothing."""
    if compilations(p.plan.levers) == 0:
        return
    hits, misses = warmup_cache
    if batch == min(b for _, b in p.plan.cells):
        hits, misses = hits + p.setup_cache[0], misses + p.setup_cache[1]
    append_csv(run.out_dir / COMPILE_FILE, {
        "run_id": run.run_id, "model": run.model, "optimize": p.plan.spec, "waveforms_per_prompt": batch,
        "aot_cache_hits": hits, "aot_cache_misses": misses,
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


#: seconds between two measured generations of a model's rounds (the meter's waits for its counter at a
#: window's edges, the row's write): 0.23-0.25 s median, 0.29 s at the 90th percentile, in the H100 levers
#: parts partplan-20261206T070041 and partplan-20261206T065226 (a window's end minus its wall to the next)
GENERATION_GAP_S = 0.3


def cells_that_fit(run: ModelRun, cells: list[tuple[Prepared, int, int]],
                   target: tuple[int, int] | None) -> list[tuple[Prepared, int, int]]:
    """The (configuration, steps, batch) cells whose repeats all fit before the model's deadline, at their
    predicted seconds (:meth:`ModelRun.predicted_s`, plus :data:`GENERATION_GAP_S` each). Where all of them
    do not fit, the study default's cells come first (a reduction is taken against `none` of the same run),
    then the target's cell, then the plan's order, as many as fit, and no cell whose `none` was left out: a
    cell with all its repeats is done, where rounds cut short leave every cell short of its repeats and a
    later call measures them all again. All of them without a deadline, or where not even the default's cells
    fit (the rounds are then cut as before)."""
    if run.deadline is None:
        return cells

    def seconds(cell: tuple[Prepared, int, int]) -> float:
        p, steps, batch = cell
        return (run.predicted_s(p.plan.spec, steps, batch) + GENERATION_GAP_S) * p.plan.repeats

    left = run.deadline - time.perf_counter()
    if sum(seconds(c) for c in cells) <= left:
        return cells
    with_default = {(s, b) for p, s, b in cells if p.plan.spec == DEFAULT_SPEC}
    order = sorted(cells, key=lambda c: (c[0].plan.spec != DEFAULT_SPEC, (c[1], c[2]) != target))
    kept: list[tuple[Prepared, int, int]] = []
    spent = 0.0
    for cell in order:
        p, steps, batch = cell
        anchored = p.plan.spec == DEFAULT_SPEC or (steps, batch) not in with_default or any(
            k[0].plan.spec == DEFAULT_SPEC and (k[1], k[2]) == (steps, batch) for k in kept)
        if anchored and spent + seconds(cell) <= left:
            kept.append(cell)
            spent += seconds(cell)
    if not any(p.plan.spec == DEFAULT_SPEC for p, _, _ in kept) and with_default:
        return cells
    chosen = {_cell_key(c) for c in kept}
    return [c for c in cells if _cell_key(c) in chosen]  # the plan's order


def _cell_key(cell: tuple[Prepared, int, int]) -> tuple[int, int, int]:
    """A cell by its configuration's identity (a configuration object holds a model: never compared)."""
    p, steps, batch = cell
    return id(p), steps, batch


def profiled_specs(run: ModelRun, prepared: list[Prepared], target: tuple[int, int]) -> set[str]:
    """``none`` and the configuration with the shortest measured generation at ``target`` (steps, batch 1)
    that keeps the computation (no fp8, no trim), else ``max``."""
    keeps = [p for p in prepared if not p.plan.reference and not p.failed
             and not p.plan.levers.changes_behaviour and (p.plan.spec, *target) in run.walls]
    best = min(keeps, key=lambda p: run.walls[(p.plan.spec, *target)]).plan.spec if keeps else "max"
    return {DEFAULT_SPEC, best}


def _profile(run: ModelRun, prepared: list[Prepared], ceiling_tflops: float) -> None:
    import torch

    if not torch.cuda.is_available() or not run.opts.profile:
        return
    target = (max((s for p in prepared for s, _ in p.plan.cells), default=0), 1)
    for p in prepared:
        if p.plan.spec not in profiled_specs(run, prepared, target) or p.failed:
            continue
        for batch in sorted({b for _, b in p.plan.cells}):
            if not run.budget_left():
                return
            try:
                res = profile_step(p.adapter, run.opts.duration_s, batch)
            except Exception as exc:  # profiling is diagnostic: a failure is noted, never fatal
                reraise_if_context_lost(exc, f"the step profile of {run.model} {p.plan.spec}")
                run.opts.progress(f"{run.model} {p.plan.spec}: step profile failed ({one_line(exc)})")
                continue
            cell = LeverPlan(p.plan.levers, ((1, batch),), 1)
            flops = _describe_flops(run.model, run.opts, p.adapter, cell, run.flops_cache)
            gflop = flops[(1, batch)]["gflop_per_step"]
            append_csv(run.out_dir / PROFILE_FILE, {
                "run_id": run.run_id, "model": run.model, "optimize": p.plan.spec,
                "waveforms_per_prompt": batch, **{k: round(float(v), 4) for k, v in res.items()},
                "gflop_per_step": gflop,
                "flop_bound_ms": gflop / ceiling_tflops if ceiling_tflops > 0 else np.nan,
            })
            free_memory()


def reference_key(run: ModelRun, steps: int) -> ReferenceKey:
    """The key of ``run``'s fp32 reference at ``steps`` (batch 1)."""
    import torch

    o = run.opts
    return ReferenceKey(model=run.model, size=o.size, weights=o.weights, steps=steps, batch=1,
                        duration_s=float(o.duration_s), seed=o.seed, prompt=o.prompt,
                        code=code_version(), torch=torch.__version__,
                        device=device_label(chosen_device(o.device)))


def _load_references(run: ModelRun, plans: list[LeverPlan]) -> bool:
    """Load every stored reference of the plan into ``run``; True when all its cells were stored."""
    reference = next((p for p in plans if p.reference), None)
    if reference is None or run.opts.references_dir is None:
        return False
    loaded = {}
    for steps, _ in reference.cells:
        found = load_reference(reference_key(run, steps), Path(run.opts.references_dir))
        if found is None:
            return False
        loaded[steps] = found
    if len({fp for _, fp in loaded.values()}) != 1:
        return False
    run.references = {steps: out for steps, (out, _) in loaded.items()}
    run.fingerprint = next(iter(loaded.values()))[1]
    return True


def _run_model(run: ModelRun, ceiling_tflops: float) -> list[str]:
    import torch

    opts = run.opts
    say = opts.progress
    plans = lever_plans(run.model, opts)
    stored = _load_references(run, plans)
    if stored:
        say(f"{run.model}: fp32 references loaded from {opts.references_dir}; none computed")
    stale = ""
    try:
        prepared, notes = _prepare(run, [p for p in plans if not p.reference] if stored else plans, stored)
    except StaleReferences as exc:
        stale = str(exc)  # the message only: the exception's traceback holds the stale build
    if stale:  # outside the except block, so that the stale build is freed before the next ones
        say(f"{run.model}: {stale}; computing them again")
        run.references, run.fingerprint = {}, None
        free_memory()
        prepared, notes = _prepare(run, plans)
    for note in notes:
        say(f"{run.model}: {note}")
    reference = next((p for p in prepared if p.plan.reference), None)
    if reference is not None:
        try:
            reference.conv_mode, conv_ms = select_reference_conv(reference.adapter, opts.duration_s)
        except CudaContextLost as exc:
            run.write_context_loss(reference.plan, reference.adapter, exc.error)
            raise
        reference.adapter.applied_levers.notes.update(reference_conv=reference.conv_mode,
                                                      reference_conv_ms=conv_ms)
    for p in prepared:
        flops = _describe_flops(run.model, opts, p.adapter, p.plan, run.flops_cache)
        _write_config_row(run, p.plan, p.adapter, "ok", flops, p)
        say(f"{run.model} {p.plan.spec}: {p.adapter.applied_levers.summary()}")
    # warm-ups: the one-time cost (compilation, capture, lazy init) of each configuration and batch size, at
    # a few steps; where that is no cell of the plan, a second warm-up gives the steady baseline it is
    # subtracted from (the report: first warm-up minus second)
    if reference is None and not run.references:
        say(f"{run.model}: no fp32 reference; the equivalence check is left out")
    for p in prepared:  # the reference is first: it also takes the process's one-time CUDA/cuBLAS set-up
        warm_steps = min(min(s for s, _ in p.plan.cells), WARMUP_STEPS)
        for batch in sorted({b for _, b in p.plan.cells}):
            if not run.budget_left():
                run.stopped = True
                break
            steps = min(warm_steps, REFERENCE_WARMUP_STEPS) if p.plan.reference else warm_steps
            baseline = not p.plan.reference and (steps, batch) not in p.plan.cells
            counts = compile_cache_counts()
            for repeat in range(2 if baseline else 1):
                row = run.measure(p, steps, batch, repeat, warmup=True)
                if row["status"] != "ok":
                    p.failed = str(row.get("error", row["status"]))
                    say(f"{run.model} {p.plan.spec}: warm-up failed ({p.failed}); configuration left out")
                    break
            if p.failed:
                break
            _write_compile_row(run, p, batch, cache_use_since(counts))
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
            if opts.references_dir is not None and run.fingerprint is not None:
                store_reference(reference_key(run, steps), Path(opts.references_dir), run.references[steps],
                                run.fingerprint)
    # measured rounds: every cell once per round, seeded random order
    rounds = max((p.plan.repeats for p in prepared), default=0)
    cells_measured = [c for p in prepared if not p.plan.reference for c in p.plan.cells]
    target = ((max(s for s, _ in cells_measured), min(b for _, b in cells_measured)) if cells_measured
              else None)
    every = [(p, s, b) for p in prepared if not p.plan.reference and not p.failed for s, b in p.plan.cells]
    kept = cells_that_fit(run, every, target)
    if len(kept) < len(every):
        run.stopped = True
        measured = {_cell_key(c) for c in kept}
        say(f"{run.model}: {len(kept)} of {len(every)} cells fit the time left with all their repeats; left "
            "for a later call: " + ", ".join(f"{p.plan.spec} {s} steps batch {b}" for p, s, b in every
                                             if _cell_key((p, s, b)) not in measured))
    for repeat in range(rounds):
        cells = [(p, s, b) for p, s, b in kept if repeat < p.plan.repeats]
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


def check_options(opts: LeversOptions, plan: Path | None = None) -> None:
    """Every option, before any file is written or model built: one :class:`LeversError` line naming the
    option (``plan``: the plan file its cells, duration and seed came from) and what is allowed."""
    if not opts.models:
        raise LeversError("no model given: name them with --model (or give a --plan)")
    catalogue.check_models(opts.models, LeversError, "--model")
    if opts.repeats < 1:
        raise LeversError(f"--repeats must be >= 1, got {opts.repeats}")
    for values, option in ((opts.steps, "--steps"), (opts.batches, "--batches")):
        below = [v for v in values if v < 1]
        if below:
            raise LeversError(f"{option} must be a comma list of integers >= 1, got {below[0]}")
    positive_number(opts.duration_s, "--duration-s", unit="seconds", error=LeversError)
    positive_number(opts.min_window_s, "--min-window-s", allow_zero=True, unit="seconds", error=LeversError)
    positive_number(opts.idle_s, "--idle-s", allow_zero=True, unit="seconds", error=LeversError)
    if opts.time_budget_s is not None:
        positive_number(opts.time_budget_s, "--time-budget-s", unit="seconds", error=LeversError)
    seed_number(opts.seed, error=LeversError)
    check_ceiling_loop(opts.ceiling_s, opts.ceiling_n)
    for s in (*opts.full_specs, *opts.batch1_specs, *opts.single_specs,
              *(spec for d in (opts.declared or {}).values() for spec, _, _ in d)):
        if parse_levers(s).spec == REFERENCE_SPEC:  # a bad spec fails here, before any model is built
            raise LeversError(f"{s!r} is the fp32 reference every run computes (eager, batch 1, once per "
                              "step count), not a configuration to measure: leave it out of the specs")
    for m in (*opts.compile_models, *opts.lean_models):
        if m not in opts.models:
            raise LeversError(f"{m} is named in --compile-models/--lean-models but not in --model")
    catalogue.check_size(opts.size, LeversError)
    _check_weights(opts)
    _check_generations(opts, plan)
    _check_something_measured(opts)
    check_folder_appendable(Path(opts.out_dir))


def _check_something_measured(opts: LeversOptions) -> None:
    """Each model gets at least one configuration besides the fp32 reference, which is only what the others
    are compared with: a run of the reference alone would write a report of nothing."""
    if opts.declared is not None or opts.full_specs:
        return
    for m in opts.models:
        if len(lever_plans(m, opts)) > 1:
            continue
        if m in opts.lean_models:
            raise LeversError(f"no configuration given for {m}: --lean-models measures --full's specs only, "
                              "and --full names none; give specs with --full (e.g. --full none)")
        raise LeversError(f"no configuration given for {m}: --full, --batch1 and --single name no spec "
                          "(the fp32 reference is only what the configurations are compared with); give "
                          "specs with one of them (e.g. --full none)")


#: the options of the tiers of a run without a plan: option -> the field of :class:`LeversOptions` they set
TIER_OPTIONS: dict[str, str] = {"--full": "full_specs", "--batch1": "batch1_specs",
                                 "--single": "single_specs"}


def check_device_levers(opts: LeversOptions, device: str, named: Sequence[str] = tuple(TIER_OPTIONS),
                        plan: Path | None = None) -> None:
    """Refuse, before anything is built or written, a spec this run would measure that ``device`` cannot run
    as asked, by the sweep's rule and wording (:func:`.runner.check_levers_device`): a plan's specs (``plan``:
    its file), those of the tier options in ``named`` (the command line's: the tiers left at their defaults
    keep their notes, e.g. ``graphs`` on a CPU is found the same configuration as ``none``) and the compile
    specs of ``--compile-models``. A lever that fails on one model when it is applied is still reported as
    not run, the other configurations measured."""
    if opts.declared is not None:
        specs = dict.fromkeys(spec for entries in opts.declared.values() for spec, _, _ in entries)
        asked = [(f"{plan}: {spec}", f"leave it out of {plan}", spec) for spec in specs]
    else:
        asked = [(f"{option} {spec}", f"leave it out of {option}", spec)
                 for option in named for spec in getattr(opts, TIER_OPTIONS[option])]
        if opts.compile_models:
            asked += [(f"--compile-models {','.join(opts.compile_models)} ({spec})",
                       "leave --compile-models out", spec) for spec in COMPILE_SPECS]
    for what, instead, spec in asked:
        check_levers_device(parse_levers(spec), device, what, instead, error=LeversError)


def _check_weights(opts: LeversOptions) -> None:
    """``random``, or one model's weights (:func:`tta_energy.models.weights.check_weights`)."""
    from tta_energy.models.weights import check_weights

    if opts.weights == "random":
        return
    if len(opts.models) != 1:
        raise LeversError(f"--weights {opts.weights} loads one model's weights, but {len(opts.models)} "
                          f"models are measured ({', '.join(opts.models)}): give one model with --model, "
                          "or --weights random")
    check_weights(opts.weights)


def _check_generations(opts: LeversOptions, plan: Path | None) -> None:
    """Each model's clip length and cells at the size asked for, by the catalogue's rule (the one ``generate``
    and ``sweep`` apply), so that no cell is found impossible once the call has started."""
    for m in opts.models:
        defaults = catalogue.entry(m).defaults
        if opts.declared is not None:
            cells = sorted({c for _, cs, _ in opts.declared.get(m, ()) for c in cs})
        else:
            cells = [(s, b) for s in opts.steps for b in opts.batches]
        # the clip length first, at the model's default steps: a refusal then names the right setting
        for steps, batch, what in [(defaults.steps, 1, f"{plan}: duration_s" if plan else "--duration-s"),
                                   *((s, b, f"{plan}: {m}'s cells" if plan else "--steps/--batches")
                                     for s, b in cells)]:
            try:
                catalogue.check_generation(m, defaults, prompts=[opts.prompt], steps=steps,
                                           waveforms_per_prompt=batch, duration_s=opts.duration_s,
                                           guidance_scale=None, size=opts.size)
            except ModelError as exc:
                raise LeversError(f"{what}: {exc}") from None


def model_allowance_s(left_s: float, predicted: Sequence[float], in_seconds: bool) -> float:
    """Seconds the first model of ``predicted`` (its prediction, then the later models') may take of the
    ``left_s`` a call has left: its share in proportion to the predictions; with predictions in seconds (a
    plan's), also whatever the later models are not predicted to need, so that a model whose one-time costs
    were underestimated keeps measuring while the rest of the call still fits."""
    share = left_s * predicted[0] / max(sum(predicted), 1e-9)
    if in_seconds:
        share = max(share, left_s - sum(predicted[1:]))
    return max(0.0, share)


#: a refill is asked for only while at least this many seconds are left (less holds no unit of a plan)
REFILL_MIN_S = 15.0


@dataclass(frozen=True)
class LeversResult:
    """What a levers run leaves: its folder and the models whose sweep failed (each failure was said; the
    other models' rows are in the folder)."""

    folder: Path
    failed_models: tuple[str, ...] = ()


def run_levers(opts: LeversOptions, refill: Refill | None = None) -> LeversResult:
    """Run the levers sweep for every model of ``opts``; returns its folder and the models that failed.

    With a time budget and ``refill``, a call whose work ends before its budget asks ``refill`` for more:
    given the seconds left and the models that failed, the options of the next work that fits them (a
    plan's next units, :func:`tta_energy.levers.calls.plan_refill`), or None.
    Each piece of work is a run of its own (its run id, its ceiling, its ``none``: what a reduction is taken
    against), in the same process and meter session, so a call whose one-time costs were overestimated (a
    compilation found in the cache) spends its budget instead of ending early."""
    check_options(opts)
    say = opts.progress
    if opts.compile_cache is not None:
        use_compile_cache(Path(opts.compile_cache))
    device = chosen_device(opts.device)
    why = gpu_mismatch(opts.gpu, device)
    if why:
        raise LeversError(f"the levers plan measures on an {opts.gpu} (its gpu); {why}: its rows would enter "
                          f"the {opts.gpu} table. Run it on an {opts.gpu}, or use a plan without gpu")
    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    start = time.perf_counter()
    trace = out_dir / "traces" / f"levers-{run_id}.csv.gz"
    trace.parent.mkdir(parents=True, exist_ok=True)
    sweep = SweepOptions(model=opts.models[0], experiments=(EXPERIMENT,), codecarbon=opts.codecarbon,
                         min_window_s=opts.min_window_s)
    meter = make_meter(sweep, device, trace)
    reserve = opts.ceiling_s + 5.0  # the closing ceiling measurement

    def left_s() -> float:
        return opts.time_budget_s - (time.perf_counter() - start) - reserve

    with meter:
        provenance = dict(meter.provenance())
        if opts.idle_s > 0:
            meter.measure_idle(opts.idle_s)
        deadline_clock = left_s if opts.time_budget_s is not None else None
        work: LeversOptions | None = opts
        failed: set[str] = set()
        while work is not None:
            failed |= _measure_run(work, device, run_id, meter, provenance, deadline_clock)
            work = None
            if refill is not None and opts.time_budget_s is not None and left_s() >= REFILL_MIN_S:
                work = refill(left_s(), failed)
            if work is not None:
                run_id = new_run_id()
                say(f"{left_s():.0f} s of the time budget left: run {run_id} measures "
                    + "; ".join(_declared_text(m, work.declared[m]) for m in work.models))
        phases = compile_time_by_phase()
        if phases:
            say("compilation by phase (s; the largest, nested phases overlap): "
                + ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases))
        caches = compile_cache_counts()
        if caches:
            say("compiled: " + ", ".join(f"{name} {count}" for name, count in caches.items()))
        say(_ceiling_text("end", _ceiling_row(meter, device, opts, run_id, "end", provenance)))
    return LeversResult(out_dir, tuple(sorted(failed)))


def _ceiling_text(when: str, row: Any) -> str:
    """One line for a ceiling loop; its energy and power are n/a where nothing measured them (a CPU)."""
    per_J = f"{row.tflop_per_J:.3f} TFLOP/J" if math.isfinite(row.tflop_per_J) else "TFLOP/J n/a"
    power = f"{row.power_W:.0f} W" if math.isfinite(row.power_W) else "power n/a"
    return f"ceiling ({when}, {row.precision}): {per_J}, {row.tflop_per_s:.3g} TFLOP/s, {power}"


def _declared_text(model: str, entries: Sequence[tuple[str, Any, int]]) -> str:
    """``tango batch 10: none, max``: a model's declared specs per batch size, as the dry run names units."""
    batches = sorted({b for _, cells, _ in entries for _, b in cells})
    return "; ".join(f"{model} batch {b}: " + ", ".join(spec for spec, cells, _ in entries
                                                         if any(c[1] == b for c in cells)) for b in batches)


def _measure_run(opts: LeversOptions, device: str, run_id: str, meter: Any, provenance: dict[str, object],
                left_s: Callable[[], float] | None) -> set[str]:
    """One run: the ceiling (bf16, and fp8 where a spec uses it), then each model of ``opts`` in turn; with
    ``left_s`` (the call's seconds left), each model gets its :func:`model_allowance_s` of them as a
    deadline. A model that fails never loses the others' rows; returns the models that failed."""
    failed: set[str] = set()
    say = opts.progress
    ceiling = _ceiling_row(meter, device, opts, run_id, "start", provenance)
    say(_ceiling_text("start", ceiling))
    if any(p.levers.fp8 for m in opts.models for p in lever_plans(m, opts)):
        try:
            fp8 = _ceiling_row(meter, device, opts, run_id, "start", provenance, "fp8")
            say(f"fp8 ceiling: {fp8.tflop_per_J:.3f} TFLOP/J, {fp8.tflop_per_s:.0f} TFLOP/s")
        except (LeversError, RuntimeError) as exc:  # a diagnostic: never worth the call's measurements
            reraise_if_context_lost(exc, "the fp8 ceiling loop")
            say(f"fp8 ceiling not measured: {exc}")
    for i, model in enumerate(opts.models):
        deadline = None
        if left_s is not None:
            left = left_s()
            if left <= 0:
                say(f"{model}: not started (time budget spent)")
                continue
            weights = [opts.model_seconds.get(m, 0.0) if opts.model_seconds
                       else catalogue.entry(m).levers.cost * (0.5 if m in opts.lean_models else 1.0)
                       for m in opts.models[i:]]
            deadline = time.perf_counter() + model_allowance_s(left, weights, bool(opts.model_seconds))
        run = ModelRun(model, opts, run_id, meter, provenance, meter.trace_file, deadline)
        t0 = time.perf_counter()
        try:
            _run_model(run, ceiling.tflop_per_s)
        except Exception as exc:  # one model failing never loses the others' rows
            # but a lost CUDA context ends the process: the command line says so and exits with its status
            reraise_if_context_lost(exc, f"the levers sweep of {model}")
            say(f"{model}: levers sweep failed ({one_line(exc)})")
            failed.add(model)
            free_memory()
        # with the seconds its units were priced at (tta_energy.levers.forecast reads both back from the log)
        predicted = opts.model_seconds.get(model) if opts.model_seconds else None
        say(f"{model}: {run.measured} generations measured in {time.perf_counter() - t0:.0f} s"
            + (f" (predicted {predicted:.0f} s)" if predicted is not None else "")
            + (" (stopped: time budget)" if run.stopped else ""))
    return failed


def _ceiling_row(meter: Any, device: str, opts: LeversOptions, run_id: str, when: str,
                 provenance: dict[str, object], precision: str = "bf16") -> CeilingResult:
    res = measure_ceiling(meter, device, opts.ceiling_s, ceiling_matrix_n(device, opts.ceiling_n), precision)
    append_csv(Path(opts.out_dir) / CEILING_FILE, ceiling_record(res, run_id, when, provenance))
    return res


def declared_plans(opts: LeversOptions) -> Declared:
    """Per model, the (spec, cells, repeats) ``run_levers`` would measure besides the reference (the dry run
    prices these)."""
    check_options(opts)
    return {m: tuple((p.spec, p.cells, p.repeats) for p in lever_plans(m, opts) if not p.reference)
            for m in opts.models}
