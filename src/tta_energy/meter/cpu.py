"""CPU and RAM energy, and the carbon intensity, through CodeCarbon's ``OfflineEmissionsTracker``.

One tracker lives as long as the meter; each measured window is a CodeCarbon *task*
(``start_task``/``stop_task``: counters read at both ends, nothing in between). Settings that keep it quiet,
offline and out of the GPU's way:

* ``OfflineEmissionsTracker(country_iso_code=...)``: the carbon intensity comes from CodeCarbon's bundled
  energy-mix table; no geolocation. The Electricity Maps token and the emissions endpoint are forced empty
  so that a config file or environment variable cannot turn a network call back on; ``output_methods=[]``:
  no CSV, no API.
* ``measure_power_secs`` very large: the periodic scheduler never fires during a sweep (the task API stops it
  anyway; CodeCarbon's own 1-s utilisation monitor runs only inside a task).
* ``gpu_ids=[]`` and, after CodeCarbon set up its hardware, any GPU entry removed from the tracker: the GPU
  is measured by the meter, and CodeCarbon 3.3.2's hardware cache turns ``gpu_ids=[]`` into "all GPUs" for
  the second tracker of a process (``_canonical_gpu_ids`` maps an empty list to ``None``). Only the task's
  ``cpu_energy`` and ``ram_energy`` are used in any case, never its ``gpu_energy`` or total.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass

from tta_energy.schema import J_PER_KWH
from tta_energy.study import STUDY_COUNTRY

log = logging.getLogger("tta_energy.meter")

#: CodeCarbon CPU modes that read a RAPL-type energy counter; everything else is a TDP/load-based estimate.
_RAPL_MODES = ("intel_rapl", "windows_emi", "intel_power_gadget")


@dataclass(frozen=True)
class CpuRamReading:
    cpu_energy_J: float
    ram_energy_J: float
    duration_s: float
    #: kg CO2eq per kWh that CodeCarbon applies for the configured country (or forced intensity)
    intensity_kg_per_kWh: float


class CodeCarbonCpuMeter:
    """CPU/RAM energy of measured windows; ``method`` is ``rapl`` or ``estimate``."""

    def __init__(self, country_iso_code: str = STUDY_COUNTRY, carbon_intensity_g_per_kWh: float | None = None,
                 tracking_mode: str = "machine") -> None:
        from codecarbon import OfflineEmissionsTracker

        # after the import: CodeCarbon sets its logger's level when it is imported
        logging.getLogger("codecarbon").setLevel(logging.ERROR)

        self.country_iso_code = country_iso_code
        kwargs: dict[str, object] = {}
        if carbon_intensity_g_per_kWh is not None:
            kwargs["force_carbon_intensity_g_co2e_kwh"] = float(carbon_intensity_g_per_kWh)
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=country_iso_code, project_name="tta-energy", measure_power_secs=1e9,
            log_level="error", output_methods=[], gpu_ids=[], allow_multiple_runs=True,
            tracking_mode=tracking_mode, electricitymaps_api_token="", emissions_endpoint="", **kwargs)
        self._drop_gpu_hardware()
        self.method = self._cpu_method()
        self.fallback_intensity_kg_per_kWh = self._table_intensity(carbon_intensity_g_per_kWh)
        self._task: str | None = None

    def _drop_gpu_hardware(self) -> None:
        tracker = self._tracker
        ensure = getattr(tracker, "_ensure_hardware_ready", None)
        if ensure is None or not hasattr(tracker, "_hardware"):
            return  # another CodeCarbon version: gpu_ids=[] and reading only cpu/ram energy still hold
        ensure()
        tracker._hardware = [hw for hw in tracker._hardware if type(hw).__name__ != "GPU"]

    def _cpu_method(self) -> str:
        for hw in getattr(self._tracker, "_hardware", []):
            if type(hw).__name__ == "CPU":
                return "rapl" if getattr(hw, "_mode", "") in _RAPL_MODES else "estimate"
        return "estimate"

    def _table_intensity(self, forced_g_per_kWh: float | None) -> float:
        if forced_g_per_kWh is not None:
            return forced_g_per_kWh / 1000.0
        try:
            from codecarbon.input import DataSource

            mix = DataSource().get_global_energy_mix_data()[self.country_iso_code]
            return float(mix["carbon_intensity"]) / 1000.0
        except Exception:
            return math.nan

    @property
    def hardware(self) -> list[str]:
        return [repr(hw) for hw in getattr(self._tracker, "_hardware", [])]

    def start(self) -> None:
        self._task = f"window-{uuid.uuid4().hex[:12]}"
        self._tracker.start_task(self._task)

    def stop(self) -> CpuRamReading:
        if self._task is None:
            raise RuntimeError("stop() without start()")
        data = self._tracker.stop_task(self._task)
        self._task = None
        if data is None:
            return CpuRamReading(math.nan, math.nan, math.nan, self.fallback_intensity_kg_per_kWh)
        consumed_kwh = float(data.energy_consumed)
        intensity = float(data.emissions) / consumed_kwh if consumed_kwh > 0 and data.emissions > 0 else \
            self.fallback_intensity_kg_per_kWh
        return CpuRamReading(float(data.cpu_energy) * J_PER_KWH, float(data.ram_energy) * J_PER_KWH,
                             float(data.duration), intensity)

    def close(self) -> None:
        if self._task is not None:
            self._tracker.stop_task(self._task)
            self._task = None
        try:
            self._tracker.stop()  # writes nothing (no output methods); releases CodeCarbon's schedulers
        except Exception as exc:  # closing must not hide the measurement's own outcome
            log.debug("CodeCarbon stop failed: %s", exc)
