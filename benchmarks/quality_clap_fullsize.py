"""The `tta-energy score` path at full CLAP size: cost, determinism and batch independence (random weights).

On the GPU machine (one H200; a few minutes, mostly writing two 0.6 GB checkpoints):
    PYTHONPATH=src python3 benchmarks/quality_clap_fullsize.py --out benchmarks/results/quality_clap_fullsize
Anywhere, at tiny size (checks the script, not the numbers):
    python benchmarks/quality_clap_fullsize.py --size tiny --clips 8 --out /tmp/quality-bench

Builds two random-weight checkpoints of the LAION-CLAP HTSAT-tiny + RoBERTa architecture in the Hugging Face
layout (non-fusion for FAD, fusion for the CLAP score; :mod:`tta_energy.quality.replica`), writes a synthetic
generated set (10 s clips at 16 kHz) and reference set (10-19 s stereo 44.1 kHz clips, several windows each),
then scores them three times: batch 16 into an empty cache, batch 1 without the cache (batch independence,
including the fusion branch), and batch 16 from the cache (cache speed). Writes OUT/summary.json (timings,
clips per second, largest differences between the runs) and OUT/scores.csv. Random weights: the scores mean
nothing; the cost per clip and the determinism carry over to the real checkpoints.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from tta_energy.fileio import write_csv_atomic
from tta_energy.quality import score as sc
from tta_energy.quality.audio import AudioPrep, split_windows
from tta_energy.quality.cache import EmbeddingCache
from tta_energy.quality.embeddings import load_embedder
from tta_energy.quality.replica import write_clap_checkpoint


def synthetic_sets(root: Path, clips: int, seed: int) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(seed)
    gen, ref = root / "generated", root / "reference"
    gen.mkdir(parents=True, exist_ok=True)
    ref.mkdir(parents=True, exist_ok=True)
    names, captions = [], []
    for i in range(clips):
        t = np.arange(160_000) / 16_000
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) * rng.uniform(0.2, 1.0)
        sf.write(
            str(gen / f"clip{i:04d}.wav"), tone + 0.05 * rng.standard_normal(len(t)), 16_000, subtype="FLOAT"
        )
        seconds = rng.uniform(10.0, 19.0)
        noise = 0.2 * rng.standard_normal((int(seconds * 44_100), 2))
        sf.write(str(ref / f"ref{i:04d}.wav"), noise, 44_100, subtype="PCM_16")
        names.append(f"clip{i:04d}.wav")
        captions.append(
            " ".join(rng.choice(["a", "dog", "barks", "rain", "falls", "engine", "hums"], size=6))
        )
    caption_file = root / "captions.csv"
    pd.DataFrame({"file_name": names, "caption": captions, "duration": 10.0}).to_csv(
        caption_file, index=False
    )
    return gen, ref, caption_file


def first_window_s(checkpoint: Path) -> float:
    config = json.loads((checkpoint / "preprocessor_config.json").read_text())
    return float(config.get("max_length_s", 10))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--clips", type=int, default=128, help="generated (and reference) clips")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.size == "full" and device == "cpu":
        parser.error("the full-size model is for the GPU machine; use --size tiny on a CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quality-bench-"))  # checkpoints and audio: not kept
    try:
        return _bench(args, device, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, device: str, work: Path) -> int:
    import torch

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    log(f"writing {args.size} checkpoints and {args.clips} + {args.clips} synthetic clips under {work}")
    fad_ckpt = write_clap_checkpoint(
        work / "clap-unfused", fusion=False, size=args.size, seed=0, device=device
    )
    clap_ckpt = write_clap_checkpoint(work / "clap-fused", fusion=True, size=args.size, seed=1, device=device)
    gen, ref, captions = synthetic_sets(work, args.clips, args.seed)
    job = sc.ScoreJob("random-weights", "synthetic", None, gen, ref, captions)

    def run(batch: int, cache: EmbeddingCache) -> tuple[sc.ScoreResult, float]:
        settings = sc.ScoreSettings(
            n_resamples=args.bootstrap, seed=args.seed, batch_windows=batch, progress=False
        )
        fad = load_embedder(fad_ckpt, device=device, batch_size=batch)
        clap = load_embedder(clap_ckpt, device=device, batch_size=batch)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = sc.score_jobs(
            sc.plan_jobs([job], settings), settings, cache=cache, fad_embedder=fad, clap_embedder=clap
        )
        if device == "cuda":
            torch.cuda.synchronize()
        return result, time.perf_counter() - start

    cache = EmbeddingCache(work / "cache")
    first, t_first = run(16, cache)
    log(f"batch 16, empty cache: {t_first:.1f} s, {first.computed} embeddings")
    single, t_single = run(1, EmbeddingCache(None))
    log(f"batch 1, no cache: {t_single:.1f} s")
    cached, t_cached = run(16, cache)
    log(f"batch 16, from cache: {t_cached:.1f} s, {cached.computed} computed")

    def largest_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
        return float(np.max(np.abs(a["value"].to_numpy() - b["value"].to_numpy())))

    # the windows FAD embeds under the default (fadtk) profile
    window_prep = sc.ScoreSettings().fad_profile.audio_prep(
        AudioPrep(), sample_rate=48_000, window_s=first_window_s(fad_ckpt)
    )
    n_windows = sum(
        len(split_windows(np.zeros(int(sf.info(str(p)).duration * 48_000)), window_prep))
        for p in sorted(ref.iterdir())
    )
    summary = {
        "size": args.size,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "clips_generated": args.clips,
        "clips_reference": args.clips,
        "reference_windows": n_windows,
        "embeddings_computed": first.computed,
        "seconds_batch16_empty_cache": t_first,
        "seconds_batch1_no_cache": t_single,
        "seconds_batch16_cached": t_cached,
        "embeddings_per_second_batch16": first.computed / t_first,
        "max_abs_diff_table_batch1_vs_batch16": largest_difference(first.table, single.table),
        "max_abs_diff_per_clip_clap_batch1_vs_batch16": largest_difference(first.per_clip, single.per_clip),
        "max_abs_diff_table_cached_vs_computed": largest_difference(first.table, cached.table),
        "computed_on_cached_run": cached.computed,
    }
    write_csv_atomic(args.out / "scores.csv", first.table)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
