"""A sweep sharded over 2 CPU processes by a real torchrun launch (gloo); the scaling table's arithmetic.

The command is the one ``scripts/gpu_scaling.sh`` runs on two GPUs:
``python -m torch.distributed.run --standalone --nproc-per-node=2 -m tta_energy sweep ...``. The merged table
must hold every (configuration, repeat) once, measured by ranks 0 and 1, with the shard files merged away.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from tta_energy import schema
from tta_energy.experiments import resume
from tta_energy.experiments.scaling import measuring_span, sweep_command, write_csv


def test_torchrun_two_ranks_merge_into_one_table(tmp_path):
    out = tmp_path / "steps.csv"
    args = ["--model", "audioldm", "--experiment", "steps", "--size", "tiny", "--device", "cpu",
            "--dtype", "float32", "--duration-s", "1", "--grid", "1,2,3", "--repeats", "2", "--idle-s", "0",
            "--no-progress", "--no-codecarbon", "--out", str(out)]
    cmd = sweep_command(2, args)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sweep steps (audioldm): 6 measured [6 ok]" in done.stdout  # rank 0's line counts every rank

    assert not resume.shard_paths(out)  # rank 0 merged and removed them
    df = schema.read_runs(out)
    measured = df[~df["is_warmup"]]
    pairs = list(zip(measured["config_id"], measured["repeat"].astype(int), strict=True))
    assert len(pairs) == len(set(pairs)) == 6
    assert set(measured["rank"].astype(int)) == {0, 1}
    assert sorted(df[df["is_warmup"]]["rank"].astype(int)) == [0, 1]  # each rank warmed up its own model
    assert df["run_id"].nunique() == 1  # rank 0's run id, broadcast
    # sorted: warm-ups first, then by repeat
    assert list(df["is_warmup"][:2]) == [True, True]
    assert list(measured["repeat"]) == sorted(measured["repeat"])


def test_scaling_table_arithmetic(tmp_path):
    rows = pd.DataFrame({"timestamp": ["2025-01-01T00:00:10+00:00", "2025-01-01T00:00:30+00:00"],
                         "wall_s": [4.0, 5.0]})
    assert measuring_span(rows) == pytest.approx(24.0)  # from 10 - 4 = 6 s to 30 s
    path = tmp_path / "validation" / "scaling.csv"
    first = pd.DataFrame({"model": ["m", "m"], "n_gpus": [1, 2], "wall_s": [100.0, 52.0]})
    write_csv(path, first)
    write_csv(path, pd.DataFrame({"model": ["m"], "n_gpus": [2], "wall_s": [51.0]}))  # replaces n_gpus=2
    write_csv(path, pd.DataFrame({"model": ["k"], "n_gpus": [1], "wall_s": [9.0]}))
    saved = pd.read_csv(path)
    assert sorted(zip(saved["model"], saved["n_gpus"], saved["wall_s"], strict=True)) == [
        ("k", 1, 9.0), ("m", 1, 100.0), ("m", 2, 51.0)]


@pytest.mark.parametrize(("args", "line"), [
    (["--model", "audioldm", "--gpus", "1"], "error: --gpus must be a whole number >= 2 (the sharded run's "
                                             "processes; the baseline runs one), got '1'"),
    (["--model", "audioldm", "--gpus", "two"], "error: --gpus must be a whole number >= 2"),
    (["--model", "bogus"], "error: unknown model 'bogus': choose one of audioldm, "),
])
def test_scaling_refuses_bad_input_before_any_process(tmp_path, capsys, args, line):
    """scripts/gpu_scaling.sh's GPUS and MODEL: one line and exit 2 before a sweep process starts."""
    from tta_energy.experiments.scaling import main

    work = tmp_path / "work"
    with pytest.raises(SystemExit) as exc:
        main([*args, "--work-dir", str(work), "--out", str(tmp_path / "scaling.csv")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith(line) and err.count("\n") == 1
    assert not work.exists() and not (tmp_path / "scaling.csv").exists()


@pytest.mark.parametrize(("args", "env", "line"), [
    ([], {}, "usage: sbatch scripts/slurm_sweep.sh MODEL EXPERIMENT SHARED_OUT_DIR (got 0 argument(s))"),
    (["tango", "steps", "/tmp/x"], {}, "error: SLURM_JOB_NODELIST is not set: submit"),
    (["bogus", "steps", "/tmp/x"], {"SLURM_JOB_NODELIST": "n1"}, "error: unknown model 'bogus'"),
    (["tango", "stepz", "/tmp/x"], {"SLURM_JOB_NODELIST": "n1"}, "error: unknown experiment 'stepz'"),
])
def test_slurm_script_checks_its_arguments_before_srun(args, env, line):
    """scripts/slurm_sweep.sh: one line and exit 2 before srun starts a process on every node."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    environ.update(env, PYTHON=sys.executable, PYTHONPATH=str(root / "src"))
    done = subprocess.run(["bash", str(root / "scripts" / "slurm_sweep.sh"), *args], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(line) and done.stderr.count("\n") == 1


def test_torchrun_campaign_two_ranks_share_the_cells(tmp_path, tiny_campaign):
    """``campaign run`` under torchrun: the ranks share the cells' pairs, rank 0 merges, no pair twice."""
    import json
    import sys

    tables = tmp_path / "tables"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "tta_energy", "campaign", "run", "--campaign", str(tiny_campaign), "--experiment", "steps",
           "--device", "cpu", "--no-codecarbon", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tables / "steps.csv"
    assert not resume.shard_paths(out)
    df = schema.read_runs(out)
    measured = df[~df["is_warmup"]]
    pairs = list(zip(measured["config_id"], measured["repeat"].astype(int), strict=True))
    assert len(pairs) == len(set(pairs)) == 4  # two tiny models x two repeats, each once
    assert set(measured["rank"].astype(int)) == {0, 1}
    log = [json.loads(line) for line in (tables / "campaign_runs.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["world_size"] == 2 and log[0]["rows"] == {"steps": 4}


@pytest.mark.parametrize("fails", [False, True])
def test_ranks_leave_the_process_group_together_unless_the_block_raised(monkeypatch, fails):
    """A block that ends normally: barrier, then destroy (no rank tears its connections down while another
    still uses them). A block that raises: destroy at once (a barrier would wait for a rank that is gone)."""
    from tta_energy.experiments import distributed

    calls: list[str] = []
    for name in ("init", "barrier", "shutdown"):
        monkeypatch.setattr(distributed, name, lambda _ctx, name=name: calls.append(name))
    ctx = distributed.DistContext(rank=0, world_size=2)
    if fails:
        with pytest.raises(RuntimeError, match="a rank failed"), distributed.process_group(ctx):
            raise RuntimeError("a rank failed")
        assert calls == ["init", "shutdown"]
    else:
        with distributed.process_group(ctx):
            calls.append("block")
        assert calls == ["init", "block", "barrier", "shutdown"]
