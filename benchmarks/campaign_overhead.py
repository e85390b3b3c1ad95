"""Where a campaign run's wall time goes outside the meter's windows, per generation, on a CPU.

Runs ``tta-energy campaign run`` on a tiny campaign (tiny models on the CPU, real clock) with the meter on a
simulated GPU whose NVML-like counter updates every 100 ms (the H200's period) and the sampler in its own
process, as on a GPU, plus CodeCarbon's tracker: the meter's start alignment, its wait for the counter
updates after a window, CodeCarbon's task start/stop and the row appends all run as they do on the H200.
Each part is timed by wrapping the function that does it; what no wrapper covers is reported as the rest.

    PYTHONPATH=src python benchmarks/campaign_overhead.py --label after \
        --out benchmarks/results/campaign_overhead.json

The output JSON keeps one entry per ``--label`` (a run under another label is kept), each with the command,
the git commit, the host, seconds per generation for every part (warm-ups count as generations, as in the
campaign's overhead) and the run's overhead (wall time / measured windows). These are CPU numbers of tiny
models: the parts' seconds carry over to a GPU run, the overhead ratio does not.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from tta_energy import schema
from tta_energy.experiments import campaign as cp
from tta_energy.experiments import runner
from tta_energy.meter import EnergyMeter, MonotonicClock
from tta_energy.meter.cpu import CodeCarbonCpuMeter
from tta_energy.meter.simulated import CounterModel, SimulatedCounterSource, SimulatedGpu
from tta_energy.provenance import git_commit, host_cpu_model

CAMPAIGN = """
name = "overhead"
out_dir = "{out}"
size = "tiny"
dtype = "float32"
idle_s = 1
min_window_s = 0
seed = 0
[repeats]
min = {repeats}
max = {repeats}

[[experiment]]
name = "steps"
models = ["audioldm", "tango"]
grid = ["1", "2"]
"""

#: (label, owner, attribute): the parts outside the windows, each timed where it is done
PARTS: tuple[tuple[str, object, str], ...] = (
    ("cells_s", cp, "build_cells"),  # the campaign's cells (configurations checked on meta-device models)
    ("read_tables_s", cp, "read_frames"),
    ("runs_log_s", cp, "record_run"),
    ("meter_start_s", EnergyMeter, "start"),  # sampler process + CodeCarbon tracker, once per run
    ("meter_close_s", EnergyMeter, "close"),
    ("idle_baseline_s", runner, "measure_idle"),
    ("start_alignment_s", EnergyMeter, "align"),
    ("codecarbon_task_start_s", CodeCarbonCpuMeter, "start"),
    ("codecarbon_task_stop_s", CodeCarbonCpuMeter, "stop"),
    ("end_wait_and_estimate_s", EnergyMeter, "_gpu_energies"),
    ("gpu_busy_fraction_s", EnergyMeter, "busy_fraction"),
    ("row_building_s", runner, "base_row"),
    ("row_append_s", schema, "append_row"),
    ("measure_pair_s", runner, "measure_pair"),
)


#: parts done once per run: what they call (the idle baseline's own alignment and end wait) is theirs
ONCE = ("cells_s", "read_tables_s", "meter_start_s", "meter_close_s", "idle_baseline_s", "runs_log_s")


def _timed(totals: dict[str, float], active: list[str], label: str, fn):  # noqa: ANN001, ANN202
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if any(a in ONCE for a in active):  # inside a once-per-run part: counted there
            return fn(*args, **kwargs)
        active.append(label)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - t0
            active.pop()
    return wrapper


def _simulated_meter(opts: runner.SweepOptions, device: str, trace_path: Path | None) -> EnergyMeter:
    clock = MonotonicClock()
    now = clock.now()
    gpu = SimulatedGpu(clock, counter=CounterModel(phase_s=random.Random(0).uniform(0, 0.1)),
                       start_time=now - 5.0)
    return EnergyMeter(source=SimulatedCounterSource([gpu]), clock=clock, sync=lambda: None,
                       sampler="process", trace_path=trace_path, codecarbon=opts.codecarbon,
                       country_iso_code=opts.country, min_window_s=opts.min_window_s)


def measure(repeats: int, codecarbon: bool) -> dict[str, object]:
    totals: dict[str, float] = defaultdict(float)
    active: list[str] = []
    builds = {"n": 0, "s": 0.0}
    originals = [(owner, name, getattr(owner, name)) for _label, owner, name in PARTS]
    original_get = runner.ModelCache.get

    def get(self: runner.ModelCache, dtype: str):  # noqa: ANN202 - the time of a build, not of a cache hit
        fresh = dtype not in self.adapters
        t0 = time.perf_counter()
        adapter = original_get(self, dtype)
        if fresh:
            builds["n"] += 1
            builds["s"] += time.perf_counter() - t0
        return adapter

    original_make_meter = runner.make_meter
    try:
        for label, owner, name in PARTS:
            setattr(owner, name, _timed(totals, active, label, getattr(owner, name)))
        runner.ModelCache.get = get
        runner.make_meter = _simulated_meter
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.toml"
            path.write_text(CAMPAIGN.format(out=Path(tmp) / "tables", repeats=repeats), encoding="utf-8")
            campaign = cp.load_campaign(path)
            ro = cp.RunOptions(device="cpu", codecarbon=codecarbon, progress=False, command="benchmark")
            t0 = time.perf_counter()
            result = cp.run_campaign(campaign, ro, echo=lambda _m: None)
            wall_s = time.perf_counter() - t0
            rows = schema.read_runs(Path(tmp) / "tables" / "steps.csv")
            log = json.loads((Path(tmp) / "tables" / cp.RUNS_LOG).read_text().splitlines()[-1])
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
        runner.ModelCache.get = original_get
        runner.make_meter = original_make_meter
    generations = len(rows)
    windows_s = float(rows["meter_window_s"].sum())
    assert generations == sum(result.rows.values()) + result.warmups
    assert (rows["gpu_energy_method"] == "nvml_interpolated").all(), "the simulated GPU was not measured"
    per_generation = {label: totals[label] / generations for label in
                      ("start_alignment_s", "codecarbon_task_start_s", "codecarbon_task_stop_s",
                       "end_wait_and_estimate_s", "gpu_busy_fraction_s", "row_building_s", "row_append_s")}
    # inside measure_pair, what the timed parts and the windows leave: request checks, the row's other fields
    per_generation["rest_of_measure_pair_s"] = (totals["measure_pair_s"] - windows_s
                                                - sum(per_generation.values()) * generations) / generations
    once: dict[str, float] = {label: totals[label] for label in ONCE}
    once["model_builds_s"] = builds["s"]
    campaign_rest = wall_s - totals["measure_pair_s"] - sum(once.values())
    once["model_builds"] = builds["n"]
    per_generation["campaign_loop_and_tables_s"] = campaign_rest / generations
    outside = sum(per_generation.values())
    return {
        "generations": generations, "warmups": result.warmups, "wall_s": round(wall_s, 3),
        "windows_s": round(windows_s, 3), "window_per_generation_s": round(windows_s / generations, 4),
        "runs_log_measured_s": log["measured_s"],
        "runs_log_overhead": round(log["wall_s"] / log["measured_s"], 3),
        "outside_windows_per_generation_s": round(outside, 4),
        "per_generation_s": {k: round(v, 4) for k, v in per_generation.items()},
        "once_per_run": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in once.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the entry of the output this run writes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/campaign_overhead.json"))
    parser.add_argument("--repeats", type=int, default=5, help="repeats per cell (4 cells)")
    parser.add_argument("--no-codecarbon", dest="codecarbon", action="store_false")
    args = parser.parse_args()
    torch.set_num_threads(1)
    entry = {"command": " ".join(["python", *sys.argv]), "git_commit": git_commit(),
             "host_cpu_model": host_cpu_model(), "codecarbon": args.codecarbon,
             **measure(args.repeats, args.codecarbon)}
    results = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {}
    results[args.label] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
