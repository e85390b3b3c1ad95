"""Smoke runs of the model adapters on a GPU: build, generate, time, GPU energy, peak memory, finite audio.

Used by ``scripts/gpu_smoke_models.py``. Energy comes from :class:`tta_energy.meter.EnergyMeter` when it
can be used; otherwise from NVML's cumulative energy counter read directly around the call (the same
counter, without the meter's windowing); on a machine without a GPU it is NaN (``energy_method`` says
which). One model failing (build or generation) becomes a row with ``status=error`` and the run goes on.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from tta_energy.audio_io import nonfinite_audio
from tta_energy.errors import TtaError, first_line
from tta_energy.experiments.runner import one_line
from tta_energy.fileio import atomic_path, csv_name, writable_file
from tta_energy.meter.sources import bare_uuid
from tta_energy.models.base import GenerationOutput, GenerationRequest, ModelAdapter, PhaseHook
from tta_energy.models.registry import build_model
from tta_energy.study import STUDY_DURATION_S, STUDY_PROMPT

SMOKE_COLUMNS = ("model", "size", "weights", "dtype", "steps", "duration_s", "n_clips", "status", "error",
                 "wall_s", "gpu_energy_J", "energy_method", "peak_memory_GB", "finite", "denoiser_calls",
                 "audio_seconds", "gpu_name", "torch", "diffusers", "transformers", "timestamp")

Measured = tuple[Any, dict[str, float]]


class _NvmlCounter:
    """NVML total-energy counter of the GPU torch calls ``device`` (matched by UUID)."""

    def __init__(self, device: torch.device) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        uuid = bare_uuid(torch.cuda.get_device_properties(device).uuid)
        self._handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)  # raises if unsupported

    def read_J(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0


class SmokeMeter:
    """``measure(fn)`` -> (fn's result, {wall_s, gpu_energy_J, ...}); ``fn`` receives a phase hook."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        #: the smoke table's ``energy_method``: which instrument read the energy ("tta_energy.meter",
        #: "nvml_counter_raw" or "unavailable"); not the run record's ``gpu_energy_method``
        self.method = "unavailable"
        self._meter: Any = None
        self._counter: _NvmlCounter | None = None
        self._stack = contextlib.ExitStack()
        if device.type != "cuda":
            return
        try:
            from tta_energy.meter import EnergyMeter

            index = device.index if device.index is not None else torch.cuda.current_device()
            try:
                meter = EnergyMeter(device_indices=[index], codecarbon=False)
            except TypeError:  # an older/newer signature: its defaults
                meter = EnergyMeter()
            meter = self._stack.enter_context(meter) if hasattr(meter, "__enter__") else meter
            if getattr(meter, "gpu_available", True):
                self._meter = meter
                self.method = "tta_energy.meter"
                return
            self._stack.close()  # the meter found no usable GPU counter: try the raw counter below
        except Exception:  # meter not importable/usable here: raw counter below
            self._stack.close()
        try:
            self._counter = _NvmlCounter(device)
            self.method = "nvml_counter_raw"
        except Exception:  # no NVML energy counter: energy stays NaN, method "unavailable"
            pass

    def close(self) -> None:
        self._stack.close()

    def measure(self, fn: Callable[[PhaseHook], Any]) -> Measured:
        if self._meter is not None:
            output, m = self._meter.measure(fn)
            values = {"wall_s": float(getattr(m, "wall_s", math.nan)),
                      "gpu_energy_J": float(getattr(m, "gpu_energy_J", math.nan))}
            as_row = getattr(m, "as_row", None)
            if callable(as_row):
                values.update({k: v for k, v in as_row().items()
                               if k.startswith(("energy_", "time_")) and isinstance(v, (int, float))})
            return output, values
        self._sync()
        start_J = self._counter.read_J() if self._counter else math.nan
        start = time.perf_counter()
        output = fn(lambda name: contextlib.nullcontext())
        self._sync()
        wall = time.perf_counter() - start
        energy = self._counter.read_J() - start_J if self._counter else math.nan
        return output, {"wall_s": wall, "gpu_energy_J": energy}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__}


def _gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def smoke_model(name: str, steps_list: list[int], *, device: str = "cuda", size: str = "full",
                dtype: str | None = None, duration_s: float = STUDY_DURATION_S, warmup_steps: int = 2,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Build ``name`` with random weights and generate once per step count; one row per step count."""
    dev = torch.device(device)
    base = {"model": name, "size": size, "weights": "random", "duration_s": duration_s, "n_clips": 1,
            "gpu_name": _gpu_name(dev), **_versions()}
    rows: list[dict[str, Any]] = []
    adapter: ModelAdapter | None = None
    meter = SmokeMeter(dev)
    try:
        try:
            adapter = build_model(name, size=size, weights="random", device=dev, dtype=dtype)
            base["dtype"] = str(adapter.dtype).removeprefix("torch.")
            if warmup_steps > 0:  # lazy CUDA/cuDNN initialisation stays out of the measured calls
                adapter.generate(_request(warmup_steps, duration_s))
        except Exception as exc:
            log(f"{name}: build/warm-up failed: {one_line(exc)}")
            return [{**base, "steps": s, "status": "error", "error": one_line(exc), "timestamp": _now()}
                    for s in steps_list]
        for steps in steps_list:
            rows.append({**base, "steps": steps, **_measure(adapter, meter, dev, steps, duration_s)})
            last = rows[-1]
            energy_J = float(last.get("gpu_energy_J", math.nan))
            log(f"{name}: {steps} steps -> {last['status']} wall {last.get('wall_s', math.nan):.2f} s "
                f"energy {f'{energy_J:.1f} J' if math.isfinite(energy_J) else 'n/a (no GPU)'}")
    finally:
        meter.close()
        del adapter
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _request(steps: int, duration_s: float) -> GenerationRequest:
    return GenerationRequest(prompts=[STUDY_PROMPT], steps=steps, duration_s=duration_s, seed=0)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _measure(adapter: ModelAdapter, meter: SmokeMeter, dev: torch.device, steps: int,
             duration_s: float) -> dict[str, Any]:
    request = _request(steps, duration_s)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    row: dict[str, Any] = {"energy_method": meter.method, "timestamp": _now()}
    try:
        output, values = meter.measure(lambda phases: adapter.generate(request, phases))
    except Exception as exc:
        return {**row, "status": "error", "error": one_line(exc)}
    assert isinstance(output, GenerationOutput)
    finite = nonfinite_audio(output.waveforms) is None
    peak = torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else math.nan
    return {**row, **values, "status": "ok" if finite else "nan_audio", "error": "", "finite": finite,
            "peak_memory_GB": peak, "denoiser_calls": output.denoiser_calls,
            "audio_seconds": output.audio_seconds}


def check_smoke_table(path: Path, what: str = "--out") -> None:
    """``path`` is a CSV name whose folder takes files and which is new or a smoke table (its columns start
    with :data:`SMOKE_COLUMNS`): :func:`append_rows` rewrites the file whole, so another table there would
    be replaced. Else :class:`TtaError` with one line, before any model is built."""
    csv_name(path, what)
    writable_file(path, what)
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TtaError(f"{what} {path} cannot be read as a CSV table ({first_line(exc)}): choose a new file "
                       "or a smoke table") from None
    if tuple(header[:len(SMOKE_COLUMNS)]) != SMOKE_COLUMNS:
        raise TtaError(f"{what} {path} is not a smoke table (its columns start with "
                       f"{', '.join(header[:3]) or 'nothing'}, not {', '.join(SMOKE_COLUMNS[:3])}): choose a "
                       "new file or one this script wrote")


def append_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to the CSV at ``path`` (columns: the union, SMOKE_COLUMNS first), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: list[dict[str, Any]] = []
    if path.exists():
        with open(path, newline="", encoding="utf-8") as fh:
            existing = list(csv.DictReader(fh))
    everything = existing + rows
    columns = list(SMOKE_COLUMNS)
    for r in everything:
        columns += [k for k in r if k not in columns]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(everything)


def importable_models(names: list[str]) -> Iterator[str]:
    """The names whose adapter module imports (a model family not written yet is skipped)."""
    from tta_energy.models.registry import adapter_class

    for name in names:
        try:
            adapter_class(name)
        except Exception:
            continue
        yield name
