"""Bad input to ``campaign``, ``summary`` and ``analyze``: one error line naming the problem and what is
allowed, exit status 2, no traceback, and nothing written (not even an empty folder or a lock file)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TINY_CAMPAIGN_SETTINGS, refused
from tta_energy import schema
from tta_energy.cli.main import main, user_error_line
from tta_energy.experiments import campaign as cp

TINY = TINY_CAMPAIGN_SETTINGS + """
[[experiment]]
name = "steps"
models = ["audioldm"]
grid = ["1"]

[[experiment]]
name = "duration"
models = ["audioldm", "tango"]
grid = [{durations}]
"""


def _campaign(tmp_path: Path, durations: str = '"5"', weights: str = "random") -> Path:
    """A tiny campaign writing into ``tmp_path / "tables"`` (not made); tango cannot run 5 s (a note)."""
    path = tmp_path / "c.toml"
    path.write_text(TINY.format(out=tmp_path / "tables", durations=durations, weights=weights),
                    encoding="utf-8")
    return path


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _refused(capsys: pytest.CaptureFixture[str], args: list[str], *fragments: str) -> str:
    return refused(capsys, args, *fragments)


def _log(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


CALL = json.dumps({"run_id": "r1", "wall_s": 10.0, "measured_s": 8.0, "rows": {"steps": 2}, "world_size": 1})


# --- the campaign's folder ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["plan", "status", "cost", "run", "collect"])
def test_an_out_dir_that_is_a_file_is_refused_by_every_campaign_command(tmp_path, capsys, command):
    path = _campaign(tmp_path)
    returned = tmp_path / "returned"
    returned.mkdir()
    (returned / cp.RUNS_LOG).write_text(_log([CALL]), encoding="utf-8")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x", encoding="utf-8")
    before = _files(tmp_path)
    extra = {"run": ["--device", "cpu", "--no-progress"], "collect": [str(returned)]}.get(command, [])
    for out_dir in (a_file, a_file / "sub"):
        _refused(capsys, ["campaign", command, "--campaign", str(path), "--out-dir", str(out_dir), *extra],
                 f"--out-dir {out_dir}", "a folder is expected")
    assert _files(tmp_path) == before


def test_plan_and_status_of_a_folder_not_made_yet_show_nothing_measured_and_make_nothing(tmp_path, capsys):
    path = _campaign(tmp_path)
    before = _files(tmp_path)
    for command in ("plan", "status"):
        main(["campaign", command, "--campaign", str(path)])
        out = capsys.readouterr().out.splitlines()
        assert out[1] == f"({tmp_path / 'tables'} does not exist yet: nothing measured there)"
    assert _files(tmp_path) == before


def test_cost_without_the_folder_or_its_runs_log_names_what_is_missing(tmp_path, capsys):
    path = _campaign(tmp_path)
    tables = tmp_path / "tables"
    _refused(capsys, ["campaign", "cost", "--campaign", str(path)], f"{tables}: no such folder")
    assert not tables.exists()
    tables.mkdir()
    _refused(capsys, ["campaign", "cost", "--campaign", str(path)], f"no {tables / cp.RUNS_LOG}")
    assert _files(tables) == set()


# --- the runs log -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("bad", "fragment"), [
    ("{not json", "not JSON"),
    ('{"foo": 1}', "no wall_s"),
    ("[1, 2]", "a JSON list, not an object"),
    ('{"wall_s": "ten"}', "wall_s must be seconds >= 0"),
    ('{"wall_s": 1, "rows": {"steps": -1}}', "rows must be an object of row counts"),
])
def test_a_malformed_line_of_the_runs_log_is_named_with_its_line(tmp_path, capsys, bad, fragment):
    path = _campaign(tmp_path)
    tables = tmp_path / "tables"
    tables.mkdir()
    log = tables / cp.RUNS_LOG
    log.write_text(_log([CALL, bad, CALL]), encoding="utf-8")
    for command in ("cost", "status", "plan"):
        _refused(capsys, ["campaign", command, "--campaign", str(path)], f"{log}, line 2: ", fragment,
                 "fix or delete the line")
    # a device call's copy with such a line is refused before anything is merged or made
    returned = tmp_path / "returned"
    returned.mkdir()
    (returned / cp.RUNS_LOG).write_text(_log([CALL, bad]), encoding="utf-8")
    log.unlink()
    before = _files(tmp_path)
    _refused(capsys, ["campaign", "collect", str(returned), "--campaign", str(path)],
             f"{returned / cp.RUNS_LOG}, line 2: ", fragment)
    assert _files(tmp_path) == before


def test_a_last_line_cut_by_a_crash_is_skipped(tmp_path, capsys):
    path = _campaign(tmp_path)
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / cp.RUNS_LOG).write_text(_log([CALL]) + '{"wall_s": 3', encoding="utf-8")
    main(["campaign", "cost", "--campaign", str(path), "--json"])
    assert json.loads(capsys.readouterr().out)["calls"] == 1


# --- the campaign file --------------------------------------------------------------------------------------
def test_a_grid_value_none_of_the_models_can_run_is_refused(tmp_path, capsys):
    path = _campaign(tmp_path, durations='"5", "1000"')
    _refused(capsys, ["campaign", "plan", "--campaign", str(path)], "experiment 2 (duration)",
             "grid value duration 1000.0 s", "maximum of")
    # a filter does not hide it: the entry's other models are asked too
    _refused(capsys, ["campaign", "plan", "--campaign", str(path), "--model", "tango"], "duration 1000.0 s")
    assert _files(tmp_path) == {"c.toml"}


def _entries(tmp_path: Path, *entries: str) -> Path:
    """A tiny campaign of these [[experiment]] tables (audioldm unless an entry names its models)."""
    path = tmp_path / "c.toml"
    text = TINY_CAMPAIGN_SETTINGS.format(out=tmp_path / "tables", weights="random")
    path.write_text(text + "".join(f'[[experiment]]\nmodels = ["audioldm"]\n{e}\n' for e in entries),
                    encoding="utf-8")
    return path


QUALITY = 'name = "quality"\ngrid = ["1"]\ncaptions = ["audiocaps"]\ncaption_limit = {}'


@pytest.mark.parametrize(("entries", "fragment"), [
    (('name = "steps"\ngrid = ["1"]', 'name = "steps"\ngrid = ["0"]'),
     "experiment 2 (steps): steps grid value 0 must be >= 1"),
    (('name = "steps"\ngrid = ["10", "10"]',),
     "experiment 1 (steps): steps grid values 10 and 10 make the same configuration (steps 10)"),
    (('name = "duration"\ngrid = ["5", "x"]',),
     "experiment 1 (duration): duration grid value 'x' is not a number"),
    (('name = "batch"\ngrid = ["1", "p1"]',),
     "experiment 1 (batch): grid values 1 and p1 make the same cell (n_prompts 1, waveforms_per_prompt 1): "
     "keep one (a cell is named by n_prompts, waveforms_per_prompt)"),
    (('name = "duration"\ngrid = ["5", "5.0"]',),
     "experiment 1 (duration): duration grid values 5 and 5.0 make the same configuration (duration 5.0): "
     "keep one"),
    (('name = "steps"\ngrid = ["2", "02"]',),
     "experiment 1 (steps): steps grid values 2 and 02 make the same configuration (steps 2): keep one"),
    (('name = "steps"\ngrid = ["10", "", "25"]',),  # named as the file writes it, not as --grid
     'experiment 1 (steps): grid = ["10", "", "25"] has an empty item: remove it, or write a value in it'),
    (('name = "steps"\ngrid = [10, " "]',),
     'experiment 1 (steps): grid = ["10", ""] has an empty item: remove it, or write a value in it'),
    (('name = "batch"\ngrid = [""]',),
     'experiment 1 (batch): the batch grid is empty: give values (e.g. grid = ["1", "2", "5", "10", "p10"]) '
     "or leave grid out for that default"),
    ((QUALITY.format(2), QUALITY.format(5)),
     "experiments 1 and 2 (quality) make the same cell (steps 1, dataset audiocaps) of audioldm from "
     "different configurations (caption_limit 2 and 5): declare each cell in one entry"),
    (('name = "batch"\ngrid = ["2", "1"]', 'name = "batch"\ngrid = ["p1"]'),
     "experiments 1 and 2 (batch) make the same cell (n_prompts 1, waveforms_per_prompt 1) of audioldm from "
     "different configurations (grid values 1 and p1)"),
])
def test_a_grid_error_names_the_campaign_file_and_its_entry(tmp_path, capsys, entries, fragment):
    path = _entries(tmp_path, *entries)
    for command in ("plan", "status"):
        _refused(capsys, ["campaign", command, "--campaign", str(path)], f"error: {path}: {fragment}")
    _refused(capsys, ["campaign", "run", "--campaign", str(path), "--device", "cpu", "--no-progress",
                      "--no-codecarbon"], f"{path}: {fragment}")
    assert _files(tmp_path) == {"c.toml"}


def test_entries_that_make_a_cell_alike_share_it_under_the_first_ones_rule(tmp_path, capsys):
    path = _entries(tmp_path, 'name = "steps"\ngrid = ["1", "2"]',
                    'name = "steps"\ngrid = ["2"]\nrepeats = {min = 3, max = 4}',
                    QUALITY.format(2), 'name = "quality"\ngrid = ["2"]\ncaptions = ["audiocaps"]\n'
                    "caption_limit = 5")  # another step count: other cells
    main(["campaign", "status", "--campaign", str(path), "--json"])
    cells = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shown = sorted((c["experiment"], c["steps"], c["configurations"], c["generations_missing"])
                   for c in cells)
    assert shown == [
        ("quality", 1, 2, 2), ("quality", 2, 5, 5), ("steps", 1, 1, 2), ("steps", 2, 1, 2)]
    # batch 1, 2 and p10 stay three cells: 10 calls of 1 waveform, 5 of 2, one of 10 distinct prompts
    batch = _entries(tmp_path, 'name = "batch"\ngrid = ["1", "2", "p10"]')
    main(["campaign", "status", "--campaign", str(batch), "--json"])
    cells = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((c["n_prompts"], c["waveforms_per_prompt"], c["configurations"]) for c in cells) == [
        (1, 1, 10), (1, 2, 5), (10, 1, 1)]


def test_a_grid_value_only_some_models_cannot_run_is_left_out_for_them(tmp_path, capsys):
    path = _campaign(tmp_path, durations='"5"')  # tango generates 10.24 s only; audioldm runs 5 s
    main(["campaign", "status", "--campaign", str(path), "--json", "--experiment", "duration"])
    cells = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["model"], c["duration_s"]) for c in cells] == [("audioldm", 5.0)]
    main(["campaign", "status", "--campaign", str(path), "--json", "--experiment", "duration", "--model",
          "tango"])  # the filter keeps no model that runs it: no cell, no error
    assert capsys.readouterr().out == ""


def test_a_weights_path_that_does_not_exist_is_refused(tmp_path, capsys):
    missing = tmp_path / "no-such-weights"
    path = _campaign(tmp_path, weights=str(missing))
    for command in ("plan", "status", "cost"):
        _refused(capsys, ["campaign", command, "--campaign", str(path)], f"{path}: weights path {missing} "
                 "does not exist", "'random', a local weights folder or a hub id")
    _campaign(tmp_path, weights=str(tmp_path))  # an existing folder: its layout is the model loader's check
    main(["campaign", "plan", "--campaign", str(path)])
    assert "total" in capsys.readouterr().out


# --- campaign run -------------------------------------------------------------------------------------------
def test_a_refused_campaign_run_makes_no_folder_no_lock_and_prints_only_the_error(tmp_path, capsys):
    import torch

    path = _campaign(tmp_path)  # tango cannot run 5 s: a note a run that goes on would print
    base = ["campaign", "run", "--campaign", str(path), "--no-progress", "--no-codecarbon"]
    cases = [([*base, "--device", "cpu", "--time-budget-s", "1"], "--time-budget-s 1 s cannot cover"),
             ([*base, "--device", "tpu"], "unknown device 'tpu': use cpu, cuda"),
             ([*base, "--device", "cpu", "--time-budget-s", "0"], "--time-budget-s must be > 0"),
             ([*base, "--device", "cpu", "--model", "tango,tangoo"],
              "unknown model 'tangoo' in --model: choose one of audioldm, audioldm2")]
    if not torch.cuda.is_available():
        cases.append(([*base, "--device", "cuda"], "torch sees no GPU"))
    for args, fragment in cases:
        with pytest.raises(SystemExit) as exc:
            main(args)
        out, err = capsys.readouterr()
        assert exc.value.code == 2 and out == "", (args, out)
        assert len(err.strip().splitlines()) == 1 and fragment in err, (args, err)
        assert _files(tmp_path) == {"c.toml"}, args


# --- summary and analyze ------------------------------------------------------------------------------------
def _tiny_row(repeat: int = 0) -> dict:
    """A valid run-table row of a tiny AudioLDM steps sweep."""
    row = schema.empty_row()
    row.update(source="tta-energy", run_id="r", experiment="steps", config_id="c", repeat=repeat,
               model="audioldm", weights="random", size="tiny", dtype="float32", optimize="none", steps=2,
               denoiser_calls=2, n_prompts=1, waveforms_per_prompt=1, n_clips=1, status="ok",
               gpu_energy_J=1.0 + repeat, gpu_energy_method="nvml_counter", cpu_energy_method="unavailable")
    return row


def _table_without_source(folder: Path) -> Path:
    row = _tiny_row()
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "steps.csv"
    pd.DataFrame([row]).drop(columns=["source"]).to_csv(table, index=False)
    return table


def test_summary_reports_a_run_table_that_lost_a_marker_column(tmp_path, capsys):
    table = _table_without_source(tmp_path / "data")
    assert schema.is_run_table(table)
    assert not schema.is_run_table(Path(__file__).parents[1] / "data" / "smoke" / "models_gpu.csv")
    with pytest.raises(SystemExit) as exc:
        main(["summary", "--runs", str(tmp_path / "data")])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and "Traceback" not in err
    assert f"invalid: {table}: missing column(s) source" in err
    assert "0 of 1 run table(s) valid" in out


@pytest.mark.parametrize("given", ["folder", "file"])
def test_analyze_names_the_run_table_that_lost_a_column(tmp_path, capsys, given):
    table = _table_without_source(tmp_path / "data")
    runs = table.parent if given == "folder" else table
    _refused(capsys, ["analyze", "--runs", str(runs), "--out-dir", str(tmp_path / "out")],
             f"{table}: missing column(s) source")
    assert not (tmp_path / "out").exists()


def test_analyze_refuses_a_table_given_twice_naming_both_copies(tmp_path, capsys):
    """A table and its copy: every row would count twice (a refusal, not a silent choice of one copy)."""
    table = tmp_path / "a" / "steps.csv"
    row = _tiny_row()
    schema.append_row(table, row)
    copy = tmp_path / "b" / "steps.csv"
    copy.parent.mkdir()
    copy.write_bytes(table.read_bytes())
    out = tmp_path / "out"
    _refused(capsys, ["analyze", "--runs", str(table.parent), "--runs", str(copy), "--out-dir", str(out)],
             f"1 run row(s) of {copy} are also in {table}", "give each table or study once")
    assert not out.exists()


def test_analyze_says_a_run_table_lost_its_last_line_and_reads_the_rest(tmp_path, capsys):
    table = tmp_path / "runs" / "steps.csv"
    for repeat in range(3):
        schema.append_row(table, _tiny_row(repeat))
    with open(table, "a", encoding="utf-8") as fh:
        fh.write(table.read_text(encoding="utf-8").splitlines()[-1][:40])  # a row in flight: no newline
    main(["analyze", "--runs", str(table.parent), "--out-dir", str(tmp_path / "out")])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {table}: its last line is cut (a writer was killed mid-line): the row in "
                        "flight is lost, the rows before it are read"]
    summary = pd.read_csv(tmp_path / "out" / "steps_summary.csv")
    assert int(summary["n_runs"].sum()) == 3


def test_analyze_refuses_the_study_given_as_a_tree_and_as_its_import(tmp_path, capsys):
    from tests.analysis_fixtures import require_paper_data

    study = require_paper_data()
    imported = Path(__file__).resolve().parents[1] / "data" / "study"
    out = tmp_path / "out"
    _refused(capsys, ["analyze", "--study", str(study), "--runs", str(imported), "--out-dir", str(out)],
             f"of {imported / 'batch.csv'} are also in --study {study}", "would count twice")
    assert not out.exists()


def test_analyze_refuses_an_out_dir_that_is_a_file_before_analysing(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x", encoding="utf-8")
    _refused(capsys, ["analyze", "--runs", str(tmp_path / "nowhere"), "--out-dir", str(a_file)],
             f"--out-dir {a_file} is a file: a folder is expected")


def test_a_folder_made_where_a_file_stands_says_a_folder_is_expected(tmp_path):
    """The line of any command's mkdir on a file (levers report's --out-dir among them)."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x", encoding="utf-8")
    for exc in (FileExistsError(17, "File exists", str(a_file)),
                NotADirectoryError(20, "Not a directory", str(a_file / "sub"))):
        assert "a folder is expected" in user_error_line(exc)
    assert user_error_line(FileExistsError(17, "File exists", str(tmp_path))) == f"File exists: {tmp_path}"


def test_a_campaign_of_another_gpu_is_refused_before_anything_is_written(tmp_path, capsys):
    """A campaign file that names its GPU (campaigns/h200.toml: H200) never takes rows from another."""
    path = _campaign(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('name = "tiny"\n', 'name = "tiny"\ngpu = "H200"\n'), encoding="utf-8")
    _refused(capsys, ["campaign", "run", "--campaign", str(path), "--device", "cpu", "--no-progress"],
             "campaign tiny measures on an H200", "this device is cpu", "as H200 rows")
    assert _files(tmp_path) == {"c.toml"}
    assert cp.load_campaign(Path("campaigns/h200.toml")).gpu == "H200"


def test_a_campaign_seed_outside_0_to_2_63_names_the_file(tmp_path, capsys):
    path = _campaign(tmp_path)
    path.write_text("seed = -1\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    _refused(capsys, ["campaign", "plan", "--campaign", str(path)],
             f"error: {path}: seed must be an integer from 0 to 2**32-1", "got -1")


@pytest.mark.parametrize("command", ["plan", "status", "run"])
def test_a_campaign_that_is_a_folder_or_no_text_says_a_toml_file_is_needed(tmp_path, capsys, command):
    """fileio.read_toml's lines, for every reader of a TOML file (a levers plan as well)."""
    folder = tmp_path / "campaigns"
    folder.mkdir()
    binary = tmp_path / "some.wav"
    binary.write_bytes(b"RIFF\xac\x00\x01")
    extra = ["--device", "cpu", "--no-progress"] if command == "run" else []
    before = _files(tmp_path)
    _refused(capsys, ["campaign", command, "--campaign", str(folder), *extra],
             f"error: campaign file {folder} is a folder: give a campaign TOML file")
    _refused(capsys, ["campaign", command, "--campaign", str(binary), *extra],
             f"error: campaign file {binary} is not a UTF-8 text file (byte 4, line 1): give a campaign TOML "
             "file")
    _refused(capsys, ["levers", "run", "--plan", str(folder), "--dry-run"],
             f"error: levers plan file {folder} is a folder: give a levers plan TOML file")
    assert _files(tmp_path) == before


def test_analyze_scores_that_name_a_folder_or_nothing_say_what_the_option_takes(tmp_path, capsys):
    runs = Path(__file__).parents[1] / "data" / "h200" / "steps.csv"
    empty = tmp_path / "scores"
    empty.mkdir()
    takes = ("give a score table (a CSV file with columns model, dataset, steps, metric, value); --runs "
             "finds the score tables in a folder")
    out = tmp_path / "out"
    _refused(capsys, ["analyze", "--runs", str(runs), "--scores", str(empty), "--out-dir", str(out)],
             f"error: --scores {empty} is a folder: {takes}")
    missing = empty / "s.csv"
    _refused(capsys, ["analyze", "--runs", str(runs), "--scores", str(missing), "--out-dir", str(out)],
             f"error: --scores {missing} does not exist: {takes}")
    assert _files(tmp_path) == {"scores"}


def test_summary_refuses_a_folder_without_run_tables_as_analyze_and_estimate_do(tmp_path, capsys):
    empty = tmp_path / "runs"
    empty.mkdir()
    _refused(capsys, ["summary", "--runs", str(empty)],
             f"error: no run tables under {empty}; give --runs the folder of run tables")
    (empty / "notes.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    _refused(capsys, ["summary", "--runs", str(empty)],
             f"error: no run tables under {empty}: 1 CSV file(s) there, such as {empty / 'notes.csv'}, have "
             "no run table's header (see `tta-energy schema`); give --runs the folder of run tables")
    assert _files(tmp_path) == {"runs", "runs/notes.csv"}
