"""GPU energy meter: NVML's cumulative counter sampled in the background, windows and phases interpolated
between counter updates, idle baseline, CPU/RAM/CO2 via CodeCarbon. See ``docs/meter.md``.

Names are imported lazily: the sampler process imports ``tta_energy.meter.sampler`` and must not pay for
torch, which the meter itself needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The measurement defaults, each defined once here: the commands, the campaign file's reader and the levers
# experiment import them.
#: seconds of the idle-power baseline (for net energies) unless a command is told otherwise
IDLE_BASELINE_S = 5.0
#: seconds of a campaign's idle-power baseline unless its file says otherwise: shorter than a single
#: command's, because a campaign is measured in many time-budgeted calls that each measure their own
CAMPAIGN_IDLE_S = 3.0
#: a generation shorter than this is repeated inside one meter window (energy per call): the counter
#: updates every ~100 ms, so sub-second windows carry a large edge error. Warm-ups are never repeated. The
#: campaign and the levers experiment use it; a sweep measures each generation once unless told otherwise, as
#: the study did
MIN_WINDOW_S = 1.0
#: warm-up generations per built model (recorded with ``is_warmup=True``, left out of the summaries)
WARMUP_GENERATIONS = 1

_EXPORTS: dict[str, str] = {
    "EnergyMeter": "meter", "Measurement": "meter", "MeterWindow": "meter", "PhaseMeasurement": "meter",
    "run_row": "meter",
    "Clock": "clock", "MonotonicClock": "clock", "VirtualClock": "clock",
    "CounterSource": "sources", "GpuInfo": "sources", "NvmlCounterSource": "sources",
    "NvmlUnavailable": "sources",
    "ESTIMATORS": "timeline", "window_energy": "timeline",
}

__all__ = [
    "EnergyMeter", "Measurement", "MeterWindow", "PhaseMeasurement", "run_row",
    "Clock", "MonotonicClock", "VirtualClock",
    "CounterSource", "GpuInfo", "NvmlCounterSource", "NvmlUnavailable",
    "ESTIMATORS", "window_energy",
]

if TYPE_CHECKING:
    from tta_energy.meter.clock import Clock, MonotonicClock, VirtualClock
    from tta_energy.meter.meter import EnergyMeter, Measurement, MeterWindow, PhaseMeasurement, run_row
    from tta_energy.meter.sources import CounterSource, GpuInfo, NvmlCounterSource, NvmlUnavailable
    from tta_energy.meter.timeline import ESTIMATORS, window_energy


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tta_energy.meter' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tta_energy.meter.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
