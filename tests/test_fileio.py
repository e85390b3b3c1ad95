"""The one atomic-write mechanism every writer of the package uses (tta_energy.fileio)."""

from __future__ import annotations

import pandas as pd
import pytest

from tta_energy import fileio


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    fileio.write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), fileio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_writers_replace_the_target_whole(tmp_path):
    fileio.write_csv_atomic(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    fileio.write_json_atomic(tmp_path / "c.json", {"k": 1})
    fileio.torch_save_atomic({"w": 1}, tmp_path / "w.pt")
    assert pd.read_csv(tmp_path / "t.csv")["a"].tolist() == [1, 2]
    assert (tmp_path / "c.json").read_text() == '{\n  "k": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "t.csv", "w.pt"]
