"""``campaign run`` rules beyond the happy path (CPU, tiny models): each call visits in its own seeded order,
a repeat that failed is not continued, an unfinished run exits 3, a run stopped by an error logs its call,
shard files an interrupted torchrun run left are merged (by the next run and by ``collect``), and an
out-of-memory build frees every other resident build."""

from __future__ import annotations

import dataclasses
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_CAMPAIGN_SETTINGS, campaign_checkout

from tta_energy import schema
from tta_energy.cli.exits import NOTHING_LEFT_EXIT
from tta_energy.cli.main import main
from tta_energy.experiments import campaign as cp
from tta_energy.experiments import resume

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

RUN = ["campaign", "run", "--device", "cpu", "--no-codecarbon", "--no-progress"]


def _campaign(tmp_path, experiments: str) -> str:
    path = tmp_path / "c.toml"
    path.write_text(TINY_CAMPAIGN_SETTINGS.replace("{weights}", "random").format(out=tmp_path / "tables")
                    + experiments, encoding="utf-8")
    return str(path)


def test_a_later_call_does_not_replay_the_first_calls_order():
    cells = list(range(12))
    first = cp.round_order(cells, 0, "steps", 0, 0)
    assert sorted(first) == cells and first == cp.round_order(cells, 0, "steps", 0, 0)  # seeded
    # the same round of a call that starts from a table with rows in it, and the next round of the same call
    assert cp.round_order(cells, 0, "steps", 96, 0) != first
    assert cp.round_order(cells, 0, "steps", 0, 1) != first


def test_a_repeat_whose_call_fails_is_not_continued(tmp_path, monkeypatch):
    from tta_energy.models.audioldm import AudioLDMAdapter

    real = AudioLDMAdapter.generate

    def silent_nan(self, request, phases=None):  # 2 steps instead of the batch experiment's 100: faster
        short = dataclasses.replace(request, steps=2)
        out = real(self, short) if phases is None else real(self, short, phases)
        out.waveforms[...] = np.nan
        return out

    monkeypatch.setattr(AudioLDMAdapter, "generate", silent_nan)
    path = _campaign(tmp_path, '[[experiment]]\nname = "batch"\nmodels = ["audioldm"]\ngrid = ["2"]\n')
    main([*RUN, "--campaign", path])  # nan_audio decides the cell: done, exit 0
    rows = schema.read_runs(tmp_path / "tables" / "batch.csv")
    measured = rows[~rows["is_warmup"]]
    # a repeat of 10 clips as 5 calls of 2: the first call's NaN audio ends the repeat (not 5 calls)
    assert list(measured["status"]) == ["nan_audio"]


def test_cells_left_after_errors_exit_3(tmp_path, monkeypatch, capsys):
    from tta_energy.models.audioldm import AudioLDMAdapter

    def broken(self, request, phases=None):
        raise RuntimeError("a deterministic failure")

    monkeypatch.setattr(AudioLDMAdapter, "generate", broken)
    path = _campaign(tmp_path, '[[experiment]]\nname = "steps"\nmodels = ["audioldm"]\ngrid = ["1"]\n')
    with pytest.raises(SystemExit) as exc:
        main([*RUN, "--campaign", path])
    assert exc.value.code == 3
    assert "left after errors, 1 cell(s) unfinished: run the same command again" in capsys.readouterr().out


def test_a_run_stopped_by_an_error_logs_its_call(tmp_path, tiny_campaign, monkeypatch, capsys):
    from tta_energy.experiments.runner import ModelCache

    def unbuildable(self, dtype):
        raise ValueError("the checkpoint folder vanished")

    monkeypatch.setattr(ModelCache, "get", unbuildable)
    with pytest.raises(ValueError, match="vanished"):
        cp.run_campaign(cp.load_campaign(tiny_campaign),
                        cp.RunOptions(device="cpu", codecarbon=False, progress=False), echo=lambda _m: None)
    log = [json.loads(line) for line in (tmp_path / "tables" / cp.RUNS_LOG).read_text().splitlines()]
    assert len(log) == 1 and log[0]["interrupted"] is True
    assert log[0]["stopped_by"] == "ValueError: the checkpoint folder vanished"
    assert log[0]["rows"] == {} and log[0]["wall_s"] > 0


def test_shard_files_an_interrupted_torchrun_run_left_are_merged_by_the_next_run_and_by_collect(
        tmp_path, tiny_campaign, capsys):
    tables = tmp_path / "tables"
    main([*RUN, "--campaign", str(tiny_campaign), "--experiment", "steps"])
    capsys.readouterr()
    table = tables / "steps.csv"
    rows = schema.read_runs(table)
    # as if a torchrun run measured them and was killed before rank 0 merged: only shard files hold them
    returned = tmp_path / "returned"
    returned.mkdir()
    table.rename(resume.shard_path(table, 1))
    schema.write_runs(resume.shard_path(returned / "steps.csv", 0), rows)
    with pytest.raises(SystemExit) as exc:
        main([*RUN, "--campaign", str(tiny_campaign), "--experiment", "steps"])
    assert exc.value.code == NOTHING_LEFT_EXIT
    assert "nothing left to measure" in capsys.readouterr().out
    assert not resume.shard_paths(table)
    assert len(schema.read_runs(table)) == len(rows)

    table.unlink()  # collect: a returned folder holding only a shard file
    main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])
    assert f"steps.csv: +{len(rows)} rows ({len(rows)} in all)" in capsys.readouterr().out
    def ordered(df: pd.DataFrame) -> pd.DataFrame:
        return df.sort_values(["timestamp", "config_id", "is_warmup"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(schema.read_runs(table)), ordered(rows))


def test_an_out_of_memory_build_frees_every_other_build_the_same_models_other_precisions_too(tiny_campaign):
    class Cache:
        """A model's builds: a build runs out of memory while any other build is resident."""

        everyone: list[Cache] = []

        def __init__(self) -> None:
            self.adapters: dict[str, object] = {}
            self.warmed: set[str] = set()
            Cache.everyone.append(self)

        def get(self, dtype: str) -> object:
            if any(c.adapters for c in Cache.everyone):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
            self.adapters[dtype] = object()
            return self.adapters[dtype]

    models = cp.ResidentModels(cp.load_campaign(tiny_campaign), "cpu")
    models.caches = {"audioldm": Cache(), "tango": Cache()}
    models.caches["audioldm"].adapters = {"float32": object()}
    models.caches["audioldm"].warmed = {"float32"}
    models.caches["tango"].adapters = {"float16": object()}
    models.build("audioldm", "float16")
    assert list(models.caches["audioldm"].adapters) == ["float16"] and not models.caches["tango"].adapters
    assert models.caches["audioldm"].warmed == set() and not models.resident("audioldm", "float32")


def test_a_call_chained_on_the_same_device_machine_resumes_from_the_earlier_calls_rows(tmp_path):
    """Each device call gets this checkout's tables; ``gpu_campaign.sh run`` first merges what earlier calls
    on the same machine returned (kept in .cache/campaign-calls), so a chained call measures nothing twice."""
    import shutil
    import subprocess
    import tarfile

    repo, env = campaign_checkout(tmp_path)

    def call() -> subprocess.CompletedProcess:
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        return subprocess.run(["bash", "scripts/gpu_campaign.sh", "run", "--device", "cpu", "--no-codecarbon",
                               "--experiment", "steps"], cwd=repo, env=env, capture_output=True, text=True,
                              check=False)

    first = call()
    assert first.returncode == 0, first.stdout + first.stderr
    measured = schema.read_runs(repo / "tables" / "steps.csv")
    shutil.rmtree(repo / "tables")  # the next call's tree: the checkout's tables, without the first's rows
    second = call()
    # every cell done: nothing measured
    assert second.returncode == NOTHING_LEFT_EXIT, second.stdout + second.stderr
    assert "earlier call: " in second.stdout and "nothing left to measure" in second.stdout
    with tarfile.open(tmp_path / "out" / "campaign" / "h200.tar.gz") as tar:  # it returns them again
        tar.extractall(tmp_path / "returned", filter="data")
    returned = schema.read_runs(tmp_path / "returned" / "tables" / "steps.csv")
    assert len(returned) == len(measured) and set(returned["run_id"]) == set(measured["run_id"])
    assert len(list((repo / ".cache" / "campaign-calls").glob("*.tar.gz"))) == 2


@pytest.mark.parametrize("mode", ["run", "merge-earlier"])
@pytest.mark.parametrize("hard_stop", ["8m", "-5", "1.5", "0", "abc", "5 "])
def test_a_campaign_calls_hard_stop_is_whole_seconds_checked_first(tmp_path, mode, hard_stop):
    """HARD_LIMIT_S that is not a whole number of seconds is one error line naming it, exit 2, before anything
    is read or written (8m went to timeout as minutes, then failed the arithmetic; -5 was an invalid option of
    timeout's; both packed nothing)."""
    import subprocess

    repo, env = campaign_checkout(tmp_path)
    done = subprocess.run(["bash", "scripts/gpu_campaign.sh", mode, "--device", "cpu"], cwd=repo,
                          env={**env, "HARD_LIMIT_S": hard_stop}, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr == (f"error: HARD_LIMIT_S={hard_stop}: give the campaign run's hard stop in whole "
                           "seconds, at least 1\n")
    assert sorted(p.name for p in repo.iterdir()) == ["campaigns", "scripts"]
    assert not (tmp_path / "out").exists()


def test_a_repeat_whose_first_call_failed_is_measured_again_not_left_behind(tmp_path):
    from tta_energy.experiments import campaign_plan as plan

    path = _campaign(tmp_path, '[[experiment]]\nname = "batch"\nmodels = ["audioldm"]\ngrid = ["5"]\n')
    (cell,) = plan.build_cells(cp.load_campaign(path))
    first, second = cell.items  # 10 clips as 2 calls of 5
    observed = {first.config_id: plan.Observed()}
    observed[first.config_id].add(0, "error", float("nan"), 1.0)  # repeat 0's first call ended in an error
    again = plan.next_items(cell, observed)
    assert [(it.config_id, it.repeat) for it in again] == [(first.config_id, 0), (second.config_id, 0)]
    observed[first.config_id].add(0, "ok", 10.0, 1.0)
    assert [(it.config_id, it.repeat) for it in plan.next_items(cell, observed)] == [(second.config_id, 0)]


def test_entries_conflicting_only_for_a_model_the_filter_leaves_out_do_not_stop_a_run(tmp_path):
    from tta_energy.experiments import campaign_plan as plan
    from tta_energy.experiments.campaign_spec import CampaignError

    path = _campaign(tmp_path, '[[experiment]]\nname = "quality"\nmodels = ["audioldm", "tango"]\n'
                               'grid = ["1"]\ncaptions = ["audiocaps"]\ncaption_limit = 2\n'
                               '[[experiment]]\nname = "quality"\nmodels = ["tango"]\n'
                               'grid = ["1"]\ncaptions = ["audiocaps"]\ncaption_limit = 5\n')
    campaign = cp.load_campaign(path)
    with pytest.raises(CampaignError, match="make the same cell .* of tango"):
        plan.check_entries(campaign)
    plan.check_entries(campaign, models=["audioldm"])  # only tango's cell conflicts
