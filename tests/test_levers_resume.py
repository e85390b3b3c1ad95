"""What a levers call takes from earlier ones: which declared cells are done (the default only where the plan
declares it; a failed configuration settled only after it failed twice; only runs of the same settings), the
stored fp32 references (keyed on every model file; computed again when their weights are not this build's),
and what a call refuses to start: preparing past a model's deadline, the fp32 reference named as a spec."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, refused, tiny_levers_options

from tta_energy import schema
from tta_energy.cli.exits import NOTHING_LEFT_EXIT
from tta_energy.levers import calls, experiment, references, report, tables
from tta_energy.models.base import GenerationOutput
from tta_energy.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _runs(folder, rows: list[tuple[str, str, int, int]], *, size: str = "full",
          weights: str = "random") -> None:
    """A raw levers folder: one measured Tango generation (100 steps) per (run_id, spec, batch, repeat)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for run_id, spec, batch, repeat in rows:
        r = schema.empty_row()
        r.update(run_id=run_id, experiment="levers", model="tango", size=size, weights=weights,
                 dtype="float32", optimize=spec, steps=100, denoiser_calls=100, n_prompts=1,
                 waveforms_per_prompt=batch, n_clips=batch, duration_s=10.0, seed=0, repeat=repeat,
                 is_warmup=False, status="ok", wall_s=1.0, gpu_energy_J=100.0, config_id=f"{spec}-{batch}",
                 gpu_energy_method="nvml_counter", cpu_energy_method="unavailable", source="tta-energy")
        out.append(r)
    schema.write_runs(folder / tables.RUNS_FILE, pd.DataFrame(out))


def _configs(folder, rows: list[tuple[str, str, int, str]]) -> None:
    """``levers_configs.csv`` rows: (run_id, spec, batch, status) of Tango at 100 steps."""
    pd.DataFrame([{"run_id": run_id, "model": "tango", "optimize": spec, "steps": 100,
                   "waveforms_per_prompt": batch, "status": status}
                  for run_id, spec, batch, status in rows]).to_csv(folder / tables.CONFIGS_FILE, index=False)


def _done(folder, declared, **settings) -> set:
    earlier = calls.read_earlier_runs([folder], size=settings.get("size", "full"), duration_s=10.0, seed=0,
                                      weights=settings.get("weights", "random"))
    return earlier.done(declared)


# --- done cells ---------------------------------------------------------------------------------------------
def test_a_cell_needs_the_default_only_where_the_plan_declares_it_and_only_its_own_repeats(tmp_path):
    # the H200 plan: max at batch 32 (the ceiling fraction) with no default there; max with 5 repeats
    # against a default declared with 3
    declared = {"tango": (("none", ((100, 1),), 3), ("max", ((100, 1),), 5), ("max", ((100, 32),), 3))}
    _runs(tmp_path / "p", [("r1", "max", 32, i) for i in range(3)] + [("r1", "max", 1, i) for i in range(5)]
          + [("r1", "none", 1, i) for i in range(3)])
    assert _done(tmp_path / "p", declared) == {("tango", "none", 100, 1), ("tango", "max", 100, 1),
                                               ("tango", "max", 100, 32)}
    _runs(tmp_path / "q", [("r2", "max", 32, i) for i in range(2)] + [("r2", "max", 1, i) for i in range(5)]
          + [("r2", "none", 1, i) for i in range(2)])
    assert _done(tmp_path / "q", declared) == set()  # two of three repeats: neither cell nor its default


def test_a_failed_configuration_is_settled_after_two_runs_and_only_runs_of_these_settings_count(tmp_path):
    declared = {"tango": (("none", ((100, 1),), 1), ("compile", ((100, 1),), 1), ("graphs", ((100, 1),), 1),
                          ("max", ((100, 1),), 1))}
    folder = tmp_path / "p"
    _runs(tmp_path / "full", [("r1", "none", 1, 0), ("r2", "none", 1, 0)])
    _runs(tmp_path / "tiny", [("t1", "none", 1, 0), ("t2", "none", 1, 0)], size="tiny")
    folder.mkdir()
    parts = [schema.read_runs(tmp_path / part / tables.RUNS_FILE) for part in ("full", "tiny")]
    schema.write_runs(folder / tables.RUNS_FILE, pd.concat(parts, ignore_index=True))
    _configs(folder, [("r1", "compile", 1, "not run: OutOfMemoryError: CUDA out of memory"),
                      ("r1", "graphs", 1, "not run: LeverError: no CUDA graphs for this model"),
                      ("r2", "graphs", 1, "not run: LeverError: no CUDA graphs for this model"),
                      ("r2", "max", 1, "same as graphs"),
                      ("t1", "compile", 1, "not run: LeverError: x"), ("t2", "compile", 1, "not run: x")])
    # one failure may be passing (compile: tried again); two runs failing (graphs) and a spec found to be
    # another (max) are settled; the tiny runs' failures of compile are not this table's
    assert _done(folder, declared) == {("tango", "none", 100, 1), ("tango", "graphs", 100, 1),
                                       ("tango", "max", 100, 1)}
    left = calls.remaining(declared, _done(folder, declared))
    assert left == {"tango": (("none", ((100, 1),), 1), ("compile", ((100, 1),), 1))}
    # real weights are another table: the random-weights runs and their failures do not count for them
    assert _done(folder, declared, weights="/ckpt/tango") == set()


def test_a_warm_up_out_of_memory_is_tried_once_more_then_left_out_and_the_dry_run_says_so(tmp_path):
    """As Stable Audio Open's `max` at batch 32 went on the H100: its configuration applied (``ok``), its
    warm-up (a few steps) ran out of memory, and the run measured none of it. One such run may be passing
    (memory an earlier unit held), so the next call tries it once more; a second run settles it."""
    declared = {"tango": (("none", ((100, 10),), 1), ("max", ((10, 32), (100, 32)), 1))}
    folder = tmp_path / "p"
    _runs(folder, [("r1", "none", 10, 0), ("r1", "max", 32, 0)])
    rows = schema.read_runs(folder / tables.RUNS_FILE)
    oom = "OutOfMemoryError: CUDA out of memory. Tried to allocate 16.00 GiB."
    rows.loc[1, ["is_warmup", "steps", "status", "error"]] = [True, 10, "oom", oom]
    schema.write_runs(folder / tables.RUNS_FILE, rows)
    _configs(folder, [("r1", "none", 10, "ok"), ("r1", "max", 32, "ok")])
    assert _done(folder, declared) == {("tango", "none", 100, 10)}
    earlier = calls.read_earlier_runs([folder], size="full", duration_s=10.0, seed=0)
    saved_rows, cfg = earlier.rows, earlier.configs
    # the warm-up fails every step count of the spec at that batch
    assert set(calls.failures(saved_rows, cfg, declared)) == {("tango", "max", 10, 32),
                                                              ("tango", "max", 100, 32)}
    fails = calls.failures(saved_rows, cfg, declared)
    assert calls.failure_lines(fails, calls.declared_cells(declared))[1] == (
        "tried once more (it failed in 1 run): tango `max` 100 steps batch 32 "
        f"(run r1, warm-up (oom): {oom})")
    # a second run fails it too: left out, and said so; a run that measured it would not count as failed
    again = rows.assign(run_id="r2")
    schema.write_runs(folder / tables.RUNS_FILE, pd.concat([rows, again], ignore_index=True))
    assert _done(folder, declared) == {("tango", "none", 100, 10), ("tango", "max", 10, 32),
                                       ("tango", "max", 100, 32)}
    earlier = calls.read_earlier_runs([folder], size="full", duration_s=10.0, seed=0)
    saved_rows, cfg = earlier.rows, earlier.configs
    fails = calls.failures(saved_rows, cfg, declared)
    assert calls.failure_lines(fails, calls.declared_cells(declared))[1].startswith(
        "left out, not tried again (it failed in 2 runs): tango `max` 100 steps batch 32 "
        "(run r1, warm-up (oom)")
    # the summary names it, once per run
    report.build_report([folder], tmp_path / "report")
    summary = (tmp_path / "report" / "levers_summary.md").read_text(encoding="utf-8")
    assert summary.count("- tango `max`, batch 32, warm-up (oom), run r") == 2
    assert "## Configurations that failed" in summary and f"run r2: {oom}" in summary
    measured = rows.copy()
    measured.loc[1, ["is_warmup", "status", "error"]] = [False, "ok", ""]
    schema.write_runs(folder / tables.RUNS_FILE, pd.concat([rows, measured.assign(run_id="r2")],
                                                            ignore_index=True))
    earlier = calls.read_earlier_runs([folder], size="full", duration_s=10.0, seed=0)
    saved_rows, cfg = earlier.rows, earlier.configs
    assert set(calls.failures(saved_rows, cfg, declared)[("tango", "max", 10, 32)]) == {"r1"}
    assert tables.generation_failures(saved_rows)["run_id"].tolist() == ["r1"]


# --- stored references --------------------------------------------------------------------------------------
def test_the_reference_code_version_covers_every_model_file(tmp_path, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(references._models_dir(), models, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(references, "_models_dir", lambda: models)
    version = references.code_version.__wrapped__
    before = version()
    # the catalogue (generation defaults), another family's module (AudioLDM 2 runs AudioLDM's decoder),
    # a config: each changes every model's key
    for path in (models / "catalogue.py", models / "audioldm.py", next((models / "configs").rglob("*.json"))):
        path.write_bytes(path.read_bytes() + (b"\nEXTRA_STEPS = 1\n" if path.suffix == ".py" else b"\n"))
        after = version()
        assert after != before and len(after) == 16
        before = after
    # prose is not code: a comment, a docstring reworded or the layout of a module keep the version
    catalogue = models / "catalogue.py"
    text = catalogue.read_text(encoding="utf-8")
    first_docstring = text.index('"""') + 3
    catalogue.write_text(text[:first_docstring] + "Reworded. " + text[first_docstring:] + "\n# a note\n\n",
                         encoding="utf-8")
    assert version() == before
    catalogue.write_text(text.replace("EXTRA_STEPS = 1", "EXTRA_STEPS = 2"), encoding="utf-8")
    assert version() != before


def test_references_of_other_weights_are_computed_again_not_failing_every_configuration(tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})  # FLOPs are not this test's
    experiment.run_levers(tiny_levers_options(tmp_path, "a"))
    run = experiment.ModelRun("audioldm", tiny_levers_options(tmp_path, "a"), "r", None, {}, "")
    key = experiment.reference_key(run, 2)
    out, fingerprint = references.load_reference(key, tmp_path / "refs")
    references.store_reference(key, tmp_path / "refs", out, fingerprint + 1.0)  # as if other weights

    said: list[str] = []
    second = experiment.run_levers(tiny_levers_options(
        tmp_path, "b", progress=said.append, full_specs=(),
        declared={"audioldm": (("none", ((2, 1),), 1),)})).folder
    assert any("computed with other weights" in s and "computing them again" in s for s in said), said
    configs = pd.read_csv(second / tables.CONFIGS_FILE)
    assert set(configs["status"]) == {"ok"} and set(configs["optimize"]) == {"fp32", "none"}
    runs = schema.read_runs(second / tables.RUNS_FILE)
    measured = runs[~runs["is_warmup"].astype(bool)]
    assert sorted(measured["optimize"]) == ["fp32", "none"] and set(measured["status"]) == {"ok"}
    assert references.load_reference(key, tmp_path / "refs")[1] == pytest.approx(fingerprint)  # stored anew


# --- what a call refuses to start ---------------------------------------------------------------------------
def test_nothing_is_prepared_past_the_models_deadline(tmp_path):
    declared = {"audioldm": (("none", ((2, 1),), 1), ("graphs", ((2, 1),), 1))}
    opts = tiny_levers_options(tmp_path, "a", declared=declared)
    run = experiment.ModelRun("audioldm", opts, "r", None, {}, "", deadline=time.perf_counter() - 1.0)
    prepared, notes = experiment._prepare(run, experiment.lever_plans("audioldm", opts))
    assert prepared == []
    assert notes == [f"{spec}: not prepared (the model's share of the time budget is spent)"
                     for spec in ("fp32", "none", "graphs")]
    assert not (tmp_path / "a" / tables.CONFIGS_FILE).exists()  # nothing settled: a later call measures it


def test_the_fp32_reference_named_as_a_spec_is_refused(tmp_path, capsys):
    refused(capsys, ["levers", "run", "-m", "tango", "--full", "none;fp32", "--dry-run"],
            "'fp32' is the fp32 reference every run computes", "leave it out of the specs")


def test_flops_count_the_denoiser_calls_of_the_plans_steps(tmp_path):
    # Make-An-Audio's DDIM spacing runs 167 model calls for 150 steps; the command line's steps are 10
    opts = tiny_levers_options(tmp_path, "a", models=("make-an-audio",), steps=(10,))
    adapter = build_model("make-an-audio", size="tiny", weights="random", device="cpu", dtype="float32")
    plan = experiment.LeverPlan(experiment.parse_levers("none"), ((150, 1), (10, 1)), 1)
    flops = experiment._describe_flops("make-an-audio", opts, adapter, plan, {})
    assert flops[(150, 1)]["denoiser_calls_nominal"] == 167.0
    assert flops[(10, 1)]["denoiser_calls_nominal"] == 10.0
    per_step, once = flops[(150, 1)]["gflop_per_step"], flops[(150, 1)]["gflop_per_generation"]
    assert flops[(150, 1)]["gflop"] == pytest.approx(167 * per_step + once)


def test_a_levers_call_chained_on_the_same_device_machine_counts_the_earlier_calls_cells(tmp_path):
    """Each device call gets this checkout's data/; ``gpu_levers.sh plan`` first unpacks the part folders and
    references earlier calls on the same machine returned (.cache/levers-calls), so a chained call does not
    measure the same units again."""
    import subprocess
    import sys

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in ("gpu_levers.sh", "device_env.sh", "device_exits.sh", "gpu_preflight.py"):
        shutil.copy(ROOT / "scripts" / script, repo / "scripts")
    (repo / "plan.toml").write_text('[levers]\nmodels = ["audioldm"]\nspecs = ["none", "channels-last"]\n'
                                    'steps = [2]\nbatches = [1]\nrepeats = 1\nduration_s = 1.0\n'
                                    'out_dir = "data/cpu"\n', encoding="utf-8")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src"), "BUDGET_S": "400",
           "LEVERS_ARGS": "--size tiny --device cpu --idle-s 0 --ceiling-s 0.02 --ceiling-n 32 "
                          "--min-window-s 0 --no-profile"}

    def call(n: int, **more: str) -> subprocess.CompletedProcess:
        out = tmp_path / f"out{n}"
        out.mkdir()
        return subprocess.run(["bash", "scripts/gpu_levers.sh", "plan", "plan.toml"], cwd=repo,
                              env={**env, "OUT": str(out), **more}, capture_output=True, text=True,
                              check=False)

    def plant_stale_reference() -> Path:  # this device's, computed with other models' code: never loadable
        import torch

        key = references.ReferenceKey(model="audioldm", size="tiny", weights="random", steps=2, batch=1,
                                      duration_s=1.0, seed=0, prompt="rain", code="f" * 16,
                                      torch=torch.__version__, device="cpu")
        out = GenerationOutput(np.zeros((1, 160), np.float32), 16000, 2, None)
        return references.store_reference(key, repo / "data" / "cpu" / "levers" / "references", out, 1.0)

    stale = plant_stale_reference()
    (repo / ".cache" / "compile").mkdir(parents=True)
    (repo / ".cache" / "compile" / "kernel.bin").write_bytes(os.urandom(3 << 20))
    # a cache more than 10x the limit unpacked is not packed (it could not shrink enough to come back)
    first = call(1, COMPILE_CACHE_MAX_MB="0")
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"compile cache not returned: [34] MiB unpacked, more than 10 x 0 MiB", first.stdout)
    assert not (tmp_path / "out1" / "levers" / "compile-cache.tar.gz").exists()
    assert f"stale reference removed: {stale.name}" in first.stdout
    returned = subprocess.run(["tar", "tzf", str(tmp_path / "out1" / "levers" / "levers-references.tar.gz")],
                              capture_output=True, text=True, check=True).stdout.split()
    assert [Path(p).name for p in returned if p.endswith(".npz")] == [p.name for p in stale.parent.iterdir()]
    assert stale.name not in returned and len(returned) > 1
    tarball = tmp_path / "out1" / "levers" / "levers-references.tar.gz"
    pruned = subprocess.run(["tar", "xzf", str(tarball), "-O", "references-pruned.txt"], capture_output=True,
                            text=True, check=True).stdout
    assert pruned.splitlines() == [f"data/cpu/levers/references/{stale.name}"]  # what collect removes here
    parts = list((repo / "data" / "cpu" / "levers").glob("partplan-*"))  # the plan's out_dir
    assert len(parts) == 1 and (parts[0] / tables.RUNS_FILE).is_file()
    shutil.rmtree(repo / "data")  # the next call's tree: the checkout's data/, without the first call's
    second = call(2)
    # nothing left: NOTHING_LEFT_EXIT, and nothing reported or packed
    assert second.returncode == NOTHING_LEFT_EXIT, second.stdout + second.stderr
    assert "earlier call on this machine: levers-partplan-" in second.stdout
    assert "nothing left to measure" in second.stdout, second.stdout
    assert [p.name for p in (tmp_path / "out2" / "levers").iterdir()] == [
        f"log-levers-{second.stdout.split('levers part ')[1].split()[0]}.txt"]
    runs = schema.read_runs(parts[0] / tables.RUNS_FILE)  # unpacked again, as the first call wrote it
    assert {"fp32", "none", "channels-last"} <= set(runs["optimize"])

    # the dispatcher finds nothing left in this plan (no gpu named: any card) and says so
    fake_smi = tmp_path / "bin" / "nvidia-smi"
    fake_smi.parent.mkdir()
    fake_smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3'\n", encoding="utf-8")
    fake_smi.chmod(0o755)
    shutil.copy(ROOT / "scripts" / "gpu_call.sh", repo / "scripts")
    dispatched = subprocess.run(["bash", "scripts/gpu_call.sh", "plan.toml"], cwd=repo, capture_output=True,
                                text=True, check=False,
                                env={**env, "PATH": f"{fake_smi.parent}:{os.environ['PATH']}"})
    assert dispatched.returncode == NOTHING_LEFT_EXIT, dispatched.stdout + dispatched.stderr
    assert "plan.toml: nothing left to measure" in dispatched.stdout

    shutil.rmtree(repo / "data")  # here, after the calls: collect finds the out_dir in the returned part
    stale = plant_stale_reference()  # and mirrors the returned references folder: the stale one goes
    collected = subprocess.run(["bash", "scripts/gpu_levers.sh", "collect", str(tmp_path / "out1")], cwd=repo,
                               env=env, capture_output=True, text=True, check=False)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    collected_parts = (repo / "data" / "cpu" / "levers").glob("partplan-*")
    assert [p.name for p in collected_parts] == [parts[0].name]
    assert not stale.exists() and f"removed {stale.relative_to(repo)}" in collected.stdout
    assert sorted(p.name for p in stale.parent.iterdir()) == sorted(
        Path(p).name for p in returned if p.endswith(".npz"))
    cpu_tables = repo / "data" / "cpu"
    assert (cpu_tables / "levers.csv").is_file() and list((cpu_tables / "logs").iterdir())


def _levers_checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of scripts/gpu_levers.sh and what it sources, with a tiny levers plan (plan.toml, out_dir
    data/cpu), and the environment that runs it with this checkout's package."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in ("gpu_levers.sh", "device_env.sh", "device_exits.sh", "gpu_preflight.py"):
        shutil.copy(ROOT / "scripts" / script, repo / "scripts")
    (repo / "plan.toml").write_text('[levers]\nmodels = ["audioldm"]\nspecs = ["none"]\nsteps = [2]\n'
                                    'batches = [1]\nrepeats = 1\nduration_s = 1.0\nout_dir = "data/cpu"\n',
                                    encoding="utf-8")
    return repo, {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src")}


@pytest.mark.parametrize("mode", ["dry", "plan"])
@pytest.mark.parametrize("budget", ["8m", "1.5", "abc", "-100", "30", "60", " 200"])
def test_a_levers_calls_budget_is_whole_seconds_above_the_minute_packing_keeps(tmp_path, mode, budget):
    """BUDGET_S that is not a whole number of seconds above 60 (the run gets BUDGET_S - 60) is one error line
    naming it, exit 2, before the plan is read or anything written (it gave arithmetic errors, an unbound
    NOTHING_LEFT_EXIT, or a refusal naming --time-budget-s)."""
    repo, env = _levers_checkout(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run(["bash", "scripts/gpu_levers.sh", mode, "plan.toml"], cwd=repo, capture_output=True,
                          text=True, check=False, env={**env, "BUDGET_S": budget, "OUT": str(out)})
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr == (f"error: BUDGET_S={budget}: give the levers call's time in whole seconds, "
                           "at least 61 (its run gets BUDGET_S - 60)\n")
    assert sorted(p.name for p in repo.iterdir()) == ["plan.toml", "scripts"] and not out.exists()


FILES_AT = "give the folder a device call's files came back to"


@pytest.mark.parametrize(("argv", "said"), [
    (["dry", "missing.toml"], "PLAN=missing.toml: no such file; give a levers plan file"),
    (["dry", "scripts"], "PLAN=scripts: a folder, not a file; give a levers plan file"),
    (["plan", ""], "PLAN=: the path is empty; give a levers plan file"),
    (["collect", "missing"], f"FILES_AT=missing: no such folder; {FILES_AT}"),
    (["collect", "plan.toml"], f"FILES_AT=plan.toml: not a folder; {FILES_AT}"),
])
def test_a_levers_path_that_names_nothing_is_one_line(tmp_path, argv, said):
    """``gpu_levers.sh dry|plan PLAN`` and ``collect FILES_AT`` name what is wrong with the path given (they
    printed only their usage line)."""
    repo, env = _levers_checkout(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run(["bash", "scripts/gpu_levers.sh", *argv], cwd=repo, env={**env, "OUT": str(out)},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    if argv[0] != "collect":
        said += " (campaigns/h200_levers.toml, campaigns/h100_levers.toml)"
    assert done.stderr == f"error: {said}\n"
    assert sorted(p.name for p in repo.iterdir()) == ["plan.toml", "scripts"] and not out.exists()


@pytest.mark.parametrize(("argv", "said"), [
    (["dry", "plan.toml", "tango", "extra"], "usage: scripts/gpu_levers.sh dry PLAN.toml [MODELS]"),
    (["dry", "plan.toml", " "],
     "error: MODELS is empty: give a comma list of the plan's models, or leave it out for all"),
])
def test_levers_models_argument_is_one_word_and_not_empty(tmp_path, argv, said):
    """An extra argument or an empty MODELS (which read as every model of the plan) is refused, exit 2."""
    repo, env = _levers_checkout(tmp_path)
    done = subprocess.run(["bash", "scripts/gpu_levers.sh", *argv], cwd=repo, capture_output=True, text=True,
                          env={**env, "OUT": str(tmp_path / "out")}, check=False)
    assert done.returncode == 2 and done.stdout == "" and done.stderr == said + "\n", done.stderr
    assert sorted(p.name for p in repo.iterdir()) == ["plan.toml", "scripts"]


PART_ROWS = "data/h100/levers/partQ/levers_runs.csv"


@pytest.mark.parametrize(("tarballs", "said"), [
    ({"levers-partQ.tar.gz": [PART_ROWS, "README.md"]},
     "levers-partQ.tar.gz: holds README.md, outside data/h100/levers/part*"),
    ({"levers-partQ.tar.gz": [PART_ROWS, "data/h100/levers/partQ/../../../../README.md"]},
     "levers-partQ.tar.gz: holds data/h100/levers/partQ/../../../../README.md, "
     "outside data/h100/levers/part*"),
    ({"levers-partQ.tar.gz": [PART_ROWS, "data/h100/levers.csv"]},
     "levers-partQ.tar.gz: holds data/h100/levers.csv, outside data/h100/levers/part*"),
    ({"levers-partQ.tar.gz": ["README.md", PART_ROWS]},
     "levers-partQ.tar.gz: not a levers part (its first path is README.md, "
     "not in data/<folder>/levers/part*)"),
    ({"levers-partQ.tar.gz": None}, "levers-partQ.tar.gz: not a readable .tar.gz (corrupt or cut short)"),
    ({"levers-partQ.tar.gz": [PART_ROWS],
      "levers-references.tar.gz": ["data/h100/levers/references/r.npz", "references-pruned.txt",
                                   "README.md"]},
     "levers-references.tar.gz: holds README.md, "
     "outside data/h100/levers/references or references-pruned.txt"),
    ({"levers-partQ.tar.gz": [PART_ROWS], "compile-cache.tar.gz": [".cache/compile/k.bin", "README.md"]},
     "compile-cache.tar.gz: holds README.md, outside .cache/compile"),
    ({"levers-partQ.tar.gz": [PART_ROWS], "compile-cache.tar.gz": None},
     "compile-cache.tar.gz: not a readable .tar.gz (corrupt or cut short)"),
])
def test_levers_collect_checks_every_path_of_every_tarball_before_unpacking_any(tmp_path, tarballs, said):
    """``gpu_levers.sh collect`` unpacks a call's files only when every path of every returned tarball lies
    where the call packs it (a part's tarball under data/<folder>/levers/part*, and so on): a tarball whose
    first path was a part's and that also held README.md overwrote the checkout's. A tarball gzip cannot read
    is one line naming it, not tar's three; in either case nothing is unpacked, exit 2."""
    import tarfile

    repo, env = _levers_checkout(tmp_path)
    (repo / "README.md").write_text("the checkout's\n", encoding="utf-8")
    files_at = tmp_path / "files_at" / "levers"
    files_at.mkdir(parents=True)
    for name, paths in tarballs.items():
        if paths is None:
            (files_at / name).write_bytes(b"not gzip\n")
            continue
        with tarfile.open(files_at / name, "w:gz") as tar:
            for path in paths:
                member = tarfile.TarInfo(path)
                member.size = 4
                tar.addfile(member, io.BytesIO(b"row\n"))
    done = subprocess.run(["bash", "scripts/gpu_levers.sh", "collect", str(files_at.parent)], cwd=repo,
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr == f"error: {files_at}/{said}; nothing was unpacked\n"
    assert (repo / "README.md").read_text(encoding="utf-8") == "the checkout's\n"
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "plan.toml", "scripts"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files_at", "repo"]  # nothing above the checkout


def test_a_run_whose_every_configuration_failed_still_counts_towards_settling(tmp_path):
    """A run with no measured generation (its unit's specs all failed to apply; warm-ups only) still says
    which settings it ran with: its failures count."""
    declared = {"tango": (("compile", ((100, 10),), 1),)}  # no default declared at batch 10
    folder = tmp_path / "p"
    _runs(folder, [("r1", "fp32", 1, 0), ("r2", "fp32", 1, 0)])
    rows = schema.read_runs(folder / tables.RUNS_FILE).assign(is_warmup=True)  # only warm-ups
    schema.write_runs(folder / tables.RUNS_FILE, rows)
    _configs(folder, [("r1", "compile", 10, "not run: LeverError: x"),
                      ("r2", "compile", 10, "not run: LeverError: x")])
    assert _done(folder, declared) == {("tango", "compile", 100, 10)}


def test_a_side_table_with_only_its_header_keeps_the_numbers_of_the_others(tmp_path):
    """A writer killed in its first row leaves a header alone; joined with a full table, the numeric columns
    stay float64 (a text column would carry into every fraction of the ceiling)."""
    source = ROOT / "data" / "h100" / "levers" / "partplan-20261205T142850" / tables.CEILING_FILE
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    shutil.copy(source, full / tables.CEILING_FILE)
    header = source.read_text(encoding="utf-8").splitlines()[0]
    (cut / tables.CEILING_FILE).write_text(header + "\n", encoding="utf-8")
    assert tables.read_side_table(cut / tables.CEILING_FILE).empty
    joined = tables.read_side([cut, full], tables.CEILING_FILE)
    assert len(joined) == 2 and joined["tflop_per_J"].dtype == "float64"
    assert joined["tflop_per_J"].between(0.9, 1.0).all()


def _dispatch(tmp_path: Path, card: str, plans: list[str], **env_vars: str) -> subprocess.CompletedProcess:
    """scripts/gpu_call.sh (dry) in a copy of the scripts, over ``plans`` (paths in that copy), on a machine
    whose nvidia-smi names ``card``, with ``env_vars`` added to its environment."""
    repo = tmp_path / "repo"
    if not (repo / "scripts").is_dir():
        (repo / "scripts").mkdir(parents=True)
        for script in ("gpu_call.sh", "gpu_campaign.sh", "gpu_levers.sh", "device_env.sh", "device_exits.sh"):
            shutil.copy(ROOT / "scripts" / script, repo / "scripts")
    fake_smi = tmp_path / "bin" / "nvidia-smi"
    fake_smi.parent.mkdir(exist_ok=True)
    fake_smi.write_text(f"#!/bin/sh\necho '{card}'\n", encoding="utf-8")
    fake_smi.chmod(0o755)
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src"), "GPU_CALL_DRY": "1",
           "PATH": f"{fake_smi.parent}:{os.environ['PATH']}", **env_vars}
    return subprocess.run(["bash", "scripts/gpu_call.sh", *plans], cwd=repo, env=env, capture_output=True,
                          text=True, check=False)


def _plans(tmp_path: Path) -> list[str]:
    """The repository's three plan files, their tables moved to an empty folder (nothing measured)."""
    plans = tmp_path / "repo" / "plans"
    plans.mkdir(parents=True)
    for name in ("h200.toml", "h200_levers.toml", "h100_levers.toml"):
        text = (ROOT / "campaigns" / name).read_text(encoding="utf-8")
        (plans / name).write_text(text.replace('out_dir = "../data/', 'out_dir = "../data/empty-'),
                                  encoding="utf-8")
    return [f"plans/{name}" for name in ("h200.toml", "h200_levers.toml", "h100_levers.toml")]


CAMPAIGN_CALL = ("env CAMPAIGN=plans/h200.toml HARD_LIMIT_S=540 bash scripts/gpu_campaign.sh run "
                 "--time-budget-s 480")
LEVERS_H100_CALL = "env BUDGET_S=520 bash scripts/gpu_levers.sh plan plans/h100_levers.toml"


@pytest.mark.parametrize(("card", "chosen"), [
    ("NVIDIA H200", f"plans/h200.toml: {CAMPAIGN_CALL}"),
    ("NVIDIA H100 80GB HBM3", f"plans/h100_levers.toml: {LEVERS_H100_CALL}"),
    ("NVIDIA A100-SXM4-80GB", None),
])
def test_a_device_call_measures_the_first_plan_of_the_card_the_machine_has(tmp_path, card, chosen):
    """scripts/gpu_call.sh (dry) over the repository's plan files with nothing measured yet: the H200
    campaign on an H200, the H100 levers plan on an H100 (each file's gpu), NOTHING_LEFT_EXIT on a card
    none names."""
    done = _dispatch(tmp_path, card, _plans(tmp_path))
    if chosen is None:
        said = done.stdout + done.stderr
        assert done.returncode == NOTHING_LEFT_EXIT and "names this card" in done.stderr, said
        assert done.stdout.count("not this card") == 3
        assert "wheels installed" not in done.stdout  # handed back before the wheels' install
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[-1] == chosen


def test_a_device_call_by_default_measures_the_h200_plans_and_hands_another_card_back_at_once(tmp_path):
    """Without plan files the call takes the H200 campaign and the H200 levers plan (the H100 levers table
    is complete): on an H100 it exits NOTHING_LEFT_EXIT having read only the plan files, before any wheel is
    installed."""
    (tmp_path / "repo" / "campaigns").mkdir(parents=True)
    for name in ("h200.toml", "h200_levers.toml"):
        shutil.copy(ROOT / "campaigns" / name, tmp_path / "repo" / "campaigns")
    done = _dispatch(tmp_path, "NVIDIA H100 80GB HBM3", [])
    assert done.returncode == NOTHING_LEFT_EXIT, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["campaigns/h200.toml: measures on an H200, not this card",
                                        "campaigns/h200_levers.toml: measures on an H200, not this card"]
    assert done.stderr == ("no plan of campaigns/h200.toml campaigns/h200_levers.toml names this card "
                           "(NVIDIA H100 80GB HBM3)\n")


@pytest.mark.parametrize(("card", "chosen"), [
    ("NVIDIA H200", "plans/h200.toml: env CAMPAIGN=plans/h200.toml HARD_LIMIT_S=340 "
                    "bash scripts/gpu_campaign.sh run --time-budget-s 280"),
    ("NVIDIA H100 80GB HBM3", "plans/h100_levers.toml: env BUDGET_S=320 bash scripts/gpu_levers.sh plan "
                              "plans/h100_levers.toml"),
])
def test_a_shorter_device_call_gives_each_script_a_budget_that_fits_it(tmp_path, card, chosen):
    """CALL_S (the limit the device tool gives the call) sets the campaign's budget and hard stop and the
    levers call's budget; a limit that is not a whole number of seconds from 240 to 600 (the device stops any
    command at 600 s) is one error line."""
    done = _dispatch(tmp_path, card, _plans(tmp_path), CALL_S="400")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == chosen
    for bad in ("abc", "100", "4x", "601", "-400", "a[$(touch pwned)]"):
        refused = _dispatch(tmp_path, card, ["plans/h200.toml"], CALL_S=bad)
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
        assert refused.stderr == (f"error: CALL_S={bad}: give the device call's limit in whole seconds, "
                                  "from 240 to 600\n")
    assert not list(tmp_path.rglob("pwned"))


def test_the_scripts_budgets_given_to_a_device_call_are_whole_seconds_within_it(tmp_path):
    """HARD_LIMIT_S, CAMPAIGN_BUDGET_S and BUDGET_S, when given, replace what the call derives from CALL_S
    (read in base 10: 0300 is 300)."""
    plans = _plans(tmp_path)
    done = _dispatch(tmp_path, "NVIDIA H200", plans, CALL_S="400", HARD_LIMIT_S="0300",
                     CAMPAIGN_BUDGET_S="250")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == ("plans/h200.toml: env CAMPAIGN=plans/h200.toml HARD_LIMIT_S=300 "
                                            "bash scripts/gpu_campaign.sh run --time-budget-s 250")
    done = _dispatch(tmp_path, "NVIDIA H100 80GB HBM3", plans[2:], BUDGET_S="0200")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "env BUDGET_S=200 bash scripts/gpu_levers.sh plan" in done.stdout


HARD_STOP = "give the campaign run's hard stop in whole seconds, from 1 to 600 (at most CALL_S)"
BUDGETS = "give the campaign run's --time-budget-s in whole seconds, from 1 to 600 (at most CALL_S)"
LEVERS_TIME = ("give the levers call's time in whole seconds, from 61 to 600 (its run gets BUDGET_S - 60, at "
               "most CALL_S)")
DRY_OR_NOT = "give 1 (print the command, run nothing) or 0 (run it)"


@pytest.mark.parametrize(("setting", "said"), [
    *[({"HARD_LIMIT_S": bad}, f"error: HARD_LIMIT_S={bad}: {HARD_STOP}")
      for bad in ("abc", "8m", "1.5", "-5", "0", "601")],
    ({"HARD_LIMIT_S": "500", "CALL_S": "400"}, f"error: HARD_LIMIT_S=500: {HARD_STOP.replace('600', '400')}"),
    *[({"CAMPAIGN_BUDGET_S": bad}, f"error: CAMPAIGN_BUDGET_S={bad}: {BUDGETS}")
      for bad in ("abc", "8m", "1.5", "-5", " 5")],
    *[({"BUDGET_S": bad}, f"error: BUDGET_S={bad}: {LEVERS_TIME}")
      for bad in ("abc", "8m", "1.5", "-100", "30")],
    *[({"GPU_CALL_DRY": bad}, f"error: GPU_CALL_DRY={bad}: {DRY_OR_NOT}")
      for bad in ("yes", "true", "2", " 1")],
])
def test_a_device_calls_bad_setting_is_one_line_before_any_work(tmp_path, setting, said):
    """A setting of scripts/gpu_call.sh that is not one it allows stops it before it reads a plan or installs
    a wheel: one error line naming it, exit 2, nothing printed or written. GPU_CALL_DRY=yes, in particular, is
    not read as 0: the call it would have started is not run."""
    done = _dispatch(tmp_path, "NVIDIA H200", _plans(tmp_path), **setting)  # GPU_CALL_DRY=1 unless set
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr == said + "\n"
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["plans", "scripts"]  # nothing written


@pytest.mark.parametrize(("plan", "wrong"), [
    ("", "the path is empty"), ("plans", "a folder, not a file"), ("plans/missing.toml", "no such file")])
def test_a_plan_path_that_names_no_file_is_one_line_before_any_work(tmp_path, plan, wrong):
    """A plan path given to scripts/gpu_call.sh that names no file is one line saying why (an empty one was
    read as the folder .), before nvidia-smi is asked or any plan read."""
    done = _dispatch(tmp_path, "NVIDIA H200", [_plans(tmp_path)[0], plan])
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr == (f"error: PLAN={plan}: {wrong}; give campaign or levers plan files "
                           "(default: campaigns/h200.toml campaigns/h200_levers.toml)\n")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["plans", "scripts"]


def test_a_finished_campaign_passes_the_call_to_the_next_plan_and_a_broken_one_stops_it(tmp_path):
    """A campaign whose every cell is done (the committed H200 steps sweep alone) hands the H200 call to
    the H200 levers plan; a plan file that cannot be read stops the call (exit 2, one line)."""
    plans = _plans(tmp_path)
    header = (ROOT / "campaigns" / "h200.toml").read_text(encoding="utf-8").split("[[experiment]]")[0]
    (tmp_path / "repo" / "data" / "h200").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "h200" / "steps.csv", tmp_path / "repo" / "data" / "h200")
    steps = '[[experiment]]\nname = "steps"\nmodels = "all"\ngrid = ["10", "25", "50", "100", "150", "200"]\n'
    (tmp_path / "repo" / "plans" / "done.toml").write_text(header + steps, encoding="utf-8")
    done = _dispatch(tmp_path, "NVIDIA H200", ["plans/done.toml", *plans[1:]])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plans/done.toml: every cell done" in done.stdout
    levers_call = ("plans/h200_levers.toml: env BUDGET_S=520 bash scripts/gpu_levers.sh plan "
                   "plans/h200_levers.toml")
    assert done.stdout.splitlines()[-1] == levers_call
    (tmp_path / "repo" / "plans" / "bad.toml").write_text("[levers]\nrepeats = 0\n", encoding="utf-8")
    broken = _dispatch(tmp_path, "NVIDIA H200", ["plans/bad.toml", *plans])
    assert broken.returncode == 2 and "repeats" in broken.stderr and "Traceback" not in broken.stderr
    assert broken.stderr.count("\n") == 1, broken.stderr


def test_a_device_call_runs_the_campaign_without_a_status_process_and_passes_a_finished_one_on(tmp_path):
    """On the device the campaign's run finds what is left itself (a `campaign status` process first added
    its start-up, about 10 s of model imports, to every call): a run that measured nothing because every
    cell was done exits NOTHING_LEFT_EXIT from scripts/gpu_campaign.sh, and scripts/gpu_call.sh goes on with
    its next plan."""
    from conftest import TINY_CAMPAIGN_SETTINGS

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in ("gpu_call.sh", "gpu_campaign.sh", "gpu_levers.sh", "device_env.sh", "device_exits.sh",
                   "gpu_preflight.py"):
        shutil.copy(ROOT / "scripts" / script, repo / "scripts")
    plan_file = repo / "plans" / "tiny.toml"
    plan_file.parent.mkdir()
    plan_file.write_text(TINY_CAMPAIGN_SETTINGS.format(out="../data/tiny", weights="random")
                         + '[[experiment]]\nname = "steps"\nmodels = ["audioldm"]\ngrid = ["1"]\n',
                         encoding="utf-8")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT / "src"),
           "OUT": str(tmp_path / "out")}
    measured = subprocess.run([sys.executable, "-m", "tta_energy", "campaign", "run", "--campaign",
                               "plans/tiny.toml", "--device", "cpu", "--no-progress"], cwd=repo, env=env,
                              capture_output=True, text=True, check=False)
    assert measured.returncode == 0, measured.stdout + measured.stderr
    runs_log = repo / "data" / "tiny" / "campaign_runs.jsonl"
    logged = runs_log.read_text(encoding="utf-8")
    fake_smi = tmp_path / "bin" / "nvidia-smi"
    fake_smi.parent.mkdir()
    fake_smi.write_text("#!/bin/sh\necho 'NVIDIA H200'\n", encoding="utf-8")
    fake_smi.chmod(0o755)
    path = f"{fake_smi.parent}:{os.environ['PATH']}"
    call = subprocess.run(["bash", "scripts/gpu_call.sh", "plans/tiny.toml"], cwd=repo, capture_output=True,
                          text=True, check=False, env={**env, "PATH": path})
    said = call.stdout + call.stderr
    assert "nothing left to measure" in said, said  # said by the run itself, not by a status process
    assert "plans/tiny.toml: every cell done" in call.stdout, said
    assert call.returncode == NOTHING_LEFT_EXIT, said
    assert "no plan of plans/tiny.toml has work left" in call.stderr, said
    assert runs_log.read_text(encoding="utf-8") == logged  # the run that found nothing logged nothing
