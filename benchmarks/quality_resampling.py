"""Why the FAD intervals use half-sampling and what FAD-inf converges to: a synthetic check at study size.

CPU only, no model (a few minutes):
    PYTHONPATH=src python3 benchmarks/quality_resampling.py --out benchmarks/results/quality_resampling.json

Embeddings: 300 generated and 300 reference unit vectors in 512 dimensions (the study's 300 clips x 512-d
LAION-CLAP), drawn from an anisotropic Gaussian and normalised (:mod:`tta_energy.quality.synthetic`), the
generated set with a small mean shift.
Measured, each from fresh draws of the same two distributions:

* the run-to-run spread of FAD (``true_*``: many independent data sets);
* the ordinary bootstrap (clips resampled with replacement) and the half-sampling replicates of one data set;
* eps * I regularisation (1e-6) against the exact value;
* FAD-inf with fadtk's with-replacement draws and with draws without replacement, against the FAD of all
  clips and a large-sample FAD (``fad_large_n``, 6000 per side) standing in for n = infinity.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tta_energy.intervals import half_sampling_interval
from tta_energy.quality.frechet import fad_inf, frechet_distance, frechet_distance_embeddings, gaussian_fit
from tta_energy.quality.synthetic import SyntheticEmbeddings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--datasets", type=int, default=40, help="independent data sets for the true spread")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    d, n = args.dim, args.clips
    draw = SyntheticEmbeddings(rng, d).draw

    start = time.time()
    true = np.array([frechet_distance_embeddings(draw(n, 1.0), draw(n, 0.0)) for _ in range(args.datasets)])
    gen, ref = draw(n, 1.0), draw(n, 0.0)
    value = frechet_distance_embeddings(gen, ref)
    boot = np.array(
        [
            frechet_distance_embeddings(gen[rng.integers(0, n, n)], ref[rng.integers(0, n, n)])
            for _ in range(args.resamples)
        ]
    )
    low, high = half_sampling_interval(
        list(gen[:, None, :]),
        list(ref[:, None, :]),
        frechet_distance_embeddings,
        value,
        n_resamples=args.resamples,
        seed=args.seed,
    )
    halves = np.array(
        [
            frechet_distance_embeddings(gen[rng.permutation(n)[: n // 2]], ref[rng.permutation(n)[: n // 2]])
            for _ in range(args.resamples)
        ]
    )
    (m1, c1), (m2, c2) = gaussian_fit(gen), gaussian_fit(ref)
    regularised = frechet_distance(m1, c1, m2, c2, regularize="always", eps=1e-6)
    with_repl = fad_inf(gen, ref, seed=args.seed, replace=True)
    without = fad_inf(gen, ref, seed=args.seed, replace=False)
    large = frechet_distance_embeddings(draw(6000, 1.0), draw(6000, 0.0))
    result = {
        "clips": n,
        "dim": d,
        "datasets": args.datasets,
        "resamples": args.resamples,
        "seed": args.seed,
        "fad": value,
        "true_mean": float(true.mean()),
        "true_sd": float(true.std(ddof=1)),
        "true_q025": float(np.quantile(true, 0.025)),
        "true_q975": float(np.quantile(true, 0.975)),
        "bootstrap_with_replacement_mean": float(boot.mean()),
        "bootstrap_with_replacement_sd": float(boot.std()),
        "bootstrap_percentile_interval": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "bootstrap_basic_interval": [
            float(2 * value - np.quantile(boot, 0.975)),
            float(2 * value - np.quantile(boot, 0.025)),
        ],
        "half_sampling_sd": float(halves.std()),
        "half_sampling_interval": [low, high],
        "half_sampling_sd_over_true_sd": float(halves.std() / true.std(ddof=1)),
        "fad_eps_regularised": regularised,
        "eps_relative_change": (regularised - value) / value,
        "fad_inf_with_replacement": with_repl.value,
        "fad_inf_with_replacement_r2": with_repl.r2,
        "fad_inf_without_replacement": without.value,
        "fad_inf_without_replacement_r2": without.r2,
        "fad_large_n": large,
        "large_n": 6000,
        "seconds": time.time() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
