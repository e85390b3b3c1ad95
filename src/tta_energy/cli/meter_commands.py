"""``tta-energy meter idle`` and ``tta-energy meter info``: the GPU energy meter from the command line."""

from __future__ import annotations

import threading
import time

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tta_energy.cli import checks
from tta_energy.devices import check_device, cuda_index
from tta_energy.errors import TtaError
from tta_energy.meter import IDLE_BASELINE_S


def _visible_cuda_devices() -> list[int]:
    try:
        import torch
    except ImportError:
        return []
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


#: the spellings of ``meter idle``'s seconds: ``--idle-s``, as sweep and levers run name it, and ``--seconds``
IDLE_S_FLAGS = ("--idle-s", "--seconds")


def register(app: typer.Typer) -> None:
    meter_app = typer.Typer(help="The GPU energy meter: idle power, devices and measurement backends.",
                            no_args_is_help=True)
    app.add_typer(meter_app, name="meter")

    @meter_app.command("idle")
    def idle_cmd(
        seconds: float = typer.Option(IDLE_BASELINE_S, *IDLE_S_FLAGS,
                                      help="how long to measure, s (sweep's and levers run's --idle-s)"),
        device: list[str] = typer.Option(None, "--device",
                                         help="cuda or cuda:N, as the other commands take it (repeatable; "
                                              "default: every GPU)"),
    ) -> None:
        """Measure the idle power of each GPU from NVML's energy counter."""
        from tta_energy.meter import EnergyMeter
        from tta_energy.meter.sources import NvmlCounterSource, NvmlUnavailable

        checks.positive(seconds, "/".join(IDLE_S_FLAGS), unit="seconds")  # the line names both spellings
        asked = {name: cuda_index(name) for name in device or ()}
        not_gpu = [name for name, index in asked.items() if index is None]
        if not_gpu:
            raise TtaError(f"--device {not_gpu[0]}: the idle power is an NVIDIA GPU's; use cuda or cuda:N "
                           "(default: every GPU)")
        console = Console()
        for name in asked:  # one rule for a GPU this machine lacks, or a machine without one
            check_device(name, cpu_allowed=False)
        devices = list(asked.values()) if asked else _visible_cuda_devices()
        need = "it measures an NVIDIA GPU's idle power: run it where torch sees one and NVML works"
        if not devices:
            raise TtaError(f"no GPU to measure: torch sees no NVIDIA GPU here; {need}")
        try:  # opened here, so that a machine without NVML is one error line, not the meter's warning too
            source = NvmlCounterSource.for_torch_devices(devices)
        except NvmlUnavailable as exc:
            raise TtaError(f"no GPU to measure: {exc}; {need}") from None
        meter = EnergyMeter(device_indices=devices, codecarbon=False, source=source)
        with meter:
            worker = threading.Thread(target=meter.measure_idle, args=(seconds,), daemon=True)
            with Progress(TextColumn("measuring idle power"), BarColumn(), TimeRemainingColumn(),
                          console=console, transient=True) as progress:
                task = progress.add_task("idle", total=seconds)
                start = time.perf_counter()
                worker.start()
                while worker.is_alive():
                    progress.update(task, completed=min(seconds, time.perf_counter() - start))
                    worker.join(0.1)
            table = Table("cuda", "GPU", "UUID", "idle power [W]")
            for info, power in zip(meter.gpu_infos(), meter.idle_power_per_device_W, strict=False):
                table.add_row(str(info.torch_index), info.name, info.uuid, f"{power:.2f}")
            console.print(table)
        typer.echo(f"idle power: {meter.idle_power_W:.2f} W over {len(devices)} GPU(s), {seconds:g} s "
                   f"(sampler: {meter.sampler_mode})")

    @meter_app.command("info")
    def info_cmd() -> None:
        """List the GPUs (name, UUID, driver, power limit) and which measurement backends work here."""
        from tta_energy.meter.sources import NvmlUnavailable, all_nvml_gpus, driver_version, load_nvml
        from tta_energy.provenance import package_version

        console = Console()
        backends = Table("backend", "available", "detail")
        gpus = []
        try:
            nvml = load_nvml()
            gpus = all_nvml_gpus()
            backends.add_row("NVML", "yes", f"driver {driver_version()}, {len(gpus)} GPU(s)")
        except NvmlUnavailable as exc:
            nvml = None
            backends.add_row("NVML", "no", str(exc))
        if nvml is not None:
            visible = _visible_cuda_devices()
            backends.add_row("torch CUDA", "yes" if visible else "no", f"{len(visible)} visible device(s)")
        else:  # NVML ships with the NVIDIA driver, which CUDA needs too: no need to import torch to know
            backends.add_row("torch CUDA", "no", "no NVIDIA driver (NVML missing)")
        cpu_method = "unavailable"
        try:
            from tta_energy.meter.cpu import CodeCarbonCpuMeter

            cc = CodeCarbonCpuMeter()
            cpu_method = cc.method
            detail = f"{package_version('codecarbon')}, CPU energy: {cpu_method}, {'; '.join(cc.hardware)}"
            backends.add_row("CodeCarbon", "yes", detail)
            cc.close()
        except Exception as exc:  # report, do not fail: info is a diagnosis command
            backends.add_row("CodeCarbon", "no", f"{type(exc).__name__}: {exc}")
        zeus = package_version("zeus")
        backends.add_row("Zeus (peer, validation only)", "yes" if zeus else "no", zeus or "not installed")
        if gpus and nvml is not None:
            table = Table("nvml", "GPU", "UUID", "power limit [W]", "energy counter")
            for info in gpus:
                handle = nvml.nvmlDeviceGetHandleByIndex(info.nvml_index)
                try:
                    nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                    counter = "yes"
                except nvml.NVMLError as exc:
                    counter = f"no ({exc})"
                table.add_row(str(info.nvml_index), info.name, info.uuid, f"{info.power_limit_W:.0f}",
                              counter)
            console.print(table)
        console.print(backends)
        gpu_part = f"{len(gpus)} GPU(s) via NVML" if nvml is not None else "no NVIDIA GPU / NVML"
        typer.echo(f"meter: {gpu_part}; CPU energy: {cpu_method}")
