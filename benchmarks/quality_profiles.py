"""What the metric profiles change: fadtk's choices against the per-clip ones, on synthetic CLAP-like data.

CPU only, no model (a few minutes):
    PYTHONPATH=src python3 benchmarks/quality_profiles.py --out benchmarks/results/quality_profiles.json

Embeddings are unit vectors in 512 dimensions from an anisotropic Gaussian
(:mod:`tta_energy.quality.synthetic`, as in ``benchmarks/quality_resampling.py``), 300 generated and 300
reference clips, the generated set with a small mean shift. Measured, one choice at a time:

* ``sample_sizes``: FAD-inf of one embedding per clip (300 x 300) with fadtk's sizes (500 ... 300, drawn
  with replacement) and with the per-clip sizes (150 ... 300), over many draw seeds on one data set, and the
  run-to-run spread (independent data sets, each with its own draw seed);
* ``windows``: FAD and FAD-inf with 10 embeddings per clip (fadtk's 1-s hop on 10-s clips: 3000 per side;
  here the windows of a clip are its clip vector plus window-level variation, a stand-in for real CLAP
  windows, whose zero-padded tails a random model cannot imitate) against one embedding per clip;
* ``float16``: FAD of float16-rounded embeddings with fadtk's per-file pooled statistics against float64.

The numbers describe these synthetic distributions; on real audio the size of each effect depends on the
model and the audio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tta_energy.fileio import write_json_atomic
from tta_energy.quality.frechet import (
    GaussianStats,
    fad_inf,
    fadtk_pooled_statistics,
    frechet_distance_embeddings,
    statistics_distance,
)
from tta_energy.quality.synthetic import SyntheticEmbeddings, unit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--windows", type=int, default=10, help="embeddings per clip under fadtk's windows")
    parser.add_argument("--draw-seeds", type=int, default=100, help="FAD-inf draw seeds on one data set")
    parser.add_argument("--datasets", type=int, default=20, help="independent data sets (run-to-run spread)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    d, n = args.dim, args.clips
    synthetic = SyntheticEmbeddings(rng, d)
    clips = synthetic.centres

    def windows(centres: np.ndarray) -> list[np.ndarray]:
        noise = rng.normal(size=(len(centres), args.windows, d)) @ synthetic.mixing.T
        return list(unit(centres[:, None, :] + 0.5 * noise))

    start = time.time()
    gen, ref = unit(clips(n, 1.0)), unit(clips(n, 0.0))
    result: dict = {"clips": n, "dim": d, "windows_per_clip": args.windows, "seed": args.seed}

    def inf_values(x: np.ndarray, y: np.ndarray, procedure: str, seeds: range) -> np.ndarray:
        stats = GaussianStats.of(y)
        return np.array([fad_inf(x, stats, seed=s, procedure=procedure).value for s in seeds])

    fadtk_sizes = inf_values(gen, ref, "fadtk", range(args.draw_seeds))
    per_clip_sizes = inf_values(gen, ref, "per-clip", range(args.draw_seeds))
    across = []  # run to run: a new data set and a new draw seed each time
    for i in range(args.datasets):
        x, y = unit(clips(n, 1.0)), unit(clips(n, 0.0))
        across.append(inf_values(x, y, "fadtk", range(1000 + i, 1001 + i))[0])
    across = np.array(across)
    result["sample_sizes"] = {
        "fad": frechet_distance_embeddings(gen, ref),
        "fad_inf_fadtk_mean": float(fadtk_sizes.mean()),
        "fad_inf_fadtk_sd_over_draw_seeds": float(fadtk_sizes.std(ddof=1)),
        "fad_inf_per_clip_mean": float(per_clip_sizes.mean()),
        "fad_inf_per_clip_sd_over_draw_seeds": float(per_clip_sizes.std(ddof=1)),
        "per_clip_minus_fadtk_relative": float(per_clip_sizes.mean() / fadtk_sizes.mean() - 1.0),
        "fad_inf_fadtk_sd_run_to_run": float(across.std(ddof=1)),
        "draw_seeds": args.draw_seeds,
        "datasets": args.datasets,
    }

    gen_centres, ref_centres = clips(n, 1.0), clips(n, 0.0)
    gen_w, ref_w = windows(gen_centres), windows(ref_centres)
    gen_one, ref_one = unit(gen_centres), unit(ref_centres)
    x_w, y_w = np.concatenate(gen_w), np.concatenate(ref_w)
    windowed = fad_inf(x_w, y_w, seed=0, procedure="fadtk")
    result["windows"] = {
        "embeddings_per_side_windowed": len(x_w),
        "fad_one_per_clip": frechet_distance_embeddings(gen_one, ref_one),
        "fad_windowed": frechet_distance_embeddings(x_w, y_w),
        "fad_inf_one_per_clip_fadtk": fad_inf(gen_one, ref_one, seed=0, procedure="fadtk").value,
        "fad_inf_windowed_fadtk": windowed.value,
        "fad_inf_windowed_fadtk_r2": windowed.r2,
    }

    exact = statistics_distance(GaussianStats.of(x_w), GaussianStats.of(y_w))
    rounded = statistics_distance(fadtk_pooled_statistics(gen_w), fadtk_pooled_statistics(ref_w))
    result["float16"] = {
        "fad_float64": exact,
        "fad_float16_pooled": rounded,
        "relative_difference": rounded / exact - 1.0,
    }
    result["seconds"] = round(time.time() - start, 1)
    write_json_atomic(args.out, result)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
