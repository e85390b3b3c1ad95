"""The rigs the meter validation runs on: a simulated GPU in virtual time (CI exercises the protocol with it)
and a real GPU with its workloads (a bf16 matmul and an AudioLDM-sized UNet step as a CUDA graph) and peers
(Zeus, CodeCarbon)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tta_energy.experiments.meter_validation.protocol import Peer, Rig, Workload
from tta_energy.meter.clock import VirtualClock
from tta_energy.meter.meter import EnergyMeter
from tta_energy.schema import J_PER_KWH
from tta_energy.study import STUDY_COUNTRY


class _SimulatedPeer(Peer):
    """Raw reads of the simulated counter at the window edges: what Zeus and CodeCarbon do on Volta+."""

    def __init__(self, name: str, rig: SimulatedRig) -> None:
        self.name = name
        self._rig = rig
        self._start = math.nan

    def begin(self) -> None:
        self._start = self._rig.raw_read_J()

    def end(self) -> float:
        return self._rig.raw_read_J() - self._start


class SimulatedRig(Rig):
    """The protocol on a simulated GPU in virtual time (``--dry-run``)."""

    def __init__(self, seed: int = 0) -> None:
        from tta_energy.meter.simulated import CounterModel, SimulatedCounterSource, SimulatedGpu

        self.clock = VirtualClock()
        self.gpu = SimulatedGpu(self.clock, counter=CounterModel(phase_s=0.0371, seed=seed))
        self._source = SimulatedCounterSource([self.gpu])
        self.meter = self.new_meter("inline")
        self.meter.start()
        # stand-ins for the peers are named as such: they do what Zeus/CodeCarbon do (raw reads at the edges)
        self.peers = [_SimulatedPeer("simulated_edge_reads", self)]
        self.skipped_peers = {"zeus": "dry run (no GPU)", "codecarbon": "dry run (no GPU)"}

    def new_meter(self, sampler: str) -> EnergyMeter:
        return EnergyMeter(source=self._source, clock=self.clock, codecarbon=False, sampler="inline")

    def sync(self) -> None:
        # simulated work runs as it is issued; once synchronised, nothing is queued: the GPU idles
        self.gpu.set_load(self.gpu.power.idle_W)

    def idle(self, seconds: float) -> None:
        self.gpu.idle(seconds)

    def raw_read_J(self, device: int | None = None) -> float:
        return self.gpu.read_mJ() / 1000.0

    def workloads(self) -> list[Workload]:
        return [Workload("matmul_bf16_8192", lambda: self.gpu.run(0.00167, 690.0),
                         "simulated: 1.67 ms at 690 W"),
                Workload("unet_audioldm_fp16", lambda: self.gpu.run(0.012, 520.0),
                         "simulated: 12 ms at 520 W")]

    def describe(self) -> dict[str, str]:
        return {"gpu": "simulated (tta_energy.meter.simulated defaults)", "sampler": "inline (virtual clock)"}


# --------------------------------------------------------------------------------------------- real GPU rig
class ZeusPeer(Peer):
    name = "zeus"

    def __init__(self, cuda_index: int) -> None:
        from zeus.monitor import ZeusMonitor

        try:
            self._monitor = ZeusMonitor(gpu_indices=[cuda_index], cpu_indices=[])
        except TypeError:  # older Zeus without CPU support
            self._monitor = ZeusMonitor(gpu_indices=[cuda_index])
        self._key = 0

    def begin(self) -> None:
        self._key += 1
        # no synchronisation by Zeus: in steady trials the bridge work must keep running through its edges
        self._monitor.begin_window(f"w{self._key}", sync_execution=False)

    def end(self) -> float:
        measurement = self._monitor.end_window(f"w{self._key}", sync_execution=False)
        return float(sum(measurement.gpu_energy.values()))


class CodeCarbonPeer(Peer):
    """CodeCarbon's own task measurement, GPU included (its GPU energy only)."""

    name = "codecarbon"

    def __init__(self, nvml_index: int) -> None:
        import logging

        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        # CodeCarbon 3.3.2 selects GPUs by NVML index (its UUID matching strips a leading "G" from "GPU-")
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=STUDY_COUNTRY, measure_power_secs=1e9, log_level="error", output_methods=[],
            gpu_ids=[nvml_index], allow_multiple_runs=True, electricitymaps_api_token="",
            emissions_endpoint="")
        self._task = 0

    def begin(self) -> None:
        self._task += 1
        self._tracker.start_task(f"w{self._task}")

    def end(self) -> float:
        data = self._tracker.stop_task(f"w{self._task}")
        return float(data.gpu_energy) * J_PER_KWH if data is not None else math.nan

    def close(self) -> None:
        self._tracker.stop()


class GpuRig(Rig):
    """One CUDA GPU (``cuda_index``) with the matmul and UNet workloads, Zeus and CodeCarbon as peers."""

    def __init__(self, out_dir: Path, cuda_index: int = 0, log: Callable[[str], None] = print) -> None:
        import torch

        from tta_energy.meter.clock import MonotonicClock

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU: use --dry-run on a machine without one")
        self.torch = torch
        self.cuda_index = cuda_index
        self.device = torch.device("cuda", cuda_index)
        torch.cuda.set_device(self.device)
        self.clock = MonotonicClock()
        self.trace_path = Path(out_dir) / "meter_trace.csv.gz"
        if self.trace_path.exists():
            self.trace_path.unlink()
        self.meter = EnergyMeter([cuda_index], trace_path=self.trace_path, codecarbon=False)
        if not self.meter.gpu_available:
            raise RuntimeError(f"the meter cannot measure this GPU: {self.meter.unavailable_reason}")
        self.meter.start()
        self._nvml = self.meter.source._nvml  # type: ignore[union-attr]
        self._handles = list(self.meter.source._handles)  # type: ignore[union-attr]
        self.peers = []
        self.skipped_peers = {}
        for make, name in ((lambda: CodeCarbonPeer(self.meter.gpu_infos()[0].nvml_index), "codecarbon"),
                           (lambda: ZeusPeer(cuda_index), "zeus")):
            try:
                self.peers.append(make())
            except Exception as exc:  # a peer that is missing is recorded as not run, never faked
                self.skipped_peers[name] = f"{type(exc).__name__}: {exc}"
                log(f"  peer {name} not run: {self.skipped_peers[name]}")

    def sync(self) -> None:
        self.torch.cuda.synchronize(self.device)

    def raw_read_J(self, device: int | None = None) -> float:
        handles = self._handles if device is None else [self._handles[device]]
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles) / 1000.0

    def new_meter(self, sampler: str) -> EnergyMeter:
        return EnergyMeter([self.cuda_index], codecarbon=False, sampler=sampler)

    def workloads(self) -> list[Workload]:
        torch = self.torch
        a = torch.randn(8192, 8192, device=self.device, dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device=self.device, dtype=torch.bfloat16)
        c = torch.empty(8192, 8192, device=self.device, dtype=torch.bfloat16)

        def matmul() -> None:
            torch.matmul(a, b, out=c)

        unet, sample, timestep, labels = build_audioldm_unet(self.device)

        def unet_step() -> None:
            with torch.inference_mode():
                unet(sample, timestep, encoder_hidden_states=None, class_labels=labels)

        # replayed as a CUDA graph, the step costs the GPU's time and energy, not the Python launcher's:
        # eager, this UNet is launch-bound (~30 ms per step at ~150 W on the H200), and its energy per step
        # then follows the CPU's speed, which differs between long truth blocks and short windows
        step, how = capture_cuda_graph(unet_step, self.device)
        return [Workload("matmul_bf16_8192", matmul, "bf16 8192^3 matmul (1.1 TFLOP per iteration)"),
                Workload("unet_audioldm_fp16", step,
                         "AudioLDM UNet2DConditionModel, fp16, random weights, sample (2,8,250,16), "
                         f"class_labels (2,512): one guided denoising step of a 10 s clip, {how}")]

    def busy_marker(self) -> Callable[[], bool]:
        event = self.torch.cuda.Event()
        event.record()
        return lambda: not event.query()

    def describe(self) -> dict[str, str]:
        from tta_energy.provenance import package_version

        prov = self.meter.provenance()
        return {"gpu": prov["gpu_name"], "gpu_uuid": prov["gpu_uuid"], "driver": prov["gpu_driver"],
                "power_limit_W": str(prov["gpu_power_limit_W"]), "torch": prov["torch_version"],
                "cuda": str(self.torch.version.cuda), "diffusers": prov["diffusers_version"],
                "codecarbon": prov["codecarbon_version"], "zeus": package_version("zeus") or "not installed",
                "sampler": f"{self.meter.sampler.mode}, poll {self.meter.poll_interval_s * 1e3:g} ms",
                "git_commit": prov["git_commit"], "trace": str(self.trace_path)}

    def counter_probe(self, seconds: float = 1.0) -> dict[str, object]:
        """Does NVML's field value for the energy counter carry the instant of the update? Polls field 83."""
        nvml = self._nvml
        handle = self._handles[0]
        field_id = getattr(nvml, "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 83)
        values, stamps = [], []
        end = time.perf_counter() + seconds
        try:
            while time.perf_counter() < end:
                (fv,) = nvml.nvmlDeviceGetFieldValues(handle, [field_id])
                if fv.nvmlReturn != 0:
                    return {"field_83": f"error {fv.nvmlReturn}"}
                values.append(int(fv.value.ullVal))
                stamps.append(int(fv.timestamp))
                time.sleep(0.0005)
        except Exception as exc:
            return {"field_83": f"{type(exc).__name__}: {exc}"}
        v, s = np.asarray(values), np.asarray(stamps)
        value_changes = int(np.count_nonzero(np.diff(v)))
        stamp_changes = int(np.count_nonzero(np.diff(s)))
        both = int(np.count_nonzero((np.diff(v) != 0) & (np.diff(s) != 0)))
        return {"reads": len(values), "value_changes": value_changes, "timestamp_changes": stamp_changes,
                "changes_with_new_timestamp": both}

    def run_for(self, workload: Workload, seconds: float) -> int:
        """Keep the GPU busy for ``seconds`` with at most ~0.1 s of work queued (a deep launch queue would
        make the next synchronisation wait for seconds)."""
        from collections import deque

        batch = max(1, int(0.05 / workload.t_iter)) if workload.t_iter > 0 else 2
        pending: deque = deque()
        end = self.clock.now() + seconds
        n = 0
        while self.clock.now() < end:
            for _ in range(batch):
                workload.step()
            n += batch
            event = self.torch.cuda.Event()
            event.record()
            pending.append(event)
            if len(pending) > 2:
                pending.popleft().synchronize()
        return n

    def close(self) -> None:
        super().close()
        for peer in self.peers:
            with contextlib.suppress(Exception):  # closing a peer must not hide the results already written
                peer.close()


def capture_cuda_graph(step: Callable[[], None], device: object) -> tuple[Callable[[], None], str]:
    """``step`` captured in a CUDA graph (its replay, and "replayed as a CUDA graph"), or ``step`` itself
    and why the capture failed. ``step`` must use static inputs; each replay overwrites its outputs."""
    import torch

    try:
        torch.cuda.synchronize(device)
        side = torch.cuda.Stream(device)  # warm-up off the default stream, as capture requires
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            step()
        graph.replay()
        torch.cuda.synchronize(device)
    except Exception as exc:  # recorded in the workload's description and the summary, never hidden
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
        return step, f"eager (CUDA graph capture failed: {type(exc).__name__}: {str(exc)[:200]})"
    return graph.replay, "replayed as a CUDA graph"


def build_audioldm_unet(device: object) -> tuple[object, object, object, object]:
    """AudioLDM's UNet (bundled reconstructed config), fp16, random weights, on ``device``; example inputs."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging

    from tta_energy.models.common import load_config

    config = load_config("audioldm", "unet_config.reconstructed.json")
    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the cast to fp16 is intended (the study ran AudioLDM in fp16)
    try:
        with torch.device(device):  # type: ignore[call-overload]
            unet = UNet2DConditionModel(**config).to(dtype=torch.float16).eval()
    finally:
        diffusers_logging.set_verbosity(previous)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 8, 250, 16, generator=generator).to(device=device, dtype=torch.float16)
    labels = torch.randn(2, 512, generator=generator).to(device=device, dtype=torch.float16)
    timestep = torch.tensor(500, device=device)
    return unet, sample, timestep, labels
