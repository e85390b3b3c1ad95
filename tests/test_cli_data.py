"""`tta-energy summary` and `tta-energy schema`: the commands that validate and describe data/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy import schema


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tta_energy", *args], capture_output=True, text=True,
                          timeout=120)


def _row(model: str, energy: float, config_id: str | None = None) -> dict[str, object]:
    row = schema.empty_row()
    row.update(source="tta-energy", run_id="r", experiment="steps", config_id=config_id or f"c-{model}",
               repeat=0, model=model,
               weights="random", size="tiny", dtype="float32", optimize="none", steps=2, denoiser_calls=2,
               n_prompts=1, waveforms_per_prompt=1, n_clips=1, status="ok", gpu_energy_J=energy,
               gpu_energy_method="unavailable" if np.isnan(energy) else "nvml_counter",
               cpu_energy_method="unavailable")
    return row


def _table_rows(stdout: str) -> list[list[str]]:
    """The stripped cells of each printed line of a rich table's body (below its header rule)."""
    body = stdout[stdout.index("┡"):].splitlines()[1:]
    return [[c.strip() for c in line.split("│")[1:-1]] for line in body if line.startswith("│")]


def test_summary_validates_tables_and_sums_measured_energy(tmp_path: Path) -> None:
    schema.append_row(tmp_path / "a.csv", _row("audioldm", 10.5))
    schema.append_row(tmp_path / "a.csv", _row("tango", 2.0))
    schema.append_row(tmp_path / "cpu" / "b.csv", _row("audioldm", float("nan")))
    (tmp_path / "notes.csv").write_text("x,y\n1,2\n")  # not a run table: ignored
    out = _run("summary", "--runs", str(tmp_path))
    assert out.returncode == 0, out.stderr
    # one table row each (rows, ok, models, energy); a long path folds onto more lines with empty cells
    assert [cells[1:] for cells in _table_rows(out.stdout) if cells[1]] == [
        ["2", "2", "audioldm, tango", "12.5"],  # 10.5 + 2.0 J
        ["1", "1", "audioldm", "n/a"],  # GPU energy never measured is not shown as 0
    ]
    assert "2 of 2 run table(s) valid" in out.stdout


def test_summary_names_every_invalid_table_and_its_problem(tmp_path: Path) -> None:
    """Encoding past the first 8 KB, an empty file, a cut last line, repeated pairs, missing columns: each
    table is named with its problem, the valid one is still summed, and the exit status is 2."""
    good = tmp_path / "good.csv"
    for i in range(60):  # > 8 KB, so that a bad byte past the header block is not seen by a header check
        schema.append_row(good, _row("audioldm", 1.0, config_id=f"c{i}"))
    text = good.read_bytes()
    assert len(text) > 9000
    (tmp_path / "latin.csv").write_bytes(text[:9000] + b"caf\xe9" + text[9000:])
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "cut.csv").write_bytes(text[: text.rindex(b"\n", 0, len(text) - 1) + 40])
    (tmp_path / "twice.csv").write_bytes(text + text[text.index(b"\n") + 1:])  # every row again
    (tmp_path / "columns.csv").write_text("source,experiment,model,config_id\ntta-energy,steps,tango,c\n")
    (tmp_path / "steps.rank1.csv").write_text("a,b\n1,2\n")  # a shard's name, another table's header
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")  # any other CSV is left out
    out = _run("summary", "--runs", str(tmp_path))
    assert out.returncode == 2
    problems = {line.split(": ")[1].rsplit("/", 1)[-1]: line for line in out.stderr.splitlines()
                if line.startswith("invalid: ")}
    assert "not UTF-8 text (byte 9003" in problems["latin.csv"] and "is empty" in problems["empty.csv"]
    assert "last line is cut" in problems["cut.csv"]
    assert "60 measured row(s) repeat a (config_id, repeat) pair" in problems["twice.csv"]
    assert "missing column(s)" in problems["columns.csv"]
    assert "is not a run table (its columns: a, b)" in problems["steps.rank1.csv"]
    assert "good.csv" not in problems and "1 of 7 run table(s) valid" in out.stdout
    assert "(1 other CSV file(s) skipped)" in out.stdout
    assert out.stderr.splitlines()[-1] == f"error: 6 invalid run table(s) under {tmp_path} (listed above)"


def test_summary_names_file_and_column_of_a_bad_table(tmp_path: Path) -> None:
    schema.append_row(tmp_path / "a.csv", _row("audioldm", 1.0))
    text = (tmp_path / "a.csv").read_text().splitlines()
    header = text[0].split(",")
    cells = text[1].split(",")
    cells[header.index("gpu_energy_J")] = "lots"
    (tmp_path / "a.csv").write_text(text[0] + "\n" + ",".join(cells) + "\n")
    out = _run("summary", "--runs", str(tmp_path))
    assert out.returncode == 2
    line = out.stderr.strip().splitlines()[0]
    assert "a.csv" in line and "gpu_energy_J" in line and "lots" in line


def test_a_levers_table_holds_one_baseline_per_run_but_no_pair_twice_in_a_run(tmp_path: Path) -> None:
    """Each levers run measures its own `none`: the same (config_id, repeat) in two runs of one levers table
    is valid; twice in one run, or in two runs of a sweep table, it is not."""
    def rows(experiment: str, runs: list[str]) -> pd.DataFrame:
        table = [{**_row("tango", 1.0, config_id="c"), "experiment": experiment, "run_id": r} for r in runs]
        return pd.DataFrame(table).astype({"is_warmup": bool})

    assert schema.duplicate_pairs(rows("levers", ["r1", "r2"])) == 0
    assert schema.duplicate_pairs(rows("levers", ["r1", "r1"])) == 1
    assert schema.duplicate_pairs(rows("steps", ["r1", "r2"])) == 1
    for run in ("r1", "r2"):
        for _ in range(2):  # a warm-up and a measured row of the same pair, in each of two runs
            schema.append_row(tmp_path / "levers_runs.csv", {**_row("tango", 1.0, config_id="c"),
                                                            "experiment": "levers", "run_id": run,
                                                            "is_warmup": _ == 0})
    assert schema.check_table(tmp_path / "levers_runs.csv").problems == []


def test_the_repositorys_data_is_valid() -> None:
    """`make reproduce` starts with `tta-energy summary --runs data`: every committed run table passes."""
    out = _run("summary", "--runs", str(Path(__file__).resolve().parents[1] / "data"))
    assert out.returncode == 0, out.stderr
    assert "invalid" not in out.stderr


def test_summary_says_whether_its_folder_is_missing_or_a_file(tmp_path: Path, capsys) -> None:
    from tests.conftest import refused

    refused(capsys, ["summary", "--runs", str(tmp_path / "nope")],
            f"--runs {tmp_path / 'nope'} does not exist: give the folder of run tables")
    (tmp_path / "a.csv").write_text("x\n")
    refused(capsys, ["summary", "--data", str(tmp_path / "a.csv")],  # --data: its name before
            f"--runs {tmp_path / 'a.csv'} is not a folder: give the folder of run tables")


def test_schema_lists_every_column() -> None:
    out = _run("schema")
    assert out.returncode == 0
    names = [cells[0] for cells in _table_rows(out.stdout) if cells[0]]
    assert names == list(schema.COLUMN_NAMES)  # every column once, in the schema's order, none cut


def test_generate_rejects_a_too_long_duration_before_building_the_model(tmp_path: Path) -> None:
    out = _run("generate", "--model", "stable-audio-open", "--prompt", "rain", "--steps", "10",
               "--duration-s", "50", "--out", str(tmp_path / "x.wav"))
    assert out.returncode == 2
    assert out.stderr.strip() == "error: duration 50.0 s exceeds stable-audio-open's maximum of 47.55 s"
    assert not any(tmp_path.iterdir())


def test_the_merge_module_refuses_bad_input_with_exit_2_and_one_line(tmp_path: Path, capsys) -> None:
    """``python -m tta_energy.experiments.resume DEST SOURCE...`` (the device scripts' merge) exits 2 on a
    user error, as the command line does, with one line naming the problem."""
    import pytest

    from tta_energy.experiments import resume

    other = tmp_path / "scores.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")
    for argv, words in (([str(tmp_path / "steps.csv")], "usage:"),
                        ([str(tmp_path / "steps.csv"), str(other)], f"error: {other} is not a run table")):
        with pytest.raises(SystemExit) as exc:
            resume.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and err[0].startswith(words), err
    assert not (tmp_path / "steps.csv").exists()
