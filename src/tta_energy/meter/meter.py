"""The energy meter: GPU energy of a measured call from NVML's cumulative counter, per phase, gross and net
of idle power, plus CPU/RAM energy and CO2 from CodeCarbon. Method and error model: ``docs/meter.md``.

A measurement window:

1. synchronise the GPU(s); wait for the next counter update (``align_start``), so that the window starts
   within about a millisecond of a point where the counter is exactly known;
2. ``t0``; run the call (``min_window_s`` > 0: repeat it until the window lasts that long), the phases
   synchronised and time-stamped at their edges; synchronise; ``t1``;
3. wait until the sampler has seen the counter update after ``t1`` (two with the ``split`` estimator), so
   that both edges are bracketed by change points, and compute the energy of ``[t0, t1]`` and of each phase
   from the change points (:mod:`tta_energy.meter.timeline`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from tta_energy import schema
from tta_energy.errors import TtaError
from tta_energy.levers.spec import DEFAULT_SPEC
from tta_energy.meter import IDLE_BASELINE_S
from tta_energy.meter.clock import Clock, MonotonicClock
from tta_energy.meter.cpu import CodeCarbonCpuMeter, CpuRamReading
from tta_energy.meter.sampler import (
    InlineSampler,
    ProcessSampler,
    Sampler,
    SamplerError,
    ThreadSampler,
    TraceWriter,
)
from tta_energy.meter.sources import (
    CounterSource,
    GpuInfo,
    NvmlCounterSource,
    NvmlUnavailable,
    driver_version,
)
from tta_energy.meter.timeline import (
    ESTIMATORS,
    WindowOutOfRange,
    changes_needed_after,
    window_energy,
)
from tta_energy.models.base import PhaseHook
from tta_energy.precision import canonical_dtype
from tta_energy.provenance import host_provenance, new_run_id
from tta_energy.study import STUDY_COUNTRY

log = logging.getLogger("tta_energy.meter")
T = TypeVar("T")

_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn_once(message: str) -> None:
    """Log a warning the first time a given message comes up in this process."""
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning(message)


@dataclass(frozen=True)
class PhaseMeasurement:
    energy_J: float  # gross GPU energy per call
    time_s: float  # wall time per call


@dataclass
class Measurement:
    """Result of one measured call (per call when the window held several)."""

    wall_s: float
    gpu_energy_J: float
    gpu_energy_net_J: float
    gpu_idle_power_W: float
    gpu_energy_method: str
    window_s: float
    calls: int
    phases: dict[str, PhaseMeasurement] = field(default_factory=dict)
    cpu_energy_J: float = math.nan
    ram_energy_J: float = math.nan
    cpu_energy_method: str = "unavailable"
    co2_kg: float = math.nan
    peak_memory_bytes: float = math.nan
    #: CPU time (user + system, all threads) of this process per call, s
    cpu_time_s: float = math.nan
    #: share of the window a kernel ran on the GPU(s) (NVML utilization samples), NaN when unknown
    gpu_busy_fraction: float = math.nan
    #: window edges on the meter's clock (the trace's ``t`` column) and the end as ISO-8601 UTC
    t_start: float = math.nan
    t_end: float = math.nan
    timestamp: str = ""
    trace_path: str = ""
    #: whole-window gross GPU energy (all calls) by every estimator, for validation
    window_estimates_J: dict[str, float] = field(default_factory=dict)
    #: whole-window gross GPU energy per device
    device_energy_J: list[float] = field(default_factory=list)

    def as_row(self) -> dict[str, object]:
        """The run-record columns this measurement fills."""
        row: dict[str, object] = {
            "wall_s": self.wall_s, "gpu_energy_J": self.gpu_energy_J,
            "gpu_idle_power_W": self.gpu_idle_power_W, "gpu_energy_net_J": self.gpu_energy_net_J,
            "gpu_energy_method": self.gpu_energy_method,
            "meter_window_s": self.window_s, "meter_calls": self.calls,
            "cpu_energy_J": self.cpu_energy_J, "ram_energy_J": self.ram_energy_J,
            "cpu_energy_method": self.cpu_energy_method, "co2_kg": self.co2_kg,
            "peak_memory_bytes": self.peak_memory_bytes, "cpu_time_s": self.cpu_time_s,
            "gpu_busy_fraction": self.gpu_busy_fraction, "timestamp": self.timestamp,
            "trace_path": self.trace_path,
        }
        for phase in schema.PHASES:
            pm = self.phases.get(phase)
            row[f"energy_{phase}_J"] = pm.energy_J if pm else math.nan
            row[f"time_{phase}_s"] = pm.time_s if pm else math.nan
        row.update(schema.codecarbon_columns(self.wall_s, self.gpu_energy_J, self.cpu_energy_J,
                                             self.ram_energy_J, self.co2_kg))
        return row


@dataclass
class MeterWindow:
    """An open measurement window; ``phase`` is the phase hook handed to the measured call."""

    meter: EnergyMeter
    t0: float
    t1: float = math.nan
    phase_marks: list[tuple[str, float, float]] = field(default_factory=list)
    cpu: CpuRamReading | None = None
    cpu_time0_s: float = math.nan  # process CPU time at the start
    cpu_time_s: float = math.nan  # process CPU time spent inside the window

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        self.meter.synchronize()
        start = self.meter.clock.now()
        try:
            yield
        finally:
            self.meter.synchronize()
            self.phase_marks.append((name, start, self.meter.clock.now()))

    def phase(self, name: str) -> contextlib.AbstractContextManager:
        return self._phase(name)


class EnergyMeter:
    """Measure the energy of calls on the GPU(s) this process uses (see the module docstring).

    ``source``/``clock``/``sync`` replace NVML, the real clock and ``torch.cuda.synchronize``: the tests
    drive the meter with a simulated GPU this way. ``sampler`` is ``auto`` (a separate process on a real
    clock, falling back to a thread; inline ticks on a virtual clock), ``process``, ``thread`` or ``inline``.
    """

    def __init__(self, device_indices: list[int] | None = None, trace_path: str | Path | None = None,
                 codecarbon: bool = True, country_iso_code: str = STUDY_COUNTRY, min_window_s: float = 0.0, *,
                 carbon_intensity_g_per_kWh: float | None = None, estimator: str = "split",
                 align_start: bool = True, sampler: str = "auto", poll_interval_s: float = 0.001,
                 codecarbon_tracking_mode: str = "machine", source: CounterSource | None = None,
                 clock: Clock | None = None, sync: Callable[[], None] | None = None) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}")
        if min_window_s < 0:
            raise ValueError("min_window_s must be >= 0")
        self.clock: Clock = clock or MonotonicClock()
        self.trace_path = Path(trace_path) if trace_path else None
        self.min_window_s = float(min_window_s)
        self.estimator = estimator
        self.align_start = align_start
        self.poll_interval_s = poll_interval_s
        self.sampler_mode = sampler
        self.idle_power_W = math.nan
        self.idle_power_per_device_W: list[float] = []
        self.unavailable_reason = ""
        self._use_codecarbon = codecarbon
        self._cc_args = (country_iso_code, carbon_intensity_g_per_kWh, codecarbon_tracking_mode)
        self._cpu: CodeCarbonCpuMeter | None = None
        self._sampler: Sampler | None = None
        self._started = False
        self._open_windows: list[MeterWindow] = []
        #: seconds this meter spent outside its windows, by part: ``align`` (waiting for the counter's update
        #: that starts a window), ``resolve`` (waiting for the updates after a window's end and computing its
        #: energy), ``codecarbon`` (its task's start and stop); for a reader of a run's overhead
        self.host_s: dict[str, float] = {"align": 0.0, "resolve": 0.0, "codecarbon": 0.0}
        self._cuda = _cuda_available()
        if device_indices is None:
            device_indices = [_current_cuda_device()] if self._cuda and source is None else []
        self.device_indices = list(device_indices)
        self._sync = sync or self._torch_sync
        self.source: CounterSource | None = source
        if source is None:
            self._open_nvml()
        elif source.device_count == 0:
            self._mark_unavailable("the counter source has no device")

    # --- set-up
    def _open_nvml(self) -> None:
        if not self._cuda:
            self._mark_unavailable("no NVIDIA GPU visible to torch (CPU-only machine?)")
            return
        if not self.device_indices:
            self._mark_unavailable("no CUDA device index given")
            return
        try:
            self.source = NvmlCounterSource.for_torch_devices(self.device_indices)
        except NvmlUnavailable as exc:
            self._mark_unavailable(str(exc))

    def _mark_unavailable(self, reason: str) -> None:
        self.unavailable_reason = reason
        self.source = None
        warn_once(f"GPU energy will not be measured: {reason}. GPU energies are recorded as NaN "
                  f"(method 'unavailable'), never as 0.")

    @property
    def gpu_available(self) -> bool:
        return self.source is not None

    @property
    def trace_file(self) -> str:
        """The trace as rows name it: empty when nothing is traced (no path given, or no GPU to sample)."""
        return str(self.trace_path) if self.trace_path is not None and self.gpu_available else ""

    @property
    def cpu_energy_method(self) -> str:
        return self._cpu.method if self._cpu is not None else "unavailable"

    @property
    def sampler(self) -> Sampler | None:
        return self._sampler

    def start(self) -> EnergyMeter:
        """Start the sampler (and CodeCarbon); idempotent."""
        if self._started:
            return self
        self._started = True
        if self.source is not None:
            try:
                self._sampler = self._make_sampler(self.source)
                self._sampler.start()
            except SamplerError as exc:
                if self.sampler_mode != "auto":
                    raise
                warn_once(f"{exc}; sampling in a thread of this process instead")
                self._sampler = ThreadSampler(self.source, self.clock, self.poll_interval_s,
                                              self._trace_writer())
                self._sampler.start()
            # two intervals before the first window: the split estimator needs the power before an edge
            if not self._sampler.wait_for_changes(self.clock.now() - 10.0, count=3, timeout_s=3.0):
                self._sampler.stop()
                self._sampler = None
                self._mark_unavailable("the energy counter did not change within 3 s")
        if self._use_codecarbon:
            try:
                self._cpu = CodeCarbonCpuMeter(*self._cc_args)
            except Exception as exc:  # CodeCarbon missing or broken: CPU energy is then unavailable, loudly
                warn_once(f"CPU/RAM energy will not be measured: CodeCarbon failed "
                          f"({type(exc).__name__}: {exc})")
                self._cpu = None
        return self

    def _trace_writer(self) -> TraceWriter | None:
        return TraceWriter(self.trace_path, self.clock) if self.trace_path else None

    def _make_sampler(self, source: CounterSource) -> Sampler:
        mode = self.sampler_mode
        if mode == "auto":
            mode = "inline" if self.clock.virtual else "process"
        if mode == "inline":
            return InlineSampler(source, self.clock, self.poll_interval_s, self._trace_writer())  # type: ignore[arg-type]
        if mode == "thread":
            return ThreadSampler(source, self.clock, self.poll_interval_s, self._trace_writer())
        if mode == "process":
            return ProcessSampler(source.spec(), source.device_count, self.clock, self.poll_interval_s,
                                  self.trace_path)
        raise ValueError(f"unknown sampler mode {mode!r}")

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self._cpu is not None:
            self._cpu.close()
            self._cpu = None
        self._started = False

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- synchronisation and memory
    def _torch_sync(self) -> None:
        if self._cuda and self.device_indices:
            import torch

            for index in self.device_indices:
                torch.cuda.synchronize(index)

    def synchronize(self) -> None:
        self._sync()

    def _reset_peak_memory(self) -> None:
        if self._cuda and self.device_indices:
            import torch

            for index in self.device_indices:
                torch.cuda.reset_peak_memory_stats(index)

    def _peak_memory(self) -> float:
        if not (self._cuda and self.device_indices):
            return math.nan
        import torch

        return float(sum(torch.cuda.max_memory_allocated(i) for i in self.device_indices))

    # --- windows
    def begin(self, align: bool | None = None) -> MeterWindow:
        """Open a window: synchronise, wait for a fresh counter update (``align``), start CodeCarbon."""
        self.start()
        self.synchronize()
        self._reset_peak_memory()
        if self._cpu is not None:  # before aligning: its first task takes tens of ms, which would undo it
            t = time.perf_counter()
            self._cpu.start()
            self.host_s["codecarbon"] += time.perf_counter() - t
        if self.align_start if align is None else align:
            t = time.perf_counter()
            self.align()
            self.host_s["align"] += time.perf_counter() - t
        window = MeterWindow(self, self.clock.now(), cpu_time0_s=self._own_cpu_time_s())
        self._open_windows.append(window)
        return window

    def align(self, timeout_s: float = 1.0) -> bool:
        """Wait for the next update of the (first) device's counter; a window opened right after it starts
        where the counter is exactly known. Call it with the GPU idle (after synchronising)."""
        self.start()
        if self._sampler is None:
            return False
        return self._sampler.wait_for_changes(self.clock.now(), count=1, timeout_s=timeout_s, devices=[0])

    def _own_cpu_time_s(self) -> float:
        """The process's CPU time without the sampler's polling thread (when it samples in a thread)."""
        poller = getattr(self._sampler, "cpu_time_s", None)
        return process_cpu_time_s() - (poller() if poller is not None else 0.0)

    def end(self, window: MeterWindow) -> None:
        """Close a window: synchronise, time-stamp, stop CodeCarbon's task (also when synchronising raises: a
        task left open would refuse every later one). Cheap: resolution comes later."""
        try:
            self.synchronize()
        finally:
            window.t1 = self.clock.now()
            window.cpu_time_s = self._own_cpu_time_s() - window.cpu_time0_s
            if self._cpu is not None:
                t = time.perf_counter()
                window.cpu = self._cpu.stop()
                self.host_s["codecarbon"] += time.perf_counter() - t

    def resolve(self, window: MeterWindow, calls: int = 1) -> Measurement:
        """Energy of a closed window (per call), once the counter has updated past its end."""
        if math.isnan(window.t1):
            raise RuntimeError("resolve() before end()")
        calls = max(1, int(calls))
        span = window.t1 - window.t0
        t = time.perf_counter()
        try:
            estimates, per_device, phase_energy = self._gpu_energies(window)
        except BaseException:
            with contextlib.suppress(ValueError):  # an unreadable window is never resolved: forget it
                self._open_windows.remove(window)
            raise
        finally:
            self.host_s["resolve"] += time.perf_counter() - t
        gross_window = estimates.get(self.estimator, math.nan)
        if math.isnan(gross_window):
            method = "unavailable"
        elif calls > 1:
            method = "nvml_counter_repeated"
        else:
            method = "nvml_counter" if self.estimator == "naive" else "nvml_interpolated"
        gross = gross_window / calls
        wall = span / calls
        net = gross - self.idle_power_W * wall if not math.isnan(gross) else math.nan
        phases: dict[str, PhaseMeasurement] = {}
        for name, (energy, seconds) in phase_energy.items():
            phases[name] = PhaseMeasurement(energy / calls, seconds / calls)
        cpu_J = ram_J = co2 = math.nan
        if window.cpu is not None:
            cpu_J = window.cpu.cpu_energy_J / calls
            ram_J = window.cpu.ram_energy_J / calls
            parts = [x for x in (gross, cpu_J, ram_J) if not math.isnan(x)]
            co2 = window.cpu.intensity_kg_per_kWh * sum(parts) / schema.J_PER_KWH if parts else math.nan
        with contextlib.suppress(ValueError):
            self._open_windows.remove(window)
        self._forget_old_points()
        return Measurement(
            wall_s=wall, gpu_energy_J=gross, gpu_energy_net_J=net, gpu_idle_power_W=self.idle_power_W,
            gpu_energy_method=method, window_s=span, calls=calls, phases=phases, cpu_energy_J=cpu_J,
            ram_energy_J=ram_J, cpu_energy_method=self.cpu_energy_method if window.cpu else "unavailable",
            co2_kg=co2, peak_memory_bytes=self._peak_memory(), cpu_time_s=window.cpu_time_s / calls,
            gpu_busy_fraction=self.busy_fraction(window.t0, window.t1), t_start=window.t0, t_end=window.t1,
            timestamp=_utc_at(window.t1, self.clock),
            trace_path=self.trace_file, window_estimates_J=estimates,
            device_energy_J=per_device)

    def _gpu_energies(self, window: MeterWindow) -> tuple[dict[str, float], list[float],
                                                          dict[str, tuple[float, float]]]:
        phase_energy: dict[str, tuple[float, float]] = {}
        nan_estimates = {e: math.nan for e in ESTIMATORS}
        sampler = self._sampler
        if sampler is None:
            for name, a, b in window.phase_marks:
                e, s = phase_energy.get(name, (0.0, 0.0))
                phase_energy[name] = (math.nan, s + (b - a))
            return nan_estimates, [], phase_energy
        if not sampler.alive:  # NaN rows marked ok would be final: a resumed run would never redo them
            raise SamplerError("the energy counter's sampler stopped (its process ended), so this window's "
                               "GPU energy cannot be read; the generation is recorded as an error")
        needed = changes_needed_after(self.estimator)
        if not sampler.wait_for_changes(window.t1, count=needed, timeout_s=1.0 + 0.5 * needed):
            warn_once("the energy counter did not update after a window within the time limit; "
                      "that window's GPU energy is NaN")
            for name, a, b in window.phase_marks:
                _, s = phase_energy.get(name, (0.0, 0.0))
                phase_energy[name] = (math.nan, s + (b - a))
            return nan_estimates, [], phase_energy
        snapshots = [tl.snapshot() for tl in sampler.timelines]
        estimates: dict[str, float] = {}
        per_device: list[float] = []
        for estimator in ESTIMATORS:
            total = 0.0
            for ts, es in snapshots:
                try:
                    value = window_energy(ts, es, window.t0, window.t1, estimator)
                except WindowOutOfRange:
                    value = math.nan
                total += value
                if estimator == self.estimator:
                    per_device.append(value)
            estimates[estimator] = total
        for name, a, b in window.phase_marks:
            energy = 0.0
            for ts, es in snapshots:
                try:
                    energy += window_energy(ts, es, a, b, self.estimator)
                except WindowOutOfRange:
                    energy = math.nan
            e, s = phase_energy.get(name, (0.0, 0.0))
            phase_energy[name] = (e + energy, s + (b - a))
        return estimates, per_device, phase_energy

    def busy_fraction(self, t0: float, t1: float) -> float:
        """Mean share of ``[t0, t1]`` (meter clock) during which a kernel ran, over the devices: the mean of
        the driver's utilization samples stamped inside the window (see docs/meter.md for its limits); NaN
        without a GPU or without a sample in the window."""
        if self.source is None or not hasattr(self.source, "utilization_samples"):
            return math.nan
        offset = dt.datetime.now(dt.timezone.utc).timestamp() - self.clock.now()  # meter clock -> Unix time
        values = []
        for device in range(self.source.device_count):
            try:
                samples = self.source.utilization_samples(device, t0 + offset)
            except Exception:  # informative only: never fail a measurement on it
                continue
            inside = [v for t, v in samples if t0 + offset <= t <= t1 + offset]
            if inside:
                values.append(sum(inside) / len(inside))
        return float(sum(values) / len(values)) if values else math.nan

    def _forget_old_points(self) -> None:
        if self._sampler is None:
            return
        oldest = min((w.t0 for w in self._open_windows), default=self.clock.now())
        for timeline in self._sampler.timelines:
            timeline.discard_before(oldest - 5.0)

    def repeat_in(self, window: MeterWindow, fn: Callable[[PhaseHook], T]) -> tuple[T, int]:
        """Run ``fn(window.phase)`` once, or (``min_window_s`` > 0) until the window has lasted that long;
        returns the last result and the number of calls. ``measure`` uses it; so does the validation."""
        calls = 0
        while True:
            result = fn(window.phase)
            calls += 1
            if self.min_window_s <= 0:
                return result, calls
            self.synchronize()
            if self.clock.now() - window.t0 >= self.min_window_s:
                return result, calls

    def measure(self, fn: Callable[[PhaseHook], T], *, align: bool | None = None) -> tuple[T, Measurement]:
        """Run ``fn(phases)`` in a window (repeated until ``min_window_s``) and measure it, per call.
        ``align`` overrides the meter's ``align_start`` for this window."""
        window = self.begin(align=align)
        try:
            result, calls = self.repeat_in(window, fn)
        except BaseException:
            try:
                self.end(window)
            finally:
                with contextlib.suppress(ValueError):
                    self._open_windows.remove(window)
            raise
        self.end(window)
        return result, self.resolve(window, calls)

    def settle(self, max_s: float = 10.0, step_s: float = 0.5, tolerance_W: float = 1.0) -> float:
        """Wait until the GPU's power stops falling after a load: until two consecutive ``step_s`` means of
        the counter's power differ by at most ``tolerance_W``, at most ``max_s``; returns the seconds waited.
        The power falls fast and then slowly (seconds, on the H200): an idle baseline taken too early is too
        high, and every net energy too low."""
        self.start()
        if self._sampler is None:
            return 0.0
        self.synchronize()
        start = self.clock.now()
        previous = math.nan
        while self.clock.now() - start < max_s:
            window = MeterWindow(self, self.clock.now())
            self.clock.sleep(step_s)
            window.t1 = self.clock.now()
            needed = changes_needed_after(self.estimator)
            if not self._sampler.wait_for_changes(window.t1, count=needed, timeout_s=1.0 + 0.5 * needed):
                break  # no counter to watch: nothing to wait for
            estimates, _, _ = self._gpu_energies(window)
            power = estimates[self.estimator] / (window.t1 - window.t0)
            if not math.isfinite(power) or abs(power - previous) <= tolerance_W:
                break
            previous = power
        return self.clock.now() - start

    def measure_idle(self, seconds: float = IDLE_BASELINE_S) -> float:
        """Idle power (W, summed over devices) over ``seconds`` of doing nothing; kept for net energies."""
        self.start()
        if self._sampler is None:
            self.idle_power_W = math.nan
            return self.idle_power_W
        self.synchronize()
        self.align()
        window = MeterWindow(self, self.clock.now())
        self.clock.sleep(seconds)
        window.t1 = self.clock.now()
        estimates, per_device, _ = self._gpu_energies(window)
        span = window.t1 - window.t0
        self.idle_power_W = estimates[self.estimator] / span
        self.idle_power_per_device_W = [e / span for e in per_device]
        return self.idle_power_W

    # --- provenance
    def gpu_infos(self) -> list[GpuInfo]:
        infos = getattr(self.source, "infos", None)
        if infos:
            return list(infos)
        if self._cuda and self.device_indices:
            import torch

            from tta_energy.meter.sources import bare_uuid

            out = []
            for i in self.device_indices:
                props = torch.cuda.get_device_properties(i)
                uuid = getattr(props, "uuid", "")
                out.append(GpuInfo(i, -1, props.name, f"GPU-{bare_uuid(uuid)}" if uuid else "", math.nan))
            return out
        return []

    def provenance(self) -> dict[str, Any]:
        """The run record's provenance columns known to the meter (GPU identity, host, versions, commit)."""
        infos = self.gpu_infos()
        names = list(dict.fromkeys(i.name for i in infos))
        limits = [i.power_limit_W for i in infos if not math.isnan(i.power_limit_W)]
        return {
            "gpu_name": ", ".join(names), "gpu_uuid": ",".join(i.uuid for i in infos),
            "gpu_driver": driver_version() if isinstance(self.source, NvmlCounterSource) else "",
            # one value per row: the devices' common limit (the smallest one if they differ)
            "gpu_power_limit_W": min(limits) if limits else math.nan,
            **host_provenance(),
        }


#: what a row made by :func:`run_row` must say about the generation (the analysis groups and fits by them)
RUN_ROW_REQUIRED: tuple[str, ...] = ("model", "experiment", "steps", "dtype")
#: the columns that make a configuration: hashed into ``config_id`` when it is not given
_CONFIGURATION = ("experiment", "model", "weights", "size", "dtype", "optimize", "steps", "n_prompts",
                  "waveforms_per_prompt", "duration_s", "guidance_scale", "negative_prompt", "prompt", "seed",
                  "dataset", "caption_id")


@functools.cache
def _process_run_id() -> str:
    return new_run_id()


def run_row(meter: EnergyMeter, measurement: Measurement, **columns: object) -> dict[str, object]:
    """A complete run-table row (``tta-energy schema``) for one generation measured with ``meter`` outside a
    sweep, ready for :func:`tta_energy.schema.append_row` and ``tta-energy analyze --runs``.

    ``columns`` say what was run, by the schema's column names: ``model``, ``experiment``, ``steps`` and
    ``dtype`` at least, and what else applies (``duration_s``, ``audio_seconds``, ``guidance_scale``,
    ``prompt``, ``repeat``, ``is_warmup``, ...). The measurement fills the energies and times, the meter the
    GPU and host provenance. Unless given: ``status`` ok, one prompt and one waveform per prompt,
    ``denoiser_calls`` = ``steps``, ``optimize`` none, ``run_id`` one per process, ``config_id`` a hash of
    the configuration's columns; ``dtype`` is stored by its canonical name (``fp16`` as ``float16``).
    Raises :class:`TtaError` for an unknown or missing column or precision and
    :class:`tta_energy.schema.SchemaError` for a value the schema refuses.
    """
    unknown = sorted(set(columns) - set(schema.COLUMN_NAMES))
    if unknown:
        raise TtaError(f"unknown run-table column(s) {', '.join(unknown)} (tta-energy schema lists them)")
    missing = [c for c in RUN_ROW_REQUIRED if c not in columns]
    if missing:
        raise TtaError(f"say what was run: {', '.join(missing)} missing "
                       f"(needed: {', '.join(RUN_ROW_REQUIRED)})")
    row = schema.empty_row()
    row.update({k: v for k, v in meter.provenance().items() if k in row})
    row.update({k: v for k, v in measurement.as_row().items() if k in row})
    row.update(source="tta-energy", run_id=_process_run_id(), repeat=0, status="ok", optimize=DEFAULT_SPEC,
               n_prompts=1, waveforms_per_prompt=1, rank=0)
    row.update(columns)
    row["dtype"] = canonical_dtype(str(row["dtype"]))  # "fp16" would be a precision apart from "float16"
    if "n_clips" not in columns:
        row["n_clips"] = int(row["n_prompts"]) * int(row["waveforms_per_prompt"])  # type: ignore[call-overload]
    if "denoiser_calls" not in columns:
        row["denoiser_calls"] = row["steps"]
    if "config_id" not in columns:
        configuration = json.dumps({k: row[k] for k in _CONFIGURATION}, sort_keys=True, default=str)
        row["config_id"] = hashlib.sha256(configuration.encode("utf-8")).hexdigest()[:16]
    schema.validate(pd.DataFrame([row]), where="run_row")
    return row


def _utc_at(t: float, clock: Clock) -> str:
    """ISO-8601 UTC time of the meter-clock instant ``t`` (windows are resolved a little after they end)."""
    unix = dt.datetime.now(dt.timezone.utc).timestamp() - (clock.now() - t)
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc).isoformat(timespec="milliseconds")


def process_cpu_time_s() -> float:
    """User + system CPU time of this process, all threads, s (``getrusage``; ``process_time`` elsewhere)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return time.process_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _current_cuda_device() -> int:
    import torch

    return int(torch.cuda.current_device())
