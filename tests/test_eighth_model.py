"""A new model needs only its adapter, its configs and its catalogue row, declared by its own distribution
through the entry-point group ``tta_energy.models``: describe, a sweep, the analysis and the figures then work
for it without any change to the package (the adapter and the row are tests/eighth_model.py; the
distribution is installed by ``install_distribution`` of tests/conftest.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from eighth_model import LABEL, NAME, ROW

from tta_energy import schema
from tta_energy.analysis import plots
from tta_energy.cli.main import main
from tta_energy.models import catalogue

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def eighth(install_distribution):
    install_distribution("tta-eighth-model", entry_points={NAME: "eighth_model:ROW"})
    return NAME


def test_catalogue_lists_the_eighth_model(eighth):
    assert catalogue.model_names()[-1] == eighth and catalogue.label(eighth) == LABEL
    assert catalogue.entry(eighth) == ROW
    assert catalogue.ordered(["audioldm", eighth, "tango"]) == ["audioldm", "tango", eighth]
    assert eighth in catalogue.help_text()
    # a colour of its own in every figure, and its label in the legends
    assert plots.model_colour(eighth) not in {plots.model_colour(m) for m in catalogue.BUILTIN_NAMES}
    assert plots.model_label(eighth) == LABEL


def test_describe_sweep_analyze_and_plot_the_eighth_model(eighth, tmp_path, capsys):
    main(["describe", "--model", eighth, "--size", "tiny", "--duration-s", "1", "--json"])
    described = json.loads(capsys.readouterr().out)
    assert described["model"] == eighth and described["total_params"] > 0 and described["gflop_per_step"] > 0

    runs = tmp_path / "runs"
    main(["sweep", "--model", eighth, "--experiment", "steps", "--grid", "1,2", "--repeats", "2",
          "--size", "tiny", "--device", "cpu", "--duration-s", "1", "--idle-s", "0", "--warmup", "0",
          "--no-progress", "--no-codecarbon", "--no-trace", "--out-dir", str(runs)])
    rows = schema.read_runs(runs / "steps.csv")
    assert len(rows) == 4 and (rows["status"] == "ok").all() and (rows["model"] == eighth).all()
    # the catalogue's defaults reach the rows: precision, guidance scale, negative prompt
    assert (rows["dtype"] == "float32").all() and (rows["guidance_scale"] == 2.0).all()
    assert (rows["negative_prompt"] == "Quiet.").all()

    # what an NVIDIA GPU would have measured (a CPU-only machine records NaN): 10 J per denoiser call
    rows["gpu_energy_J"] = 10.0 * rows["denoiser_calls"] + rows["repeat"].astype(float)
    rows["gpu_name"] = "test GPU"
    schema.write_runs(runs / "steps.csv", rows)

    tables = tmp_path / "tables"
    main(["analyze", "--runs", str(runs), "--out-dir", str(tables), "--bootstrap", "0", "--figures"])
    summary = pd.read_csv(tables / "steps_summary.csv").set_index("steps")
    assert set(summary["model"]) == {eighth} and list(summary.index) == [1, 2]
    assert summary["gpu_energy_J_mean"].tolist() == pytest.approx([10.5, 20.5])
    assert (summary["n_runs"] == 2).all()

    figures = tables / "figures"
    stem = "steps-energy-linear-tta-energy-test-gpu"
    assert (figures / f"{stem}.png").stat().st_size > 0
    assert plots.read_manifest(figures)[stem]["status"] == "drawn"
    assert f"![{stem}]({stem}.png)" in (figures / "index.md").read_text(encoding="utf-8")
