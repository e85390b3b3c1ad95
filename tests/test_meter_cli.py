"""``tta-energy meter idle`` and ``tta-energy meter info`` on a machine without an NVIDIA GPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from conftest import refused
from typer.testing import CliRunner

from tta_energy.cli import meter_commands
from tta_energy.cli.main import main


def cuda_present() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def meter_app() -> typer.Typer:
    app = typer.Typer()
    meter_commands.register(app)
    return app


NEED = "it measures an NVIDIA GPU's idle power: run it where torch sees one and NVML works"


@pytest.mark.skipif(cuda_present(), reason="checks the message of a machine without a GPU")
def test_idle_without_gpu_is_refused_in_one_line(capsys):
    """No idle power to print (not a NaN with exit status 0): refused as --device cuda is there."""
    line = refused(capsys, ["meter", "idle", "--idle-s", "0.5"])
    assert line == f"error: no GPU to measure: torch sees no NVIDIA GPU here; {NEED}"


def test_idle_where_nvml_cannot_be_opened_is_refused_in_one_line_before_the_meter(capsys, monkeypatch):
    from tta_energy import meter
    from tta_energy.meter import sources

    def no_nvml(_indices):
        raise sources.NvmlUnavailable("NVML cannot be loaded (no NVIDIA driver?)")

    def started(*_args, **_kwargs):
        raise AssertionError("the meter was made: its warning would come before the error line")

    monkeypatch.setattr(meter_commands, "_visible_cuda_devices", lambda: [0])
    monkeypatch.setattr(sources.NvmlCounterSource, "for_torch_devices", no_nvml)
    monkeypatch.setattr(meter, "EnergyMeter", started)
    line = refused(capsys, ["meter", "idle", "--idle-s", "0.5"])
    assert line == f"error: no GPU to measure: NVML cannot be loaded (no NVIDIA driver?); {NEED}"


@pytest.mark.parametrize("option", ["--idle-s", "--seconds"])  # --seconds: the name it had before
def test_idle_rejects_a_bad_duration_with_one_error_line(capsys, option):
    """The idle time is named as sweep's and levers run's --idle-s, and as --seconds; the error names both
    spellings, so that the option typed is among them (checked by the options' one rule)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["meter", "idle", option, "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --idle-s/--seconds must be > 0 seconds, got -1.0"


@pytest.mark.parametrize("name", ["-1", "0", "cpu", "cuda:x"])
def test_idle_takes_a_device_spelled_as_the_other_commands_take_it(capsys, name):
    line = refused(capsys, ["meter", "idle", "--device", name, "--idle-s", "0.5"])
    assert line == (f"error: --device {name}: the idle power is an NVIDIA GPU's; use cuda or cuda:N "
                    "(default: every GPU)")


def test_idle_refuses_a_cuda_index_this_machine_lacks(capsys, monkeypatch):
    monkeypatch.setattr(meter_commands, "_visible_cuda_devices", lambda: [0])
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    line = refused(capsys, ["meter", "idle", "--device", "cuda:3", "--idle-s", "0.5"])
    assert line == "error: --device cuda:3: torch sees 1 GPU(s), cuda:0 to cuda:0"


def test_info_lists_the_backends(meter_app):
    result = CliRunner().invoke(meter_app, ["meter", "info"])
    assert result.exit_code == 0, result.output
    for backend in ("NVML", "torch CUDA", "CodeCarbon", "Zeus"):
        assert backend in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("meter: ") and ("CPU energy: estimate" in last or "CPU energy: rapl" in last)
    if not cuda_present():
        assert "no NVIDIA GPU / NVML" in last


def test_meter_group_is_registered_on_the_main_command():
    out = subprocess.run([sys.executable, "-m", "tta_energy", "meter", "--help"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "idle" in out.stdout and "info" in out.stdout
