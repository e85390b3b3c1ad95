"""The one atomic-write mechanism every writer of the package uses (tta_energy.fileio)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

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
    """Each writer replaces a longer existing file: no tail of the old content is left after the new."""
    old = "x" * 10_000 + "\n"
    for name in ("n.txt", "t.csv", "c.json"):
        (tmp_path / name).write_text(old)
    torch.save({"w": torch.arange(10_000)}, tmp_path / "w.pt")  # a longer torch file than the new one
    fileio.write_text_atomic(tmp_path / "n.txt", "new\n")
    fileio.write_csv_atomic(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    fileio.write_json_atomic(tmp_path / "c.json", {"k": 1})
    fileio.torch_save_atomic({"w": torch.tensor([1.5, -2.0])}, tmp_path / "w.pt")
    assert (tmp_path / "n.txt").read_text() == "new\n"
    assert (tmp_path / "t.csv").read_text() == "a\n1\n2\n"
    assert (tmp_path / "c.json").read_text() == '{\n  "k": 1\n}\n'
    loaded = torch.load(tmp_path / "w.pt", weights_only=True)
    assert loaded.keys() == {"w"} and torch.equal(loaded["w"], torch.tensor([1.5, -2.0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "n.txt", "t.csv", "w.pt"]


@pytest.mark.filterwarnings("ignore:The 'float_precision' argument is deprecated")
@pytest.mark.parametrize("pandas_rounds_correctly", [None, False])  # None: this pandas's own branch
def test_numbers_read_from_text_are_the_nearest_floats(monkeypatch, tmp_path, pandas_rounds_correctly):
    """pandas 3.0's default parser and to_numeric can be one unit in the last place off; the readers give
    Python's float (the nearest double) on every pandas, the branch for older versions included."""
    if pandas_rounds_correctly is not None:
        monkeypatch.setattr(fileio, "_pandas_rounds_floats_correctly", lambda: pandas_rounds_correctly)
    values = ["12.050448754336685", "0.40749508142471313", "1e-300"]
    text = pd.Series([*values, "", "n/a"], dtype=object)
    numbers = fileio.exact_numbers(text)
    assert numbers.dtype == "float64" and numbers.iloc[3:].isna().all()
    assert [v.hex() for v in numbers.iloc[:3]] == [float(v).hex() for v in values]
    path = tmp_path / "t.csv"
    path.write_text("x\n" + "\n".join(values) + "\n", encoding="utf-8")
    read = fileio.read_csv_exact(path)["x"]
    assert [v.hex() for v in read] == [float(v).hex() for v in values]


def test_read_toml_names_a_folder_or_a_file_of_another_kind_and_what_it_needs(tmp_path):
    """The one reader of the campaign and levers plan files says what is wrong in the caller's terms."""
    from tta_energy.errors import TtaError
    from tta_energy.fileio import read_toml

    with pytest.raises(TtaError) as exc:
        read_toml(tmp_path, TtaError, "campaign file")
    assert str(exc.value) == f"campaign file {tmp_path} is a folder: give a campaign TOML file"
    binary = tmp_path / "some.wav"
    binary.write_bytes(b"RIFF\n\xac\x00")
    with pytest.raises(TtaError) as exc:
        read_toml(binary, TtaError, "levers plan file")
    assert str(exc.value) == (f"levers plan file {binary} is not a UTF-8 text file (byte 5, line 2): give a "
                              "levers plan TOML file")
    with pytest.raises(TtaError, match="does not exist$"):
        read_toml(tmp_path / "none.toml", TtaError, "campaign file")
    (tmp_path / "ok.toml").write_text('name = "x"\n', encoding="utf-8")
    assert read_toml(tmp_path / "ok.toml", TtaError, "campaign file") == {"name": "x"}
