"""Running a sweep: build the model, idle baseline, warm-up, measure each (configuration, repeat), write.

The protocol, for every experiment:

1. the grid is expanded into configurations (:mod:`.grids`); configurations the model cannot run (a duration
   beyond its maximum, ...) are checked on a ``meta``-device copy of the model and left out with a note;
2. pairs already in the output table (or in shard files of an interrupted torchrun run) are skipped
   (:mod:`.resume`); under torchrun the rest is split over the ranks (:mod:`.distributed`);
3. the model is built (once per dtype), the GPU's idle power is measured with the model loaded (once per
   process, before any generation), and one warm-up generation per built model is measured and recorded
   with ``is_warmup=True`` (summaries leave it out);
4. the configurations run in a seeded random order within each repeat, each generation inside the meter's
   window (synchronised edges, per-phase energy); its row is appended at once (atomic, fsync'd);
5. an out-of-memory error records ``status=oom`` and frees the cache, NaN/Inf audio ``status=nan_audio``, any
   other exception ``status=error`` with a one-line message; the sweep goes on.
"""

from __future__ import annotations

import datetime as _dt
import gc
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tta_energy import schema
from tta_energy.devices import chosen_device, is_gpu
from tta_energy.errors import (
    CudaContextLost,
    ModelError,
    TtaError,
    first_line,
    lost_cuda_context,
    positive_number,
    seed_number,
)
from tta_energy.experiments import distributed, resume
from tta_energy.experiments.grids import (
    EXPERIMENTS,
    Config,
    GridRequest,
    SweepError,
    audio_path,
    build_configs,
    check_options_used,
    check_repeats,
    config_id,
    run_order,
    spec,
)
from tta_energy.fileio import DEFAULT_AUDIO_DIR, DEFAULT_OUT_DIR, csv_name, writable_file, writable_folder
from tta_energy.levers.spec import NO_LEVERS, SINGLE_LEVERS, Levers, parse_levers
from tta_energy.meter import IDLE_BASELINE_S, WARMUP_GENERATIONS
from tta_energy.models.catalogue import check_generation, check_models, check_size, entry
from tta_energy.precision import canonical_dtype, generation_precision
from tta_energy.provenance import new_run_id  # noqa: F401  (the sweeps' and the levers' run ids)
from tta_energy.study import STUDY_COUNTRY, STUDY_PROMPT


@dataclass
class SweepOptions:
    """Everything ``tta-energy sweep`` takes; None means the experiment's / model's default."""

    model: str
    experiments: tuple[str, ...]
    size: str = "full"
    weights: str = "random"
    device: str | None = None  # None: cuda when available, else cpu
    dtype: str | None = None  # canonical name (tta_energy.precision)
    repeats: dict[str, int] = field(default_factory=dict)  # experiment -> repeats (missing: the default)
    grid: dict[str, tuple[str, ...]] = field(default_factory=dict)  # experiment -> grid tokens
    steps: int | None = None
    duration_s: float | None = None
    prompt: str | None = None
    captions: tuple[str, ...] = ()
    limit: int | None = None
    audio_dir: Path = DEFAULT_AUDIO_DIR
    save_audio: bool = True
    out: Path | None = None
    out_dir: Path | None = None  # None: DEFAULT_OUT_DIR (given together with --out it is refused)
    seed: int = 0
    levers: Levers = NO_LEVERS  # parsed where the spec enters (the command line)
    min_window_s: float = 0.0
    idle_s: float = IDLE_BASELINE_S
    warmup: int = WARMUP_GENERATIONS
    codecarbon: bool = True
    country: str = STUDY_COUNTRY
    time_budget_s: float | None = None
    keep_errors: bool = False
    trace: bool = True
    progress: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the dtype's one canonical spelling (fp16 -> float16), built once: config ids and rows carry it
        if self.dtype is not None:
            self.dtype = canonical_dtype(self.dtype)

    def out_path(self, experiment: str) -> Path:
        if self.out is not None:
            return Path(self.out)
        return schema.run_table_path(Path(self.out_dir or DEFAULT_OUT_DIR), experiment)


@dataclass(frozen=True)
class Item:
    """One (configuration, repeat) pair to measure."""

    config: Config
    repeat: int
    config_id: str
    dtype: str  # resolved dtype name

    def cost(self) -> float:
        return self.config.cost()


@dataclass
class Plan:
    experiment: str
    out: Path
    items: list[Item]  # this rank's pairs still to do, in run order
    total_pairs: int
    already_done: int
    excluded: list[str]  # notes on configurations the model cannot run
    target: Path  # where this rank appends rows (out, or its shard)


@dataclass
class SweepSummary:
    experiment: str
    model: str
    out: Path
    total_pairs: int
    already_done: int
    measured: Counter = field(default_factory=Counter)  # status -> rows written by this process
    warmups: int = 0
    left: int = 0  # pairs of this rank not started (time budget)
    wall_s: float = 0.0
    energies: list[float] = field(default_factory=list)  # GPU energy of the ok rows, J
    excluded: list[str] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # "status: first line of the error" -> rows

    @property
    def gpu_energy_J(self) -> float:
        finite = [e for e in self.energies if not math.isnan(e)]
        return float(sum(finite)) if finite else float("nan")

    def line(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.measured.items())) or "none"
        left = f", {self.left} left (time budget: run the same command again)" if self.left else ""
        energy = "n/a" if math.isnan(self.gpu_energy_J) else f"{self.gpu_energy_J:.1f} J"
        n = sum(self.measured.values())
        # a sweep stopped before its first row (its time budget) has written no table to point to
        table = f"table {self.out}" if Path(self.out).is_file() else f"no row written (no table {self.out})"
        return (f"sweep {self.experiment} ({self.model}): {n} measured [{statuses}], "
                f"{self.already_done} of {self.total_pairs} already done, {self.warmups} warm-up{left}; "
                f"{self.wall_s:.1f} s; GPU energy of ok rows {energy}; {table}")


# --- helpers ------------------------------------------------------------------------------------------------
def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def one_line(exc: BaseException) -> str:
    first = first_line(exc, "")
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def mark_failed(row: dict[str, object], status: str, error: str) -> None:
    """Make ``row`` the row of a generation that failed (``status``: error, oom) with ``error``: no energy was
    measured."""
    row.update(status=status, error=error, gpu_energy_method="unavailable", cpu_energy_method="unavailable")


def stop_if_context_lost(row: dict[str, object]) -> None:
    """Raise :class:`CudaContextLost` when the generation of ``row`` (already written) lost the CUDA context:
    every later generation of this process would fail the same way, so the process stops here and a fresh one
    measures the rest."""
    if row.get("status") == "error" and lost_cuda_context(row.get("error", "")):
        where = (f"{row['model']} {row['optimize']}, {row['steps']} steps, "
                 f"batch {row['waveforms_per_prompt']}" + (" (warm-up)" if row.get("is_warmup") else ""))
        raise CudaContextLost(where, str(row["error"]))


def is_oom(exc: BaseException) -> bool:
    import torch

    oom_cls = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    if isinstance(exc, MemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_sweep_device(opts: SweepOptions) -> None:
    """The device asked for exists and can run the levers asked for (:func:`check_levers_device`): refused
    before any folder, table or model is made (a CPU-only machine has no CUDA device and no float8 matrix
    products)."""
    check_levers_device(opts.levers, chosen_device(opts.device), f"--levers {opts.levers.spec}",
                        "use --levers none")


def check_levers_device(levers: Levers, device: str, what: str, instead: str,
                        error: type[TtaError] = SweepError) -> None:
    """Refuse a lever spec that ``device`` cannot run as asked, with one ``error`` line that names the spec as
    ``what`` (``--levers max,fp8``): a lever it names that the device cannot run, or a level none of whose
    levers runs there (``graphs`` on a CPU), whose rows would measure the eager model under the level's name
    (``instead``: what to write in its place). A lever a level implies that the device lacks is skipped when
    applied, with the reason. The one rule ``sweep --levers`` and ``levers run`` refuse a spec by."""
    runs, cannot = levers_on_device(levers, device)
    if not cannot:
        return
    allowed = ", ".join(runnable_single_levers(device))
    for lever, why in cannot.items():
        if lever not in levers.implied:
            raise error(f"{what}: {lever}: {why} (levers that run on {device}: {allowed})")
    if not runs:
        whys = "; ".join(f"{lever}: {why}" for lever, why in cannot.items())
        raise error(f"{what}: none of its levers runs on {device} ({whys}), so its rows would measure the "
                    f"eager model; {instead} there, or levers among {allowed}")


def levers_on_device(levers: Levers, device: str) -> tuple[list[str], dict[str, str]]:
    """The levers of a spec that ``device`` can run (its precision counts as one), and those it cannot with
    the reason (:func:`tta_energy.levers.apply.unrunnable_levers`)."""
    import torch

    from tta_energy.levers.apply import unrunnable_levers

    cannot = unrunnable_levers(levers, torch.device(device))
    return [n for n in levers.names if n not in cannot], cannot


def runnable_single_levers(device: str) -> list[str]:
    """The single levers ``device`` can run, for messages."""
    return [lv for lv in SINGLE_LEVERS if not levers_on_device(parse_levers(lv), device)[1]]


def levers_line(opts: SweepOptions, adapter: Any, device: str) -> str:
    """One line on what ``--levers`` did to a built model: the levers applied and those skipped with the
    reason. The rows' ``optimize`` column holds the spec as asked, so a skipped lever is said here."""
    rec = adapter.applied_levers  # set by apply_levers on every adapter it changed
    applied = [f"precision {rec.dtype}"] if opts.levers.precision is not None else []
    for lever in rec.applied:
        backend = rec.notes.get("sdpa") if lever == "sdpa-best" else None  # the backend the timing chose
        applied.append(f"{lever} ({backend})" if backend else lever)
    line = (f"levers {opts.levers.spec} on {device} ({opts.model}, {rec.dtype}): applied "
            f"{', '.join(applied) or 'nothing'}")
    if rec.skipped:
        line += "; skipped " + "; ".join(f"{lever} ({why})" for lever, why in rec.skipped.items())
        line += f"; the rows' optimize column says {opts.levers.spec}, as asked"
    return line


def resolve_device(device: str | None, ctx: distributed.DistContext) -> str:
    import torch

    device = chosen_device(device)
    if device == "cuda":
        # one GPU per rank; without torchrun LOCAL_RANK is 0
        device = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(ctx.local_rank)
    return device


def write_wav(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """One clip (channels, samples) as a WAV, atomically (the project's writer: temp file + rename)."""
    from tta_energy.audio_io import write_wav as write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, waveform, sample_rate)


# --- planning -----------------------------------------------------------------------------------------------
def check_options(opts: SweepOptions, given: Sequence[str] = ()) -> None:
    """Every option, checked before torch is imported or a model is built: the one validator of a sweep's
    settings, which the command line relies on as the library's callers do. ``given``: the options a command
    line wrote, each refused when none of the experiments uses it (:func:`.grids.check_options_used`)."""
    check_models((opts.model,), SweepError, "--model")
    if not opts.experiments:
        raise SweepError("no experiment given")
    for e in opts.experiments:  # an unknown one is named before the options it would use
        spec(e)
    check_options_used(given, opts.experiments)
    if len(set(opts.experiments)) != len(opts.experiments):
        raise SweepError("an experiment is listed twice")
    if opts.out is not None and len(opts.experiments) > 1:
        raise SweepError("--out names one table: with several experiments use --out-dir")
    if opts.out is not None and opts.out_dir is not None:
        raise SweepError("--out and --out-dir both name the output: give one of them")
    check_size(opts.size, SweepError)
    for e, n in opts.repeats.items():
        if e not in opts.experiments:
            raise SweepError(f"--repeats names {e!r}, which is not among the experiments run")
        check_repeats(n)
    for e in opts.grid:
        if e not in opts.experiments:
            raise SweepError(f"--grid names {e!r}, which is not among the experiments run")
    if opts.warmup < 0:
        raise SweepError(f"--warmup must be >= 0, got {opts.warmup}")
    seed_number(opts.seed, error=SweepError)
    positive_number(opts.idle_s, "--idle-s", allow_zero=True, unit="seconds", error=SweepError)
    positive_number(opts.min_window_s, "--min-window-s", allow_zero=True, unit="seconds", error=SweepError)
    for value, option in ((opts.duration_s, "--duration-s"), (opts.time_budget_s, "--time-budget-s")):
        if value is not None:
            positive_number(value, option, unit="seconds", error=SweepError)
    if "precision" in opts.experiments and opts.levers.precision is not None:
        raise SweepError(f"--levers {opts.levers.spec} fixes the precision: it cannot be combined "
                         "with the precision experiment")
    for e in opts.experiments:
        csv_name(opts.out_path(e), error=SweepError)
    if opts.prompt is not None:
        check_request_limits(opts, what="--prompt")
    if opts.steps is not None:
        check_request_limits(opts, steps=opts.steps, what="--steps")
    if opts.duration_s is not None:
        check_request_limits(opts, duration_s=opts.duration_s, what="--duration-s")
    for e in opts.experiments:  # every grid and caption file is read before a folder or lock is made
        configs = build_configs(grid_request(opts, e))
        if e not in opts.grid:
            continue
        for c in configs:  # a grid the user wrote runs whole; the study's grids leave values out with a note
            check_request_limits(opts, steps=c.steps, duration_s=c.duration_s,
                                 guidance_scale=c.guidance_scale, batch=c.waveforms_per_prompt,
                                 what=f"--grid {e}={','.join(opts.grid[e])}")


def check_request_limits(opts: SweepOptions, *, steps: int | None = None, duration_s: float | None = None,
                         guidance_scale: float | None = None, batch: int = 1, what: str) -> None:
    """The catalogue's rules for one generation at the sweep's size (the built model's rule too)."""
    defaults = entry(opts.model).defaults
    try:
        check_generation(opts.model, defaults, prompts=[opts.prompt if opts.prompt is not None else "x"],
                         steps=defaults.steps if steps is None else steps, waveforms_per_prompt=batch,
                         duration_s=duration_s, guidance_scale=guidance_scale, size=opts.size)
    except ModelError as exc:
        raise SweepError(f"{what}: {exc}") from None


def grid_request(opts: SweepOptions, experiment: str) -> GridRequest:
    return GridRequest(
        experiment=experiment, model=opts.model, grid=opts.grid.get(experiment), steps=opts.steps,
        prompt=opts.prompt, duration_s=opts.duration_s, dtype=opts.dtype, seed=opts.seed,
        captions=opts.captions, limit=opts.limit, extra=opts.extra)


class NothingToRun(SweepError):
    """The model can run no configuration of an experiment's grid."""


class Probe:
    """The model on the meta device (no memory), built on first use: checks configurations before any work.

    An adapter whose own ``check_request`` refuses the meta device (it cannot generate there) is checked with
    the interface's generic rules instead (its duration limits from ``defaults``); what the generic rules miss
    is then recorded as ``status=error`` when the configuration runs.
    """

    def __init__(self, opts: SweepOptions) -> None:
        self.opts = opts
        self._adapter: Any = None
        self._own_check = False
        self._tried = False

    def adapter(self) -> Any | None:
        if not self._tried:
            self._tried = True
            from tta_energy.models.base import GenerationRequest, ModelError
            from tta_energy.models.registry import build_model

            try:
                self._adapter = build_model(self.opts.model, size=self.opts.size, weights="random",
                                            device="meta", dtype=self.opts.dtype)
            except Exception:  # an adapter without meta support: configurations are checked at run time
                self._adapter = None
                return None
            try:  # the study's own setting must pass, else the adapter's check is about the device
                self._adapter.check_request(GenerationRequest(prompts=[STUDY_PROMPT]))
                self._own_check = True
            except ModelError:
                self._own_check = False
        return self._adapter

    def check(self, request: Any) -> None:
        """Raise ModelError when the model cannot run ``request``."""
        adapter = self.adapter()
        if adapter is None:
            return
        if self._own_check:
            adapter.check_request(request)
        else:
            from tta_energy.models.base import ModelAdapter

            ModelAdapter.check_request(adapter, request)


def expand(opts: SweepOptions, experiment: str, probe: Probe,
           device: str = "cuda") -> tuple[list[Item], list[str]]:
    """This experiment's (configuration, repeat) items in run order, and notes on excluded configurations."""
    s = EXPERIMENTS[experiment]
    configs = build_configs(grid_request(opts, experiment))
    excluded: list[str] = []
    if probe.adapter() is not None:
        from tta_energy.models.base import ModelError

        kept = []
        for c in configs:
            try:
                probe.check(c.request())
            except ModelError as exc:
                note = f"{c.label}: left out ({exc})"
                if note not in excluded:
                    excluded.append(note)
                continue
            kept.append(c)
        configs = kept
    if not configs:
        raise NothingToRun(f"{opts.model} can run no configuration of the {experiment} grid: "
                           f"{'; '.join(excluded)}")
    repeats = opts.repeats.get(experiment, s.repeats)
    items = []
    for c, r in run_order(configs, repeats, opts.seed):
        dtype = generation_precision(opts.model, opts.levers.precision, c.dtype, opts.dtype, device)
        cid = config_id(c, size=opts.size, weights=opts.weights, levers=opts.levers.spec, dtype=dtype)
        items.append(Item(c, r, cid, dtype))
    return items, excluded


def latent_notes(probe: Probe, plans: list[Plan]) -> list[str]:
    """Say where the denoiser computes another audio length than asked (Stable Audio Open's 47.55 s)."""
    adapter = probe.adapter()
    if adapter is None:
        return []
    asked: dict[float, set[float]] = {}
    for p in plans:
        for it in p.items:
            d = (it.config.duration_s if it.config.duration_s is not None
                 else adapter.defaults.at_size(adapter.size).duration_s)
            try:
                computed = round(adapter.latent_seconds(d), 2)
            except Exception:  # informative only
                continue
            if abs(computed - d) > 0.05:
                asked.setdefault(computed, set()).add(d)
    return [f"{adapter.name} computes {computed:g} s of audio per clip for the "
            f"{', '.join(f'{d:g}' for d in sorted(durations))} s asked (column latent_seconds)"
            for computed, durations in sorted(asked.items())]


def plan(opts: SweepOptions, experiment: str, ctx: distributed.DistContext, probe: Probe,
         device: str = "cuda") -> Plan:
    items, excluded = expand(opts, experiment, probe, device)
    out = opts.out_path(experiment)
    if ctx.is_main:
        out.parent.mkdir(parents=True, exist_ok=True)
        if not opts.keep_errors:
            for path in [out, *resume.shard_paths(out)]:
                resume.drop_errors(path)
    distributed.barrier(ctx)  # nobody reads before rank 0 has cleaned the tables
    frames = [resume.read_table(out), *(resume.read_table(p) for p in resume.shard_paths(out))]
    done = resume.done_pairs(frames, keep_errors=opts.keep_errors)
    distributed.barrier(ctx)  # nobody writes before every rank has read the same state
    pending = [it for it in items if (it.config_id, it.repeat) not in done]
    if ctx.is_distributed:
        mine = distributed.assign(pending, ctx.world_size, Item.cost)[ctx.rank]
        pending = [pending[i] for i in mine]
        target = resume.shard_path(out, ctx.rank)
    else:
        target = out
    already = sum((it.config_id, it.repeat) in done for it in items)
    return Plan(experiment, out, pending, len(items), already, excluded, target)


# --- measuring ----------------------------------------------------------------------------------------------
class ModelCache:
    """One built model per dtype (the precision sweep needs three); each gets its warm-up before use."""

    def __init__(self, opts: SweepOptions, device: str) -> None:
        self.opts = opts
        self.device = device
        self.adapters: dict[str, Any] = {}
        self.warmed: set[str] = set()

    def get(self, dtype: str) -> Any:
        if dtype not in self.adapters:
            from tta_energy.models.registry import adapter_class

            adapter = adapter_class(self.opts.model).build(size=self.opts.size, weights=self.opts.weights,
                                                           device=self.device, dtype=dtype)
            if not self.opts.levers.is_none:
                from tta_energy.levers.apply import apply_levers

                adapter = apply_levers(adapter, self.opts.levers, duration_s=self.opts.duration_s,
                                       dtype=dtype)
            self.adapters[dtype] = adapter
        return self.adapters[dtype]


@dataclass
class RowContext:
    opts: SweepOptions
    run_id: str
    rank: int
    provenance: dict[str, object]
    trace_path: str


def base_row(rc: RowContext, experiment: str, item: Item, adapter: Any, is_warmup: bool) -> dict[str, object]:
    c = item.config
    req = adapter.resolved(c.request())
    row = schema.empty_row()
    row.update({k: v for k, v in rc.provenance.items() if k in row})
    row.update(
        source="tta-energy", run_id=rc.run_id, experiment=experiment, config_id=item.config_id,
        repeat=item.repeat, is_warmup=is_warmup, model=rc.opts.model, weights=rc.opts.weights,
        size=rc.opts.size, dtype=item.dtype, optimize=rc.opts.levers.spec, steps=c.steps,
        n_prompts=c.n_prompts, waveforms_per_prompt=c.waveforms_per_prompt, n_clips=c.n_clips,
        duration_s=float(req.duration_s), guidance_scale=float(req.guidance_scale),
        negative_prompt=req.negative_prompt or "", prompt=c.prompts[0], seed=c.seed, dataset=c.dataset,
        caption_id=c.caption_id, rank=rc.rank, hostname=rc.provenance["hostname"],
        trace_path=rc.trace_path,
    )
    try:
        row["latent_seconds"] = adapter.latent_seconds(float(req.duration_s))
    except Exception:  # informative only; never fail a row on it
        row["latent_seconds"] = np.nan
    return row


def measure_one(meter: Any, adapter: Any, rc: RowContext, experiment: str, item: Item,
                is_warmup: bool) -> dict[str, object]:
    """Measure one generation and return its complete row (status ok / oom / nan_audio / error)."""
    row = base_row(rc, experiment, item, adapter, is_warmup)
    request = item.config.request()
    output = None
    try:
        adapter.check_request(request)
        output, m = meter.measure(lambda phases: adapter.generate(request, phases))
        row.update({k: v for k, v in m.as_row().items() if k in row})
    except Exception as exc:  # one configuration failing never stops the sweep
        oom = is_oom(exc)
        mark_failed(row, "oom" if oom else "error", one_line(exc))
        output = None
        if oom:
            free_memory()
    else:
        waves = np.asarray(output.waveforms)
        row["denoiser_calls"] = int(output.denoiser_calls)
        row["audio_seconds"] = float(output.audio_seconds)
        from tta_energy.audio_io import nonfinite_audio  # soundfile only once a generation is measured

        nonfinite = nonfinite_audio(waves)
        if nonfinite is not None:
            row.update(status="nan_audio", error=nonfinite)
        else:
            row["status"] = "ok"
            if experiment == "quality" and rc.opts.save_audio and not is_warmup:
                path = audio_path(rc.opts.audio_dir, item.config)
                try:
                    write_wav(path, waves[0], int(output.sample_rate))
                    row["audio_path"] = str(path)
                except Exception as exc:  # the energy row is still valid; say why the audio is missing
                    row.update(status="error", error=f"audio not written: {one_line(exc)}")
    row["timestamp"] = now_iso()
    return row


def measure_idle(meter: Any, seconds: float) -> None:
    """The GPU's idle power with the model loaded, once per process before any generation (0 s: none)."""
    if seconds > 0:
        meter.settle()  # the power of the model build (and warm-up) decays first
        meter.measure_idle(seconds)


def measure_pair(meter: Any, models: ModelCache, rc: RowContext, experiment: str, item: Item,
                 target: Path) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Measure one (configuration, repeat) on the model built for its dtype and append its row to ``target``.

    The model is built on first use and gets ``opts.warmup`` warm-up generations (recorded with
    ``is_warmup=True``) before its first measured one. Every row is appended as soon as it is measured.
    Returns the measured row and the warm-up rows written before it; raises :class:`CudaContextLost` once a
    row whose generation lost the CUDA context is written. A sweep and a campaign both measure through this
    function.
    """
    adapter = models.get(item.dtype)
    warmups: list[dict[str, object]] = []
    if item.dtype not in models.warmed:
        for _ in range(rc.opts.warmup):
            warmups.append(measure_one(meter, adapter, rc, experiment, item, is_warmup=True))
            schema.append_row(target, warmups[-1])
            stop_if_context_lost(warmups[-1])
        models.warmed.add(item.dtype)
    row = measure_one(meter, adapter, rc, experiment, item, is_warmup=False)
    schema.append_row(target, row)
    stop_if_context_lost(row)
    return row, warmups


def window_s(row: dict[str, object]) -> float:
    """Seconds of a row's measured window (``meter_window_s``, else ``wall_s``); NaN when it has none (a call
    that failed before its window closed)."""
    for key in ("meter_window_s", "wall_s"):
        value = row.get(key)
        if isinstance(value, int | float) and np.isfinite(value):
            return float(value)
    return math.nan


class Budget:
    """Stops starting generations that would end after the time budget (predicted from the ones so far)."""

    def __init__(self, seconds: float | None, start: float) -> None:
        self.seconds = seconds
        self.start = start
        self.per_cost: float | None = None

    def allows(self, cost: float) -> bool:
        if self.seconds is None:
            return True
        elapsed = time.perf_counter() - self.start
        predicted = (self.per_cost or 0.0) * cost
        return elapsed + predicted <= self.seconds

    def record(self, cost: float, seconds: float) -> None:
        rate = seconds / max(cost, 1e-9)
        self.per_cost = rate if self.per_cost is None else max(rate, 0.7 * self.per_cost + 0.3 * rate)


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    bar = tqdm(total=total, disable=not enabled, unit="gen", dynamic_ncols=True, file=sys.stderr,
               mininterval=0.2 if interactive else 10.0)
    try:
        yield bar
    finally:
        bar.close()


def make_meter(opts: SweepOptions, device: str, trace_path: Path | None) -> Any:
    from tta_energy.meter import EnergyMeter

    indices = None
    if is_gpu(device):
        import torch

        indices = [torch.device(device).index or 0]
    # several ranks on one host (torchrun): each takes CodeCarbon's share of its own process, else every
    # rank's rows would hold the whole machine's CPU and RAM energy
    shared_host = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) > 1
    return EnergyMeter(device_indices=indices, trace_path=trace_path, codecarbon=opts.codecarbon,
                       country_iso_code=opts.country, min_window_s=opts.min_window_s,
                       codecarbon_tracking_mode="process" if shared_host else "machine")


def trace_file(opts: SweepOptions, run_id: str, ctx: distributed.DistContext) -> Path | None:
    if not opts.trace:
        return None
    base = opts.out_path(opts.experiments[0]).parent
    return base / "traces" / f"{opts.model}-{'+'.join(opts.experiments)}-{run_id}-rank{ctx.rank}.csv.gz"


def run_sweep(opts: SweepOptions, echo: Callable[[str], None] = print) -> list[SweepSummary]:
    """Run every experiment of ``opts`` for one model; returns one summary per experiment."""
    check_options(opts)
    check_sweep_device(opts)
    ctx = distributed.context_from_env()
    check_writable(opts, ctx)
    with table_locks(opts, ctx), distributed.process_group(ctx):
        return _run(opts, ctx, echo)


def check_writable(opts: SweepOptions, ctx: distributed.DistContext) -> None:
    """Every table (and the audio folder) takes files, and an existing one is a run table: a full sweep never
    ends on a write error, and another CSV named as the output is refused before a lock or a model is made."""
    if opts.out is None:  # the tables' folder is made; a table named with --out goes to a folder that exists
        writable_folder(Path(opts.out_dir or DEFAULT_OUT_DIR), "output folder")
    for e in opts.experiments:
        out = opts.out_path(e)
        for table in (out, *resume.shard_paths(out)):
            schema.check_appendable(table, SweepError)
        writable_file(resume.shard_path(out, ctx.rank) if ctx.is_distributed else out)
        if ctx.is_main:
            writable_file(out)
    if "quality" in opts.experiments and opts.save_audio:
        writable_folder(opts.audio_dir, "audio folder")


@contextmanager
def table_locks(opts: SweepOptions, ctx: distributed.DistContext) -> Iterator[None]:
    """Hold the lock of every table this process writes, for the whole sweep: rank 0 the tables, each rank
    of torchrun its shard files (:func:`.resume.hold_locks`)."""
    tables = []
    for e in opts.experiments:
        out = opts.out_path(e)
        if ctx.is_main:
            tables.append(out)
        if ctx.is_distributed:
            tables.append(resume.shard_path(out, ctx.rank))
    with resume.hold_locks(tables, SweepError, "--out / --out-dir"):
        yield


def _run(opts: SweepOptions, ctx: distributed.DistContext, echo: Callable[[str], None]) -> list[SweepSummary]:
    start = time.perf_counter()
    say = echo if ctx.is_main else (lambda _msg: None)
    device = resolve_device(opts.device, ctx)
    run_id = distributed.broadcast(ctx, new_run_id())
    probe = Probe(opts)
    plans = []
    for e in opts.experiments:
        try:
            plans.append(plan(opts, e, ctx, probe, device))
        except NothingToRun as exc:
            if len(opts.experiments) == 1:
                raise
            say(f"{e}: skipped: {exc}")  # the other experiments still run
    for note in latent_notes(probe, plans):
        say(note)
    del probe
    for p in plans:
        for note in p.excluded:
            say(f"{p.experiment}: {note}")
    summaries = [SweepSummary(p.experiment, opts.model, p.out, p.total_pairs, p.already_done,
                              excluded=list(p.excluded)) for p in plans]
    todo = sum(len(p.items) for p in plans)
    budget = Budget(opts.time_budget_s, start)
    if todo:
        meter = make_meter(opts, device, trace_file(opts, run_id, ctx))  # the sampler makes its folder
        with meter:
            rc = RowContext(opts, run_id, ctx.rank, _provenance(meter, ctx), meter.trace_file)
            models = ModelCache(opts, device)
            idle_done = False
            with progress_bar(todo, opts.progress and ctx.is_main) as bar:
                for p, summary in zip(plans, summaries, strict=True):
                    t0 = time.perf_counter()
                    for n, item in enumerate(p.items):
                        if not budget.allows(item.cost()):
                            summary.left = len(p.items) - n
                            break
                        built = item.dtype in models.adapters
                        if not built:
                            bar.set_postfix_str(f"building {opts.model} ({opts.size}, {item.dtype})")
                        adapter = models.get(item.dtype)
                        if not built and not opts.levers.is_none:  # before its first generation
                            bar.clear()
                            say(levers_line(opts, adapter, device))
                            bar.refresh()
                        if not idle_done:
                            measure_idle(meter, opts.idle_s)
                            idle_done = True
                        t_item = time.perf_counter()
                        row, warmups = measure_pair(meter, models, rc, p.experiment, item, p.target)
                        summary.warmups += len(warmups)
                        # per generation: the warm-ups of a fresh model ran the same configuration
                        budget.record(item.cost(), (time.perf_counter() - t_item) / (1 + len(warmups)))
                        summary.measured[str(row["status"])] += 1
                        if row["status"] != "ok":
                            summary.errors[f"{row['status']}: {row['error']}"] += 1
                        if row["status"] == "ok":
                            summary.energies.append(float(row.get("gpu_energy_J", np.nan)))
                        bar.set_postfix_str(f"{item.config.label} r{item.repeat} {row['status']}",
                                            refresh=False)
                        bar.update(1)  # shows the postfix of the generation it counts
                    summary.wall_s = time.perf_counter() - t0
    distributed.barrier(ctx)  # every shard is complete and fsync'd
    if ctx.is_main:
        for p in plans:
            if resume.shard_paths(p.out):
                resume.merge_shards(p.out)
    # every rank's counts, so that rank 0's line describes the whole sweep
    gathered = distributed.all_gather(ctx, [(s.measured, s.warmups, s.left, s.energies, s.errors)
                                            for s in summaries])
    for i, s in enumerate(summaries):
        s.measured = sum((g[i][0] for g in gathered), Counter())
        s.warmups = sum(g[i][1] for g in gathered)
        s.left = sum(g[i][2] for g in gathered)
        s.energies = [e for g in gathered for e in g[i][3]]
        s.errors = sum((g[i][4] for g in gathered), Counter())
    for s in summaries:
        say(s.line())
    return summaries


def _provenance(meter: Any, ctx: distributed.DistContext) -> dict[str, object]:
    return {**meter.provenance(), "rank": ctx.rank}  # the launcher's rank, not the environment's guess
