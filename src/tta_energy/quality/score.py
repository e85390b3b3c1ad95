"""``tta-energy score``: FAD, FAD-inf and CLAP score of folders of generated audio, as one tidy table.

The work is split so that bad input fails before anything is loaded or cached: :func:`plan_jobs` lists and
checks every folder, audio header and caption file; :func:`score_jobs` then embeds (through the cache) and
scores. One row per (model, dataset, steps, metric) in :data:`TABLE_COLUMNS`; per-clip CLAP scores in
:data:`PER_CLIP_COLUMNS`. How clips become embeddings and how FAD-inf samples is the metric profile
(:mod:`tta_energy.quality.profiles`) carried by :class:`ScoreSettings`; its name is the ``profile`` column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tta_energy.errors import TtaError
from tta_energy.intervals import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    check_resamples,
    half_sampling_interval,
    percentile_bootstrap_mean,
)
from tta_energy.quality import frechet
from tta_energy.quality.audio import (
    AudioError,
    AudioPrep,
    check_audio_file,
    file_sha256,
    list_audio_files,
    load_audio,
    split_windows,
)
from tta_energy.quality.cache import EmbeddingCache
from tta_energy.quality.clap_score import (
    CaptionMatch,
    clip_embedding,
    cosine_similarities,
    match_captions,
    read_captions,
)
from tta_energy.quality.embeddings import ClapEmbedder
from tta_energy.quality.profiles import (
    DEFAULT_CLAP_PROFILE,
    DEFAULT_FAD_PROFILE,
    ClapProfile,
    FadProfile,
    clip_crop_seed,
    parse_clap_profile,
    parse_fad_profile,
)

#: ``fad_inf`` is fadtk's (and the study's) definition; ``fad_inf_without_replacement`` draws the subsets
#: without replacement, with the per-clip sample sizes and generator under every profile (a variant of this
#: project, not fadtk's: its sizes fit any number of embeddings; see
#: :func:`tta_energy.quality.frechet.fad_inf`).
METRICS = ("fad", "fad_inf", "fad_inf_without_replacement", "clap")
DEFAULT_METRICS = ("fad", "fad_inf", "clap")
TABLE_COLUMNS = (
    "model",
    "dataset",
    "steps",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n_generated",
    "n_reference",
    "embedding",
    "profile",
    "ci_method",
    "fit_r2",
)
PER_CLIP_COLUMNS = (
    "model",
    "dataset",
    "steps",
    "metric",
    "caption_id",
    "value",
    "audio_file",
    "caption",
    "embedding",
    "profile",
)


@dataclass(frozen=True)
class ScoreJob:
    """One configuration: a folder of generated clips and what it is compared with."""

    model: str
    dataset: str
    steps: int | None
    generated: Path
    reference: Path | None = None
    captions: Path | None = None


@dataclass(frozen=True)
class ScoreSettings:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    confidence: float = CONFIDENCE
    fad_inf_ci: bool = False  # half-sampling of FAD-inf costs 25 distances per replicate: opt-in
    regularize: frechet.Regularize = "auto"
    eps: float = 1e-6
    fad_profile: FadProfile = field(default_factory=lambda: parse_fad_profile(DEFAULT_FAD_PROFILE))
    clap_profile: ClapProfile = field(default_factory=lambda: parse_clap_profile(DEFAULT_CLAP_PROFILE))
    fad_peak_dbfs: float | None = None  # fadtk: no level change
    clap_peak_dbfs: float | None = -1.0  # stable-audio-metrics: peak -1 dBFS
    batch_windows: int = 16
    progress: bool = True
    caption_limit: int | None = None  # CLAP score: the first N captions of each file (sweep's too)

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise TtaError(
                f"unknown metric(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(METRICS)}"
            )
        check_resamples(self.n_resamples)
        if not 0.0 < self.confidence < 1.0:
            raise TtaError("confidence must be between 0 and 1")
        if self.caption_limit is not None and self.caption_limit < 1:
            raise TtaError(
                f"--caption-limit must be >= 1 (the first N captions of each file), got {self.caption_limit}"
            )

    @property
    def wants_fad(self) -> bool:
        return any(m.startswith("fad") for m in self.metrics)


@dataclass
class PlannedJob:
    job: ScoreJob
    generated: list[Path]
    reference: list[Path] = field(default_factory=list)
    matches: list[CaptionMatch] = field(default_factory=list)


@dataclass
class ScoreResult:
    table: pd.DataFrame
    per_clip: pd.DataFrame
    computed: int  # embeddings computed now
    cached: int  # embeddings read from the cache


# ----------------------------------------------------------------------------------------------- planning


def discover_tree(root: Path) -> list[tuple[str, str, int, Path]]:
    """Configurations of a sweep output tree ``<root>/<model>/<dataset>/<steps>/*.wav`` (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise TtaError(f"{root}: not a folder")
    found = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dataset_dir in sorted(
            p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            for steps_dir in sorted(
                p for p in dataset_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
            ):
                m = re.fullmatch(r"(\d+)(?:[-_]?steps)?", steps_dir.name)
                if m is None:
                    raise TtaError(
                        f"{steps_dir}: expected a steps folder named by its step count "
                        "(<audio-dir>/<model>/<dataset>/<steps>/)"
                    )
                found.append((model_dir.name, dataset_dir.name, int(m.group(1)), steps_dir))
    if not found:
        raise TtaError(f"{root}: no <model>/<dataset>/<steps>/ folders")
    return sorted(found, key=lambda t: (t[0], t[1], t[2]))


def plan_jobs(jobs: Sequence[ScoreJob], settings: ScoreSettings) -> list[PlannedJob]:
    """Check every input before any model is loaded; raise one TtaError naming the first bad file."""
    if not jobs:
        raise TtaError("nothing to score")
    planned: list[PlannedJob] = []
    checked: set[Path] = set()
    reference_files: dict[Path, list[Path]] = {}
    for job in jobs:
        where = _label(job)
        generated = list_audio_files(job.generated)
        reference: list[Path] = []
        if settings.wants_fad:
            if job.reference is None:
                raise TtaError(f"{where}: FAD needs a reference folder (--reference)")
            if job.reference not in reference_files:
                reference_files[job.reference] = list_audio_files(job.reference)
            reference = reference_files[job.reference]
            need = 4 if any(m.startswith("fad_inf") for m in settings.metrics) else 2
            for folder, files in ((job.generated, generated), (job.reference, reference)):
                if len(files) < need:
                    raise TtaError(
                        f"{folder}: {len(files)} audio file(s); FAD{'-inf' if need == 4 else ''} "
                        f"needs at least {need}"
                    )
        matches: list[CaptionMatch] = []
        if "clap" in settings.metrics:
            if job.captions is None:
                raise TtaError(f"{where}: the CLAP score needs a caption file (--captions)")
            matches = match_captions(
                sweep_captions(job.captions, settings.caption_limit),
                generated,
                captions_path=job.captions,
                limit=settings.caption_limit,
            )
        for path in [*generated, *reference]:
            if path not in checked:
                check_audio_file(path)
                checked.add(path)
        planned.append(PlannedJob(job, generated, reference, matches))
    return planned


def sweep_captions(path: Path, limit: int | None = None) -> pd.DataFrame:
    """The captions of ``path`` (``file_name``, ``caption``) that ``tta-energy sweep --caption-limit``
    generates clips for: all of them, or the first ``limit`` by the sweep's own rule, so that a limited
    sweep's folders are scored against exactly the captions they were made from."""
    if limit is None:
        return read_captions(path)
    from tta_energy.experiments.grids import load_captions  # the sweep's reader and cut

    rows = load_captions(Path(path).resolve(), limit).rows
    return pd.DataFrame(list(rows), columns=["file_name", "caption"])


# ----------------------------------------------------------------------------------------------- embedding


class _Embeddings:
    """Window embeddings of audio files and embeddings of captions, through the cache."""

    def __init__(
        self,
        embedder: ClapEmbedder,
        prep: AudioPrep,
        profile: FadProfile | ClapProfile,
        cache: EmbeddingCache,
        settings: ScoreSettings,
    ):
        self.embedder = embedder
        # the model decides the rate and the window length; the profile the windows; the settings the level
        self.prep = profile.audio_prep(prep, sample_rate=embedder.sample_rate, window_s=embedder.window_s)
        self.cache = cache
        self.settings = settings
        self.memo: dict[str, np.ndarray] = {}
        self.computed = 0

    def audio(self, paths: Sequence[Path], desc: str, hashes: dict[Path, str]) -> list[np.ndarray]:
        model_id, dim = self.embedder.model_id, self.embedder.dim
        results: list[np.ndarray | None] = [None] * len(paths)
        pending: list[tuple[int, str, list[np.ndarray], int]] = []

        def flush() -> None:
            if not pending:
                return
            windows = [w for _, _, ws, _ in pending for w in ws]
            seeds = [seed for _, _, ws, seed in pending for _ in ws]
            emb = self.embedder.embed_windows(windows, seeds)
            start = 0
            for index, key, ws, _ in pending:
                part = np.ascontiguousarray(emb[start : start + len(ws)], dtype=np.float32)
                start += len(ws)
                if part.shape != (len(ws), dim) or not np.isfinite(part).all():
                    raise TtaError(f"{paths[index]}: the CLAP model gave a non-finite or malformed embedding")
                self.cache.store(model_id, "audio", key, part)
                self.memo[key] = part
                results[index] = part
                self.computed += 1
            pending.clear()

        bar = tqdm(paths, desc=desc, unit="clip", leave=False, disable=not self.settings.progress)
        for index, path in enumerate(bar):
            if path not in hashes:
                hashes[path] = file_sha256(path)
            key = EmbeddingCache.key("audio", hashes[path], self.prep.key())
            cached = self.memo.get(key)
            if cached is None:
                cached = self.cache.load(model_id, "audio", key, dim)
            if cached is not None:
                self.memo[key] = cached
                results[index] = cached
                continue
            seed = clip_crop_seed(self.prep.crop_seed or 0, hashes[path])
            pending.append((index, key, split_windows(load_audio(path, self.prep), self.prep), seed))
            if sum(len(ws) for _, _, ws, _ in pending) >= self.settings.batch_windows:
                flush()
        flush()
        missing = [paths[i] for i, r in enumerate(results) if r is None]
        if missing:  # every file gets its embeddings, or the rows would pair them with the wrong captions
            raise RuntimeError(f"no embeddings were computed for {len(missing)} file(s), e.g. {missing[0]}")
        return [r for r in results if r is not None]  # all of them (checked above)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        model_id, dim = self.embedder.model_id, self.embedder.dim
        keys = [EmbeddingCache.key("text", t) for t in texts]
        out: list[np.ndarray | None] = []
        todo: list[int] = []
        for i, key in enumerate(keys):
            arr = self.memo.get(key)
            if arr is None:
                arr = self.cache.load(model_id, "text", key, dim)
            out.append(arr)
            if arr is None:
                todo.append(i)
        if todo:
            emb = self.embedder.embed_texts([texts[i] for i in todo])
            if emb.shape != (len(todo), dim) or not np.isfinite(emb).all():
                raise TtaError("the CLAP model gave non-finite or malformed text embeddings")
            for row, i in zip(emb, todo, strict=True):
                arr = np.ascontiguousarray(row[None, :], dtype=np.float32)
                self.cache.store(model_id, "text", keys[i], arr)
                out[i] = arr
                self.computed += 1
        for key, arr in zip(keys, out, strict=True):
            self.memo[key] = arr
        return np.concatenate(out, axis=0)


# ----------------------------------------------------------------------------------------------- scoring


def score_jobs(
    planned: Sequence[PlannedJob],
    settings: ScoreSettings,
    *,
    cache: EmbeddingCache,
    fad_embedder: ClapEmbedder | None = None,
    clap_embedder: ClapEmbedder | None = None,
) -> ScoreResult:
    """Embed and score every planned job."""
    if settings.wants_fad and fad_embedder is None:
        raise TtaError("FAD needs a CLAP checkpoint (--fad-checkpoint)")
    if "clap" in settings.metrics and clap_embedder is None:
        raise TtaError("the CLAP score needs a CLAP checkpoint (--checkpoint)")
    fad_emb = (
        _Embeddings(
            fad_embedder, AudioPrep(peak_dbfs=settings.fad_peak_dbfs), settings.fad_profile, cache, settings
        )
        if fad_embedder is not None
        else None
    )
    clap_emb = (
        _Embeddings(
            clap_embedder,
            AudioPrep(peak_dbfs=settings.clap_peak_dbfs),
            settings.clap_profile,
            cache,
            settings,
        )
        if clap_embedder is not None
        else None
    )
    hashes: dict[Path, str] = {}
    rows: list[dict] = []
    clips: list[dict] = []
    bar = tqdm(planned, desc="scoring", unit="config", disable=not settings.progress or len(planned) < 2)
    for item in bar:
        job = item.job
        base = {
            "model": job.model,
            "dataset": job.dataset,
            "steps": job.steps,
            "n_generated": len(item.generated),
        }
        if fad_emb is not None and settings.wants_fad:
            gen = fad_emb.audio(item.generated, f"{_label(job)}: generated", hashes)
            ref = fad_emb.audio(item.reference, f"{job.dataset}: reference", hashes)
            rows += _fad_rows(
                gen,
                ref,
                settings,
                {
                    **base,
                    "n_reference": len(item.reference),
                    "embedding": fad_emb.embedder.model_id,
                    "profile": settings.fad_profile.name,
                },
            )
        if clap_emb is not None and "clap" in settings.metrics:
            audio = clap_emb.audio([m.audio for m in item.matches], f"{_label(job)}: CLAP", hashes)
            audio_clip = np.stack([clip_embedding(a) for a in audio])
            text = clap_emb.texts([m.caption for m in item.matches])
            scores = cosine_similarities(text, audio_clip)
            low, high = percentile_bootstrap_mean(
                scores, n_resamples=settings.n_resamples, seed=settings.seed, confidence=settings.confidence
            )
            rows.append(
                {
                    **base,
                    "metric": "clap",
                    "value": float(scores.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "n_reference": None,
                    "embedding": clap_emb.embedder.model_id,
                    "profile": settings.clap_profile.name,
                    "ci_method": _ci_name("percentile bootstrap", settings) if np.isfinite(low) else "",
                    "fit_r2": np.nan,
                }
            )
            clips += [
                {
                    "model": job.model,
                    "dataset": job.dataset,
                    "steps": job.steps,
                    "metric": "clap",
                    "caption_id": m.caption_id,
                    "value": float(s),
                    "audio_file": m.audio.name,
                    "caption": m.caption,
                    "embedding": clap_emb.embedder.model_id,
                    "profile": settings.clap_profile.name,
                }
                for m, s in zip(item.matches, scores, strict=True)
            ]
    used = [e for e in (fad_emb, clap_emb) if e is not None]
    return ScoreResult(
        table=_frame(rows, TABLE_COLUMNS),
        per_clip=_frame(clips, PER_CLIP_COLUMNS),
        computed=sum(e.computed for e in used),
        cached=cache.hits,
    )


def _fad_rows(
    gen: list[np.ndarray], ref: list[np.ndarray], settings: ScoreSettings, base: dict
) -> list[dict]:
    profile = settings.fad_profile
    if profile.float16:  # fadtk stores every embedding as float16
        gen = [g.astype(np.float16).astype(np.float64) for g in gen]
        ref = [r.astype(np.float16).astype(np.float64) for r in ref]
    x, y = np.concatenate(gen).astype(np.float64), np.concatenate(ref).astype(np.float64)
    # fadtk pools the statistics of a folder file by file, from float16 means
    ref_stats = frechet.fadtk_pooled_statistics(ref) if profile.float16 else frechet.GaussianStats.of(y)
    rows = []
    if "fad" in settings.metrics:

        def distance(a: np.ndarray, b: np.ndarray) -> float:
            return frechet.frechet_distance_embeddings(a, b, eps=settings.eps, regularize=settings.regularize)

        if profile.float16:
            value = frechet.statistics_distance(
                frechet.fadtk_pooled_statistics(gen),
                ref_stats,
                eps=settings.eps,
                regularize=settings.regularize,
            )
        else:
            value = distance(x, y)
        low, high = half_sampling_interval(
            gen,
            ref,
            distance,
            value,
            n_resamples=settings.n_resamples,
            seed=settings.seed,
            confidence=settings.confidence,
        )
        rows.append(
            {
                **base,
                "metric": "fad",
                "value": value,
                "ci_low": max(low, 0.0) if np.isfinite(low) else low,
                "ci_high": high,
                "ci_method": _ci_name("half-sampling", settings) if np.isfinite(low) else "",
                "fit_r2": np.nan,
            }
        )
    for metric, with_replacement in (("fad_inf", True), ("fad_inf_without_replacement", False)):
        if metric not in settings.metrics:
            continue
        procedure = profile.fad_inf if with_replacement else "per-clip"

        def extrapolated(
            a: np.ndarray, b: np.ndarray, replace: bool = with_replacement, procedure: str = procedure
        ) -> float:
            return frechet.fad_inf(a, b, seed=settings.seed, replace=replace, procedure=procedure,
                                   eps=settings.eps, regularize=settings.regularize).value

        fit = frechet.fad_inf(x, ref_stats, seed=settings.seed, replace=with_replacement, procedure=procedure,
                              eps=settings.eps, regularize=settings.regularize)
        low = high = float("nan")
        if settings.fad_inf_ci:
            low, high = half_sampling_interval(
                gen,
                ref,
                extrapolated,
                fit.value,
                n_resamples=settings.n_resamples,
                seed=settings.seed,
                confidence=settings.confidence,
                min_half=4,
            )
        rows.append(
            {
                **base,
                "metric": metric,
                "value": fit.value,
                "ci_low": low,
                "ci_high": high,
                "ci_method": _ci_name("half-sampling", settings) if np.isfinite(low) else "",
                "fit_r2": fit.r2,
            }
        )
    return rows


def _ci_name(method: str, settings: ScoreSettings) -> str:
    return f"{method} {settings.confidence:.0%} (n={settings.n_resamples}, seed={settings.seed})"


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    df["steps"] = df["steps"].astype("Int64")
    if "n_reference" in df.columns:
        df["n_generated"] = df["n_generated"].astype("Int64")
        df["n_reference"] = df["n_reference"].astype("Int64")
    return df


def _label(job: ScoreJob) -> str:
    return "/".join(str(p) for p in (job.model, job.dataset, job.steps) if p not in (None, ""))


# ----------------------------------------------------------------------------------------------- output


__all__ = [
    "AudioError",
    "METRICS",
    "PER_CLIP_COLUMNS",
    "TABLE_COLUMNS",
    "PlannedJob",
    "ScoreJob",
    "ScoreResult",
    "ScoreSettings",
    "discover_tree",
    "plan_jobs",
    "score_jobs",
]
