"""``tta-energy sweep`` end to end on tiny models (CPU): protocol, rows, resume, failures, quality audio."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from tests.conftest import refused
from tta_energy import schema
from tta_energy.cli.exits import ALL_FAILED_EXIT
from tta_energy.cli.main import main
from tta_energy.errors import TtaError
from tta_energy.experiments import resume
from tta_energy.experiments.grids import SweepError
from tta_energy.experiments.runner import SweepOptions, check_options, run_sweep
from tta_energy.meter import WARMUP_GENERATIONS
from tta_energy.models.audioldm import AudioLDMAdapter
from tta_energy.models.catalogue import model_names
from tta_energy.precision import generation_precision

TINY = ["--size", "tiny", "--device", "cpu", "--dtype", "float32", "--duration-s", "1", "--idle-s", "0",
        "--no-progress", "--no-codecarbon"]


def sweep(*args: str) -> None:
    main(["sweep", "--model", "audioldm", *TINY, *args])


def measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["is_warmup"]]


def test_steps_sweep_rows_and_resume(tmp_path, capsys):
    out = tmp_path / "steps.csv"
    args = ["--experiment", "steps", "--grid", "1,2", "--repeats", "2", "--out", str(out)]
    sweep(*args)
    line = capsys.readouterr().out
    assert "4 measured [4 ok]" in line and "1 warm-up" in line
    df = schema.read_runs(out)
    assert len(df) == 5 and df["is_warmup"].sum() == 1
    rows = measured(df)
    assert sorted(zip(rows["steps"], rows["repeat"], strict=True)) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert (rows["denoiser_calls"] == rows["steps"]).all()
    assert (rows["status"] == "ok").all() and (rows["source"] == "tta-energy").all()
    assert rows["config_id"].nunique() == 2 and rows["run_id"].nunique() == 1
    assert np.allclose(rows["audio_seconds"], 1.0) and np.allclose(rows["latent_seconds"], 1.0)
    assert (rows["wall_s"] > 0).all() and (rows["n_clips"] == 1).all()
    assert (rows["experiment"] == "steps").all() and (rows["dtype"] == "float32").all()
    assert (rows["guidance_scale"] == 2.5).all() and (rows["negative_prompt"] == "Low quality.").all()
    assert (rows["torch_version"] == torch.__version__).all() and (rows["hostname"] != "").all()
    warm = df[df["is_warmup"]].iloc[0]
    assert warm["config_id"] in set(rows["config_id"])
    # no GPU, no trace: no empty traces/ folder; the table's lock file stays, empty and hidden
    assert sorted(p.name for p in tmp_path.iterdir()) == [".steps.csv.lock", "steps.csv"]
    if not torch.cuda.is_available():  # never 0 J on a machine without a GPU
        assert rows["gpu_energy_J"].isna().all() and (rows["gpu_energy_method"] == "unavailable").all()
    # the same command again: nothing left to do, nothing written
    before = out.read_bytes()
    sweep(*args)
    assert "0 measured [none], 4 of 4 already done" in capsys.readouterr().out
    assert out.read_bytes() == before
    # an interrupted torchrun sweep leaves shard files: a later run reads them, adds one more repeat (only the
    # new pairs run) and merges everything into the table
    out.rename(resume.shard_path(out, 1))
    sweep(*args[:-4], "--repeats", "3", "--out", str(out))
    assert "2 measured [2 ok], 4 of 6 already done" in capsys.readouterr().out
    assert not resume.shard_paths(out)
    rows = measured(schema.read_runs(out))
    assert sorted(rows["repeat"]) == [0, 0, 1, 1, 2, 2]


def test_a_sweep_stopped_by_its_time_budget_before_any_row_says_none_was_written(tmp_path, capsys):
    """No table to point to: the summary line says so rather than naming a file that does not exist."""
    out_dir = tmp_path / "runs"
    with pytest.raises(SystemExit) as stop:
        sweep("--experiment", "steps", "--grid", "1", "--repeats", "1", "--time-budget-s", "0.001",
              "--out-dir", str(out_dir))
    assert stop.value.code == 3  # work left: the same command again measures it
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "0 measured [none], 0 of 1 already done, 0 warm-up, 1 left (time budget" in line
    assert line.endswith(f"; GPU energy of ok rows n/a; no row written (no table {out_dir / 'steps.csv'})")
    assert not (out_dir / "steps.csv").exists()


def test_failures_are_recorded_and_errors_retried(tmp_path, monkeypatch):
    real_generate = AudioLDMAdapter.generate

    def failing(self, request, phases=None):
        if request.steps == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        if request.steps == 2:
            out = real_generate(self, request, phases)
            out.waveforms[..., 0] = np.nan
            return out
        if request.steps == 3:
            raise ValueError("something broke\nsecond line")
        return real_generate(self, request, phases)

    monkeypatch.setattr(AudioLDMAdapter, "generate", failing)
    out = tmp_path / "steps.csv"
    opts = SweepOptions(model="audioldm", experiments=("steps",), size="tiny", device="cpu", dtype="float32",
                        duration_s=1.0, idle_s=0, progress=False, codecarbon=False,
                        grid={"steps": ("1", "2", "3", "4")}, repeats={"steps": 1}, out=out, warmup=0)
    (result,) = run_sweep(opts, echo=lambda _: None)
    assert dict(result.measured) == {"oom": 1, "nan_audio": 1, "error": 1, "ok": 1}
    df = schema.read_runs(out).set_index("steps")
    assert df.loc[1, "status"] == "oom" and "out of memory" in df.loc[1, "error"]
    assert df.loc[2, "status"] == "nan_audio" and "NaN" in df.loc[2, "error"]
    assert df.loc[3, "status"] == "error" and df.loc[3, "error"] == "ValueError: something broke"
    assert math.isnan(df.loc[1, "gpu_energy_J"])
    # fixed: the error is retried, the rest is kept, each pair still appears once
    monkeypatch.setattr(AudioLDMAdapter, "generate", real_generate)
    (again,) = run_sweep(opts, echo=lambda _: None)
    assert dict(again.measured) == {"ok": 1}
    df = schema.read_runs(out)
    assert sorted(df["steps"]) == [1, 2, 3, 4]
    assert dict(zip(df["steps"], df["status"], strict=True)) == {1: "oom", 2: "nan_audio", 3: "ok", 4: "ok"}


def test_levers_are_parsed_once_and_the_precision_rule_holds(tmp_path):
    """--levers (alias --optimize) becomes one Levers object; the row's dtype is the precision the model runs
    in: --dtype when the levers set none, the levers' own otherwise; the column keeps the name optimize."""
    from tta_energy.experiments.runner import ModelCache
    from tta_energy.levers.spec import parse_levers

    out = tmp_path / "steps.csv"
    sweep("--experiment", "steps", "--grid", "1", "--repeats", "1", "--warmup", "0", "--out", str(out),
          "--optimize", "Channels-Last")  # a lever a CPU runs (graphs alone is refused there)
    rows = schema.read_runs(out)
    assert rows["optimize"].tolist() == ["channels-last"] and rows["dtype"].tolist() == ["float32"]
    opts = SweepOptions(model="audioldm", experiments=("steps",), size="tiny", device="cpu", dtype="float32",
                        levers=parse_levers("graphs"))
    adapter = ModelCache(opts, "cpu").get("float32")  # graphs sets no precision: --dtype's float32 holds
    assert adapter.dtype == torch.float32 and adapter.applied_levers.dtype == "float32"
    with pytest.raises(SweepError, match="fixes the precision"):
        run_sweep(SweepOptions(model="audioldm", experiments=("precision",), levers=parse_levers("bf16")))


def test_batch_and_quality_in_one_run(tmp_path):
    audio = tmp_path / "audio"
    sweep("--experiment", "batch,quality", "--grid", "batch=5,p10", "--grid", "quality=1", "--steps", "1",
          "--repeats", "batch=1", "--caption-limit", "1", "--captions", "clotho", "--audio-dir", str(audio),
          "--out-dir", str(tmp_path))
    batch = schema.read_runs(tmp_path / "batch.csv")
    rows = measured(batch)
    layouts = sorted(zip(rows["n_prompts"], rows["waveforms_per_prompt"], strict=True))
    assert layouts == [(1, 5), (1, 5), (10, 1)]
    assert (rows.groupby("n_prompts")["n_clips"].sum() == 10).all()
    assert np.allclose(rows["audio_seconds"], rows["n_clips"] * 1.0)
    quality = measured(schema.read_runs(tmp_path / "quality.csv"))
    (row,) = quality.itertuples()
    assert row.dataset == "clotho" and row.caption_id.endswith(".wav") and row.steps == 1
    wav = audio / "audioldm" / "clotho" / "1" / row.caption_id
    assert row.audio_path == str(wav)
    data, rate = sf.read(wav)
    assert rate == 16000 and len(data) == 16000


def test_the_progress_bar_names_the_experiment_once(tmp_path, capsys):
    sweep("--experiment", "steps,duration", "--grid", "steps=1", "--grid", "duration=0.5", "--steps", "1",
          "--repeats", "steps=1", "--repeats", "duration=1", "--warmup", "0", "--out-dir", str(tmp_path),
          "--progress")
    bar = capsys.readouterr().err.replace("\r", "\n")
    assert "steps 1 r0 ok" in bar or "duration 0.5 s r0 ok" in bar  # the last generation's postfix
    assert "steps steps" not in bar and "duration duration" not in bar


def test_duration_sweep_leaves_out_what_the_model_cannot_run(tmp_path, capsys):
    out = tmp_path / "duration.csv"
    main(["sweep", "--model", "tango", "--size", "tiny", "--device", "cpu", "--experiment", "duration",
          "--steps", "1", "--repeats", "1", "--idle-s", "0", "--no-progress", "--no-codecarbon",
          "--warmup", "0", "--out", str(out)])
    text = capsys.readouterr().out
    assert "duration 2.5 s: left out" in text and "duration 20.0 s: left out" in text
    assert "tango computes 0.96 s of audio per clip for the 10 s asked" in text  # the tiny's fixed length
    rows = schema.read_runs(out)
    assert list(rows["duration_s"]) == [10.0]
    assert rows["latent_seconds"].iloc[0] == pytest.approx(rows["audio_seconds"].iloc[0])


@pytest.mark.parametrize(("args", "message"), [
    (["--experiment", "loudness"], "unknown experiment"),
    (["--experiment", "steps", "--grid", "0"], ">= 1"),
    (["--experiment", "steps,batch", "--out", "x.csv"], "--out names one table"),
    (["--experiment", "steps,batch", "--grid", "10"], "EXPERIMENT=VALUE"),
    (["--experiment", "steps", "--repeats", "batch=2"], "not among the experiments"),
    (["--experiment", "quality", "--captions", "/no/such.csv"], "does not exist"),
    (["--experiment", "steps", "--optimize", "warp-drive"], "unknown lever"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--out-dir", str(tmp_path),
              *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("*.csv"))


NAMES = ", ".join(model_names())
#: (the library's options, the command line's, the one line both refuse them with)
SETTINGS = [
    ({"size": "huge"}, ["--size", "huge"], "unknown size 'huge': use full or tiny"),
    ({"model": "tangoo"}, ["--model", "tangoo"], f"unknown model 'tangoo' in --model: choose one of {NAMES}"),
    ({"experiments": ("stepz",)}, ["--experiment", "stepz", "--steps", "5"],
     "unknown experiment 'stepz': choose one of steps, batch, quality, duration, guidance, precision"),
    ({"repeats": {"steps": 0}}, ["--repeats", "0"], "--repeats must be >= 1, got 0"),
    ({"time_budget_s": 0.0}, ["--time-budget-s", "0"], "--time-budget-s must be > 0 seconds, got 0.0"),
    ({"duration_s": -1.0}, ["--duration-s", "-1"], "--duration-s must be > 0 seconds, got -1.0"),
    ({"dtype": "fp7"}, ["--dtype", "fp7"], "unknown dtype 'fp7': use one of float32, float16, bfloat16"),
    ({"seed": -1}, ["--seed", "-1"], "--seed must be an integer from 0 to 2**32-1 (4294967295), got -1"),
]


@pytest.mark.parametrize(("library", "command_line", "line"), SETTINGS)
def test_a_sweep_setting_has_one_rule_for_the_library_and_the_command_line(tmp_path, capsys, library,
                                                                           command_line, line):
    """The library's check (SweepOptions and check_options) is the one rule: a direct caller gets the line,
    and the command line, which relies on it, shows the same line once with exit status 2 (an unknown
    experiment is named before an option it would not use)."""
    base = {"model": "audioldm", "experiments": ("steps",), "size": "tiny", "device": "cpu",
            "out_dir": tmp_path / "lib"}
    with pytest.raises(TtaError) as exc:
        check_options(SweepOptions(**{**base, **library}))
    assert str(exc.value) == line
    argv = {"--model": "audioldm", "--size": "tiny", "--device": "cpu", "--experiment": "steps",
            "--out-dir": str(tmp_path / "cli"), "--no-progress": None, "--no-codecarbon": None}
    argv.update(dict(zip(command_line[::2], command_line[1::2], strict=True)))
    args = [t for option, value in argv.items() for t in (option, value) if t is not None]
    assert refused(capsys, ["sweep", *args]) == f"error: {line}"
    assert not (tmp_path / "lib").exists() and not (tmp_path / "cli").exists()


def test_the_dtype_is_canonical_from_construction_and_checking_changes_no_option():
    opts = SweepOptions(model="audioldm", experiments=("steps",), size="tiny", dtype="fp16",
                        repeats={"steps": 2})
    assert opts.dtype == "float16"
    before = copy.deepcopy(opts)
    check_options(opts)
    assert opts == before
    assert SweepOptions(model="audioldm", experiments=("steps",)).warmup == WARMUP_GENERATIONS


@pytest.mark.parametrize(("device", "levers", "message"), [
    ("cpu", "max,fp8", "--levers max,fp8: fp8: float8 matrix products need an NVIDIA GPU"),
    pytest.param("cuda", "none", "torch sees no GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there")),
])
def test_a_device_that_cannot_run_the_sweep_is_refused_before_any_folder_is_made(
        tmp_path, capsys, device, levers, message):
    out_dir = tmp_path / "runs"
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--model", "audioldm", "--size", "tiny", "--device", device, "--levers", levers,
              "--experiment", "steps", "--grid", "2", "--out-dir", str(out_dir)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert not out_dir.exists()


def test_per_model_scripts_are_thin_wrappers(capsys):
    from pathlib import Path

    from tta_energy.experiments.scripts import SCRIPTS, run_model_script
    from tta_energy.models.catalogue import model_names

    root = Path(__file__).resolve().parents[1]
    assert sorted(SCRIPTS.values()) == sorted(model_names())
    for script, model in SCRIPTS.items():
        text = (root / "inferences" / f"{script}.py").read_text()
        assert f'run_model_script("{model}")' in text
    run_model_script("tango", ["--help"])
    assert "--experiment" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        run_model_script("tango", ["--model", "audioldm", "--experiment", "steps"])
    assert exc.value.code == 2 and "runs tango only" in capsys.readouterr().err
    envs = {p.name for p in (root / "inferences" / "envs").glob("*.yml")}
    assert {"diffusers.yml", "make-an-audio.yml", "tango.yml"} <= envs  # one per model family


def test_an_experiment_with_nothing_to_run_is_skipped_when_others_run(tmp_path, capsys):
    """Durations below AudioLDM's minimum (a rule of the built model, not of the catalogue) pass the early
    checks; the model's own check then leaves them out."""
    base = ["sweep", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--repeats", "duration=1",
            "--repeats", "steps=1", "--idle-s", "0", "--no-progress", "--no-codecarbon", "--warmup", "0",
            "--out-dir", str(tmp_path)]
    main([*base, "--experiment", "duration,steps", "--grid", "duration=0.01,0.02", "--grid", "steps=1"])
    text = capsys.readouterr().out
    assert "duration: skipped: audioldm can run no configuration" in text
    assert len(schema.read_runs(tmp_path / "steps.csv")) == 1 and not (tmp_path / "duration.csv").exists()
    with pytest.raises(SystemExit) as exc:  # alone, it is an error
        main(["sweep", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--experiment", "duration",
              "--grid", "0.01", "--out-dir", str(tmp_path)])
    assert exc.value.code == 2


def test_a_sweep_whose_generations_all_fail_lists_the_errors_and_exits_all_failed(
        tmp_path, monkeypatch, capsys):
    def broken(self, request, phases=None):
        raise ValueError(f"kernel missing for {request.steps} steps\nsecond line")

    monkeypatch.setattr(AudioLDMAdapter, "generate", broken)
    with pytest.raises(SystemExit) as exc:
        sweep("--experiment", "steps", "--grid", "1,2", "--repeats", "1", "--warmup", "0",
              "--out", str(tmp_path / "steps.csv"))
    assert exc.value.code == ALL_FAILED_EXIT
    err = capsys.readouterr().err.splitlines()
    assert "all 2 generation(s) failed:" in err
    assert "  1 x error: ValueError: kernel missing for 1 steps" in err
    assert "  1 x error: ValueError: kernel missing for 2 steps" in err


def test_without_a_dtype_a_cpu_runs_float32_and_a_gpu_the_study_s():
    assert generation_precision("audioldm", device="cpu") == "float32"
    assert generation_precision("audioldm", device="cuda:1") == "float16"
    assert generation_precision("audioldm") == "float16"  # no device: planned for a GPU (a campaign's cells)
    assert generation_precision("tango", device="cuda") == "float32"  # the study ran Tango in fp32
    assert generation_precision("audioldm", option="bf16", device="cpu") == "bfloat16"  # asked for: kept
    assert generation_precision("audioldm", lever="fp16", device="cpu") == "float16"  # the levers' wins
    # a model built without a dtype follows the same rule: float32 on a CPU, the study's on the meta device
    from tta_energy.models.registry import build_model

    assert build_model("audioldm", size="tiny", device="cpu").dtype == torch.float32
    assert build_model("audioldm", size="tiny", device="meta").dtype == torch.float16
    assert build_model("audioldm", size="tiny", device="cpu", dtype="float16").dtype == torch.float16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures on an NVIDIA GPU")
def test_a_sweep_on_a_gpu_records_nvml_energy_host_diagnostics_and_the_gpu(tmp_path, capsys):
    """What every committed H200 row rests on, on the real GPU: counter energy, net of a measured idle
    power, the host's CPU time and the GPU's busy fraction, and the card that measured it."""
    out = tmp_path / "steps.csv"
    main(["sweep", "--model", "audioldm", "--size", "tiny", "--device", "cuda", "--dtype", "float16",
          "--duration-s", "1", "--idle-s", "1", "--no-progress", "--experiment", "steps", "--grid", "10",
          "--repeats", "2", "--out", str(out)])
    assert "2 measured [2 ok]" in capsys.readouterr().out
    rows = measured(schema.read_runs(out))
    assert rows["gpu_energy_method"].str.startswith("nvml").all()
    assert (rows["gpu_energy_J"] > 0).all() and (rows["gpu_idle_power_W"] > 10).all()
    idle_J = rows["gpu_idle_power_W"] * rows["wall_s"]
    assert np.allclose(rows["gpu_energy_net_J"], rows["gpu_energy_J"] - idle_J)
    assert (rows["cpu_time_s"] > 0).all() and rows["gpu_busy_fraction"].between(0, 1).all()
    assert (rows["gpu_name"] == torch.cuda.get_device_name()).all()
    assert rows["gpu_uuid"].str.startswith("GPU-").all()
    assert (rows["cpu_energy_method"] != "unavailable").all() and (rows["host_cpu_model"] != "").all()
