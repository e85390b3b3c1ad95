"""Levers on a CPU-only machine: ``levers ceiling`` is refused (a GPU measurement), and a sweep says which of
its levers were applied and which skipped, refusing a spec none of whose levers runs on the device."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import refused
from tta_energy import schema
from tta_energy.cli.main import main
from tta_energy.experiments import runner
from tta_energy.experiments.runner import SweepOptions, levers_line, levers_on_device
from tta_energy.levers import ceiling
from tta_energy.levers.apply import AppliedLevers
from tta_energy.levers.spec import parse_levers

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there")
SWEEP = ["sweep", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--dtype", "float32",
         "--experiment", "steps", "--grid", "1", "--repeats", "1", "--duration-s", "1", "--idle-s", "0",
         "--warmup", "0", "--no-progress", "--no-codecarbon", "--no-trace"]
CPU_LEVERS = ("fp32, fp16, bf16, compile, compile-blocks, sdpa-flash, sdpa-math, sdpa-best, channels-last, "
              "fuse-qkv, trim-latents")

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TTA_ENERGY_DEBUG", raising=False)


@pytest.fixture
def no_meter(monkeypatch):
    """Starting a meter fails the test: every refusal here comes before it."""
    import tta_energy.meter as meter

    def started(*_args, **_kwargs):
        raise AssertionError("the meter was started before the input was refused")

    monkeypatch.setattr(meter, "EnergyMeter", started)


def error_line(argv: list[str], capsys) -> str:
    return refused(capsys, argv)


# --- levers ceiling --------------------------------------------------------------------------------
def test_ceiling_on_cpu_is_refused_in_one_line_before_the_meter(tmp_path, capsys, no_meter):
    out = tmp_path / "ceiling.csv"
    line = error_line(["levers", "ceiling", "--device", "cpu", "--out", str(out)], capsys)
    assert line == ("error: the ceiling needs an NVIDIA GPU (--device cpu was asked for): it is TFLOP per "
                    "joule of the GPU's energy counter, and energy is not measured on a CPU; use --device "
                    "cuda or cuda:N on a GPU machine")
    assert not out.exists()


@NO_GPU
def test_ceiling_without_a_device_on_a_cpu_machine_says_no_gpu_is_seen(tmp_path, capsys, no_meter):
    line = error_line(["levers", "ceiling", "--out", str(tmp_path / "ceiling.csv")], capsys)
    assert "the ceiling needs an NVIDIA GPU (torch sees no NVIDIA GPU here)" in line
    assert "energy is not measured on a CPU" in line
    assert list(tmp_path.iterdir()) == []


def test_ceiling_values_are_checked_before_the_device(capsys, no_meter):
    """A wrong value is named first: fixing the device alone would not make the command run."""
    assert "unknown ceiling precision 'fp4'" in error_line(
        ["levers", "ceiling", "--device", "cpu", "--precision", "fp4"], capsys)
    for option in ("--ceiling-n", "--n"):  # --n: its name before
        line = error_line(["levers", "ceiling", "--device", "cpu", option, "8"], capsys)
        assert "--ceiling-n must be >= 16" in line


def test_check_device_is_gpu_accepts_a_cuda_device_and_refuses_a_cpu():
    # no error: whether the GPU exists is chosen_device's question
    ceiling.check_device_is_gpu("cuda:1", "cuda:1")
    with pytest.raises(ceiling.LeversError, match=r"--device cpu was asked for"):
        ceiling.check_device_is_gpu("cpu", "cpu")


def test_help_of_ceiling_says_it_needs_a_gpu(capsys):
    main(["levers", "ceiling", "--help"])  # help returns (exit 0) rather than raising
    text = " ".join(capsys.readouterr().out.split())
    assert "Needs an NVIDIA GPU: a CPU is refused" in text


# --- sweep --levers on a CPU ----------------------------------------------------------------------
@pytest.mark.parametrize(("levers", "said"), [
    ("graphs", "error: --levers graphs: none of its levers runs on cpu (cudagraph: CUDA graphs need a CUDA "
               "device; this device is cpu), so its rows would measure the eager model; use --levers none "
               f"there, or levers among {CPU_LEVERS}"),
    ("cudagraph", "error: --levers cudagraph: cudagraph: CUDA graphs need a CUDA device; this device is cpu "
                  f"(levers that run on cpu: {CPU_LEVERS})"),
    ("compile-graphs", "error: --levers compile-graphs: compile-graphs: CUDA graphs need a CUDA device; this "
                       f"device is cpu (levers that run on cpu: {CPU_LEVERS})"),
    ("max,sdpa-cudnn", "error: --levers max,sdpa-cudnn: sdpa-cudnn: the cudnn attention backend needs CUDA; "
                       f"this device is cpu (levers that run on cpu: {CPU_LEVERS})"),
])
def test_a_spec_the_cpu_cannot_run_is_refused_before_any_folder(tmp_path, capsys, no_meter, levers, said):
    out_dir = tmp_path / "runs"
    assert error_line([*SWEEP, "--levers", levers, "--out-dir", str(out_dir)], capsys) == said
    assert not out_dir.exists()


def test_levers_on_device_sorts_a_spec_into_what_runs_and_what_cannot():
    runs, cannot = levers_on_device(parse_levers("max"), "cpu")
    assert sorted(runs) == ["channels-last", "fp16", "fuse-qkv", "sdpa-best"]
    assert cannot == {"cudagraph": "CUDA graphs need a CUDA device; this device is cpu"}
    runs, cannot = levers_on_device(parse_levers("max,compile-blocks"), "cuda:0")
    assert sorted(runs) == ["channels-last", "compile-blocks", "cudagraph", "fp16", "fuse-qkv",
                            "sdpa-best"]
    assert cannot == {}
    assert levers_on_device(parse_levers("none"), "cpu") == ([], {})


def test_a_level_with_one_lever_left_runs_and_says_what_was_skipped(tmp_path, capsys):
    """graphs,fuse-qkv on a CPU: the graph is skipped, the fused projections applied; the line comes once,
    before the summary, and the rows keep the spec as asked (the table has no applied-levers column)."""
    out = tmp_path / "steps.csv"
    main([*SWEEP, "--levers", "graphs,fuse-qkv", "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    said = ("levers graphs,fuse-qkv on cpu (audioldm, float32): applied fuse-qkv; skipped cudagraph (CUDA "
            "graphs need a CUDA device; this device is cpu); the rows' optimize column says graphs,fuse-qkv, "
            "as asked")
    assert lines.count(said) == 1
    assert lines.index(said) < next(i for i, line in enumerate(lines) if line.startswith("sweep steps"))
    rows = schema.read_runs(out)
    assert rows["optimize"].tolist() == ["graphs,fuse-qkv"] and rows["status"].tolist() == ["ok"]


class _Built:
    """Stands in for a built adapter: only the record apply_levers leaves on it."""

    def __init__(self, record: AppliedLevers) -> None:
        self.applied_levers = record


def test_levers_line_names_the_precision_the_backend_and_a_model_skip():
    levers = parse_levers("max")
    record = AppliedLevers(levers=levers, dtype="float16", applied=["fuse-qkv", "sdpa-best"],
                           skipped={"channels-last": "the denoiser's convolutions are 1-D"},
                           notes={"sdpa": "flash", "sdpa_ms": {"flash": 1.0}})
    opts = SweepOptions(model="stable-audio-open", experiments=("steps",), levers=levers)
    assert levers_line(opts, _Built(record), "cuda:0") == (
        "levers max on cuda:0 (stable-audio-open, float16): applied precision float16, fuse-qkv, "
        "sdpa-best (flash); skipped channels-last (the denoiser's convolutions are 1-D); the rows' optimize "
        "column says max, as asked")
    only = parse_levers("channels-last")
    skipped = AppliedLevers(levers=only, dtype="float32", skipped={"channels-last": "1-D"})
    opts = SweepOptions(model="stable-audio-open", experiments=("steps",), levers=only)
    assert levers_line(opts, _Built(skipped), "cpu").startswith(
        "levers channels-last on cpu (stable-audio-open, float32): applied nothing; "
        "skipped channels-last (1-D)")


def test_one_rule_says_which_levers_a_cpu_cannot_run():
    """The sweep's refusal and apply_levers' skips come from the same function."""

    from tta_energy.levers.apply import unrunnable_levers
    from tta_energy.levers.spec import SINGLE_LEVERS

    cpu = torch.device("cpu")
    cannot = {lv for lv in SINGLE_LEVERS if unrunnable_levers(parse_levers(lv), cpu)}
    assert cannot == {"compile-graphs", "cudagraph", "sdpa-cudnn", "sdpa-efficient", "fp8", "tf32"}
    assert runner.runnable_single_levers("cpu") == [lv for lv in SINGLE_LEVERS if lv not in cannot]
    assert unrunnable_levers(parse_levers("max"), cpu) == {
        "cudagraph": "CUDA graphs need a CUDA device; this device is cpu"}


# --- levers run on a CPU ---------------------------------------------------------------------------
LEVERS_RUN = ["levers", "run", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--steps", "2",
              "--batches", "1", "--repeats", "1", "--duration-s", "1", "--idle-s", "0", "--min-window-s", "0",
              "--no-profile", "--ceiling-s", "0.02", "--ceiling-n", "32", "--history", ""]


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
@pytest.mark.parametrize(("tiers", "said"), [
    (["--full", "cudagraph", "--batch1", "", "--single", ""],
     "error: --full cudagraph: cudagraph: CUDA graphs need a CUDA device; this device is cpu (levers that "
     f"run on cpu: {CPU_LEVERS})"),
    (["--full", "none fp8"],
     "error: --full fp8: fp8: float8 matrix products need an NVIDIA GPU of compute capability 8.9+; this "
     f"device is cpu (levers that run on cpu: {CPU_LEVERS})"),
    (["--full", "none", "--batch1", "graphs", "--single", ""],
     "error: --batch1 graphs: none of its levers runs on cpu (cudagraph: CUDA graphs need a CUDA device; "
     "this device is cpu), so its rows would measure the eager model; leave it out of --batch1 there, or "
     f"levers among {CPU_LEVERS}"),
    (["--full", "none", "--single", "max,sdpa-cudnn"],
     "error: --single max,sdpa-cudnn: sdpa-cudnn: the cudnn attention backend needs CUDA; this device is cpu "
     f"(levers that run on cpu: {CPU_LEVERS})"),
    (["--full", "none", "--batch1", "", "--single", "", "--compile-models", "audioldm"],
     "error: --compile-models audioldm (compile-graphs): compile-graphs: CUDA graphs need a CUDA device; "
     f"this device is cpu (levers that run on cpu: {CPU_LEVERS})"),
])
def test_levers_run_refuses_a_lever_the_cpu_lacks_as_sweep_does_before_anything_is_written(
        tmp_path, capsys, no_meter, tiers, said, dry_run):
    """The sweep's rule and wording (runner.check_levers_device), before the run measures or writes
    anything: not a configuration reported as not run beside a report of the others."""
    out_dir = tmp_path / "raw"
    line = refused(capsys, [*LEVERS_RUN, "--out-dir", str(out_dir), *tiers, *dry_run])
    assert line == said
    assert list(tmp_path.iterdir()) == []


def test_levers_run_keeps_its_default_tiers_on_a_cpu_and_a_plan_dry_run_prices_for_a_gpu(capsys, tmp_path):
    """Levers are refused where named: the default tiers' graphs (the same configuration as none on a CPU)
    stays in the dry run; a plan's dry run without --device prices a GPU's cells (fp8, CUDA graphs) from any
    machine, as scripts/gpu_levers.sh dry does."""
    from tta_energy.cli.main import main

    main([*LEVERS_RUN, "--out-dir", str(tmp_path / "raw"), "--dry-run"])
    assert "audioldm batch 1: none, max, graphs" in capsys.readouterr().out
    plan = tmp_path / "plan.toml"
    plan.write_text('[levers]\nmodels = ["audioldm"]\nspecs = ["none", "graphs", "max,fp8"]\nsteps = [2]\n'
                    'batches = [1]\nrepeats = 1\nduration_s = 1\n', encoding="utf-8")
    main(["levers", "run", "--plan", str(plan), "--size", "tiny", "--history", "", "--dry-run"])
    assert "none, graphs, max,fp8" in capsys.readouterr().out
    line = refused(capsys, ["levers", "run", "--plan", str(plan), "--size", "tiny", "--history", "",
                            "--device", "cpu", "--dry-run"])
    assert line.startswith(f"error: {plan}: graphs: none of its levers runs on cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.toml"]
