"""Speed-up of a whole sweep on N GPUs (torchrun) over one GPU: ``data/validation/scaling.csv``.

    python -m tta_energy.experiments.scaling --model audioldm2 --gpus 2 --out data/validation/scaling.csv \\
        -- --experiment steps --size full --weights random

runs the same sweep twice into fresh tables, first as one process, then with
``python -m torch.distributed.run --standalone --nproc-per-node N``, timing each command from launch to exit
(imports, model builds, idle baselines, warm-ups and the final merge included: what a user waits for). It also
reports the measuring span (first generation start to last generation end, from the rows) and checks that
both runs measured the same (configuration, repeat) pairs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tta_energy import schema
from tta_energy.errors import TtaError
from tta_energy.experiments import resume
from tta_energy.models import catalogue

COLUMNS = ("model", "experiment", "n_gpus", "wall_s", "speedup", "measuring_s", "measuring_speedup", "pairs",
           "gpu_name", "git_commit", "command")


def sweep_command(n: int, sweep_args: Sequence[str]) -> list[str]:
    base = ["-m", "tta_energy", "sweep", *sweep_args]
    if n == 1:
        return [sys.executable, *base]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", *base]


def measuring_span(df: pd.DataFrame) -> float:
    """Seconds from the start of the first generation to the end of the last one (all ranks)."""
    end = pd.to_datetime(df["timestamp"], utc=True)
    start = end - pd.to_timedelta(df["wall_s"].fillna(0.0), unit="s")
    return float((end.max() - start.min()).total_seconds())


def run_scaling(model: str, gpus: Sequence[int], sweep_args: Sequence[str], work_dir: Path,
                out: Path | None = None) -> pd.DataFrame:
    """Run the sweep once per entry of ``gpus`` (the first is the baseline) and tabulate the speed-up."""
    if not gpus or any(n < 1 for n in gpus):
        raise TtaError("--gpus needs positive process counts")
    if any(a == "--out" or a.startswith("--out=") or a in ("--model", "-m") for a in sweep_args):
        raise TtaError("give --model here and no --out in the sweep arguments: each run gets its own table")
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    pairs_seen: set[tuple[str, int]] | None = None
    for n in gpus:
        table = work_dir / f"scaling-{model}-{n}proc.csv"
        for stale in [table, *resume.shard_paths(table)]:
            stale.unlink(missing_ok=True)
        cmd = sweep_command(n, ["--model", model, *sweep_args, "--out", str(table)])
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise TtaError(f"the {n}-process sweep failed with exit status {done.returncode}: "
                           f"{' '.join(cmd)}")
        df = schema.read_runs(table)
        measured = df[~df["is_warmup"]]
        pairs = set(zip(measured["config_id"], measured["repeat"].astype(int), strict=True))
        if pairs_seen is not None and pairs != pairs_seen:
            raise TtaError(f"the {n}-process sweep measured other pairs than the first run")
        pairs_seen = pairs
        rows.append({"model": model, "experiment": ",".join(sorted(set(df["experiment"]))), "n_gpus": n,
                     "wall_s": wall, "measuring_s": measuring_span(df), "pairs": len(pairs),
                     "gpu_name": ",".join(sorted(set(df["gpu_name"]) - {""})),
                     "git_commit": ",".join(sorted(set(df["git_commit"]) - {""})),
                     "command": " ".join(cmd[1:])})
    result = pd.DataFrame(rows)
    result["speedup"] = result["wall_s"].iloc[0] / result["wall_s"]
    result["measuring_speedup"] = result["measuring_s"].iloc[0] / result["measuring_s"]
    result = result[list(COLUMNS)]
    if out is not None:
        write_csv(out, result)
    return result


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """Add the rows to ``path`` (replacing earlier rows of the same model and GPU count), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        old = pd.read_csv(path)
        keep = ~old.set_index(["model", "n_gpus"]).index.isin(df.set_index(["model", "n_gpus"]).index)
        df = pd.concat([old[keep], df], ignore_index=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False, float_format="%.4f")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--gpus", default="2", help="processes (GPUs) of the sharded run, 2 or more")
    parser.add_argument("--out", type=Path, default=Path("data/validation/scaling.csv"))
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/scaling"))
    parser.add_argument("sweep_args", nargs=argparse.REMAINDER, help="-- then tta-energy sweep options")
    args = parser.parse_args(argv)
    sweep_args = [a for a in args.sweep_args if a != "--"]
    try:  # before any process starts: one line, not one from each sweep process and one from here
        try:
            catalogue.entry(args.model)
        except catalogue.UnknownModelError as exc:
            raise TtaError(str(exc)) from None
        if not args.gpus.isdigit() or int(args.gpus) < 2:
            raise TtaError(f"--gpus must be a whole number >= 2 (the sharded run's processes; the baseline "
                           f"runs one), got {args.gpus!r}")
        args.gpus = int(args.gpus)
        result = run_scaling(args.model, [1, args.gpus], sweep_args, args.work_dir, args.out)
    except TtaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(result.to_string(index=False))
    print(f"speed-up on {args.gpus} GPUs: {result['speedup'].iloc[-1]:.2f}x (whole command), "
          f"{result['measuring_speedup'].iloc[-1]:.2f}x (measuring span); table {args.out}")


if __name__ == "__main__":
    main()
