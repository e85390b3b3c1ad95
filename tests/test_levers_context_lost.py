"""A generation that loses the process's CUDA context (a kernel's launch failure, an illegal address: every
later CUDA call of the process fails the same way). Its row is written and the process stops at once with one
line and exit status 5 (no row of a later generation blamed for it); the levers plan tries that configuration
once more on another card and leaves it out after a loss on two, and says so (dry run, summary), and the
device scripts measure the rest of their call in a fresh process (the campaign's once). On the CPU, through
the fault of ``tests/lost_context.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import pytest
from conftest import ROOT
from lost_context import LAUNCH_FAILURE, install

from tta_energy import schema
from tta_energy.cli.exits import CONTEXT_LOST_EXIT
from tta_energy.cli.main import main
from tta_energy.errors import lost_cuda_context
from tta_energy.levers import calls, experiment, tables

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize(("error", "lost"), [
    ("AcceleratorError: CUDA error: unspecified launch failure", True),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", True),
    ("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA", True),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", False),
    ("RuntimeError: CUDA error: out of memory", False),  # an allocation that failed: the context lives
    ("LeverError: cudagraph: the denoiser cannot be captured: operation not permitted", False),
    ("misaligned address", False),  # not a CUDA error's text
    ("RuntimeError: Triton Error [CUDA]: unspecified launch failure", True),  # a compiled kernel's launcher
    ("CUDA driver error: an illegal memory access was encountered", True),
])
def test_one_rule_tells_a_lost_context_from_errors_the_process_survives(error, lost):
    assert lost_cuda_context(error) is lost
    assert lost_cuda_context(RuntimeError(error)) is lost


DECLARED = {"tango": (("none", ((100, 10),), 3), ("max", ((100, 10),), 3), ("compile", ((100, 10),), 3))}


def _earlier(folder: Path) -> calls.EarlierRuns:
    return calls.read_earlier_runs([folder], size="full", duration_s=10.0, seed=0)


def _row(run_id: str, spec: str, batch: int, *, warmup: bool = False, error: str | None = None) -> dict:
    r = schema.empty_row()
    r.update(run_id=run_id, experiment="levers", model="tango", size="full", weights="random",
             dtype="float16", optimize=spec, steps=100, denoiser_calls=100, n_prompts=1,
             waveforms_per_prompt=batch, n_clips=batch, duration_s=10.0, seed=0, repeat=0, is_warmup=warmup,
             config_id=f"{spec}-{batch}",
             gpu_energy_method="nvml_counter", cpu_energy_method="unavailable", source="tta-energy")
    if error is None:
        r.update(status="ok", wall_s=1.0, gpu_energy_J=100.0)
    else:
        r.update(status="error", error=error, gpu_energy_method="unavailable")
    return r


def test_a_configuration_that_lost_the_context_is_tried_once_more_and_left_out_after_a_second_loss(tmp_path):
    lost = f"AcceleratorError: {LAUNCH_FAILURE}"
    part = tmp_path / "partplan-1"
    part.mkdir()
    # as the H100 call went: warm-ups of none and compile, max's warm-up loses the context, and every later
    # generation of the run fails with the same error
    rows = [_row("r1", "none", 10, warmup=True), _row("r1", "compile", 10, warmup=True),
            _row("r1", "max", 10, warmup=True, error=lost), _row("r1", "none", 10, error=lost),
            _row("r1", "compile", 10, error=lost)]
    schema.write_runs(part / tables.RUNS_FILE, pd.DataFrame(rows))
    losses = tables.context_losses(schema.read_runs(part / tables.RUNS_FILE))
    assert losses[["run_id", "optimize", "waveforms_per_prompt", "is_warmup"]].values.tolist() == [
        ["r1", "max", 10, True]]
    history = pd.DataFrame([{"model": "tango", "optimize": spec, "steps": 100, "waveforms_per_prompt": 10,
                             "wall_s": 20.0, "compile_s": 60.0}
                            for spec in ("none", "compile", "max", "fp32")])

    def dry_run(card: str) -> str:
        plan = calls.plan_calls(DECLARED, history, _earlier(part), size="full",
                                budget_s=10_000.0, overhead_s=50.0, min_window_s=1.0, references_dir=None,
                                card=card)
        return "\n".join(plan.text())

    def done(card: str) -> set:
        return _earlier(part).done(DECLARED, card)

    # a loss on one card may be that card's: another card measures every cell again, max too
    assert done("bbbb") == set()
    said = dry_run("bbbb")
    assert (f"{calls.RETRIED}: tango `max` batch 10 (run r1, warm-up: {lost})") in said
    assert "left out" not in said and "tango batch 10: none, max, compile" in said
    # the card that lost it (here a CPU, '') goes on with the rest without it
    assert calls.card_of("cpu") == ""
    assert done("") == {("tango", "max", 100, 10)}  # none and compile failed because of max: tried again
    assert f"{calls.THIS_CARD}: tango `max` batch 10" in dry_run("")
    # a second card loses it too: every card leaves it out, and measures the others
    second = {**_row("r2", "max", 10, warmup=True, error=lost), "gpu_uuid": "GPU-BBBB"}
    schema.write_runs(part / tables.RUNS_FILE, pd.DataFrame([*rows, second]))
    assert done("cccc") == {("tango", "max", 100, 10)}
    assert calls.remaining(DECLARED, done("cccc")) == {"tango": (("none", ((100, 10),), 3),
                                                                 ("compile", ((100, 10),), 3))}
    said = dry_run("cccc")
    assert f"{calls.SETTLED}: tango `max` batch 10 (run r1, warm-up: {lost}; run r2, warm-up: {lost})" in said
    assert calls.SETTLED.startswith("left out, not tried again (it lost the CUDA context on 2 cards)")
    assert "tango batch 10: none, compile" in said
    # the study default losing it on two cards leaves nothing at that batch size to compare with: all of it
    # is left out
    defaults = [{**_row(r, "none", 10, error=lost), "gpu_uuid": f"GPU-{r}"} for r in ("r3", "r4")]
    schema.write_runs(part / tables.RUNS_FILE, pd.DataFrame(defaults))
    assert done("cccc") == {("tango", spec, 100, 10) for spec in ("none", "max", "compile")}


def test_a_loss_measured_since_on_another_card_leaves_the_dry_run(tmp_path):
    """The dry run says what is left: a configuration that lost the context on one card and was measured on
    another since is done, and no longer named as one to try once more."""
    lost = f"AcceleratorError: {LAUNCH_FAILURE}"
    part = tmp_path / "partplan-1"
    part.mkdir()
    measured = [{**_row("r2", spec, 10), "repeat": i, "gpu_uuid": "GPU-BBBB"}
                for spec in ("none", "max", "compile") for i in range(3)]
    schema.write_runs(part / tables.RUNS_FILE,
                      pd.DataFrame([_row("r1", "max", 10, warmup=True, error=lost), *measured]))
    history = pd.DataFrame([{"model": "tango", "optimize": spec, "steps": 100, "waveforms_per_prompt": 10,
                             "wall_s": 20.0, "compile_s": 60.0}
                            for spec in ("none", "compile", "max", "fp32")])
    plan = calls.plan_calls(DECLARED, history, _earlier(part), size="full",
                            budget_s=10_000.0, overhead_s=50.0, min_window_s=1.0, references_dir=None,
                            card="cccc")
    assert plan.done == 3 and plan.lost == () and plan.text() == ["cells done by earlier calls: 3 of 3",
                                                                  "nothing left to measure"]
    # a lost fp32 reference stands for every cell of its model: named while any of them is unmeasured
    reference_lost = {**_row("r3", "fp32", 1, warmup=True, error=lost), "gpu_uuid": "GPU-AAAA"}
    schema.write_runs(part / tables.RUNS_FILE, pd.DataFrame([reference_lost]))
    plan = calls.plan_calls(DECLARED, history, _earlier(part), size="full",
                            budget_s=10_000.0, overhead_s=50.0, min_window_s=1.0, references_dir=None,
                            card="cccc")
    assert plan.lost == (f"{calls.RETRIED}: tango `fp32` batch 1 (run r3, warm-up: {lost})",)


PLAN = ('[levers]\nmodels = ["audioldm"]\nspecs = ["none", "channels-last"]\nsteps = [2]\nbatches = [1]\n'
        'repeats = 1\nduration_s = 1.0\n')


def test_a_levers_run_stops_where_the_context_is_lost_and_the_next_run_measures_the_rest(
        tmp_path, monkeypatch, capsys):
    from tta_energy.experiments import runner

    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})  # FLOPs are not this test's subject
    monkeypatch.setattr(experiment, "measure_one", experiment.measure_one)  # both undone after the test
    monkeypatch.setattr(runner, "measure_one", runner.measure_one)
    install("channels-last")
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(PLAN, encoding="utf-8")
    base = ["levers", "run", "--plan", str(plan_file), "--size", "tiny", "--device", "cpu", "--idle-s", "0",
            "--ceiling-s", "0.02", "--ceiling-n", "32", "--min-window-s", "0", "--no-profile",
            "--references", str(tmp_path / "refs"), "--done", str(tmp_path / "part*"), "--history", ""]
    with pytest.raises(SystemExit) as stop:
        main([*base, "--out-dir", str(tmp_path / "part1")])
    assert stop.value.code == CONTEXT_LOST_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: the CUDA context was lost in audioldm channels-last, 2 steps, batch 1 (warm-up): "
                   f"RuntimeError: {LAUNCH_FAILURE}; the rows before it are kept: run the command again (a "
                   "fresh process) to measure the rest"]
    runs = schema.read_runs(tmp_path / "part1" / tables.RUNS_FILE)
    # the warm-ups before it, then its own row, and nothing after it
    assert runs["optimize"].tolist()[-1] == "channels-last" and runs["status"].tolist()[-1] == "error"
    assert (runs["status"].iloc[:-1] == "ok").all() and runs["is_warmup"].all()
    main([*base, "--dry-run"])
    said = capsys.readouterr().out
    assert f"{calls.THIS_CARD}: audioldm `channels-last` batch 1" in said  # the card that lost it: this CPU
    main([*base, "--out-dir", str(tmp_path / "part2")])  # a fresh process: the default, measured this time
    again = schema.read_runs(tmp_path / "part2" / tables.RUNS_FILE)
    measured = again[~again["is_warmup"].astype(bool)]
    assert set(measured["optimize"]) == {"fp32", "none"} and (measured["status"] == "ok").all()
    capsys.readouterr()
    main([*base, "--dry-run"])
    said = capsys.readouterr().out
    assert "cells done by earlier calls: 2 of 2" in said and said.endswith("nothing left to measure\n")
    summary = (tmp_path / "levers_summary.md").read_text(encoding="utf-8")  # the run's report: part2 alone
    assert "## Configurations that lost the CUDA context" not in summary
    main(["levers", "report", str(tmp_path / "part1"), str(tmp_path / "part2"), "--out-dir", str(tmp_path)])
    summary = (tmp_path / "levers_summary.md").read_text(encoding="utf-8")
    assert "## Configurations that lost the CUDA context" in summary
    assert "- audioldm `channels-last`, batch 1 (warm-up), run " in summary and LAUNCH_FAILURE in summary


def _lose_context(*_args, **_kwargs):
    raise RuntimeError(LAUNCH_FAILURE)


@pytest.mark.parametrize("where", ["applying", "reference", "fp8 ceiling"])
def test_a_context_lost_outside_a_generation_stops_the_run_and_is_left_out_where_it_was_lost(
        tmp_path, monkeypatch, capsys, where):
    from tta_energy.levers import apply

    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(PLAN, encoding="utf-8")
    if where == "applying":  # e.g. capturing a CUDA graph, or timing attention backends inside one
        real_apply = experiment._apply_measured

        def apply_measured(run, adapter, plan):
            if plan.spec == "channels-last":
                apply.reraise_if_context_lost(RuntimeError(LAUNCH_FAILURE), "a CUDA graph capture")
            return real_apply(run, adapter, plan)

        monkeypatch.setattr(experiment, "_apply_measured", apply_measured)
        said, lost = "a CUDA graph capture", ("audioldm", "channels-last", 1)  # the innermost place
    elif where == "reference":  # timing the reference's convolution algorithms
        monkeypatch.setattr(experiment, "select_reference_conv", lambda adapter, duration_s: (
            "cudnn", apply.time_denoiser_step(adapter, duration_s, {"cudnn": _lose_context})))
        said, lost = "timing cudnn on audioldm's denoiser", ("audioldm", "fp32", 1)
    else:  # a plan with a float8 spec measures the float8 ceiling first
        plan_file.write_text(PLAN.replace('"channels-last"]', '"channels-last", "fp8"]'), encoding="utf-8")
        real_ceiling = experiment.measure_ceiling

        def measure_ceiling(*args):
            if args[-1] == "fp8":
                _lose_context()
            return real_ceiling(*args)

        monkeypatch.setattr(experiment, "measure_ceiling", measure_ceiling)
        # a CPU has no float8 and refuses the spec before anything runs: as on a GPU of 8.9+, it is let run
        monkeypatch.setattr(experiment, "check_levers_device", lambda *_args, **_kwargs: None)
        said, lost = "the fp8 ceiling loop", None
    base = ["levers", "run", "--plan", str(plan_file), "--size", "tiny", "--device", "cpu", "--idle-s", "0",
            "--ceiling-s", "0.02", "--ceiling-n", "32", "--min-window-s", "0", "--no-profile", "--no-report",
            "--references", "", "--done", str(tmp_path / "part*"), "--history", ""]
    with pytest.raises(SystemExit) as stop:
        main([*base, "--out-dir", str(tmp_path / "part1")])
    assert stop.value.code == CONTEXT_LOST_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: the CUDA context was lost in {said}: RuntimeError: {LAUNCH_FAILURE}; the rows "
                   "before it are kept: run the command again (a fresh process) to measure the rest"], err
    losses = tables.context_losses(tables.read_runs_of([tmp_path / "part1"]))
    assert [tuple(r) for r in losses[["model", "optimize", "waveforms_per_prompt"]].values] == (
        [lost] if lost else [])
    declared = {"audioldm": tuple((spec, ((2, 1),), 1) for spec in (
        ["none", "channels-last"] + (["fp8"] if where == "fp8 ceiling" else [])))}
    earlier = calls.read_earlier_runs([tmp_path / "part1"], size="tiny", duration_s=1.0, seed=0)
    done = earlier.done(declared, card="")
    if where == "applying":
        assert done == {("audioldm", "channels-last", 2, 1)}
    elif where == "reference":  # every unit of the model starts with its reference: nothing is tried again
        assert done == {(m, spec, s, b) for m, entries in declared.items() for spec, cells, _ in entries
                        for s, b in cells}
    else:
        assert done == set()


def test_a_sweep_stops_at_the_generation_that_lost_the_context(tmp_path, monkeypatch, capsys):
    from tta_energy.experiments import runner

    monkeypatch.setattr(runner, "measure_one", runner.measure_one)  # undone after the test
    monkeypatch.setattr(experiment, "measure_one", experiment.measure_one)
    install("none")
    out = tmp_path / "steps.csv"
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--model", "audioldm", "--size", "tiny", "--device", "cpu", "--dtype", "float32",
              "--duration-s", "1", "--idle-s", "0", "--no-progress", "--no-codecarbon", "--experiment",
              "steps", "--grid", "1,2", "--repeats", "2", "--out", str(out)])
    assert stop.value.code == CONTEXT_LOST_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the CUDA context was lost in audioldm none, ")
    assert "(warm-up): RuntimeError: CUDA error: unspecified launch failure" in err[0]
    rows = schema.read_runs(out)
    assert len(rows) == 1 and rows["is_warmup"].all() and rows["status"].tolist() == ["error"]


def _device_checkout(tmp_path: Path, script: str) -> tuple[Path, dict[str, str]]:
    """A checkout holding the device script ``script`` and what it sources, and the environment of a child
    process whose generations of a spec lose the CUDA context (``TTA_ENERGY_TEST_LOSE_CONTEXT``, set by the
    test): (repo, env)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in (script, "device_env.sh", "device_exits.sh", "gpu_preflight.py"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts")
    site = [str(ROOT / "tests" / "lost_context_site"), str(ROOT / "tests"), str(ROOT / "src")]
    return repo, {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join(site)}


def _levers_call_losing_channels_last(
        tmp_path: Path, plan: str) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``scripts/gpu_levers.sh plan`` of the levers plan ``plan`` (tiny models on the CPU) in a checkout of
    its own, every generation of ``channels-last`` losing the CUDA context: (repo, the call's $OUT, the
    call)."""
    repo, env = _device_checkout(tmp_path, "gpu_levers.sh")
    (repo / "plan.toml").write_text(plan + 'out_dir = "data/cpu"\n', encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    env.update({"BUDGET_S": "400", "OUT": str(out), "TTA_ENERGY_TEST_LOSE_CONTEXT": "channels-last",
                "LEVERS_ARGS": "--size tiny --device cpu --idle-s 0 --ceiling-s 0.02 --ceiling-n 32 "
                               "--min-window-s 0 --no-profile"})
    done = subprocess.run(["bash", "scripts/gpu_levers.sh", "plan", "plan.toml"], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)
    return repo, out, done


@pytest.mark.slow
def test_the_device_script_measures_the_rest_of_its_call_in_a_fresh_process(tmp_path):
    repo, out, done = _levers_call_losing_channels_last(tmp_path, PLAN)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "error: the CUDA context was lost in audioldm channels-last" in said
    assert "a fresh process measures the rest" in said
    parts = sorted((repo / "data" / "cpu" / "levers").glob("partplan-*"))
    assert len(parts) == 2
    second = schema.read_runs(parts[1] / tables.RUNS_FILE)
    assert set(second.loc[~second["is_warmup"].astype(bool), "optimize"]) == {"fp32", "none"}
    # both processes' folders come back in the call's one part tarball
    listed = subprocess.run(["tar", "tzf", str(next((out / "levers").glob("levers-part*.tar.gz")))],
                            capture_output=True, text=True, check=True).stdout
    assert all(f"{p.relative_to(repo)}/{tables.RUNS_FILE}" in listed for p in parts)
    summary = (repo / "data" / "cpu" / "levers_summary.md").read_text(encoding="utf-8")
    assert "## Configurations that lost the CUDA context" in summary


@pytest.mark.slow
def test_a_fresh_process_that_finds_nothing_left_ends_the_call_that_measured_rows(tmp_path):
    # channels-last is the plan's one cell: once it is lost (left out on this card), nothing is left, and the
    # fresh process's NOTHING_LEFT_EXIT must not hide the first process's rows from the device tool (with no
    # ok row there is no report to write; the rows still come back)
    repo, out, done = _levers_call_losing_channels_last(tmp_path, PLAN.replace('"none", ', ""))
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "error: the CUDA context was lost in audioldm channels-last" in said
    assert "a fresh process measures the rest" in said and "nothing left to measure" in said
    assert said.rstrip().endswith("(exit 0)")
    parts = sorted((repo / "data" / "cpu" / "levers").glob("partplan-*"))
    assert len(parts) == 1  # the fresh process wrote nothing
    runs = schema.read_runs(parts[0] / tables.RUNS_FILE)
    assert runs["optimize"].tolist()[-1] == "channels-last" and runs["status"].tolist()[-1] == "error"
    listed = subprocess.run(["tar", "tzf", str(next((out / "levers").glob("levers-part*.tar.gz")))],
                            capture_output=True, text=True, check=True).stdout
    assert f"{parts[0].relative_to(repo)}/{tables.RUNS_FILE}" in listed


@pytest.mark.slow
def test_a_campaign_call_resumes_in_one_fresh_process_after_a_lost_context(tmp_path):
    from conftest import TINY_CAMPAIGN

    repo, env = _device_checkout(tmp_path, "gpu_campaign.sh")
    (repo / "campaigns").mkdir()
    (repo / "campaigns" / "c.toml").write_text(TINY_CAMPAIGN.format(out="../tables"), encoding="utf-8")
    env.update({"CAMPAIGN": "campaigns/c.toml", "OUT": str(tmp_path / "out"), "HARD_LIMIT_S": "400",
                "TTA_ENERGY_TEST_LOSE_CONTEXT": "none",
                "TTA_ENERGY_TEST_LOSE_CONTEXT_ONCE": str(tmp_path / "lost-once")})
    # the call's --time-budget-s: the fresh process gets the time left in its place, not beside it
    done = subprocess.run(["bash", "scripts/gpu_campaign.sh", "run", "--device", "cpu", "--no-codecarbon",
                           "--time-budget-s", "330", "--experiment", "steps"], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "error: the CUDA context was lost in " in said and "a fresh process resumes the campaign" in said
    assert "is given twice" not in said
    rows = schema.read_runs(repo / "tables" / "steps.csv")
    lost = rows[rows["status"] == "error"]
    assert len(lost) == 1 and lost["error"].str.contains(LAUNCH_FAILURE).all()  # the one generation in flight
    measured = rows[(rows["status"] == "ok") & ~rows["is_warmup"].astype(bool)]
    assert len(measured) == 4  # two models x two repeats, all measured by the fresh process
    assert rows["run_id"].nunique() == 2
