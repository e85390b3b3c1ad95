"""The run record (tta_energy.schema): validation, crash-safe appends, reading a table cut by a crash."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tta_energy import schema
from tta_energy.experiments.campaign_spec import load_campaign
from tta_energy.experiments.runner import SweepOptions
from tta_energy.schema import SchemaError


def a_row(**overrides: object) -> dict[str, object]:
    row = schema.empty_row() | {
        "source": "tta-energy", "run_id": "run-1", "experiment": "steps", "config_id": "abc123", "repeat": 0,
        "model": "audioldm", "weights": "random", "size": "tiny", "dtype": "float16", "optimize": "none",
        "steps": 10, "denoiser_calls": 10, "n_prompts": 1, "waveforms_per_prompt": 1, "n_clips": 1,
        "duration_s": 10.0, "audio_seconds": 10.0, "guidance_scale": 2.5, "negative_prompt": "Low quality.",
        "prompt": "a dog barks, then a car passes", "seed": 0, "status": "ok", "wall_s": 1.25,
        "gpu_energy_J": 612.5, "gpu_idle_power_W": 78.0, "gpu_energy_net_J": 515.0,
        "gpu_energy_method": "nvml_interpolated", "cpu_energy_J": 30.0, "ram_energy_J": 6.0,
        "cpu_energy_method": "estimate", "co2_kg": 1e-4, "gpu_name": "NVIDIA H200",
        "timestamp": "2026-01-01T00:00:00+00:00",
    }
    row.update(schema.codecarbon_columns(1.25, 612.5, 30.0, 6.0, 1e-4))
    row.update(overrides)
    return row


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(schema.COLUMN_NAMES))


def test_validate_coerces_types():
    df = schema.validate(frame(a_row(), a_row(repeat=1, is_warmup=True, gpu_energy_J=np.nan)))
    assert df["gpu_energy_J"].dtype == np.float64
    assert str(df["repeat"].dtype) == "Int64" and df["is_warmup"].dtype == bool
    assert df["is_warmup"].tolist() == [False, True]
    assert math.isnan(df.loc[1, "gpu_energy_J"])  # missing energy stays NaN, never 0


def test_measured_generations_are_the_ok_rows_that_are_not_warm_ups_however_the_flag_is_spelled():
    statuses = ["ok", "ok", "ok", "error", "ok"]
    flags = [False, True, "False", False, "True"]  # a column built in memory or read without the schema
    rows = pd.DataFrame({"status": statuses, "is_warmup": flags})
    assert schema.measured_generations(rows).tolist() == [True, False, True, False, False]
    validated = schema.validate(frame(*(a_row(repeat=i, status=st, is_warmup=w)
                                        for i, (st, w) in enumerate(zip(statuses, flags, strict=True)))))
    assert schema.measured_generations(validated).tolist() == [True, False, True, False, False]


@pytest.mark.parametrize(("change", "message"), [
    ({"gpu_energy_J": "lots"}, "runs.csv: column 'gpu_energy_J' holds a non-numeric value 'lots'"),
    ({"status": "crashed"},
     "runs.csv: column 'status' holds 'crashed', expected one of ok, oom, nan_audio, error"),
    ({"gpu_energy_method": "guess"}, "runs.csv: column 'gpu_energy_method' holds 'guess'"),
    ({"cpu_energy_J": -5.0}, "runs.csv: column 'cpu_energy_J' holds a negative energy"),
])
def test_schema_errors_name_the_file_and_the_column(change, message):
    with pytest.raises(SchemaError) as info:
        schema.validate(frame(a_row(**change)), "runs.csv")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_missing_required_columns_are_named_and_net_energy_may_be_negative():
    df = frame(a_row()).drop(columns=["gpu_energy_J", "model"])
    with pytest.raises(SchemaError, match=r"^t\.csv: missing column\(s\) model, gpu_energy_J$"):
        schema.validate(df, "t.csv")
    optional = frame(a_row()).drop(columns=["dataset", "energy_vocoder_J"])
    assert len(schema.validate(optional)) == 1
    assert schema.validate(frame(a_row(gpu_energy_net_J=-3.0)))["gpu_energy_net_J"].iloc[0] == -3.0


def test_append_row_writes_one_header_and_complete_lines(tmp_path):
    path = tmp_path / "sub" / "runs.csv"
    schema.append_row(path, a_row())
    schema.append_row(path, a_row(repeat=1, prompt='quotes " and, commas'))
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(schema.COLUMN_NAMES)
    assert sum(line.startswith("source,") for line in lines) == 1
    df = schema.read_runs(path)
    assert df["repeat"].tolist() == [0, 1] and df.loc[1, "prompt"] == 'quotes " and, commas'
    with pytest.raises(SchemaError, match="outside the schema: not_a_column"):
        schema.append_row(path, a_row() | {"not_a_column": 1})
    assert len(schema.read_runs(path)) == 2  # the refused row left nothing behind


def test_read_runs_ignores_a_half_written_last_line_and_append_repairs_it(tmp_path):
    path = tmp_path / "runs.csv"
    schema.append_row(path, a_row())
    schema.append_row(path, a_row(repeat=1))
    full = path.read_bytes()
    path.write_bytes(full + schema.format_row(a_row(repeat=2)).encode()[:57])  # a kill in mid-write
    assert schema.read_runs(path)["repeat"].tolist() == [0, 1]
    schema.append_row(path, a_row(repeat=3))
    assert schema.read_runs(path)["repeat"].tolist() == [0, 1, 3]
    assert path.read_bytes().startswith(full)  # completed rows are never touched


def test_a_killed_writer_leaves_a_readable_table(tmp_path):
    path = tmp_path / "runs.csv"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(os.path.dirname(os.path.abspath(__file__)))!r})
        from test_schema import a_row
        from tta_energy import schema
        i = 0
        while True:
            schema.append_row({str(path)!r}, a_row(repeat=i, prompt="x" * 5000))
            i += 1
            if i == 3:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    df = schema.read_runs(path)
    assert len(df) >= 3
    assert df["repeat"].tolist() == list(range(len(df)))
    assert (df["prompt"].str.len() == 5000).all()


def test_write_runs_is_atomic_and_ordered(tmp_path):
    path = tmp_path / "all.csv"
    df = frame(a_row(), a_row(repeat=1))[list(reversed(schema.COLUMN_NAMES))]
    schema.write_runs(path, df)
    back = schema.read_runs(path)
    assert list(back.columns) == list(schema.COLUMN_NAMES)
    assert back["gpu_energy_J"].tolist() == [612.5, 612.5]
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(SchemaError, match="column 'status'"):
        schema.write_runs(path, frame(a_row(status="bad")))
    assert len(schema.read_runs(path)) == 2  # a refused table does not replace the good one


def test_read_runs_refuses_missing_and_empty_files(tmp_path):
    with pytest.raises(SchemaError, match="no such run table"):
        schema.read_runs(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SchemaError, match="empty.csv: empty run table"):
        schema.read_runs(tmp_path / "empty.csv")


def test_read_runs_names_a_table_pandas_cannot_parse(tmp_path):
    """A row of more fields than the header is one line naming the file, as every reader of the tables needs
    (collect, resume, the docs' numbers), not pandas' own error."""
    path = tmp_path / "runs.csv"
    path.write_text("source,run_id\ntta-energy,r1\ntta-energy,r1,x,y\n")
    with pytest.raises(SchemaError) as err:
        schema.read_runs(path)
    assert str(err.value) == (f"{path}: is not a well-formed CSV (Error tokenizing data. C error: Expected 2 "
                              "fields in line 3, saw 4)")
    assert schema.check_table(path).problems == [str(err.value).removeprefix(f"{path}: ")]


def test_codecarbon_columns_are_kwh_and_keep_missing_parts_missing():
    cols = schema.codecarbon_columns(2.0, 3.6e6, 1.8e6, np.nan, 0.5)
    assert cols == {"duration": 2.0, "emissions": 0.5, "cpu_energy": 0.5, "gpu_energy": 1.0,
                    "ram_energy": cols["ram_energy"], "energy_consumed": 1.5}
    assert math.isnan(cols["ram_energy"])
    assert math.isnan(schema.codecarbon_columns(1.0, np.nan, np.nan, np.nan, np.nan)["energy_consumed"])


def test_append_to_a_table_with_an_older_header_upgrades_it(tmp_path):
    """Rows appended after new columns were added keep the table readable: the old rows get empty cells."""
    import csv

    path = tmp_path / "steps.csv"
    old_columns = [c for c in schema.COLUMN_NAMES if c not in ("cpu_time_s", "gpu_busy_fraction")]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(old_columns)
        writer.writerow(["x, with a comma" if c == "prompt" else "" for c in old_columns])
    schema.append_line(path, schema.header_line(), "".join(",".join(["1"] * len(schema.COLUMN_NAMES)) + "\n"))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(schema.COLUMN_NAMES)
    assert [r["prompt"] for r in rows] == ["x, with a comma", "1"]
    assert rows[0]["cpu_time_s"] == "" and rows[1]["cpu_time_s"] == "1"


def test_append_refuses_a_table_with_columns_it_does_not_know(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(schema.SchemaError, match="not in the table"):
        schema.append_line(path, "a\n", "3\n")
    assert path.read_text() == "a,b\n1,2\n"


def test_a_csv_of_other_columns_is_named_as_no_run_table_not_by_every_column_it_lacks(tmp_path):
    other = tmp_path / "scores.csv"
    other.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(schema.SchemaError) as refused:
        schema.read_runs(other)
    assert str(refused.value) == f"{other} is not a run table (its columns: a, b, c)"
    damaged = tmp_path / "steps.csv"  # a run table that lost a column is still told what it lacks
    pd.DataFrame([schema.empty_row()]).drop(columns=["source"]).iloc[:0].to_csv(damaged, index=False)
    with pytest.raises(schema.SchemaError, match="missing column\\(s\\) source$"):
        schema.read_runs(damaged)


def test_a_run_table_is_named_after_its_experiment_in_its_folder(tmp_path):
    assert schema.run_table_path(tmp_path, "steps") == tmp_path / "steps.csv"
    # a sweep and a campaign write an experiment's rows where the rule says
    assert SweepOptions(model="audioldm", experiments=("steps",), out_dir=tmp_path).out_path("batch") == (
        schema.run_table_path(tmp_path, "batch"))
    campaign = load_campaign(Path(__file__).parents[1] / "campaigns" / "h200.toml")
    assert campaign.table("quality") == schema.run_table_path(campaign.out_dir, "quality")
