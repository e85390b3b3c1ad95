"""Energy levers on tiny models: parsing, the levers a CPU can run (precision, batching, compilation
without graphs, attention backend, channels-last, fused projections, Stable Audio Open's trim) with the
equivalence check, the levers sweep end to end, and the report's arithmetic. GPU-only levers (CUDA graphs,
cuDNN attention, compile-graphs) are tested only where torch sees a GPU."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch

from tta_energy import schema
from tta_energy.levers import ceiling, experiment, report, summary, tables
from tta_energy.levers.apply import CudaGraphDenoiser, apply_levers
from tta_energy.levers.equivalence import error_tolerance, is_lossless, relative_error
from tta_energy.levers.spec import LeverError, LeversError, parse_levers
from tta_energy.models.base import GenerationRequest
from tta_energy.models.registry import build_model

PROMPT = "Water running out of a faucet, some hitting a sink bottom, and some water filling a cup"
NO_CUDA = "needs an NVIDIA GPU: CUDA graphs, cuDNN attention and compile-graphs do not exist on a CPU"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(model: str = "audioldm", device: str = "cpu"):
    """A fresh tiny replica in fp32 (seeded: every build has the same weights)."""
    return build_model(model, size="tiny", dtype="float32", device=device)


def request(**kwargs) -> GenerationRequest:
    values = {"prompts": [PROMPT], "steps": 3, "duration_s": 1.0, "seed": 3}
    values.update(kwargs)
    return GenerationRequest(**values)


@pytest.fixture(scope="module")
def reference():
    """fp32 eager AudioLDM output: the reference of the equivalence checks."""
    return tiny().generate(request())


# --- parsing ---------------------------------------------------------------------------------------------
def test_levels_expand_to_levers():
    none = parse_levers("none")
    assert none.is_none and not none.cudagraph and none.precision is None and none.compile_mode is None
    graphs = parse_levers("graphs")
    assert graphs.cudagraph and graphs.precision is None and graphs.sdpa is None
    mx = parse_levers("max")
    assert mx.cudagraph and mx.sdpa == "best" and mx.channels_last and mx.fuse_qkv
    assert mx.precision == "float16"
    assert mx.implied == {"cudagraph", "sdpa-best", "channels-last", "fuse-qkv"}
    combo = parse_levers(" Compile , bf16,sdpa-flash ")
    assert combo.spec == "compile,bf16,sdpa-flash"
    assert (combo.compile_mode, combo.precision, combo.sdpa) == ("default", "bfloat16", "flash")
    assert not combo.cudagraph
    assert not combo.implied  # asked for by name: an unavailable one is an error, not a skip
    # an explicit choice overrides what max implies
    assert parse_levers("max,sdpa-math").sdpa == "math"
    assert parse_levers("max,bf16").precision == "bfloat16"
    assert not parse_levers("max,compile-graphs").cudagraph


def test_a_spec_without_some_of_its_levers_is_parsed_again():
    assert parse_levers("none").items == ("none",)
    assert parse_levers(" Max , fp8 ").items == ("max", "fp8")
    assert parse_levers("max,fp8").without("fp8") == parse_levers("max")
    assert parse_levers("fp16,compile,fp8").without("fp8").spec == "fp16,compile"
    assert parse_levers("max,trim-latents").without("trim-latents").spec == "max"
    assert parse_levers("fp8").without("fp8").is_none  # nothing left: the study default
    assert parse_levers("graphs").without("fp8").spec == "graphs"  # a lever it lacks: unchanged
    with pytest.raises(LeverError, match="cudagraph comes from a level"):
        parse_levers("max").without("cudagraph")
    assert [parse_levers(s).compiled for s in ("compile", "compile-graphs,tf32", "max,compile-blocks")] == [
        True, True, True]
    assert not parse_levers("graphs").compiled and not parse_levers("none").compiled
    blocks = parse_levers("max,compile-blocks")  # compiled blocks inside the whole denoiser's CUDA graph
    assert (blocks.compile_mode, blocks.compile_scope, blocks.cudagraph) == ("default", "blocks", True)
    assert parse_levers("compile").compile_scope == parse_levers("compile-graphs").compile_scope == "denoiser"
    assert parse_levers("trim-latents").changes_behaviour and not parse_levers("max").changes_behaviour


@pytest.mark.parametrize("spec, words", [
    ("", "names nothing: give one or more levers or a level"), (",", "names nothing"),
    ("turbo", "unknown lever 'turbo'"), ("fp16,bf16", "two precisions"),
    ("sdpa-flash,sdpa-math", "two attention backends"), ("none,fp16", "cannot be combined"),
    ("compile-graphs,cudagraph", "already captures CUDA graphs"),
    ("compile-graphs,compile", "two compilations"), ("compile,compile-blocks", "two compilations"),
    ("graphs,graphs", "names graphs twice"), ("max,,graphs", "has an empty item"),
    ("max,", "has an empty item"),
])
def test_bad_specs_fail_with_one_line(spec, words):
    with pytest.raises(LeverError) as err:
        parse_levers(spec)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_cli_explain_and_bad_spec(capsys):
    from tta_energy.cli.main import main

    main(["levers", "explain", "max"])
    assert '"cudagraph": true' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["levers", "explain", "fp16,turbo"])
    assert exit_.value.code == 2
    assert "error: unknown lever 'turbo'" in capsys.readouterr().err


def test_dtype_resolution_per_model():
    assert parse_levers("none").precision_for("audioldm") == "float16"  # the study's default
    assert parse_levers("none").precision_for("tango") == "float32"  # Tango's code runs fp32
    assert parse_levers("max").precision_for("tango") == "float16"
    assert parse_levers("bf16,cudagraph").precision_for("tango") == "bfloat16"
    # the levers' precision wins over the configuration's and the option's; then the configuration's
    assert parse_levers("fp16").precision_for("tango", "bfloat16", "float32") == "float16"
    assert parse_levers("graphs").precision_for("audioldm", "bfloat16", "float32") == "bfloat16"
    assert parse_levers("graphs").precision_for("audioldm", None, "fp32") == "float32"


# --- applying on the CPU ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, needle", [("cudagraph", "CUDA graphs need a CUDA device"),
                                          ("compile-graphs", "CUDA graphs need a CUDA device"),
                                          ("fp32,sdpa-cudnn", "needs CUDA"),
                                          ("tf32", "TF32 tensor cores need an NVIDIA GPU")])
def test_gpu_only_levers_named_on_cpu_fail_clearly(spec, needle):
    with pytest.raises(LeverError) as err:
        apply_levers(tiny(), spec)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_tf32_sets_the_matmul_precision_for_the_denoiser_alone(monkeypatch):
    """On a GPU with TF32 tensor cores (faked here: the flag exists on a CPU, where it changes nothing), the
    denoiser's calls run with the float32 matrix-product precision 'high', captures and compilations made
    while applying too; the process's setting is back after applying and after every call, so the text
    encoder, decoder and the configurations measured next keep theirs. A model in float16 skips it."""
    from tta_energy.levers import apply

    monkeypatch.setattr(apply, "tf32_unavailable", lambda device: None)
    seen: list[str] = []
    assert parse_levers("compile-graphs,tf32").names == ("compile-graphs", "tf32")
    adapter = apply_levers(tiny("tango"), "tf32")
    assert torch.get_float32_matmul_precision() == "highest"
    assert adapter.applied_levers.applied == ["tf32"] and isinstance(adapter.denoiser, apply.Tf32Denoiser)
    adapter.denoiser.base_module.register_forward_hook(
        lambda *_: seen.append(torch.get_float32_matmul_precision()))
    out = adapter.generate(request(steps=2, duration_s=None))
    assert np.isfinite(out.waveforms).all()
    assert seen == ["high", "high"] and torch.get_float32_matmul_precision() == "highest"
    half = apply_levers(tiny("tango"), "fp16,tf32").applied_levers
    assert half.applied == [] and half.skipped == {
        "tf32": "the model runs in float16; TF32 changes float32 matrix products"}


def test_max_on_cpu_applies_what_exists_and_states_what_it_skips():
    adapter = apply_levers(tiny(), "max", duration_s=1.0)
    rec = adapter.applied_levers
    assert rec.dtype == "float16" and adapter.dtype == torch.float16
    assert {"fuse-qkv", "channels-last", "sdpa-best"} <= set(rec.applied)
    assert "CUDA" in rec.skipped["cudagraph"]
    assert rec.notes["sdpa"] in ("flash", "math") and set(rec.notes["sdpa_ms"]) <= {"flash", "math"}
    unet = adapter.denoiser.base_module
    assert unet is adapter.pipe.unet  # the wrapper calls the same module
    conv = next(m for m in unet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert hasattr(next(m for m in unet.modules() if type(m).__name__ == "Attention"), "to_qkv")
    assert adapter.denoiser.config.in_channels == unet.config.in_channels  # attributes read through
    with pytest.raises(LeverError, match="already applied"):
        apply_levers(adapter, "fp16")


def test_cpu_levers_keep_the_output(reference):
    """Levers at fp32 reproduce the fp32 eager reference to rounding; lower precisions stay within their
    normal error (the plain eager run at that precision is the yardstick)."""
    for spec in ("fp32,fuse-qkv,channels-last,sdpa-math", "fp32,sdpa-flash"):
        out = apply_levers(tiny(), spec, duration_s=1.0).generate(request())
        err_lat, err_wav = relative_error(out.latents, reference.latents), relative_error(out.waveforms,
                                                                                         reference.waveforms)
        assert err_lat < 1e-4 and err_wav < 1e-4, spec
        assert is_lossless(spec, "float32", err_lat, 0.0) and is_lossless(spec, "float32", err_wav, 0.0)
    plain = apply_levers(tiny(), "bf16").generate(request())
    yard = relative_error(plain.latents, reference.latents)
    assert 1e-4 < yard < 0.1  # bf16 is not fp32, and not garbage either
    fused = apply_levers(tiny(), "bf16,fuse-qkv,channels-last,sdpa-math", duration_s=1.0).generate(request())
    err = relative_error(fused.latents, reference.latents)
    assert is_lossless("bf16,fuse-qkv", "bfloat16", err, yard)
    # a change well beyond the precision's normal error is flagged
    assert not is_lossless("bf16", "bfloat16", 10 * error_tolerance("bfloat16", yard), yard)
    assert not is_lossless("fp32", "float32", float("nan"), 0.0)


def test_batching_keeps_each_clip(reference):
    """Ten waveforms of one prompt in one call: the first is the batch-1 clip (same noise, same weights)."""
    out = tiny().generate(request(waveforms_per_prompt=2))
    assert out.waveforms.shape[0] == 2
    assert relative_error(out.latents[:1], reference.latents) < 1e-5
    assert relative_error(out.waveforms[:1], reference.waveforms) < 1e-5


def test_compile_without_graphs_on_cpu():
    """torch.compile of the denoiser (Dynamo capture of the whole step, guards holding across steps). The
    backend is Dynamo's eager one: Inductor's C++ builds take many minutes on the 2 shared CI cores."""
    import torch._dynamo

    torch._dynamo.reset()
    ref = tiny("stable-audio-open").generate(request(steps=2))
    levers = dataclasses.replace(parse_levers("fp32,compile"), compile_backend="eager")
    adapter = apply_levers(tiny("stable-audio-open"), levers, duration_s=1.0)
    assert "compile" in adapter.applied_levers.applied and hasattr(adapter.denoiser, "_orig_mod")
    first = adapter.generate(request(steps=2))
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    second = adapter.generate(request(steps=2))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames  # no recompilation per step/call
    for out in (first, second):
        assert relative_error(out.latents, ref.latents) < 1e-5
        assert relative_error(out.waveforms, ref.waveforms) < 1e-5
    torch._dynamo.reset()


def test_tf32_outside_a_compiled_denoiser_compiles_once_and_leaves_the_process_setting(monkeypatch):
    """The TF32 wrapper is outermost: the compiled module is traced at its first call under the setting and
    its guards hold across steps and calls (no recompilation), and the process's setting is back after each
    generation."""
    import torch._dynamo

    from tta_energy.levers import apply

    monkeypatch.setattr(apply, "tf32_unavailable", lambda device: None)
    torch._dynamo.reset()
    levers = dataclasses.replace(parse_levers("fp32,compile,tf32"), compile_backend="eager")
    adapter = apply_levers(tiny("stable-audio-open"), levers, duration_s=1.0)
    assert adapter.applied_levers.applied == ["compile", "tf32"]
    assert isinstance(adapter.denoiser, apply.Tf32Denoiser) and hasattr(adapter.denoiser.inner, "_orig_mod")
    adapter.generate(request(steps=2))
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    adapter.generate(request(steps=2))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames
    assert torch.get_float32_matmul_precision() == "highest"
    torch._dynamo.reset()


def test_stable_audio_trim_changes_behaviour_and_is_never_lossless():
    ref = tiny("stable-audio-open").generate(request(steps=2))
    spec = "fp32,trim-latents,fuse-qkv,channels-last"
    adapter = apply_levers(tiny("stable-audio-open"), spec, duration_s=1.0)
    rec = adapter.applied_levers
    full = int(adapter.denoiser.config.sample_size)
    assert adapter.latent_length == adapter.latent_frames_for(1.0) < full
    assert rec.notes["latent_frames"] == f"{adapter.latent_length}/{full}"
    assert "AttnProcessor2_0" in rec.skipped["fuse-qkv"]  # its rotary processor is left alone
    assert "channels-last" in rec.skipped
    out = adapter.generate(request(steps=2))
    assert out.waveforms.shape == ref.waveforms.shape  # same audio length...
    assert out.latents.shape[-1] == adapter.latent_length < ref.latents.shape[-1]  # ...from fewer latents
    assert math.isnan(relative_error(out.latents, ref.latents))
    err = relative_error(out.waveforms, ref.waveforms)
    assert err > 1e-3 and not is_lossless("fp32,trim-latents", "float32", err, 0.0)
    assert not is_lossless("trim-latents", "float32", 0.0, 0.0)  # by design, whatever the error


# --- GPU-only levers -------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_cuda_graph_levers_keep_the_output():
    ref = tiny(device="cuda").generate(request())
    graphed = apply_levers(tiny(device="cuda"), "fp32,cudagraph", duration_s=1.0)
    assert isinstance(graphed.denoiser, CudaGraphDenoiser)
    for _ in range(2):  # the second call replays the captured graph
        out = graphed.generate(request())
        assert relative_error(out.latents, ref.latents) < 1e-4
    assert graphed.denoiser.captures == 1
    graphed.generate(request(waveforms_per_prompt=2))
    assert graphed.denoiser.captures == 2  # a new batch size is a new graph
    plain = apply_levers(tiny(device="cuda"), "fp16").generate(request())
    yard = relative_error(plain.latents, ref.latents)
    for spec in ("max", "fp16,sdpa-cudnn,cudagraph"):
        out = apply_levers(tiny(device="cuda"), spec, duration_s=1.0).generate(request())
        assert is_lossless(spec, "float16", relative_error(out.latents, ref.latents), yard), spec


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_tf32_reaches_the_matrix_products_of_a_captured_graph_and_of_compiled_code():
    """TF32 changes the float32 products (an error against plain fp32 well above what capture or compilation
    alone gives), in the eager denoiser, in a graph captured while applying and in compiled code; and only
    while the denoiser runs."""
    ref = tiny("tango", "cuda").generate(request(steps=2, duration_s=None))
    errors = {}
    for spec in ("graphs", "tf32", "graphs,tf32", "compile-graphs,tf32"):
        out = apply_levers(tiny("tango", "cuda"), spec).generate(request(steps=2, duration_s=None))
        errors[spec] = relative_error(out.latents, ref.latents)
        assert torch.get_float32_matmul_precision() == "highest", spec
    for spec in ("tf32", "graphs,tf32", "compile-graphs,tf32"):
        assert errors[spec] > max(10 * errors["graphs"], 1e-6), errors
        assert errors[spec] < 1e-2, errors


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_compile_graphs_on_gpu():
    ref = tiny("stable-audio-open", "cuda").generate(request(steps=2))
    adapter = apply_levers(tiny("stable-audio-open", "cuda"), "fp32,compile-graphs", duration_s=1.0)
    for _ in range(2):
        out = adapter.generate(request(steps=2))
        assert relative_error(out.latents, ref.latents) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_compiled_blocks_inside_one_cuda_graph_on_gpu():
    from tta_energy.levers.apply import BlockCompiledDenoiser

    ref = tiny("stable-audio-open", "cuda").generate(request(steps=2))
    adapter = apply_levers(tiny("stable-audio-open", "cuda"), "fp32,compile-blocks,cudagraph", duration_s=1.0)
    assert isinstance(adapter.denoiser, CudaGraphDenoiser)
    assert isinstance(adapter.denoiser.inner, BlockCompiledDenoiser)
    for _ in range(2):
        out = adapter.generate(request(steps=2))
        assert relative_error(out.latents, ref.latents) < 1e-3


# --- the sweep and its report ----------------------------------------------------------------------------
def test_levers_sweep_end_to_end_on_cpu(tmp_path):
    """The whole sweep on a tiny model: reference, warm-ups, rounds, equivalence, report files. GPU energy is
    NaN on a CPU (never 0), so energy columns are NaN here; the arithmetic is tested below."""
    opts = experiment.LeversOptions(models=("audioldm",), out_dir=tmp_path / "raw", full_specs=("none",),
                            single_specs=("fp32,fuse-qkv", "bf16"), steps=(2,), batches=(1, 2), repeats=1,
                            duration_s=1.0, size="tiny", device="cpu", ceiling_s=0.05, ceiling_n=64, idle_s=0,
                            min_window_s=0, profile=False, progress=lambda _msg: None)
    folder = experiment.run_levers(opts).folder
    runs = schema.read_runs(folder / tables.RUNS_FILE)
    assert set(runs["optimize"]) == {"fp32", "none", "fp32,fuse-qkv", "bf16"}
    assert (runs["status"] == "ok").all() and runs["is_warmup"].sum() == 5  # fp32, none x2 batches, 2 singles
    assert (runs["gpu_energy_method"] == "unavailable").all() and runs["gpu_energy_J"].isna().all()
    rounds = runs[~runs["is_warmup"] & (runs["optimize"] != "fp32")]
    assert list(rounds["waveforms_per_prompt"]) == [1, 1, 1, 2]  # the targets' cell first in a round
    configs = pd.read_csv(folder / tables.CONFIGS_FILE).set_index("optimize")
    assert "reference_conv_ms" in configs.loc["fp32", "notes"]  # the reference's convolution mode was timed
    ok = configs[configs["status"] == "ok"]
    assert (ok["setup_s"] >= 0).all()  # applying each configuration is timed (its joules: NaN on a CPU)
    csv_path, md_path, png_path, targets_path = report.build_report([folder], tmp_path)
    table = pd.read_csv(csv_path)
    assert set(report.LEVERS_COLUMNS) == set(table.columns)
    row = table.set_index(["optimize", "waveforms_per_prompt"])
    assert row.loc[("fp32,fuse-qkv", 1), "rel_error_latents"] < 1e-4
    assert bool(row.loc[("fp32,fuse-qkv", 1), "lossless"])
    # bf16 is judged against the study default's error (tiny AudioLDM: fp16, eager), not against bf16's own:
    # twice that error (fp16's floor of 2e-3 applies only where that error is 0 or unknown)
    yardstick = row.loc[("none", 1), "rel_error_latents"]
    assert 0 < yardstick < 0.01  # fp16 rounding, not a broken run
    assert row.loc[("bf16", 1), "tolerance_latents"] == pytest.approx(2.0 * yardstick)
    # bf16's 8-bit mantissa misses fp16's accuracy by far (about 1e-2 against a tolerance near 3e-3)
    assert row.loc[("bf16", 1), "rel_error_latents"] > 2 * row.loc[("bf16", 1), "tolerance_latents"]
    assert not bool(row.loc[("bf16", 1), "lossless"])
    assert row.loc[("none", 2), "gflop"] > row.loc[("none", 1), "gflop"] > 0
    assert "not measured" in md_path.read_text() and png_path.stat().st_size > 0
    # no GPU energy on a CPU: each of AudioLDM's targets is in the table, judged neither met nor missed
    targets = summary.read_targets(targets_path)
    assert set(targets["model"]) == {"audioldm"} and len(targets) >= 2 and targets["met"].isna().all()
    ceiling = pd.read_csv(folder / tables.CEILING_FILE)
    assert list(ceiling["when"]) == ["start", "end"] and (ceiling["tflop_per_s"] > 0).all()


def _row(**values) -> dict[str, object]:
    row = schema.empty_row()
    row.update(source="tta-energy", run_id="r1", experiment="levers", model="audioldm", size="full",
               weights="random", dtype="float16", n_prompts=1, duration_s=10.0, guidance_scale=2.5,
               status="ok", gpu_energy_method="nvml_interpolated", cpu_energy_method="unavailable",
               prompt=PROMPT, seed=0, gpu_idle_power_W=80.0)
    row.update(values)
    row["n_clips"] = row["waveforms_per_prompt"]
    row["audio_seconds"] = 10.0 * row["n_clips"]
    row["denoiser_calls"] = row["steps"]
    return row


def test_report_arithmetic_on_known_rows(tmp_path):
    """Reduction, energy per step, FLOP/J against the ceiling, one-time cost and payoff from rows whose
    energies are known; targets met and missed are said so in the summary."""
    raw = tmp_path / "raw"
    energies = {"none": 400.0, "max": 80.0, "bf16": 380.0, "max,trim-latents": 40.0}  # J, 100 steps, batch 1
    for spec, energy in energies.items():
        dtype = "bfloat16" if spec == "bf16" else "float16"
        for repeat in range(2):
            schema.append_row(raw / tables.RUNS_FILE, _row(optimize=spec, dtype=dtype, steps=100,
                                                       waveforms_per_prompt=1, repeat=repeat, wall_s=2.0,
                                                       gpu_energy_J=energy + (repeat - 0.5),
                                                       energy_denoising_J=0.9 * energy))
        schema.append_row(raw / tables.RUNS_FILE, _row(optimize=spec, dtype=dtype, steps=100,
                                                   waveforms_per_prompt=1, repeat=0, is_warmup=True,
                                                   wall_s=7.0, gpu_energy_J=energy + 1000.0))
        tables.append_csv(raw / tables.CONFIGS_FILE, {
            "run_id": "r1", "model": "audioldm", "optimize": spec, "steps": 100, "waveforms_per_prompt": 1,
            "status": "ok", "dtype": dtype, "applied": "", "skipped": "{}", "notes": "{}",
            "changes_behaviour": "trim" in spec, "latent_length": np.nan, "gflop_per_step": 2.0,
            "gflop_per_generation": 1000.0, "denoiser_calls_nominal": 100, "gflop": 1200.0,
            "setup_s": 12.0 if spec == "max" else 0.0, "setup_J": 3000.0 if spec == "max" else 0.0})
        errors = {"none": 1e-3, "max": 1.5e-3, "bf16": 9e-3, "max,trim-latents": 0.3}
        tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
            "run_id": "r1", "model": "audioldm", "optimize": spec, "dtype": dtype, "steps": 100,
            "waveforms_per_prompt": 1, "repeat": 0, "rel_error_latents": errors[spec],
            "rel_error_audio": errors[spec]})
    tables.append_csv(raw / tables.CEILING_FILE, {"run_id": "r1", "when": "start", "device": "cuda",
                                          "gpu_name": "H200", "n": 8192, "iterations": 10, "wall_s": 1.0,
                                          "gpu_energy_J": 1.0, "tflop_per_s": 1.0, "tflop_per_J": 1.0,
                                          "power_W": 600.0, "timestamp": ""})
    table = report.levers_table([raw]).set_index("optimize")
    assert table.loc["max", "reduction_vs_none"] == pytest.approx(5.0)
    assert table.loc["max", "denoising_J_per_call"] == pytest.approx(0.9 * 80.0 / 100)
    assert table.loc["max", "tflop_per_J"] == pytest.approx(1200e9 / 80.0 / 1e12)
    assert table.loc["max", "fraction_of_ceiling"] == pytest.approx(1200e9 / 80.0 / 1e12)
    # one-time cost: applying the levers (12 s, 3 kJ) plus the warm-up's extra over a steady generation
    assert table.loc["max", "compile_J"] == pytest.approx(4000.0) and table.loc["max", "compile_s"] == 17.0
    assert table.loc["max", "payoff_clips"] == math.ceil(4000.0 / 320.0)
    assert table.loc["bf16", "payoff_clips"] == math.ceil(1000.0 / 20.0)
    assert table.drop(index=["max,trim-latents", "bf16"])["lossless"].all()
    # bf16 (9e-3) is beyond 2x the study default's error (fp16 `none`: 1e-3; floor 2e-3)
    assert not table.loc["bf16", "lossless"] and table.loc["bf16", "tolerance_latents"] == pytest.approx(2e-3)
    assert not table.loc["max,trim-latents", "lossless"]  # the cheapest, but it changes the output
    text = summary.summary_markdown(table.reset_index(), pd.read_csv(raw / tables.CEILING_FILE),
                                   pd.DataFrame())
    assert "| audioldm | 400.0 | `max` | 80.0 | 5.00x | 4.5x | yes |" in text
    assert "short of 40%" in text  # 1.5 % of the ceiling: the FLOP/J target is missed and said so
    assert "| audioldm | `max` | 100 | 1 | 0.015 | 2% | 40% | no | same |" in text
    assert "| `max,trim-latents` | 100 | 1 | 40.0 | `max` 80.0 | 2.00x |" in text
    assert "audioldm `max,trim-latents` (float16): changes the model's behaviour by design" in text
    assert "| audioldm | `bf16` | bfloat16 | 380.0 | 3.420 | 1.05x | 9.0e-03 | no | r1 |" in text
    # a lever far outside fp16's normal error is flagged in the summary
    tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
        "run_id": "r1", "model": "audioldm", "optimize": "max", "dtype": "float16", "steps": 100,
        "waveforms_per_prompt": 1, "repeat": 1, "rel_error_latents": 0.5, "rel_error_audio": 1e-3})
    flagged = report.levers_table([raw])
    assert not flagged.set_index("optimize").loc["max", "lossless"]
    text = summary.summary_markdown(flagged, pd.DataFrame(), pd.DataFrame())
    assert "audioldm `max` (float16): latents error 5.00e-01" in text
    # `max` no longer lossless: the best lossless is `none`, and the table and the miss name `max` beside it
    row = "| audioldm | `none` | 100 | 1 | 0.003 | 0% | 40% | no | `max` (float16), 100 steps, batch 1: 2% |"
    assert row in text
    assert "At any precision: `max` (float16), 100 steps, batch 1: 2%. Measured:" in text
    # applying `max` took 12 s whose energy was not measured (its window got no counter update): the
    # one-time cost and its payoff are unknown, not the warm-up's extra alone
    configs = pd.read_csv(raw / tables.CONFIGS_FILE)
    configs.loc[configs["optimize"] == "max", "setup_J"] = np.nan
    configs.to_csv(raw / tables.CONFIGS_FILE, index=False)
    unknown = report.levers_table([raw]).set_index("optimize").loc["max"]
    assert unknown["compile_s"] == 17.0
    assert np.isnan(unknown["compile_J"]) and np.isnan(unknown["payoff_clips"])


def test_the_ceiling_line_says_n_a_where_nothing_measured_its_energy():
    from types import SimpleNamespace

    from tta_energy.levers.experiment import _ceiling_text

    cpu = SimpleNamespace(precision="fp32", tflop_per_J=math.nan, tflop_per_s=0.0489, power_W=math.nan)
    assert _ceiling_text("start", cpu) == "ceiling (start, fp32): TFLOP/J n/a, 0.0489 TFLOP/s, power n/a"
    gpu = SimpleNamespace(precision="bf16", tflop_per_J=0.9612, tflop_per_s=612.0, power_W=637.2)
    assert _ceiling_text("end", gpu) == "ceiling (end, bf16): 0.961 TFLOP/J, 612 TFLOP/s, 637 W"


def test_ceiling_loop_on_cpu_measures_rate_not_energy():
    """The loop the levers experiment runs on a CPU: a rate, no energy, and the precision it ran in."""
    from tta_energy.experiments.runner import SweepOptions, make_meter

    meter = make_meter(SweepOptions(model="", experiments=("levers",), codecarbon=False), "cpu", None)
    with meter:
        res = ceiling.measure_ceiling(meter, "cpu", seconds=0.05, n=64)
        row = ceiling.ceiling_record(res, "r1", "start", dict(meter.provenance()))
    assert row["tflop_per_s"] > 0 and math.isnan(row["tflop_per_J"])  # no GPU meter on a CPU: NaN, never 0
    assert row["n"] == 64
    assert row["precision"] == "fp32"  # a CPU runs the loop in float32 (its bf16 matmul is an emulation)
    with pytest.raises(LeversError):
        ceiling.measure_ceiling_once(device="cpu", seconds=0, n=64)


def test_the_ceiling_loops_default_size_is_the_devices():
    """Left out, the loop's matrix is the GPU's 8192 on a GPU and 256 on a CPU (where no energy is measured
    and 8192 would take two CPU cores minutes); a size given is kept on either."""
    from tta_energy.levers.spec import CEILING_MATRIX_N, CPU_CEILING_MATRIX_N

    assert experiment.LeversOptions(models=["audioldm"]).ceiling_n is None
    assert ceiling.ceiling_matrix_n("cuda:1") == CEILING_MATRIX_N == 8192
    assert ceiling.ceiling_matrix_n("cpu") == CPU_CEILING_MATRIX_N == 256
    assert ceiling.ceiling_matrix_n("cpu", 64) == 64 and ceiling.ceiling_matrix_n("cuda", 1024) == 1024


def test_time_budget_leaves_models_out_and_says_so(tmp_path):
    said: list[str] = []
    opts = experiment.LeversOptions(models=("audioldm",), out_dir=tmp_path, size="tiny", device="cpu",
                                    ceiling_s=0.02, ceiling_n=32, idle_s=0, time_budget_s=0.001,
                                    progress=said.append)
    experiment.run_levers(opts)
    assert "audioldm: not started (time budget spent)" in said
    assert not (tmp_path / tables.RUNS_FILE).exists()
    assert len(pd.read_csv(tmp_path / tables.CEILING_FILE)) == 2  # the ceiling is still measured at both ends
    with pytest.raises(LeversError, match="--lean-models"):
        experiment.run_levers(dataclasses.replace(opts, lean_models=("tango2",)))


def test_strict_fp32_restores_the_backend_flags():
    cudnn = torch.backends.cudnn
    before = (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.enabled)
    with experiment.strict_fp32("native"):
        assert not cudnn.enabled and not cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    with experiment.strict_fp32("cudnn-benchmark"):
        assert cudnn.enabled and cudnn.benchmark
    assert (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.enabled) == before
    with (pytest.raises(LeversError, match="unknown reference convolution mode"),
          experiment.strict_fp32("tf32")):
        pass


def test_fp32_default_is_judged_against_its_own_plain_run_and_unknown_payoff_is_na(tmp_path):
    """A model whose default is fp32 (Tango): `none` differs from the strict-fp32 reference by what cuDNN's
    TF32 convolutions do; that is the yardstick at fp32, not the reference's own zero error. A configuration
    with no `none` in the same cell (max at batch 10 here) has an unknown payoff, not 'never'."""
    raw = tmp_path / "raw"
    cells = {("fp32", 1): 3000.0, ("none", 1): 2200.0, ("graphs", 1): 2080.0, ("max", 10): 5000.0}
    errors = {"fp32": 0.0, "none": 3.7e-4, "graphs": 3.7e-4, "max": 2.4e-3}
    for (spec, batch), energy in cells.items():
        dtype = "float16" if spec == "max" else "float32"
        for warm in (True, False):
            schema.append_row(raw / tables.RUNS_FILE,
                              _row(model="tango", optimize=spec, dtype=dtype, steps=100,
                                   waveforms_per_prompt=batch, repeat=0, is_warmup=warm, wall_s=4.0,
                                   gpu_energy_J=energy + (300.0 if warm else 0.0),
                                   energy_denoising_J=0.95 * energy))
        tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
            "run_id": "r1", "model": "tango", "optimize": spec, "dtype": dtype, "steps": 100,
            "waveforms_per_prompt": 1, "repeat": 0, "rel_error_latents": errors[spec],
            "rel_error_audio": errors[spec]})
    table = report.levers_table([raw]).set_index(["optimize", "waveforms_per_prompt"])
    assert table.loc[("none", 1), "yardstick_latents"] == pytest.approx(3.7e-4)
    assert table.loc[("none", 1), "lossless"] and table.loc[("graphs", 1), "lossless"]
    assert table.loc[("graphs", 1), "payoff_clips"] == math.ceil(300.0 / 120.0)
    assert math.isnan(table.loc[("max", 10), "payoff_clips"])
    text = summary.summary_markdown(table.reset_index(), pd.DataFrame(), pd.DataFrame())
    assert "| tango | `max` | 10 | 0.0 | 300 | n/a |" in text  # one-time cost known, payoff unknown
    assert "n/a: the run measured no `none` at that batch size" in text
    assert "| tango | 2200.0 | `graphs` | 2080.0 | 1.06x | 1.3x | no |" in text


def test_a_run_at_other_batch_sizes_borrows_the_specs_batch_1_equivalence(tmp_path):
    """A later device call of a plan measures a spec at batch 10 only: its rows are judged by the spec's
    batch-1 error from the run that measured it (the worst over runs), not left unjudged."""
    first, later = tmp_path / "part1", tmp_path / "part2"
    for spec, error in (("none", 1e-3), ("max", 1.5e-3)):
        schema.append_row(first / tables.RUNS_FILE, _row(optimize=spec, steps=100, waveforms_per_prompt=1,
                                                         repeat=0, wall_s=2.0, gpu_energy_J=100.0))
        tables.append_csv(first / tables.EQUIVALENCE_FILE, {
            "run_id": "r1", "model": "audioldm", "optimize": spec, "dtype": "float16", "steps": 100,
            "waveforms_per_prompt": 1, "repeat": 0, "rel_error_latents": error, "rel_error_audio": error})
        schema.append_row(later / tables.RUNS_FILE, _row(run_id="r2", optimize=spec, steps=100,
                                                         waveforms_per_prompt=10, repeat=0, wall_s=5.0,
                                                         gpu_energy_J=300.0))
    table = report.levers_table([first, later]).set_index(["run_id", "optimize"])
    assert table.loc[("r2", "max"), "rel_error_latents"] == pytest.approx(1.5e-3)
    assert table.loc[("r2", "max"), "lossless"] and table.loc[("r2", "none"), "lossless"]


def test_a_failing_fp8_ceiling_costs_the_call_nothing_else(tmp_path, monkeypatch):
    """The fp8 ceiling loop is a diagnostic: a kernel error there (torch._scaled_mm on a new stack) is noted
    and the models are still measured."""
    real = experiment.measure_ceiling

    def ceiling(meter, device, seconds, n, precision="bf16"):
        if precision == "fp8":
            raise RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED")
        return real(meter, device, seconds, n, precision)

    monkeypatch.setattr(experiment, "measure_ceiling", ceiling)
    said: list[str] = []
    opts = experiment.LeversOptions(models=("audioldm",), out_dir=tmp_path / "raw", full_specs=("none",),
                                    single_specs=("fp8",), steps=(2,), batches=(1,), repeats=1,
                                    duration_s=1.0, size="tiny", device="cpu", ceiling_s=0.05, ceiling_n=64,
                                    idle_s=0, min_window_s=0, profile=False, progress=said.append)
    folder = experiment.run_levers(opts).folder
    assert any("fp8 ceiling not measured: CUBLAS_STATUS_NOT_SUPPORTED" in line for line in said)
    runs = schema.read_runs(folder / tables.RUNS_FILE)
    assert (runs.loc[runs["optimize"] == "none", "status"] == "ok").any()


def test_a_configuration_that_raises_anything_while_applied_leaves_the_others(tmp_path, monkeypatch):
    real = experiment.apply_levers

    def apply(adapter, levers, **kw):
        if levers.spec == "bf16":
            raise TypeError("quantize_() got an unexpected keyword argument")  # a library's API drift
        return real(adapter, levers, **kw)

    monkeypatch.setattr(experiment, "apply_levers", apply)
    opts = experiment.LeversOptions(models=("audioldm",), out_dir=tmp_path / "raw", full_specs=("none",),
                                    single_specs=("bf16",), steps=(2,), batches=(1,), repeats=1,
                                    duration_s=1.0, size="tiny", device="cpu", ceiling_s=0.05, ceiling_n=64,
                                    idle_s=0, min_window_s=0, profile=False, progress=lambda _msg: None)
    folder = experiment.run_levers(opts).folder
    configs = pd.read_csv(folder / tables.CONFIGS_FILE).set_index("optimize")
    status = configs.loc["bf16", "status"]
    assert status == "not run: TypeError: quantize_() got an unexpected keyword argument"
    runs = schema.read_runs(folder / tables.RUNS_FILE)
    assert set(runs.loc[runs["status"] == "ok", "optimize"]) == {"fp32", "none"}


# --- the report: folders, context, figure -----------------------------------------------------------------
def _measured(raw: Path, spec: str, energy: float, error: float | None, repeats: int = 2,
              steps: int = 100, batch: int = 1, **row) -> None:
    """``repeats`` generations of one cell at ``energy`` +- 0.5 J, a warm-up 1000 J above, and (``error``
    given) its batch-1 equivalence row."""
    run_id = row.setdefault("run_id", "r1")
    runs = raw / tables.RUNS_FILE
    cell = dict(optimize=spec, steps=steps, waveforms_per_prompt=batch, energy_denoising_J=0.9 * energy,
                **row)
    for repeat in range(repeats):
        spread = (repeat - 0.5) if repeats == 2 else 0.0
        schema.append_row(runs, _row(repeat=repeat, wall_s=2.0, gpu_energy_J=energy + spread, **cell))
    schema.append_row(runs, _row(repeat=0, is_warmup=True, wall_s=7.0, gpu_energy_J=energy + 1000.0, **cell))
    if error is not None:
        tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
            "run_id": run_id, "model": row.get("model", "audioldm"), "optimize": spec, "dtype": "float16",
            "steps": steps, "waveforms_per_prompt": 1, "repeat": 0, "rel_error_latents": error,
            "rel_error_audio": error})


def test_a_folder_named_twice_counts_once(tmp_path, capsys):
    from tta_energy.cli.main import main

    raw = tmp_path / "raw"
    _measured(raw, "none", 400.0, 1e-3)
    _measured(raw, "graphs", 200.0, 1e-3)
    once = report.levers_table([raw])
    twice = report.levers_table([raw, tmp_path / "." / "raw", Path(f"{raw}/")])
    pd.testing.assert_frame_equal(once, twice)
    row = twice.set_index("optimize")
    assert (row["n_runs"] == 2).all()
    assert row.loc["none", "gpu_energy_J_std"] == pytest.approx(math.sqrt(0.5))
    assert row.loc["graphs", "compile_J"] == pytest.approx(1000.0)  # the warm-up's extra, counted once
    main(["levers", "report", str(raw), str(raw), "--out-dir", str(tmp_path / "out")])
    capsys.readouterr()
    written = pd.read_csv(tmp_path / "out" / "levers.csv").set_index("optimize")
    assert list(written["n_runs"]) == [2, 2] and written.loc["graphs", "compile_J"] == pytest.approx(1000.0)


@pytest.mark.parametrize(("column", "other"), [
    ("size", "tiny"), ("duration_s", 5.0), ("seed", 1), ("weights", "/models/audioldm"), (None, None)])
def test_errors_are_borrowed_only_from_runs_of_the_same_size_duration_seed_and_weights(tmp_path, column,
                                                                                        other):
    """A run that measured a spec only at batch 10 borrows its batch-1 error and the study default's error
    from another run only where the model size, clip duration, seed and weights agree."""
    first, later = tmp_path / "part1", tmp_path / "part2"
    for spec, error in (("none", 1e-3), ("max", 1.5e-3)):
        _measured(first, spec, 100.0, error)
        _measured(later, spec, 300.0, None, batch=10, run_id="r2", **({column: other} if column else {}))
    table = report.levers_table([first, later]).set_index(["run_id", "optimize"])
    assert table.loc[("r1", "max"), "yardstick_latents"] == pytest.approx(1e-3)
    borrowed = table.loc[("r2", "max")]
    if column is None:  # the same context: the errors of r1 hold for r2
        assert borrowed["rel_error_latents"] == pytest.approx(1.5e-3)
        assert borrowed["yardstick_latents"] == pytest.approx(1e-3) and borrowed["lossless"]
    else:
        assert math.isnan(borrowed["rel_error_latents"]) and math.isnan(borrowed["yardstick_latents"])
        assert not borrowed["lossless"]


def test_the_reduction_panel_puts_the_default_first_and_each_family_together():
    from tta_energy.levers.plot import configuration_order

    specs = ["max,fp8", "none", "graphs,tf32", "compile", "max", "graphs", "fp8", "compile-graphs", "none"]
    assert configuration_order(specs) == ["none", "graphs", "graphs,tf32", "compile", "compile-graphs", "max",
                                          "max,fp8", "fp8"]


def test_the_figure_plots_the_summarys_run_at_the_summarys_cell(tmp_path, monkeypatch):
    """Two runs measured the cell (50 steps, batch 1: no 100 steps here); the summary reports r1 (more
    repeats of `none`), and so does the figure: one bar per configuration with r1's reduction."""
    import matplotlib.figure

    raw = tmp_path / "raw"
    for spec, energy in (("none", 400.0), ("max", 80.0), ("graphs", 200.0)):
        _measured(raw, spec, energy, 1e-3, steps=50)
    for spec, energy in (("none", 500.0), ("max", 50.0)):
        _measured(raw, spec, energy, None, repeats=1, steps=50, run_id="r2")
    drawn: dict[str, object] = {}
    real = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        ax = fig.axes[0]
        bars = [bar for container in ax.containers for bar in container]
        drawn.update(heights=sorted(round(b.get_height(), 9) for b in bars), title=ax.get_title(),
                     ylabel=ax.get_ylabel(), colours={tuple(b.get_facecolor()) for b in bars},
                     legend=[t.get_text() for t in ax.get_legend().get_texts()])
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    _, md_path, _, _ = report.build_report([raw], tmp_path / "out")
    said = md_path.read_text()
    assert "| audioldm | 400.0 | `max` | 80.0 | 5.00x | 4.5x | yes |" in said
    assert drawn["heights"] == [1.0, 2.0, 5.0]  # r1's none, graphs, max; not r2's 10x nor a mean of runs
    # the study default first, then each family; one colour per configuration
    assert drawn["legend"] == ["none", "graphs", "max"] and len(drawn["colours"]) == 3
    assert "n = 2 repeats per bar" in drawn["title"] and "50 steps, batch 1" in drawn["ylabel"]
    table = report.levers_table([raw])
    assert report.summary_runs(table, 50, 1) == {"audioldm": "r1"}
