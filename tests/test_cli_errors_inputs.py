"""Bad command-line input: one error line naming the problem, exit 2, and nothing written or loaded.

In-process (``main``): every case must be refused before a model is built or a meter started, so each
takes a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from tests.conftest import refused as one_error_line
from tta_energy.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there")
SWEEP = ["sweep", "--model", "audioldm", "--size", "tiny", "--no-progress", "--no-codecarbon"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TTA_ENERGY_DEBUG", raising=False)


def refused(argv: list[str], capsys, *fragments: str) -> str:
    return one_error_line(capsys, argv, *fragments)


def entries(folder: Path) -> set[str]:
    """Every file and folder under ``folder`` (hidden ones, such as locks, included)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def clips(tmp_path) -> Path:
    """A folder with one short WAV (a valid --generated folder)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    soundfile.write(folder / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    return folder


@pytest.fixture
def no_meter(monkeypatch):
    """Fail loudly if a command starts the energy meter (it warns when no GPU is there)."""
    import tta_energy.meter as meter

    def started(*_args, **_kwargs):
        raise AssertionError("the meter was started before the input was checked")

    monkeypatch.setattr(meter, "EnergyMeter", started)


def device_commands(tmp_path: Path, clips: Path, device: str) -> list[list[str]]:
    out = tmp_path / "out"
    return [
        [*SWEEP, "-e", "steps", "--device", device, "--out", str(out / "steps.csv")],
        ["generate", "--model", "audioldm", "--size", "tiny", "--prompt", "rain", "--steps", "2",
         "--duration-s", "1", "--device", device, "--out", str(tmp_path / "a.wav")],
        ["campaign", "run", "-c", str(ROOT / "campaigns" / "h200.toml"), "--device", device, "--out-dir",
         str(out)],
        ["levers", "ceiling", "--device", device, "--out", str(out / "ceiling.csv")],
        ["levers", "run", "-m", "audioldm", "--size", "tiny", "--device", device, "--out-dir", str(out)],
        ["score", "--generated", str(clips), "-o", str(tmp_path / "score.csv"), "--device", device],
    ]


@pytest.mark.parametrize("index", range(6), ids=["sweep", "generate", "campaign-run", "levers-ceiling",
                                                 "levers-run", "score"])
def test_an_unknown_device_is_refused_by_every_command_before_anything_is_made(
        tmp_path, capsys, clips, no_meter, index):
    before = entries(tmp_path)
    refused(device_commands(tmp_path, clips, "tpu")[index], capsys, "unknown device 'tpu'",
            "use cpu, cuda or cuda:N")
    assert entries(tmp_path) == before


@NO_GPU
@pytest.mark.parametrize("index", range(6), ids=["sweep", "generate", "campaign-run", "levers-ceiling",
                                                 "levers-run", "score"])
def test_cuda_without_a_gpu_is_refused_by_every_command_before_anything_is_loaded(
        tmp_path, capsys, clips, no_meter, index):
    before = entries(tmp_path)
    refused(device_commands(tmp_path, clips, "cuda")[index], capsys, "--device cuda", "torch sees no GPU",
            "--device cpu")
    assert entries(tmp_path) == before


@pytest.mark.parametrize(("experiments", "grid"), [("steps", ""), ("steps", ","), ("steps,batch", "steps=")])
def test_an_empty_grid_is_refused_naming_the_experiment(tmp_path, capsys, experiments, grid):
    refused([*SWEEP, "-e", experiments, "--grid", grid, "--out-dir", str(tmp_path / "runs")], capsys,
            "the steps grid is empty", "--grid")
    assert entries(tmp_path) == set()


@pytest.mark.parametrize(("experiments", "grid", "shown"), [
    ("steps", "10,,25", "'10,,25'"), ("steps", "10,", "'10,'"), ("steps", " ,10", "',10'"),
    ("steps,batch", "steps=10,,25", "'10,,25'")])
def test_an_empty_grid_item_is_refused_by_the_librarys_grid_rule(tmp_path, capsys, experiments, grid, shown):
    """Not dropped (the sweep would measure other values than written): the wording of every comma list's
    empty item (checks.comma_list), from the rule the campaign files' grids share (grids.grid_values)."""
    from tta_energy.experiments.grids import GridRequest, SweepError, build_configs

    refused([*SWEEP, "-e", experiments, "--grid", grid, "--out-dir", str(tmp_path / "runs")], capsys,
            f"error: --grid {shown} has an empty item: write the values between commas")
    assert entries(tmp_path) == set()
    with pytest.raises(SweepError, match="^--grid '10,,25' has an empty item"):
        build_configs(GridRequest("steps", "audioldm", grid=("10", "", "25")))


@pytest.mark.parametrize(("repeats", "said"), [
    ("steps=1,,batch=1", "--repeats 'steps=1,,batch=1' has an empty item: write the repeat counts between "
                         "commas"),
    ("steps=1,", "--repeats 'steps=1,' has an empty item"),
    ("", "--repeats '' names nothing: give one or more repeat counts"),
    ("steps=1,steps=2", "--repeats is given twice for steps"),
    ("steps=1,batch=0", "--repeats must be >= 1, got 0")])  # a list's every item is read
def test_a_repeats_list_is_read_by_the_comma_list_rule(tmp_path, capsys, repeats, said):
    refused([*SWEEP, "-e", "steps,batch", "--repeats", repeats, "--out-dir", str(tmp_path / "runs")], capsys,
            f"error: {said}")
    assert entries(tmp_path) == set()


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_caption_limit_below_one_is_refused_by_the_librarys_rule(tmp_path, capsys, limit):
    """The sweep's one check of --caption-limit is the caption reader's (grids.load_captions), before any
    folder is made."""
    refused([*SWEEP, "-e", "quality", "--captions", "audiocaps", "--caption-limit", limit, "--out-dir",
             str(tmp_path / "runs")], capsys, f"error: --caption-limit must be >= 1, got {limit}")
    assert entries(tmp_path) == set()


@pytest.mark.parametrize(("option", "value"), [("--batch-size", "0"), ("--batch-size", "-4"),
                                               ("--steps", "-3"), ("--steps", "0")])
def test_score_refuses_counts_below_one(tmp_path, capsys, clips, option, value):
    refused(["score", "--generated", str(clips), "-o", str(tmp_path / "s.csv"), option, value], capsys,
            f"{option} must be >= 1", f"got {value}")
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("value", ["-1", "100001", "100000000000"])
@pytest.mark.parametrize("command", ["analyze", "score"])
def test_a_bootstrap_count_out_of_range_is_refused_before_any_input_is_read(tmp_path, capsys, clips, command,
                                                                            value):
    """One bound for both commands, named with its range, before the inputs (here: none that exist)."""
    argv = {"analyze": ["analyze", "--runs", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "out")],
            "score": ["score", "--generated", str(clips), "-o", str(tmp_path / "s.csv")]}[command]
    refused([*argv, "--bootstrap", value], capsys, "--bootstrap must be from 0", "to 100000 resamples",
            f"got {value}")
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.csv").exists()


@pytest.fixture
def bad_captions(tmp_path) -> Path:
    path = tmp_path / "caps.csv"
    path.write_text("file_name,caption,duration\na.wav,rain on a roof,10\nb.wav,a dog barks,abc\n")
    return path


def test_a_caption_duration_that_is_not_seconds_is_refused_by_sweep(tmp_path, capsys, bad_captions):
    before = entries(tmp_path)
    refused([*SWEEP, "-e", "quality", "--captions", str(bad_captions), "--grid", "2", "--out",
             str(tmp_path / "runs" / "q.csv"), "--audio-dir", str(tmp_path / "audio")], capsys,
            str(bad_captions), "row 3", "'b.wav'", "duration", "'abc'")
    assert entries(tmp_path) == before


@pytest.mark.parametrize("name", ["../escape.wav", "a/b.wav", "/tmp/abs.wav", "a\\b.wav", ".."])
def test_a_caption_file_name_that_is_a_path_is_refused_before_anything_is_written(tmp_path, capsys, name):
    """The sweep writes <audio-dir>/<model>/<dataset>/<steps>/<file_name>: a path there would leave it."""
    captions = tmp_path / "caps.csv"
    captions.write_text(f'file_name,caption\na.wav,rain on a roof\n"{name}",a dog barks\n', encoding="utf-8")
    before = entries(tmp_path)
    refused([*SWEEP, "-e", "quality", "--captions", str(captions), "--grid", "2", "--out",
             str(tmp_path / "runs" / "q.csv"), "--audio-dir", str(tmp_path / "audio")], capsys,
            str(captions), f"row 3 has file_name {name!r}", "a bare file name is expected")
    assert entries(tmp_path) == before


def test_a_caption_duration_that_is_not_seconds_is_refused_by_score(tmp_path, capsys, bad_captions, clips):
    refused(["score", "--generated", str(clips), "--captions", str(bad_captions), "--metrics", "clap", "-o",
             str(tmp_path / "s.csv")], capsys, str(bad_captions), "row 3", "duration", "'abc'")
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(("args", "said"), [
    (["--model", "audioldm", "--duration-s", "100"], "exceeds audioldm's maximum of 30.0 s"),
    (["--model", "tango", "--duration-s", "0.001"], "tango always generates 10.24 s"),
    (["--model", "audioldm", "--size", "tiny", "--duration-s", "1e6"], "maximum of 30.0 s (tiny size)"),
    (["--model", "stable-audio-open", "--duration-s", "100"], "maximum of 47.55 s"),
    (["--model", "audioldm", "--size", "tiny", "--duration-s", "0.001"], "below audioldm's minimum"),
    (["--model", "audioldm", "--duration-s", "inf"], "must be a finite number of seconds, got inf"),
    (["--model", "audioldm", "--duration-s", "0"], "duration must be > 0"),
])
def test_describe_takes_the_durations_generate_takes(capsys, args, said):
    refused(["describe", *args], capsys, said)


def test_generate_refuses_a_duration_below_the_models_minimum_before_building_it(tmp_path, capsys,
                                                                                   monkeypatch):
    """The model's own rule (AudioLDM: one latent frame) is checked on a meta-device replica: no weights are
    built, and no full-size CPU warning is printed before the one error line."""
    from tta_energy.models import registry

    devices: list[str] = []
    real = registry.build_model

    def recording(name, size="full", weights="random", device="cpu", dtype=None):
        devices.append(str(device))
        return real(name, size=size, weights=weights, device=device, dtype=dtype)

    monkeypatch.setattr(registry, "build_model", recording)
    out = tmp_path / "x.wav"
    refused(["generate", "--model", "audioldm", "--prompt", "a dog", "--steps", "10", "--duration-s", "0.001",
             "--device", "cpu", "--out", str(out)], capsys, "below audioldm's minimum")
    assert devices == ["meta"] and not out.exists()


@pytest.mark.parametrize("option", ["--duration-s", "--duration"])  # --duration: the name it had before
def test_describe_still_counts_a_duration_the_model_can_make(capsys, option):
    main(["describe", "--model", "tango", "--size", "tiny", option, "0.96", "--json"])
    assert '"duration_s": 0.96' in capsys.readouterr().out


def test_every_option_in_seconds_names_its_unit_and_still_reads_its_older_name():
    """The options in seconds that several commands take are named with their unit, as the tables' and
    plan files' keys are (duration_s, min_window_s); each still reads the name it had before, wherever it
    appears."""
    import typer.main

    from tta_energy.cli import options
    from tta_energy.cli.main import app

    def commands(group, path=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))
            else:
                yield " ".join((*path, name)), command

    taken = {}
    for name, command in commands(typer.main.get_command(app)):
        for param in command.params:
            for names in (options.DURATION_S_FLAGS, options.MIN_WINDOW_S_FLAGS, options.TIME_BUDGET_S_FLAGS):
                if set(names) & set(param.opts):
                    assert param.opts == list(names), (name, param.opts)
                    taken.setdefault(names[0], []).append(name)
    assert taken == {"--duration-s": ["describe", "generate", "sweep", "levers run"],
                     "--min-window-s": ["sweep", "levers run"],
                     "--time-budget-s": ["sweep", "campaign run", "levers run"]}


def test_sweep_refuses_missing_weights_before_any_folder_lock_or_meter(tmp_path, capsys, no_meter):
    refused([*SWEEP, "-e", "steps", "--device", "cpu", "--out", str(tmp_path / "nodir" / "x.csv"),
             "--weights", str(tmp_path / "nonexistent")], capsys, "weights path", "does not exist")
    assert entries(tmp_path) == set()
    refused([*SWEEP, "-e", "steps", "--device", "cpu", "--out", str(tmp_path / "x.csv"), "--weights", " "],
            capsys, "weights is empty: use 'random', a local weights folder or a hub id (owner/name)")
    assert entries(tmp_path) == set()


@pytest.mark.parametrize("audio_dir", [True, False], ids=["audio-dir", "default-audio-dir"])
def test_sweep_reads_the_caption_files_before_any_folder_or_lock(tmp_path, capsys, monkeypatch, no_meter,
                                                                  audio_dir):
    monkeypatch.chdir(tmp_path)  # the default --audio-dir, outputs/audio, would land here
    extra = ["--audio-dir", str(tmp_path / "audio")] if audio_dir else []
    refused([*SWEEP, "-e", "quality", "--device", "cpu", "--captions", str(tmp_path / "none.csv"), "--out",
             str(tmp_path / "nodir" / "x.csv"), *extra], capsys, "none.csv does not exist")
    assert entries(tmp_path) == set()


def test_sweep_says_a_caption_folder_is_a_folder(tmp_path, capsys):
    refused([*SWEEP, "-e", "quality", "--captions", str(tmp_path), "--out", str(tmp_path / "q.csv")], capsys,
            f"caption file {tmp_path} is a folder")
    assert entries(tmp_path) == set()


def test_score_refuses_a_folder_as_its_output_before_loading_anything(tmp_path, capsys, clips):
    (tmp_path / "out").mkdir()
    refused(["score", "--generated", str(clips), "-o", str(tmp_path / "out")], capsys,
            f"--out {tmp_path / 'out'} is a folder")
    refused(["score", "--generated", str(clips), "-o", str(tmp_path / "s.csv"), "--per-clip",
             str(tmp_path / "out")], capsys, "--per-clip", "is a folder")
    assert entries(tmp_path / "out") == set() and not (tmp_path / "s.csv").exists()


def test_score_writes_its_tables_only_to_csv_names(tmp_path, capsys, clips):
    refused(["score", "--generated", str(clips), "-o", str(tmp_path / "scores.txt")], capsys,
            f"--out {tmp_path / 'scores.txt'} must end in .csv")
    refused(["score", "--generated", str(clips), "-o", str(tmp_path / "s.csv"), "--per-clip",
             str(tmp_path / "per_clip.tsv")], capsys, "--per-clip", "must end in .csv")
    assert entries(tmp_path) == {"clips", "clips/a.wav"}


def test_levers_ceiling_checks_its_values_before_the_meter(tmp_path, capsys, no_meter):
    (tmp_path / "out").mkdir()
    refused(["levers", "ceiling", "--device", "cpu", "--out", str(tmp_path / "out")], capsys,
            f"--out {tmp_path / 'out'} is a folder")
    refused(["levers", "ceiling", "--device", "cpu", "--precision", "fp4"], capsys,
            "unknown ceiling precision 'fp4'", "bf16, fp8")
    refused(["levers", "ceiling", "--device", "cpu", "--ceiling-s", "inf"], capsys,
            "--ceiling-s must be a finite number of seconds, got inf")
    refused(["levers", "ceiling", "--device", "cpu", "--seconds", "0"], capsys,  # its name before
            "--ceiling-s must be > 0 seconds, got 0")
    assert entries(tmp_path) == {"out"}


@pytest.mark.parametrize(("generated", "extra", "said"), [
    ("nonexistent", [], "nonexistent: not a folder"),
    ("empty", [], "empty: no audio files"),
    ("clips", ["--backend", "nosuch"], "unknown CLAP backend 'nosuch'"),
    ("clips", ["--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_score_names_the_bad_input_before_looking_for_a_checkpoint(tmp_path, capsys, clips, generated, extra,
                                                                    said):
    (tmp_path / "empty").mkdir()
    line = refused(["score", "--generated", str(tmp_path / generated), "-o", str(tmp_path / "s.csv"),
                    "--checkpoint-dir", str(tmp_path / "no-checkpoints"), *extra], capsys, said)
    assert "checkpoint" not in line
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "no-checkpoints").exists()


def test_score_refuses_a_truncated_wav_naming_it_before_looking_for_a_checkpoint(tmp_path, capsys, clips):
    """libsndfile decodes what a cut WAV holds without a word: the header's frame count is the check."""
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, np.zeros(160_000, dtype=np.float32), 16000, subtype="PCM_16")  # 10 s
    cut = clips / "y.wav"
    cut.write_bytes(whole.read_bytes()[:1000])
    captions = tmp_path / "captions.csv"
    captions.write_text("file_name,caption\na.wav,a dog barks\ny.wav,rain\n", encoding="utf-8")
    refused(["score", "--generated", str(clips), "--captions", str(captions), "--metrics", "clap",
             "-o", str(tmp_path / "s.csv"), "--checkpoint-dir", str(tmp_path / "no-checkpoints")], capsys,
            f"{cut} is truncated: its header declares 160000 frames, 478 are there")
    assert not (tmp_path / "s.csv").exists()


def test_the_shared_checks_say_what_is_allowed():
    from tta_energy.cli import checks
    from tta_energy.errors import TtaError

    with pytest.raises(TtaError, match="--time-budget-s must be a finite number, got inf"):
        checks.positive(float("inf"), "--time-budget-s")
    with pytest.raises(TtaError, match="--duration-s must be > 0, got -1"):
        checks.positive(-1.0, "--duration-s")
    with pytest.raises(TtaError, match="unknown device 'cuda:x'"):
        checks.device("cuda:x")
    assert checks.device(None) is None and checks.device("cpu") == "cpu"
    assert checks.weights("random") == "random" and checks.weights("owner/name") == "owner/name"


GENERATE = ["generate", "--model", "audioldm", "--prompt", "dog", "--steps", "2", "--size", "tiny",
            "--device", "cpu"]


def test_more_waveforms_per_call_than_the_bound_are_refused_by_every_command_before_any_build(
        tmp_path, capsys, no_meter, monkeypatch):
    from tta_energy.models import catalogue, registry

    def built(*_args, **_kwargs):
        raise AssertionError("a model was built before the batch was checked")

    monkeypatch.setattr(registry, "build_model", built)
    too_many = str(catalogue.MAX_WAVEFORMS_PER_CALL + 1)
    said = f"must be <= {catalogue.MAX_WAVEFORMS_PER_CALL}, got {too_many}"
    one_error_line(capsys, [*GENERATE, "--batch", too_many, "--out", str(tmp_path / "x.wav")], said,
                   absent=(tmp_path / "x.wav",))
    one_error_line(capsys, [*GENERATE, "--batch", "100000000", "--out", str(tmp_path / "x.wav")],
                   "got 100000000")
    for grid in (too_many, f"p{too_many}"):  # the batch grid's own forms bound a call below the limit
        one_error_line(capsys, [*SWEEP, "-e", "batch", "--device", "cpu", "--grid", grid, "--out",
                                str(tmp_path / "b.csv")], f"batch grid value {grid!r}: use B waveforms",
                       "B and N one of 1, 2, 5, 10")
    for dry_run in ([], ["--dry-run"]):
        one_error_line(capsys, ["levers", "run", "-m", "audioldm", "--size", "tiny", "--device", "cpu",
                                "--out-dir", str(tmp_path / "raw"), "--batches", f"1,{too_many}", *dry_run],
                       "--batches", said, warnings_allowed=True)
    assert entries(tmp_path) == set()


def test_the_waveform_bound_counts_every_prompt_of_a_call():
    from tta_energy.errors import ModelError
    from tta_energy.models import catalogue

    catalogue.check_waveforms(catalogue.MAX_WAVEFORMS_PER_CALL)  # the bound itself is allowed
    catalogue.check_waveforms(4, prompts=catalogue.MAX_WAVEFORMS_PER_CALL // 4)
    with pytest.raises(ModelError, match=r"got 2 prompts x 1024 = 2048: make several calls"):
        catalogue.check_waveforms(catalogue.MAX_WAVEFORMS_PER_CALL, prompts=2)


@pytest.mark.parametrize(("experiment", "grid"),
                         [("duration", "nan"), ("duration", "inf"), ("guidance", "nan")])
def test_a_grid_value_that_is_not_finite_is_named_so(tmp_path, capsys, experiment, grid):
    refused([*SWEEP, "-e", experiment, "--device", "cpu", "--grid", grid, "--out", str(tmp_path / "s.csv")],
            capsys, f"{experiment} grid value must be a finite number, got {grid}")
    assert entries(tmp_path) == set()


def seed_commands(tmp_path: Path, clips: Path) -> list[list[str]]:
    """Every command that takes --seed, otherwise valid, writing under tmp_path."""
    return [
        [*GENERATE, "--out", str(tmp_path / "x.wav")],
        [*SWEEP, "-e", "steps", "--device", "cpu", "--out", str(tmp_path / "s.csv")],
        ["levers", "run", "-m", "audioldm", "--size", "tiny", "--device", "cpu", "--out-dir",
         str(tmp_path / "l")],
        ["analyze", "--runs", str(ROOT / "data" / "study"), "--out-dir", str(tmp_path / "a")],
        ["score", "--generated", str(clips), "-o", str(tmp_path / "score.csv"), "--device", "cpu"],
    ]


@pytest.mark.parametrize("index", range(5), ids=["generate", "sweep", "levers-run", "analyze", "score"])
@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999"])
def test_every_command_refuses_a_seed_outside_0_to_2_32_before_any_work(tmp_path, capsys, clips, no_meter,
                                                                        index, seed):
    before = entries(tmp_path)
    refused([*seed_commands(tmp_path, clips)[index], "--seed", seed], capsys,
            f"--seed must be an integer from 0 to 2**32-1 (4294967295), got {seed}")
    assert entries(tmp_path) == before


def test_the_seed_rule_takes_its_whole_range():
    from tta_energy.cli import checks
    from tta_energy.errors import MAX_SEED, TtaError

    assert checks.seed(0) == 0 and checks.seed(MAX_SEED) == 2**32 - 1
    with pytest.raises(TtaError, match="got True"):
        checks.seed(True)


def test_generate_checks_every_file_of_a_batch_before_generating(tmp_path, capsys, monkeypatch):
    from tta_energy.models import registry

    def built(*_args, **_kwargs):
        raise AssertionError("a model was built before the output files were checked")

    monkeypatch.setattr(registry, "build_model", built)
    (tmp_path / "f_1.wav").mkdir()
    refused([*GENERATE, "--batch", "2", "--out", str(tmp_path / "f.wav")], capsys,
            f"output file {tmp_path / 'f_1.wav'} is a folder: a file is expected")
    assert entries(tmp_path) == {"f_1.wav"}  # no f_0.wav, no temporary file


@pytest.mark.parametrize(("under", "said"), [("a.wav", "{a} is a file: a folder is expected"),
                                             ("a.wav/c", "lies under {a}, a file: a folder is expected"),
                                             ("nope", "{folder} does not exist")])
def test_generate_says_what_stands_where_its_output_folder_should_be(tmp_path, capsys, under, said):
    (tmp_path / "a.wav").write_bytes(b"")
    folder = tmp_path / under
    refused([*GENERATE, "--out", str(folder / "b.wav")], capsys,
            "output folder", said.format(a=tmp_path / "a.wav", folder=folder))
    assert entries(tmp_path) == {"a.wav"}
def test_sweep_refuses_an_output_that_is_another_csv_before_any_lock_or_meter(tmp_path, capsys, no_meter):
    scores = tmp_path / "scores.csv"
    scores.write_bytes((ROOT / "data" / "study" / "scores.csv").read_bytes())  # a copy: never data/
    before = scores.read_bytes()
    line = refused([*SWEEP, "-e", "steps", "--device", "cpu", "--duration-s", "1", "--grid", "2", "--out",
                    str(scores)], capsys, f"{scores} is not a run table (its columns: source, model, dataset",
                   "and 4 more)", "a run table or a new file")
    assert len(line.replace(str(scores), "")) < 150 and "missing" not in line
    assert scores.read_bytes() == before and entries(tmp_path) == {"scores.csv"}  # no lock left behind


def test_campaign_refuses_a_table_that_is_another_csv_before_any_lock(tmp_path, capsys):
    from tests.conftest import TINY_CAMPAIGN

    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "steps.csv").write_bytes((ROOT / "data" / "study" / "scores.csv").read_bytes())
    path = tmp_path / "c.toml"
    path.write_text(TINY_CAMPAIGN.format(out=tables), encoding="utf-8")
    for command in (["plan"], ["run", "--device", "cpu", "--no-progress", "--no-codecarbon"]):
        one_error_line(capsys, ["campaign", *command, "-c", str(path)],
                       f"{tables / 'steps.csv'} is not a run table (its columns: source, model",
                       absent=(tables / ".steps.csv.lock",))
    assert entries(tables) == {"steps.csv"}


def test_sweep_refuses_two_spellings_of_one_grid_value_before_any_folder(tmp_path, capsys, no_meter):
    refused([*SWEEP, "-e", "steps", "--device", "cpu", "--duration-s", "1", "--grid", "5,05", "--out",
             str(tmp_path / "out" / "steps.csv")], capsys,
            "steps grid values 5 and 05 make the same configuration (steps 5): keep one")
    assert entries(tmp_path) == set()


@pytest.mark.parametrize(("experiment", "options", "said"), [
    ("steps", ["--caption-limit", "2"],
     "--caption-limit has no effect with --experiment steps (it applies to --experiment quality only)"),
    # --limit, its name before, is read as --caption-limit
    ("steps", ["--limit", "2"], "--caption-limit has no effect with --experiment steps"),
    ("steps", ["--captions", "clotho"], "--captions has no effect with --experiment steps"),
    ("steps", ["--audio-dir", "audio"], "--audio-dir has no effect with --experiment steps"),
    ("steps", ["--no-save-audio"], "--no-save-audio has no effect with --experiment steps"),
    ("steps", ["--steps", "7"], "--steps has no effect with --experiment steps (the grid sets it)"),
    ("steps,quality", ["--steps", "7"], "--steps has no effect with --experiment steps,quality (their grids"),
    ("duration", ["--duration-s", "5"], "--duration-s has no effect with --experiment duration (the grid"),
    # --duration, its name before, is read as --duration-s
    ("duration", ["--duration", "5"], "--duration-s has no effect with --experiment duration (the grid"),
    ("precision", ["--dtype", "float16"], "--dtype has no effect with --experiment precision (the grid sets"),
    ("quality", ["--prompt", "rain"], "--prompt has no effect with --experiment quality (its prompts are the "
                                      "caption files')"),
])
def test_sweep_refuses_an_option_its_experiments_would_ignore(tmp_path, capsys, no_meter, monkeypatch,
                                                               experiment, options, said):
    """Only what the user wrote is refused: the same option at its default, or used by another experiment
    of the run, passes (the inferences/ scripts are this command)."""
    from tta_energy.experiments.scripts import run_model_script

    monkeypatch.chdir(tmp_path)
    out = ["--out-dir", str(tmp_path / "runs")]
    refused([*SWEEP, "-e", experiment, "--device", "cpu", *options, *out], capsys, said)
    with pytest.raises(SystemExit) as exc:
        run_model_script("audioldm", ["-e", experiment, "--size", "tiny", "--device", "cpu", *options, *out])
    assert exc.value.code == 2 and said in capsys.readouterr().err
    assert entries(tmp_path) == set()


@pytest.mark.parametrize(("given", "with_user", "without_user"), [
    (["--steps"], ["steps", "batch"], ["steps", "quality"]),
    (["--caption-limit"], ["steps", "quality"], ["steps", "batch"]),
    (["--prompt"], ["quality", "batch"], ["quality"]),
    (["--duration-s"], ["duration", "guidance"], ["duration"]),
    (["--dtype"], ["precision", "steps"], ["precision"]),
])
def test_an_option_is_accepted_when_one_experiment_of_the_run_uses_it(given, with_user, without_user):
    """The same option passes beside an experiment that uses it and is refused when none of the run does."""
    from tta_energy.experiments.grids import SweepError, check_options_used

    assert check_options_used(given, with_user) is None
    with pytest.raises(SweepError, match=f"{given[0]} has no effect with --experiment "
                                         f"{','.join(without_user)}"):
        check_options_used(given, without_user)
    assert check_options_used([], without_user) is None  # an option left at its default is never refused


@pytest.mark.parametrize("command", ["sweep", "generate", "levers-ceiling", "score", "score-per-clip"])
def test_an_output_file_in_a_folder_that_does_not_exist_is_refused_by_every_command(
        tmp_path, capsys, clips, no_meter, command):
    """One rule: a command creates the folders it is given (--out-dir), never the folder of a file it is
    given, where a mistyped path would become a new folder."""
    missing = tmp_path / "nope"
    argv = {
        "sweep": [*SWEEP, "-e", "steps", "--device", "cpu", "--out", str(missing / "steps.csv")],
        "generate": [*GENERATE, "--out", str(missing / "a.wav")],
        "levers-ceiling": ["levers", "ceiling", "--device", "cpu", "--out", str(missing / "ceiling.csv")],
        "score": ["score", "--generated", str(clips), "-o", str(missing / "s.csv"), "--device", "cpu"],
        "score-per-clip": ["score", "--generated", str(clips), "-o", str(tmp_path / "s.csv"), "--device",
                           "cpu", "--per-clip", str(missing / "per_clip.csv")],
    }[command]
    before = entries(tmp_path)
    refused(argv, capsys, f"output folder {missing} does not exist")
    assert entries(tmp_path) == before


def test_a_sweep_creates_the_tables_folder_it_is_given(tmp_path, capsys, monkeypatch):
    """--out-dir names a folder: made when missing (with its parents), before any model is built."""
    from tta_energy.experiments import runner

    def stop(*_args, **_kwargs):
        raise SystemExit(7)

    monkeypatch.setattr(runner, "table_locks", stop)  # checks done, nothing measured
    out_dir = tmp_path / "a" / "tables"
    with pytest.raises(SystemExit) as stopped:
        main([*SWEEP, "-e", "steps", "--device", "cpu", "--out-dir", str(out_dir)])
    assert stopped.value.code == 7 and out_dir.is_dir() and not any(out_dir.iterdir())


@pytest.mark.parametrize("argv", [
    ["analyze", "--runs", "{data}", "--out-dir", ""],
    ["analyze", "--runs", "", "--out-dir", "out"],
    ["summary", "--data="],
    ["levers", "report", ""],
    ["import-study", ""],
    [*SWEEP, "--experiment", "steps", "--grid", "2", "--device", "cpu", "--out-dir", ""],
    ["campaign", "status", "--out-dir", ""],
    ["estimate", "--model", "audioldm", "--steps", "10", "--runs", ""],
])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, capsys, monkeypatch, argv):
    """pathlib reads '' as '.': an unset shell variable in `--out-dir "$OUT"` would write into the current
    folder (analyze's README.md over a repository's own)."""
    (tmp_path / "README.md").write_text("a repository's own\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    before = entries(tmp_path)
    argv = [a.format(data=ROOT / "data" / "h200" / "steps.csv") for a in argv]
    refused(argv, capsys, "'': an empty path names no file or folder (give . for the current folder)")
    assert entries(tmp_path) == before


def test_a_filter_given_empty_is_refused_not_read_as_all(capsys):
    for option in ("--model", "--experiment"):
        refused(["campaign", "plan", "-c", str(ROOT / "campaigns" / "h200.toml"), option, ""], capsys,
                f"{option} '' names nothing: give one or more names, or leave {option} out for all")


def test_analyze_refuses_a_folder_of_files_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("a repository's own\n", encoding="utf-8")
    steps = ROOT / "data" / "h200" / "steps.csv"
    refused(["analyze", "--runs", str(steps), "--out-dir", str(out), "--bootstrap", "0"], capsys,
            f"--out-dir {out}: holds files that analyze did not write", "choose an empty or new folder")
    assert [p.name for p in out.iterdir()] == ["README.md"]
    assert (out / "README.md").read_text(encoding="utf-8") == "a repository's own\n"
    fresh = tmp_path / "fresh"
    for _ in range(2):  # a new folder, then the folder analyze wrote: both taken
        main(["analyze", "--runs", str(steps), "--out-dir", str(fresh), "--bootstrap", "0"])
    assert (fresh / "steps_summary.csv").is_file()


def test_analysis_refuses_a_table_that_measures_a_pair_twice(tmp_path, capsys):
    rows = pd.read_csv(ROOT / "data" / "h200" / "steps.csv", dtype=str, keep_default_na=False)
    doubled = tmp_path / "runs" / "steps.csv"
    doubled.parent.mkdir()
    pd.concat([rows, rows.iloc[[1]]]).to_csv(doubled, index=False)
    said = "1 measured row(s) repeat a (config_id, repeat) pair already in the table"
    refused(["analyze", "--runs", str(doubled), "--out-dir", str(tmp_path / "out")], capsys, said)
    refused(["estimate", "--model", rows["model"].iloc[1], "--steps", "10", "--runs", str(doubled)], capsys,
            said)
    assert not (tmp_path / "out").exists()


def test_meter_idle_refuses_an_asked_gpu_this_machine_lacks(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is there")
    refused(["meter", "idle", "--device", "cuda", "--idle-s", "1"], capsys,
            "--device cuda was asked for but torch sees no GPU (this command measures an NVIDIA GPU)")


def test_the_argv_rules_leave_help_unknown_options_and_text_options_to_their_own_rules(capsys):
    import typer.main

    from tta_energy.cli.main import app
    from tta_energy.cli.main import argv_problem as problem_in

    def argv_problem(_app, args):  # the rules read the command typer builds from the app
        return problem_in(typer.main.get_command(_app), args)

    empty = "'': an empty path names no file or folder (give . for the current folder)"
    assert argv_problem(app, ["analyze", "--out-dir", "", "--help"]) is None  # help is shown
    assert argv_problem(app, ["import-study", "x", "--bogus", ""]) is None  # click names the unknown option
    assert argv_problem(app, ["levers", "report", "--", ""]) == f"RAW {empty}"  # after --, a positional
    assert argv_problem(app, ["levers", "report", "--out-dir=", "raw"]) == f"--out-dir {empty}"
    assert argv_problem(app, ["levers", "run", "--batch1", "", "--single", "", "--references", ""]) is None
    assert argv_problem(app, ["sweep", "--no-codecarbon", "--out-dir", "x"]) is None
    # several values where the option takes several; one where it takes one
    assert argv_problem(app, ["levers", "run", "-m", "audioldm", "--model", "tango"]) is None
    assert argv_problem(app, ["analyze", "--runs", "a", "--runs", "b", "--out-dir", "x"]) is None
    assert argv_problem(app, ["sweep", "-m", "audioldm", "-e", "steps", "-e", "batch"]) == (
        "-e is given twice: it takes one value (give it once)")
    assert argv_problem(app, ["analyze", "--out-dir", "a", "--out-dir=b"]) == (
        "--out-dir is given twice: it takes one value (give it once)")


def test_an_option_that_takes_one_value_is_refused_when_given_twice(tmp_path, capsys):
    argv = [*SWEEP, "-e", "steps", "-e", "batch", "--device", "cpu", "--out-dir", str(tmp_path / "o")]
    refused(argv, capsys, "-e is given twice: it takes one value (give it once)")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["", "audiocaps="])
def test_score_refuses_an_empty_reference_path(tmp_path, capsys, clips, value):
    refused(["score", "--generated", str(clips), "--reference", value, "--out", str(tmp_path / "s.csv")],
            capsys, f"--reference {value!r}: an empty path names no file or folder")


def test_an_output_folder_this_user_cannot_write_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """As root every folder is writable, so the permission is taken away where the rule asks for it."""
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode: real_access(p, mode) and not (Path(p) == locked and mode & os.W_OK))
    steps = ROOT / "data" / "h200" / "steps.csv"
    refused(["analyze", "--runs", str(steps), "--out-dir", str(locked / "out")], capsys,
            f"--out-dir {locked / 'out'} cannot be written: permission denied ({locked} is where it would be "
            "made); choose a folder you can write to")
    refused(["levers", "run", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--report-dir",
             str(locked)], capsys, f"--report-dir {locked} cannot be written: permission denied;")
    assert not list(locked.iterdir())


@pytest.mark.parametrize("option", ["--model", "--dataset"])
def test_score_refuses_an_empty_name(tmp_path, capsys, clips, option):
    refused(["score", "--generated", str(clips), option, "", "--out", str(tmp_path / "s.csv")], capsys,
            f"{option} '' names nothing: give a name, or leave {option} out")


@pytest.mark.parametrize(("argv", "said"), [
    ([*SWEEP, "-e", "steps,,batch"],
     "--experiment 'steps,,batch' has an empty item: write the names between commas"),
    ([*SWEEP, "-e", "steps,steps"], "--experiment 'steps,steps' names steps twice: name each once"),
    (["levers", "run", "-m", "audioldm", "--steps", "10,10", "--dry-run"],
     "--steps '10,10' names 10 twice: name each once"),
    (["campaign", "plan", "-c", str(ROOT / "campaigns" / "h200.toml"), "-m", "tango", "-m", "tango"],
     "--model 'tango,tango' names tango twice: name each once"),
])
def test_a_list_option_refuses_an_empty_item_and_a_name_given_twice(capsys, argv, said):
    refused(argv, capsys, said)


def test_campaign_collect_refuses_the_campaigns_own_folder(capsys):
    refused(["campaign", "collect", str(ROOT / "data" / "h200"), "-c", str(ROOT / "campaigns" / "h200.toml")],
            capsys, "is the campaign's own folder: give the copy a device call returned")


def test_a_levers_output_folder_on_a_file_system_that_makes_no_file_is_refused_before_any_work(
        capsys, proc_looks_writable):
    out = f"{proc_looks_writable}/tta-energy-test/out"
    refused(["levers", "run", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--out-dir", out],
            capsys, f"--out-dir {out} cannot be written: its file system makes no new file there (/proc is "
            "where it would be made); choose a folder you can write to")
