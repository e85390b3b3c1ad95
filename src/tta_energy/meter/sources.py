"""Where cumulative GPU energy comes from: NVML on a real GPU (or the simulated GPU of the tests).

NVML numbers devices in PCI-bus order and ignores ``CUDA_VISIBLE_DEVICES``, while torch numbers the devices
it sees (fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``). The only safe link between the two is the
device UUID: torch reports it for each visible device and NVML opens a handle from it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Protocol


class CounterSource(Protocol):
    """A set of devices with a cumulative energy counter in millijoules."""

    kind: str

    @property
    def device_count(self) -> int: ...

    def read_mJ(self, device: int) -> int: ...

    def trace_values(self, device: int) -> dict[str, float]:
        """power_W (NVML's default reading), power_instant_W, temperature_C, sm_clock_MHz (NaN if unknown)."""
        ...

    def spec(self) -> dict:
        """What the sampler process needs to open the same devices."""
        ...

    def utilization_samples(self, device: int, since_unix_s: float) -> list[tuple[float, float]]:
        """(Unix time s, busy fraction 0..1) of the driver's GPU-utilization samples taken after
        ``since_unix_s``: each is the share of its sample period during which a kernel ran."""
        ...

    def close(self) -> None: ...


class NvmlUnavailable(RuntimeError):
    """NVML or the energy counter cannot be used here; the message says why, in one line."""


@dataclass(frozen=True)
class GpuInfo:
    torch_index: int | None
    nvml_index: int
    name: str
    uuid: str
    power_limit_W: float


def bare_uuid(uuid: object) -> str:
    """``GPU-4c1e...`` / ``4c1e...`` / torch's uuid object -> ``4c1e...`` (lower case, no prefix)."""
    text = str(uuid).strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def load_nvml() -> Any:
    """Import and initialise NVML (reference-counted by NVML itself); raise :class:`NvmlUnavailable`."""
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py is a dependency, but keep the message clear if it is missing
        raise NvmlUnavailable(f"the nvidia-ml-py package is not installed ({exc})") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML cannot be initialised: {exc}") from None
    return pynvml


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def driver_version() -> str:
    try:
        nvml = load_nvml()
        return _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:  # provenance is best effort
        return ""


def torch_device_uuids(indices: list[int]) -> list[str]:
    """UUIDs (bare) of torch CUDA devices ``indices`` as this process sees them."""
    import torch

    if not torch.cuda.is_available():
        raise NvmlUnavailable("torch sees no CUDA device")
    uuids = []
    for index in indices:
        if not 0 <= index < torch.cuda.device_count():
            raise NvmlUnavailable(f"CUDA device {index} does not exist "
                                  f"(torch sees {torch.cuda.device_count()})")
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is None:
            raise NvmlUnavailable("this torch build does not report device UUIDs")
        uuids.append(bare_uuid(uuid))
    return uuids


class NvmlCounterSource:
    """The energy counters of the NVML devices with the given UUIDs."""

    kind = "nvml"

    def __init__(self, uuids: list[str], torch_indices: list[int | None] | None = None) -> None:
        self._nvml = load_nvml()
        nvml = self._nvml
        self.infos: list[GpuInfo] = []
        self._handles = []
        for pos, uuid in enumerate(uuids):
            full = "GPU-" + bare_uuid(uuid) if not str(uuid).upper().startswith("MIG-") else str(uuid)
            try:
                handle = nvml.nvmlDeviceGetHandleByUUID(full)
            except nvml.NVMLError as exc:
                raise NvmlUnavailable(f"NVML has no device with UUID {full}: {exc}") from None
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            except nvml.NVMLError as exc:
                raise NvmlUnavailable(f"device {full} has no readable energy counter "
                                      f"(pre-Volta, MIG or vGPU?): {exc}") from None
            try:
                limit = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
            except nvml.NVMLError:
                limit = math.nan
            self._handles.append(handle)
            self.infos.append(GpuInfo(torch_indices[pos] if torch_indices else None,
                                      int(nvml.nvmlDeviceGetIndex(handle)),
                                      _text(nvml.nvmlDeviceGetName(handle)),
                                      _text(nvml.nvmlDeviceGetUUID(handle)), limit))
        self._instant_field_ok = True

    @classmethod
    def for_torch_devices(cls, indices: list[int]) -> NvmlCounterSource:
        return cls(torch_device_uuids(indices), list(indices))

    @property
    def device_count(self) -> int:
        return len(self._handles)

    def read_mJ(self, device: int) -> int:
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handles[device]))

    def utilization_samples(self, device: int, since_unix_s: float) -> list[tuple[float, float]]:
        nvml = self._nvml
        try:
            _, samples = nvml.nvmlDeviceGetSamples(self._handles[device], nvml.NVML_GPU_UTILIZATION_SAMPLES,
                                                   max(0, int(since_unix_s * 1e6)))
        except nvml.NVMLError:  # no sample since then (NVML_ERROR_NOT_FOUND) or not supported
            return []
        return [(s.timeStamp / 1e6, s.sampleValue.uiVal / 100.0) for s in samples]

    def trace_values(self, device: int) -> dict[str, float]:
        nvml = self._nvml
        handle = self._handles[device]
        out = {"power_W": math.nan, "power_instant_W": math.nan, "temperature_C": math.nan,
               "sm_clock_MHz": math.nan}
        with contextlib.suppress(nvml.NVMLError):  # a 1-s average on Ampere and newer
            out["power_W"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        if self._instant_field_ok:
            try:
                (value,) = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])
                if value.nvmlReturn == nvml.NVML_SUCCESS:
                    out["power_instant_W"] = _field_number(value) / 1000.0
                else:
                    self._instant_field_ok = False
            except (nvml.NVMLError, AttributeError):
                self._instant_field_ok = False
        with contextlib.suppress(nvml.NVMLError):
            out["temperature_C"] = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        with contextlib.suppress(nvml.NVMLError):
            out["sm_clock_MHz"] = float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
        return out

    def spec(self) -> dict:
        return {"kind": self.kind, "uuids": [i.uuid for i in self.infos],
                "torch_indices": [i.torch_index for i in self.infos]}

    @classmethod
    def from_spec(cls, spec: dict) -> NvmlCounterSource:
        return cls(spec["uuids"], spec.get("torch_indices"))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # shutting down twice or after a driver error is harmless
            self._nvml.nvmlShutdown()


def _field_number(value: Any) -> float:
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(
        int(value.valueType), "uiVal")
    return float(getattr(value.value, attr))


def all_nvml_gpus() -> list[GpuInfo]:
    """Every GPU NVML sees (for ``tta-energy meter info``), whether or not torch sees it."""
    nvml = load_nvml()
    infos = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        try:
            limit = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
        except nvml.NVMLError:
            limit = math.nan
        infos.append(GpuInfo(None, index, _text(nvml.nvmlDeviceGetName(handle)),
                             _text(nvml.nvmlDeviceGetUUID(handle)), limit))
    return infos
