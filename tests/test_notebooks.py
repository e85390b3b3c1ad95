"""The notebooks: paired with their jupytext text files, committed without outputs, and executed.

Execution goes through ``python -m tta_energy.analysis.reproduce`` (what ``make reproduce`` runs):
once on the repository's ``data/`` (the study's data imported in ``data/study`` plus any measurements of
this project), once on a copy of the study given with ``--study`` (a 7-model tree built from the study's
published results for 3 models, :func:`analysis_fixtures.paper_data_path`) together with synthetic H200 run
tables that carry phases and a power trace.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from analysis_fixtures import REPO, build_full_tree, load_paper_data, make_h200_runs

from tta_energy.analysis import plots, reproduce, tables

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.py"))


def test_there_is_a_notebook_per_experiment_and_one_comparison():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_inference_steps",
        "02_batch_size",
        "03_quality_pareto",
        "04_h200_vs_a40",
        "05_new_sweeps",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pairs_are_in_sync_and_committed_without_outputs(path: Path):
    text = jupytext.read(path)
    ipynb_path = path.with_suffix(".ipynb")
    assert ipynb_path.is_file(), f"{ipynb_path.name} missing: run `jupytext --sync {path}`"
    ipynb = nbformat.read(ipynb_path, as_version=4)
    assert [(c.cell_type, c.source) for c in text.cells] == [(c.cell_type, c.source) for c in ipynb.cells], (
        f"{path.name} and {ipynb_path.name} differ: run `jupytext --sync notebooks/*.py`"
    )
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{ipynb_path.name} has outputs"
    assert any("parameters" in c.metadata.get("tags", []) for c in text.cells)
    assert ipynb.metadata["jupytext"]["formats"] == "ipynb,py:percent"


def _drawn(figures: Path) -> dict[str, dict[str, str]]:
    return {s: e for s, e in plots.read_manifest(figures).items() if e["status"] == "drawn"}


def test_reproduce_on_the_repository_data(tmp_path):
    if not (REPO / "data").is_dir():
        pytest.skip("no data/ folder")
    figures = tmp_path / "figures"
    index = reproduce.reproduce(REPO / "data", figures, executed=tmp_path / "executed", n_boot=100)
    drawn = _drawn(figures)
    if (REPO / "data" / "study").is_dir():
        for stem in (
            "steps-energy-linear-study-a40",
            "steps-energy-log-study-a40",
            "batch-energy-per-clip-study-a40",
            "pareto-study-a40",
            "sanity-scores-study-a40",
        ):
            assert stem in drawn, stem
            assert (figures / f"{stem}.pdf").stat().st_size > 1000 and (figures / f"{stem}.png").is_file()
    if (REPO / "data" / "h200" / "duration.csv").is_file():
        assert "new-sweeps-tta-energy-h200" in drawn
    text = index.read_text()
    for stem in drawn:
        assert f"![{stem}]({stem}.png)" in text
    assert (figures / "tables" / "steps_summary.csv").is_file()
    if (REPO / "data" / "h200" / "steps.csv").is_file():  # the variance components of the H200 sweeps
        import pandas as pd

        spread_table = pd.read_csv(figures / "tables" / reproduce.SPREAD_TABLE)
        assert spread_table["experiment"].iloc[0] == "steps"
        assert spread_table["gpu_name"].str.contains("H200").all()
    executed = sorted(p.stem for p in (tmp_path / "executed").glob("*.ipynb"))
    assert executed == [p.stem for p in NOTEBOOKS]
    # the committed notebooks were not touched (outputs go elsewhere)
    for path in NOTEBOOKS:
        ipynb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
        assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code")


def test_reproduce_with_a_study_copy_and_h200_measurements(tmp_path):
    study = build_full_tree(tmp_path / "study-copy", quality_rows=60)
    data = tmp_path / "data"
    make_h200_runs(data / "h200", load_paper_data().runs["steps"])
    figures = tmp_path / "figures"
    logs: list[str] = []
    index = reproduce.reproduce(data, figures, study=study, n_boot=50, log=logs.append)
    drawn = _drawn(figures)
    for stem in (
        "steps-energy-linear-study-a40",
        "steps-energy-linear-tta-energy-h200",
        "pareto-study-a40",
        "batch-energy-per-clip-study-a40",
        "phase-energy-tta-energy-h200",
        "power-trace-tta-energy-h200",
        "platform-comparison",
        "sanity-scores-study-a40",
    ):
        assert stem in drawn, (stem, sorted(drawn))
    skipped = {s for s, e in plots.read_manifest(figures).items() if e["status"] == "skipped"}
    assert "phase-energy-study-a40" in skipped and "power-trace-study-a40" in skipped
    assert "new-sweeps-no-data" in skipped  # no duration, guidance or precision sweep in these tables
    assert any("importing the study" in line for line in logs)
    text = index.read_text()
    assert "(imported)" in text and "H200 (this project) vs A40 (study)" in text
    # the 7 models of the copy reach the figures' tables
    import pandas as pd

    steps = pd.read_csv(figures / "tables" / "steps_summary.csv")
    assert steps.loc[steps["source"] == "study", "model"].nunique() == 7
    spread_table = pd.read_csv(figures / "tables" / reproduce.SPREAD_TABLE)  # the H200 rows only
    h200 = steps[steps["gpu_name"].str.contains("H200")]
    assert set(spread_table["model"]) == set(h200["model"]) and set(spread_table["experiment"]) == {"steps"}


def test_reproduce_refuses_a_bootstrap_count_out_of_range_before_reading_anything(tmp_path, capsys):
    assert reproduce.main(["--data", str(tmp_path / "none"), "--figures", str(tmp_path / "figures"),
                           "--bootstrap", "-5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --bootstrap must be from 0 (no resampling) to 100000 resamples, got -5")
    assert not (tmp_path / "figures").exists()


def test_reproduce_refuses_a_file_as_its_figures_folder_before_any_notebook(tmp_path, capsys, monkeypatch):
    """`make reproduce OUT=<a file>`: one line at once, not after every notebook ran."""
    ran = []
    monkeypatch.setattr(reproduce, "_reproduce_into", lambda *a, **k: ran.append(a))
    (tmp_path / "figures").write_text("not a folder")
    assert reproduce.main(["--data", str(tmp_path), "--figures", str(tmp_path / "figures")]) == 2
    expected = f"error: --figures {tmp_path / 'figures'} is a file: a folder is expected"
    assert capsys.readouterr().err.strip() == expected
    assert not ran and sorted(p.name for p in tmp_path.iterdir()) == ["figures"]


def _write_notebook(folder: Path, name: str, body: str) -> None:
    """A jupytext percent notebook: a cell tagged ``parameters``, then ``body``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(
        '# %% tags=["parameters"]\nruns_paths = None\nfigures_dir = None\nn_boot = 0\n\n# %%\n' + body,
        encoding="utf-8")


def test_a_failed_reproduce_leaves_the_previous_figures_as_they_were(tmp_path):
    """A notebook that fails after another drew a figure: the earlier run's figures, tables and index stay,
    nothing of the failed run reaches the folder, and no staging folder is left beside it."""
    figures = tmp_path / "figures"
    plots.skip_figure(figures, "kept-figure", "from the earlier run", "steps")
    (figures / "kept-figure.png").write_bytes(b"png")
    (figures / "tables").mkdir()
    (figures / "tables" / "steps_summary.csv").write_text("model\nx\n", encoding="utf-8")
    (figures / tables.INDEX_FILE).write_text("earlier index\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in figures.rglob("*") if p.is_file()}
    notebooks = tmp_path / "notebooks"
    _write_notebook(notebooks, "01_draws.py",
                    "from pathlib import Path\n(Path(figures_dir) / 'new-figure.png').write_bytes(b'new')\n")
    _write_notebook(notebooks, "02_fails.py", "raise ValueError('a cell that fails')\n")
    with pytest.raises(reproduce.TtaError, match="02_fails.py: a cell failed: ValueError: a cell that fails"):
        reproduce.reproduce(tmp_path / "no-data", figures, notebooks=notebooks, n_boot=0, log=lambda _: None)
    assert {p: p.read_bytes() for p in figures.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "notebooks"]


def test_the_notebooks_import_the_package_reproduce_runs_from(tmp_path, monkeypatch):
    """A relative PYTHONPATH names nothing in the notebooks' folder, where the kernel starts: the kernel
    still imports this tta_energy, not another tree the environment may have installed."""
    import tta_energy

    monkeypatch.setenv("PYTHONPATH", "src")
    notebooks = tmp_path / "notebooks"
    _write_notebook(notebooks, "01_where.py",
                    "from pathlib import Path\nimport tta_energy\n"
                    "(Path(figures_dir) / 'where.txt').write_text(tta_energy.__file__)\n")
    figures = tmp_path / "figures"
    reproduce.reproduce(tmp_path / "no-data", figures, notebooks=notebooks, n_boot=0, log=lambda _: None)
    assert Path((figures / "where.txt").read_text()).resolve() == Path(tta_energy.__file__).resolve()
    assert (figures / tables.INDEX_FILE).is_file()


def test_figures_are_published_into_a_tables_folder_on_another_file_system(tmp_path):
    """A symlinked figures/tables on another file system (here /dev/shm, a tmpfs) cannot take a rename:
    each file is copied beside its target and renamed there, and the previous run's figures that the new
    run did not record are removed only after every file arrived."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system at /dev/shm")
    import tempfile

    elsewhere = Path(tempfile.mkdtemp(dir=shm, prefix="tta-energy-tables-"))
    try:
        figures = tmp_path / "figures"
        plots.skip_figure(figures, "old-figure", "from the earlier run", "steps")
        (figures / "old-figure.png").write_bytes(b"old")
        (figures / "tables").symlink_to(elsewhere, target_is_directory=True)
        (elsewhere / "kept.csv").write_text("a\n1\n", encoding="utf-8")
        notebooks = tmp_path / "notebooks"
        _write_notebook(notebooks, "01_draws.py",
                        "from pathlib import Path\nfrom tta_energy.analysis import plots\n"
                        "(Path(figures_dir) / 'tables').mkdir(exist_ok=True)\n"
                        "(Path(figures_dir) / 'tables' / 'new.csv').write_text('b\\n2\\n')\n"
                        "plots.skip_figure(Path(figures_dir), 'new-figure', 'the new run', 'steps')\n")
        reproduce.reproduce(tmp_path / "no-data", figures, notebooks=notebooks, n_boot=0, log=lambda _: None)
        assert (elsewhere / "new.csv").read_text() == "b\n2\n" and (elsewhere / "kept.csv").is_file()
        assert set(plots.read_manifest(figures)) == {"new-figure"}
        assert not (figures / "old-figure.png").exists() and (figures / tables.INDEX_FILE).is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "notebooks"]  # no staging left
    finally:
        import shutil

        shutil.rmtree(elsewhere, ignore_errors=True)
