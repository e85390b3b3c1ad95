"""``tta-energy describe`` / ``generate`` end to end (tiny sizes), the WAV writer and the smoke helpers."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import soundfile

from tta_energy.audio_io import clip_paths, write_wav
from tta_energy.cli.main import main
from tta_energy.errors import TtaError
from tta_energy.experiments.smoke import SMOKE_COLUMNS, append_rows, smoke_model
from tta_energy.models.base import ModelError
from tta_energy.models.catalogue import model_names
from tta_energy.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_describe_json_and_table(capsys):
    assert run(["describe", "--model", "audioldm", "--size", "tiny", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key, kind in [("model", str), ("total_params", int), ("denoiser_params", int),
                      ("denoiser_input_shape", list), ("gflop_per_step", float),
                      ("gflop_once_per_generation", float), ("components", dict)]:
        assert isinstance(d[key], kind), key
    assert d["model"] == "audioldm" and d["size"] == "tiny"
    assert d["component_classes"]["unet"] == "UNet2DConditionModel"  # same classes as the full size
    assert d["denoiser_input_shape"] == [2, 8, 250, 16] and 0 < d["total_params"] < 5e6
    assert run(["describe", "--model", "audioldm", "--size", "tiny"]) == 0
    table = capsys.readouterr().out
    assert "SpeechT5HifiGan" in table and "GFLOP per denoising step" in table
    assert "(10 s asked, batch 1, CFG)" in " ".join(table.split())
    # a shape of another length than asked says so: tiny Stable Audio Open computes its 32-frame window
    assert run(["describe", "--model", "stable-audio-open", "--size", "tiny"]) == 0
    said = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal's width
    assert "(10 s asked; the denoiser computes 1.4861 s, batch 1, CFG)" in said


def test_generate_writes_wavs_at_the_model_rate(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the step bar is drawn (a terminal's view)
    out = tmp_path / "water.wav"
    code = run(["generate", "--model", "audioldm2", "--size", "tiny", "--prompt", "water into a cup",
                "--steps", "2", "--duration-s", "1", "--batch", "2", "--seed", "5", "--device", "cpu",
                "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    line = captured.out.strip()
    assert "\n" not in line and "2 clip(s)" in line and "weights=random" in line
    assert "audioldm2 denoising" in captured.err and "/2 [" in captured.err  # counted by a forward hook
    paths = clip_paths(out, 2)
    assert [p.name for p in paths] == ["water_0.wav", "water_1.wav"] and not out.exists()
    for p in paths:
        info = soundfile.info(p)
        assert (info.samplerate, info.frames, info.channels) == (16000, 16000, 1)
    assert sorted(os.listdir(tmp_path)) == ["water_0.wav", "water_1.wav"]  # no temp files left


@pytest.mark.parametrize(("model", "seconds", "rate"), [("tango", 0.96, 16000),
                                                       ("stable-audio-open", 32 * 2048 / 44100, 44100)])
def test_generate_without_duration_makes_the_models_own_length(tmp_path, capsys, model, seconds, rate):
    """--duration-s left out at tiny size: Tango's fixed tiny clip (0.96 s); Stable Audio Open's tiny latent
    window (32 frames of 2048 samples), the longest it can make, not the study's 10 s it cannot."""
    out = tmp_path / "rain.wav"
    assert run(["generate", "--model", model, "--size", "tiny", "--prompt", "rain", "--steps", "2",
                "--device", "cpu", "--out", str(out)]) == 0
    assert f"{seconds:g} s" in capsys.readouterr().out
    assert soundfile.info(out).samplerate == rate
    assert abs(soundfile.info(out).frames - seconds * rate) <= 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--model", "audioldm9"], "unknown model"),
    (["--model", "audioldm", "--steps", "0"], "steps must be >= 1"),
    (["--model", "audioldm", "--batch", "0"], "batch"),
    (["--model", "audioldm", "--duration-s", "0"], "duration must be > 0"),
    (["--model", "audioldm", "--duration-s", "45"], "maximum of 30.0 s"),
    (["--model", "audioldm", "--weights", "/no/such/folder"], "does not exist"),
])
def test_generate_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    base = {"--model": "audioldm", "--prompt": "rain", "--steps": "2", "--duration-s": "1", "--size": "tiny",
            "--device": "cpu", "--out": str(tmp_path / "x.wav")}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        base[flag] = value
    argv = ["generate"] + [item for pair in base.items() for item in pair]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert os.listdir(tmp_path) == []


def test_generate_refuses_a_non_wav_output(tmp_path, capsys):
    argv = ["generate", "--model", "audioldm", "--prompt", "rain", "--steps", "1", "--duration-s", "1",
            "--out", str(tmp_path / "x.mp3")]
    assert run(argv) == 2 and "must end in .wav" in capsys.readouterr().err


def test_write_wav_is_atomic_and_checks_input(tmp_path):
    wave = np.sin(np.linspace(0, 100, 1600, dtype=np.float32))
    path = write_wav(tmp_path / "a.wav", wave[None, :], 16000)
    data, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000 and np.allclose(data, wave)
    with pytest.raises(TtaError, match="must be"):
        write_wav(tmp_path / "b.wav", np.zeros((1, 2, 3)), 16000)
    with pytest.raises(TtaError, match="does not exist"):
        write_wav(tmp_path / "missing" / "c.wav", wave, 16000)
    assert sorted(os.listdir(tmp_path)) == ["a.wav"]


@pytest.mark.parametrize("torch_uuid", ["4C1E0000-aaaa", "GPU-4c1e0000-aaaa"])
def test_the_smokes_raw_counter_asks_nvml_for_the_meters_form_of_the_uuid(monkeypatch, torch_uuid):
    import types

    import torch

    from tta_energy.experiments import smoke
    from tta_energy.meter.sources import bare_uuid

    asked = []
    fake = types.SimpleNamespace(nvmlInit=lambda: None,
                                 nvmlDeviceGetHandleByUUID=lambda uuid: asked.append(uuid) or "handle",
                                 nvmlDeviceGetTotalEnergyConsumption=lambda handle: 2500)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _device: types.SimpleNamespace(
        uuid=torch_uuid))
    counter = smoke._NvmlCounter(torch.device("cuda", 0))
    assert asked == ["GPU-4c1e0000-aaaa"] == [f"GPU-{bare_uuid(torch_uuid)}"]
    assert counter.read_J() == 2.5


def test_smoke_rows_record_failures_and_append(tmp_path):
    rows = smoke_model("audioldm", [1, 2], device="cpu", size="tiny", dtype="float32", duration_s=1.0,
                       warmup_steps=1, log=lambda _msg: None)
    rows += smoke_model("no-such-model", [1], device="cpu", log=lambda _msg: None)
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert rows[0]["denoiser_calls"] == 1 and rows[1]["finite"] is True
    assert rows[0]["energy_method"] == "unavailable" and np.isnan(rows[0]["gpu_energy_J"])
    assert "unknown model" in rows[2]["error"]
    out = tmp_path / "smoke.csv"
    append_rows(out, rows[:2])
    append_rows(out, rows[2:])
    import csv

    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 3 and list(table[0])[: len(SMOKE_COLUMNS)] == list(SMOKE_COLUMNS)


@pytest.mark.parametrize("args, line", [
    (["--model", "tango,tango"], "error: --model 'tango,tango' names tango twice: name each once"),
    (["--model", ""],
     "error: --model '' names nothing: give one or more names, or leave --model out for all"),
    (["--model", "foo"], "error: unknown model 'foo': choose one of"),
    (["--steps", "10,x"], "error: --steps must be a comma list of integers, got '10,x'"),
    (["--steps", "0"], "error: --steps must be >= 1 (denoising steps), got 0"),
    (["--duration-s", "-1"], "error: --duration-s must be > 0 s, got -1.0"),
    (["--device", "cpu", "--dtype", "fp7"], "error: unknown dtype 'fp7'"),
    (["--device", "cpu", "--warmup-steps", "-1"], "error: --warmup-steps must be >= 0, got -1"),
])
def test_smoke_script_refuses_bad_input_before_building(tmp_path, capsys, args, line):
    """scripts/gpu_smoke_models.py checks its options with the commands' checks: one line, exit 2, no file."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "gpu_smoke_models.py"
    spec = importlib.util.spec_from_file_location("gpu_smoke_models", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "smoke.csv"
    assert script.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(("name", "content", "line"), [
    ("smoke.txt", None, "must end in .csv"),
    ("other.csv", "source,run_id\nx,y\n",
     "is not a smoke table (its columns start with source, run_id, not model, size, weights): choose a new "
     "file or one this script wrote"),
    ("binary.csv", b"\x00\xff\xfe", "cannot be read as a CSV table ('utf-8' codec can't decode byte 0xff"),
])
def test_smoke_script_refuses_an_out_it_would_replace_or_not_write(tmp_path, capsys, name, content, line):
    """append_rows rewrites --out whole: another table there is refused before any model is built."""
    from tta_energy.errors import TtaError
    from tta_energy.experiments.smoke import check_smoke_table

    out = tmp_path / name
    if content is not None:
        out.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TtaError) as err:
        check_smoke_table(out)
    assert line in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if content is not None else [])
    rows = [dict.fromkeys(SMOKE_COLUMNS, "x")]
    append_rows(tmp_path / "smoke.csv", rows)
    check_smoke_table(tmp_path / "smoke.csv")  # a table this script wrote is taken


@pytest.mark.parametrize("model", model_names())
def test_real_weights_on_the_meta_device_are_refused_for_every_model(tmp_path, model):
    """One check in the adapters' shared build arguments: the meta device holds no values to load into."""
    with pytest.raises(ModelError, match="real weights cannot be loaded on the meta device"):
        build_model(model, size="tiny", weights=str(tmp_path), device="meta")


def test_generate_writes_no_wav_of_nan_audio(tmp_path, capsys):
    """A guidance scale of 1e30 drives every sample to NaN/Inf: one error line saying so and what to change,
    and no file (a WAV of NaN samples is no audio)."""
    from tests.conftest import refused

    argv = ["generate", "--model", "audioldm", "--prompt", "dog", "--steps", "2", "--duration-s", "1",
            "--size", "tiny", "--device", "cpu", "--guidance", "1e30", "--batch", "2",
            "--out", str(tmp_path / "x.wav")]
    line = refused(capsys, argv, "the audio came out NaN/Inf", "audio samples are NaN/Inf",
                   "nothing was written", "lower --guidance-scale",
                   absent=(tmp_path / "x.wav", tmp_path / "x_0.wav"))
    assert "--dtype float32" not in line  # it already ran in float32 (a CPU's precision)
    assert os.listdir(tmp_path) == []


def test_nonfinite_audio_counts_the_samples_a_sweep_records_as_nan_audio():
    from tta_energy.audio_io import nonfinite_audio

    assert nonfinite_audio(np.zeros((2, 1, 4), dtype=np.float32)) is None
    assert nonfinite_audio(np.array([[[0.0, np.nan, np.inf, -np.inf]]])) == "3 of 4 audio samples are NaN/Inf"
