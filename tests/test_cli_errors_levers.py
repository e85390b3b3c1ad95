"""Bad input to ``tta-energy levers run`` and ``levers report`` is one error line and exit status 2, refused
before any output file or folder is written (run in-process; dry runs and hand-written tables, no model is
built)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import refused as one_error_line
from tests.conftest import tiny_levers_options
from tta_energy import schema
from tta_energy.cli.main import main
from tta_energy.levers import tables

PROMPT = "a dog barks"


def refused(capsys, args: list[str], *words: str, absent: tuple[Path, ...] = ()) -> str:
    """``tta-energy ARGS`` refused in one line (a ``warning:`` line may come before it)."""
    return one_error_line(capsys, args, *words, absent=absent, warnings_allowed=True)


def run_args(tmp_path: Path, *extra: str, dry_run: bool = False) -> list[str]:
    """``levers run`` of tiny AudioLDM on the CPU into tmp_path/raw (no history), with ``extra``'s options in
    place of these (an option is given once)."""
    defaults = {"--size": "tiny", "--device": "cpu", "--out-dir": str(tmp_path / "raw"), "--history": "",
                "--idle-s": "0"}
    args = ["levers", "run", *(t for option, value in defaults.items() if option not in extra
                               for t in (option, value)), "--no-profile", *extra]
    if "-m" not in extra and "--plan" not in extra:
        args += ["-m", "audioldm"]
    return [*args, "--dry-run"] if dry_run else args


def write_plan(tmp_path: Path, body: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'[levers]\nmodels = ["audioldm"]\nsteps = [2]\n{body}\n', encoding="utf-8")
    return path


# --- --weights -------------------------------------------------------------------------------------------
def test_weights_that_do_not_exist_are_refused_before_the_run_writes_anything(tmp_path, capsys):
    missing = str(tmp_path / "nonexistent")
    refused(capsys, run_args(tmp_path, "--weights", missing), "weights path", missing, "does not exist",
            "'random'", absent=(tmp_path / "raw", tmp_path / "levers.csv"))
    refused(capsys, run_args(tmp_path, "--weights", missing, dry_run=True), "does not exist")


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_unknown_model_or_size_is_refused_by_the_librarys_rule(tmp_path, capsys, dry_run):
    """``levers run`` relies on the levers experiment's check: the catalogue's line for a model, its size
    rule for a size, each one error line before anything is written."""
    from tta_energy.levers.experiment import check_options
    from tta_energy.levers.spec import LeversError
    from tta_energy.models.catalogue import model_names

    line = f"unknown model 'tangoo' in --model: choose one of {', '.join(model_names())}"
    assert refused(capsys, run_args(tmp_path, "-m", "audioldm,tangoo", dry_run=dry_run),
                   absent=(tmp_path / "raw",)) == f"error: {line}"
    assert refused(capsys, run_args(tmp_path, "--size", "huge", dry_run=dry_run),
                   absent=(tmp_path / "raw",)) == "error: unknown size 'huge': use full or tiny"
    with pytest.raises(LeversError, match="^unknown size 'huge': use full or tiny$"):
        check_options(tiny_levers_options(tmp_path, "raw", size="huge"))
    with pytest.raises(LeversError) as exc:
        check_options(tiny_levers_options(tmp_path, "raw", models=("audioldm", "tangoo")))
    assert str(exc.value) == line
    assert not (tmp_path / "raw").exists()


LEVERS_SETTINGS = [
    ({"seed": -1}, ["--seed", "-1"], "--seed must be an integer from 0 to 2**32-1 (4294967295), got -1"),
    ({"idle_s": -1.0}, ["--idle-s", "-1"], "--idle-s must be >= 0 seconds, got -1.0"),
    ({"time_budget_s": 0.0}, ["--time-budget-s", "0"], "--time-budget-s must be > 0 seconds, got 0.0"),
]


@pytest.mark.parametrize(("library", "command_line", "line"), LEVERS_SETTINGS)
def test_a_levers_setting_has_one_rule_for_the_library_and_the_command_line(tmp_path, capsys, library,
                                                                            command_line, line):
    """The levers experiment's check is the one rule: a direct caller gets the line, and ``levers run``,
    which relies on it, shows the same line once, before anything is written."""
    from tta_energy.levers.experiment import check_options
    from tta_energy.levers.spec import LeversError

    with pytest.raises(LeversError) as exc:
        check_options(tiny_levers_options(tmp_path, "lib", **library))
    assert str(exc.value) == line
    assert refused(capsys, run_args(tmp_path, *command_line), absent=(tmp_path / "raw",)) == f"error: {line}"
    assert not (tmp_path / "lib").exists()


def test_weights_name_one_model_and_a_folder(tmp_path, capsys):
    refused(capsys, run_args(tmp_path, "-m", "audioldm,tango", "--weights", str(tmp_path)),
            "--weights", "one model", "audioldm, tango", absent=(tmp_path / "raw",))
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    refused(capsys, run_args(tmp_path, "--weights", str(a_file)), "is a file", "weights folder",
            absent=(tmp_path / "raw",))


# --- --duration-s and the model's limits --------------------------------------------------------------------
def test_a_duration_beyond_the_model_is_refused_with_its_limit(tmp_path, capsys):
    for dry in (False, True):
        refused(capsys, run_args(tmp_path, "--duration-s", "100", dry_run=dry), "--duration-s", "audioldm",
                "maximum of 30", absent=(tmp_path / "raw",))


def test_a_plan_duration_beyond_the_model_names_the_plan(tmp_path, capsys):
    plan = write_plan(tmp_path, "duration_s = 100.0")
    refused(capsys, run_args(tmp_path, "--plan", str(plan)), str(plan), "duration_s", "maximum of 30",
            absent=(tmp_path / "raw",))


# --- dry run: files and folders, options a plan replaces ----------------------------------------------------
def test_dry_run_refuses_a_history_table_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nonexistent.csv"
    refused(capsys, run_args(tmp_path, "--history", str(missing), dry_run=True), "--history", str(missing),
            "not a file")


@pytest.mark.parametrize("option", ["--references", "--report-dir", "--out-dir", "--compile-cache"])
def test_a_folder_option_naming_a_file_is_refused(tmp_path, capsys, option):
    a_file = tmp_path / "README.md"
    a_file.write_text("not a folder\n")
    refused(capsys, run_args(tmp_path, option, str(a_file), dry_run=True), option, "is a file", "folder")
    refused(capsys, run_args(tmp_path, option, str(a_file)), option, absent=(tmp_path / "raw",))


def test_a_references_folder_that_does_not_exist_yet_is_allowed(tmp_path, capsys):
    """A real run creates the references folder when it stores the first reference."""
    main(run_args(tmp_path, "--references", str(tmp_path / "refs"), "--steps", "2", "--batches", "1",
                  dry_run=True))
    assert "call 1" in capsys.readouterr().out
    assert not (tmp_path / "refs").exists() and not (tmp_path / "raw").exists()


def test_report_dir_without_a_report_is_refused(tmp_path, capsys):
    refused(capsys, run_args(tmp_path, "--no-report", "--report-dir", str(tmp_path / "rep")), "--report-dir",
            "--no-report", absent=(tmp_path / "raw", tmp_path / "rep"))


@pytest.mark.parametrize(("options", "named"), [
    (["--steps", "10"], "--steps"),
    (["--repeats", "2", "--duration-s", "5"], "--repeats, --duration-s"),
    (["--seed", "1", "--batches", "1,2"], "--batches, --seed"),
    (["--full", "none", "--no-trim"], "--full, --trim/--no-trim"),
])
def test_options_a_plan_replaces_are_refused_with_a_plan(tmp_path, capsys, options, named):
    plan = write_plan(tmp_path, "repeats = 1")
    for dry in (True, False):
        refused(capsys, [*run_args(tmp_path, "--plan", str(plan), dry_run=dry), *options], named, str(plan),
                "plan file", absent=(tmp_path / "raw",))


def test_a_plan_may_still_choose_its_models_and_the_size(tmp_path, capsys):
    plan = write_plan(tmp_path, "repeats = 1\nduration_s = 1.0")
    main(run_args(tmp_path, "--plan", str(plan), "-m", "audioldm", dry_run=True))
    assert "audioldm" in capsys.readouterr().out


@pytest.mark.parametrize(("option", "value", "bad"), [("--steps", "0", "0"), ("--steps", "10,-2", "-2"),
                                                     ("--batches", "1,0", "0")])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_step_count_or_batch_below_one_names_the_option_and_the_value(tmp_path, capsys, option, value, bad,
                                                                        dry_run):
    refused(capsys, run_args(tmp_path, option, value, dry_run=dry_run),
            f"{option} must be a comma list of integers >= 1, got {bad}", absent=(tmp_path / "raw",))


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_run_with_no_configuration_is_refused_naming_the_options_that_give_them(tmp_path, capsys, dry_run):
    """The fp32 reference alone measures nothing: no report of it is written, and the exit status is 2."""
    empty = ("--full", "", "--batch1", "", "--single", "")
    line = refused(capsys, run_args(tmp_path, *empty, "--steps", "2", "--batches", "1", dry_run=dry_run),
                   absent=(tmp_path / "raw", tmp_path / "levers.csv"))
    assert line == ("error: no configuration given for audioldm: --full, --batch1 and --single name no spec "
                    "(the fp32 reference is only what the configurations are compared with); give specs "
                    "with one of them (e.g. --full none)")
    lean = refused(capsys, run_args(tmp_path, "--full", "", "--lean-models", "audioldm", dry_run=dry_run),
                   absent=(tmp_path / "raw",))
    assert lean == ("error: no configuration given for audioldm: --lean-models measures --full's specs only, "
                    "and --full names none; give specs with --full (e.g. --full none)")
    assert list(tmp_path.iterdir()) == []


# --- plan files: types, named with the file and the key -----------------------------------------------------
@pytest.mark.parametrize(("body", "words"), [
    ("repeats = 3.7", ("[levers]", "repeats must be an integer", "3.7")),
    ('repeats = "three"', ("[levers]", "repeats must be an integer", "'three'")),
    ("repeats = 0", ("[levers]", "repeats must be an integer >= 1",)),
    ("repeats = true", ("[levers]", "repeats must be an integer")),
    ('duration_s = "ten"', ("[levers]", "duration_s must be", "a number", "'ten'")),
    ("duration_s = -1.0", ("[levers]", "duration_s must be > 0 seconds, got -1.0")),
    ("call_budget_s = inf", ("[levers]", "call_budget_s must be a finite number of seconds, got inf")),
    ('seed = "x"', ("[levers]", "seed must be an integer", "'x'")),
    ("seed = -1", ("[levers]", "seed must be an integer from 0 to 2**32-1", "got -1")),
    ('call_budget_s = "long"', ("[levers]", "call_budget_s must be", "'long'")),
    ("batches = [true]", ("batches must be a non-empty list of integers",)),
    ("specs = []", ("specs must be a non-empty list of lever specs", "got []")),
    ("batches = [1, 1]", ("batches [1, 1] names 1 twice (the same configuration): keep one",)),
    ("specs = ['none', 'graphs', 'none']", ("specs ['none', 'graphs', 'none'] names 'none' twice",)),
    ("specs = ['fp16,graphs', 'graphs,fp16']", ("names 'graphs,fp16' twice",)),
    ("specs = ['none', 'fp16,graphs']\n[levers.model.audioldm]\nextra_specs = ['graphs,fp16']",
     ("audioldm specs and extra_specs", "names 'graphs,fp16' twice")),
    ("[levers.model.audioldm]\nrepeats = 1.5", ("[levers.model.audioldm]", "repeats must be an integer")),
    ("[[levers.extra]]\nspecs = ['max']\nbatches = [2]\nrepeats = 'x'",
     ("[[levers.extra]] #1", "repeats must be an integer")),
    ("[[levers.extra]]\nmodels = 'audioldm'\nspecs = ['max']\nbatches = [2]",
     ("[[levers.extra]] #1", "models must be a list")),
])
def test_a_plan_value_of_the_wrong_type_names_the_file_and_the_key(tmp_path, capsys, body, words):
    plan = write_plan(tmp_path, body)
    refused(capsys, run_args(tmp_path, "--plan", str(plan), dry_run=True), str(plan), *words)


def test_plan_models_must_be_a_list_of_names(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text('[levers]\nmodels = "audioldm"\n', encoding="utf-8")
    refused(capsys, run_args(tmp_path, "--plan", str(plan), dry_run=True), str(plan),
            "models must be a non-empty list of model names")


# --- history tables ----------------------------------------------------------------------------------------
HISTORY_HEADER = "run_id,model,size,optimize,steps,waveforms_per_prompt,wall_s,compile_s,duration_s\n"
HISTORY_ROW = "r1,audioldm,tiny,none,2,1,0.5,,10.0\n"


@pytest.mark.parametrize(("garbage", "words"), [
    ("garbage\n", ("line 3", "1 field(s)", "header has 9")),
    ("r1,audioldm,tiny,none,2,1,fast,,10.0\n", ("line 3", "'wall_s'", "'fast'", "not a number")),
    ("r1,audioldm,tiny,none,two,1,0.5,,10.0\n", ("line 3", "'steps'", "not a number")),
    (",,tiny,none,2,1,0.5,,10.0\n", ("line 3", "'model'", "is empty")),
])
def test_a_damaged_history_table_names_the_file_and_the_column(tmp_path, capsys, garbage, words):
    history = tmp_path / "levers.csv"
    history.write_text(HISTORY_HEADER + HISTORY_ROW + garbage, encoding="utf-8")
    refused(capsys, run_args(tmp_path, "--history", str(history), dry_run=True), str(history), *words)


def test_a_history_file_that_is_no_table_says_what_it_needs(tmp_path, capsys):
    history = tmp_path / "notes.csv"
    history.write_text("a,b\n1,2\n", encoding="utf-8")
    refused(capsys, run_args(tmp_path, "--history", str(history), dry_run=True), str(history),
            "needs the column(s) model, optimize, steps, waveforms_per_prompt")


def test_a_damaged_run_table_in_the_history_names_the_file_and_the_column(tmp_path, capsys):
    row = schema.empty_row()
    row.update(source="tta-energy", run_id="r1", experiment="steps", model="audioldm", size="tiny",
               weights="random", dtype="float32", optimize="none", steps=2, n_prompts=1,
               waveforms_per_prompt=1, n_clips=1, duration_s=10.0, status="ok",
               gpu_energy_method="nvml_counter", cpu_energy_method="unavailable", prompt=PROMPT, seed=0,
               wall_s=0.5)
    runs = tmp_path / "steps.csv"
    schema.append_row(runs, row)
    text = runs.read_text(encoding="utf-8").splitlines()
    header = text[0].split(",")
    bad = text[1].split(",")
    bad[header.index("wall_s")] = "garbage"
    runs.write_text("\n".join([*text, ",".join(bad)]) + "\n", encoding="utf-8")
    refused(capsys, run_args(tmp_path, "--history", str(runs), dry_run=True), str(runs), "'wall_s'",
            "non-numeric")


# --- levers report: side tables ----------------------------------------------------------------------------
def raw_folder(tmp_path: Path) -> Path:
    """A raw levers folder with one measured `none` cell and its side tables, as `levers run` writes them."""
    raw = tmp_path / "raw"
    for repeat in range(2):
        row = schema.empty_row()
        row.update(source="tta-energy", run_id="r1", experiment="levers", model="audioldm", size="tiny",
                   weights="random", dtype="float32", optimize="none", steps=2, n_prompts=1,
                   waveforms_per_prompt=1, n_clips=1, duration_s=1.0, audio_seconds=1.0, denoiser_calls=2,
                   repeat=repeat, status="ok", gpu_energy_method="nvml_interpolated",
                   cpu_energy_method="unavailable", prompt=PROMPT, seed=0, wall_s=0.5, gpu_energy_J=10.0,
                   energy_denoising_J=8.0)
        schema.append_row(raw / tables.RUNS_FILE, row)
    tables.append_csv(raw / tables.CONFIGS_FILE, {
        "run_id": "r1", "model": "audioldm", "optimize": "none", "steps": 2, "waveforms_per_prompt": 1,
        "status": "ok", "dtype": "float32", "applied": "", "skipped": "{}", "notes": "{}",
        "changes_behaviour": False, "latent_length": np.nan, "gflop_per_step": 2.0,
        "gflop_per_generation": 5.0, "denoiser_calls_nominal": 2, "gflop": 9.0, "setup_s": 0.0,
        "setup_J": 0.0})
    tables.append_csv(raw / tables.CEILING_FILE, {
        "run_id": "r1", "when": "start", "device": "cuda", "gpu_name": "H200", "precision": "bf16", "n": 64,
        "iterations": 10, "wall_s": 1.0, "gpu_energy_J": 1.0, "tflop_per_s": 1.0, "tflop_per_J": 1.0,
        "power_W": 600.0, "timestamp": ""})
    return raw


@pytest.mark.parametrize(("side", "garbage", "words"), [
    (tables.CEILING_FILE, "garbage\n", ("line 3", "1 field(s)")),
    (tables.CEILING_FILE, "r2,end,cuda,H200,bf16,64,10,1.0,1.0,1.0,lots,600.0,\n",
     ("line 3", "'tflop_per_J'", "'lots'", "not a number")),
    (tables.CONFIGS_FILE, "r1,audioldm\n", ("line 3", "2 field(s)")),
    (tables.CONFIGS_FILE, None, ("empty", "not even a header line")),
])
def test_a_damaged_side_table_stops_the_report_naming_the_file(tmp_path, capsys, side, garbage, words):
    raw = raw_folder(tmp_path)
    path = raw / side
    if garbage is None:
        path.write_bytes(b"")
    else:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(garbage)
    out = tmp_path / "report"
    refused(capsys, ["levers", "report", str(raw), "--out-dir", str(out)], str(path), *words, absent=(out,))


#: a full row of each side table the report reads values from
SIDE_ROWS: dict[str, dict[str, object]] = {
    tables.CEILING_FILE: {"run_id": "r1", "when": "start", "device": "cuda", "gpu_name": "H200",
                          "precision": "bf16", "n": 64, "iterations": 10, "wall_s": 1.0, "gpu_energy_J": 1.0,
                          "tflop_per_s": 1.0, "tflop_per_J": 1.0, "power_W": 600.0, "timestamp": ""},
    tables.EQUIVALENCE_FILE: {"run_id": "r1", "model": "audioldm", "optimize": "none", "dtype": "float32",
                              "steps": 2, "waveforms_per_prompt": 1, "repeat": 0, "rel_error_latents": 1e-4,
                              "rel_error_audio": 1e-4},
    tables.PROFILE_FILE: {"run_id": "r1", "model": "audioldm", "optimize": "none", "waveforms_per_prompt": 1,
                          "eager_step_ms": 1.0, "graph_step_ms": np.nan, "matmul_ms": 0.1, "conv_ms": 0.1,
                          "attention_ms": 0.1, "other_ms": 0.1, "kernel_ms": 0.4, "gflop_per_step": 2.0,
                          "flop_bound_ms": 0.01},
}


PROFILE_REQUIRED = ("run_id, model, optimize, waveforms_per_prompt, eager_step_ms, graph_step_ms, matmul_ms, "
                    "conv_ms, attention_ms, other_ms, kernel_ms, flop_bound_ms")


@pytest.mark.parametrize(("side", "column", "required"), [
    (tables.PROFILE_FILE, "kernel_ms", PROFILE_REQUIRED),
    (tables.PROFILE_FILE, "flop_bound_ms", PROFILE_REQUIRED),
    (tables.CEILING_FILE, "tflop_per_J", "run_id, when, n, tflop_per_s, tflop_per_J, power_W"),
    (tables.EQUIVALENCE_FILE, "rel_error_audio",
     "run_id, model, optimize, steps, waveforms_per_prompt, rel_error_latents, rel_error_audio"),
])
def test_a_side_table_without_a_value_the_report_reads_names_the_column(tmp_path, capsys, side, column,
                                                                         required):
    raw = raw_folder(tmp_path)
    path = raw / side
    path.unlink(missing_ok=True)
    tables.append_csv(path, {k: v for k, v in SIDE_ROWS[side].items() if k != column})
    out = tmp_path / "report"
    refused(capsys, ["levers", "report", str(raw), "--out-dir", str(out)], str(path),
            f"needs the column(s) {column} (it requires {required})", absent=(out,))


def test_side_tables_with_every_required_column_make_a_report(tmp_path, capsys):
    raw = raw_folder(tmp_path)
    for side, row in SIDE_ROWS.items():
        (raw / side).unlink(missing_ok=True)
        tables.append_csv(raw / side, row)
    main(["levers", "report", str(raw), "--out-dir", str(tmp_path / "out")])
    capsys.readouterr()
    table = pd.read_csv(tmp_path / "out" / "levers.csv")
    assert list(table["optimize"]) == ["none"] and table["rel_error_latents"].iloc[0] == pytest.approx(1e-4)


def test_a_side_table_with_only_its_header_or_none_at_all_is_no_rows(tmp_path, capsys):
    raw = raw_folder(tmp_path)
    configs = raw / tables.CONFIGS_FILE
    configs.write_text(configs.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    main(["levers", "report", str(raw), "--out-dir", str(tmp_path / "a")])
    configs.unlink()
    main(["levers", "report", str(raw), "--out-dir", str(tmp_path / "b")])
    capsys.readouterr()
    a, b = (pd.read_csv(tmp_path / d / "levers.csv") for d in ("a", "b"))
    # a header alone and no file at all mean the same: no configuration notes, the measured rows kept
    pd.testing.assert_frame_equal(a, b)
    assert "none" in set(a["optimize"]) and a["gflop"].isna().all()


@pytest.mark.parametrize("name", [tables.RUNS_FILE, tables.CEILING_FILE])
def test_a_table_that_lost_its_last_line_to_a_kill_is_reported_with_one_warning(tmp_path, capsys, name):
    """The rows before the cut make the report; the lost row is said once (the ceiling is read twice)."""
    raw = raw_folder(tmp_path)
    path = raw / name
    whole = path.read_text(encoding="utf-8")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(whole.splitlines()[-1][:40])  # a row in flight: no newline
    main(["levers", "report", str(raw), "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: {path}: its last line is cut (a writer was killed mid-line): the row in flight "
                   "is lost, the rows before it are read"]
    assert list(pd.read_csv(tmp_path / "out" / "levers.csv")["optimize"]) == ["none"]


@pytest.mark.parametrize("name", ["levers_summary.md", "levers.png"])
def test_a_folder_where_a_report_file_goes_is_refused_before_any_file_is_written(tmp_path, capsys, name):
    raw = raw_folder(tmp_path)
    out = tmp_path / "report"
    (out / name).mkdir(parents=True)
    refused(capsys, ["levers", "report", str(raw), "--out-dir", str(out)], str(out / name), "is a folder")
    assert [p.name for p in out.iterdir()] == [name]


def test_a_report_folder_that_is_a_file_is_refused_before_reading(tmp_path, capsys):
    raw = raw_folder(tmp_path)
    a_file = tmp_path / "notes.md"
    a_file.write_text("x\n")
    refused(capsys, ["levers", "report", str(raw), "--out-dir", str(a_file)], "--out-dir", "is a file")
    refused(capsys, ["levers", "report", str(raw), "--out-dir", str(a_file / "sub")], "--out-dir",
            "a folder is expected", absent=(a_file / "sub",))


def test_a_plan_of_another_gpu_is_refused_before_anything_is_written(tmp_path, capsys):
    """A plan that names its GPU (campaigns/h200_levers.toml: H200) never takes rows from another."""
    plan = write_plan(tmp_path, 'specs = ["none"]\nduration_s = 1.0\ngpu = "H200"')
    refused(capsys, run_args(tmp_path, "--plan", str(plan)), "the levers plan measures on an H200",
            "this device is cpu, not an H200", absent=(tmp_path / "raw",))
    from tta_energy.levers.plan import read_levers_plan

    assert read_levers_plan(Path("campaigns/h200_levers.toml")).gpu == "H200"


@pytest.mark.parametrize(("name", "words"), [
    (tables.RUNS_FILE, ("is not a run table", "a, b, c")),
    (tables.CEILING_FILE, ("is not a levers table", "run_id, when")),
])
def test_an_out_dir_holding_other_tables_is_refused_before_the_ceiling_or_a_model(tmp_path, capsys, name,
                                                                                  words):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / name).write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    refused(capsys, run_args(tmp_path, "--steps", "2", "--batches", "1"), str(raw / name), *words,
            absent=(raw / tables.CONFIGS_FILE, raw / "traces"))
    assert sorted(p.name for p in raw.iterdir()) == [name]


def test_a_model_whose_sweep_fails_exits_3_naming_it_and_keeps_the_others_rows(tmp_path, capsys, monkeypatch):
    from tta_energy.levers import experiment

    real = experiment._run_model

    def run_model(run, ceiling_tflop_per_s):
        if run.model == "tango":
            raise RuntimeError("a broken model")
        return real(run, ceiling_tflop_per_s)

    monkeypatch.setattr(experiment, "_run_model", run_model)
    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})  # FLOPs are not this test's
    with pytest.raises(SystemExit) as exc:
        main(run_args(tmp_path, "-m", "audioldm,tango", "--steps", "2", "--batches", "1", "--repeats", "1",
                      "--full", "none", "--batch1", "", "--single", "", "--no-report", "--ceiling-s", "0.02",
                      "--ceiling-n", "32"))
    captured = capsys.readouterr()
    assert exc.value.code == 3
    assert "tango: levers sweep failed (RuntimeError: a broken model)" in captured.out
    assert captured.err.strip().splitlines() == [
        "error: the levers sweep of tango failed (the reason is above); the other models' rows are kept"]
    runs = schema.read_runs(tmp_path / "raw" / tables.RUNS_FILE)
    assert set(runs["model"]) == {"audioldm"}
