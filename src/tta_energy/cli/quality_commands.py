"""``tta-energy score``: FAD, FAD-inf and CLAP score of generated audio, one tidy table."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from tta_energy.cli import checks
from tta_energy.devices import DEVICE_HELP, chosen_device
from tta_energy.errors import TtaError
from tta_energy.fileio import csv_name, write_csv_atomic
from tta_energy.intervals import DEFAULT_RESAMPLES, check_resamples
from tta_energy.quality.profiles import (
    CLAP_PROFILES,
    DEFAULT_CLAP_PROFILE,
    DEFAULT_FAD_PROFILE,
    FAD_PROFILES,
    parse_clap_profile,
    parse_fad_profile,
)

SCORE_HELP = (
    "Score generated audio: FAD, FAD-inf and CLAP score on LAION-CLAP embeddings."
    "\n\n"
    "One folder (--generated DIR, with --model/--dataset/--steps for the table) or a whole sweep output "
    "tree (--tree AUDIO_DIR laid out as AUDIO_DIR/<model>/<dataset>/<steps>/*.wav, what `tta-energy sweep"
    " -e quality` writes). FAD/FAD-inf compare with the real recordings of --reference; the CLAP score "
    "pairs each caption of --captions (file_name, caption, duration; audiocaps / clotho default to the "
    "study's bundled files) with the clip of the same file name; --caption-limit N keeps the first N "
    "captions of each file, as `sweep --caption-limit N`."
    "\n\n"
    "Checkpoints (a Hugging Face ClapModel folder or a LAION-CLAP .pt file, by path or by name looked up "
    "in --checkpoint-dir, $TTA_ENERGY_CLAP_DIR and ./checkpoints/clap) default to what the study used: "
    "FAD with 630k-audioset-best (fadtk clap-laion-audio, non-fusion), the CLAP score with "
    "630k-audioset-fusion-best (stable-audio-metrics). Audio: mono mean, soxr to 48 kHz, int16 "
    "round-trip, peak -1 dBFS for the CLAP score only."
    "\n\n"
    "Profiles, named after the tool they reproduce, default to the study's: --fad-profile fadtk (10 s "
    "windows every 1 s, zero-padded, float16 embeddings, FAD-inf sizes from 500) or per-clip (10 s "
    "windows end-aligned, FAD-inf sizes from N/2 below 500); --clap-profile stable-audio-metrics (clips "
    "over 10 s cropped at random by CLAP, seeded by --seed) or per-clip (mean of end-aligned 10 s "
    "windows). Output columns: model, dataset, steps, metric, value, ci_low, ci_high, n_generated, "
    "n_reference, embedding, profile, ci_method, fit_r2. See docs/quality.md."
)


def _named_paths(values: list[str] | None, option: str) -> tuple[Path | None, dict[str, Path]]:
    """``--opt PATH`` (one for all) and/or ``--opt DATASET=PATH`` (repeatable)."""
    plain: Path | None = None
    named: dict[str, Path] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not value or (sep and not rest and not Path(value).exists()):  # pathlib reads '' as '.'
            raise TtaError(f"{option} {value!r}: an empty path names no file or folder (give . for the "
                           "current folder)")
        if sep and re.fullmatch(r"[A-Za-z0-9_.-]+", name) and not Path(value).exists():
            if name in named:
                raise TtaError(f"{option} is given twice for {name}")
            named[name] = Path(rest)
        elif plain is None:
            plain = Path(value)
        else:
            raise TtaError(f"{option} is given twice; for several data sets write {option} DATASET=PATH")
    return plain, named


def register(app: typer.Typer) -> None:
    @app.command("score", help=SCORE_HELP)
    def score_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="score table to write (CSV)"),
        generated: Path | None = typer.Option(None, help="folder of generated clips (one configuration)"),
        tree: Path | None = typer.Option(
            None, help="sweep output tree <tree>/<model>/<dataset>/<steps>/*.wav"
        ),
        reference: list[str] | None = typer.Option(
            None,
            help="folder of reference recordings for FAD; with several data sets DATASET=DIR (repeatable)",
        ),
        captions: list[str] | None = typer.Option(
            None,
            help="caption file (file_name, caption, duration) or audiocaps / clotho (the study's bundled "
            "files, also the default of those data sets); DATASET=FILE (repeatable)",
        ),
        limit: int | None = typer.Option(
            None, "--caption-limit", "--limit",
            help="CLAP score: only the first N captions of each caption file, as `sweep --caption-limit N` "
            "(a sweep run with --caption-limit wrote clips for those only; default: every caption)",
        ),
        checkpoint: str = typer.Option(
            "630k-audioset-fusion-best",
            help="CLAP checkpoint of the CLAP score (path or name; the study: 630k-audioset-fusion-best)",
        ),
        fad_checkpoint: str = typer.Option(
            "630k-audioset-best",
            help="CLAP checkpoint of FAD and FAD-inf (path or name; the study: 630k-audioset-best)",
        ),
        checkpoint_dir: list[Path] | None = typer.Option(
            None, help="folder where checkpoint names are looked up (repeatable)"
        ),
        backend: str = typer.Option("auto", help="auto (folder: hf, .pt: laion), hf or laion"),
        model: str | None = typer.Option(
            None, help="model name in the table (--generated; default: folder name)"
        ),
        dataset: str | None = typer.Option(
            None,
            help="data set name in the table (--generated; default: the "
            "reference folder or caption file name)",
        ),
        steps: int | None = typer.Option(None, help="denoising steps in the table (--generated)"),
        metrics: str = typer.Option(
            "fad,fad_inf,clap", help="comma list of fad, fad_inf, fad_inf_without_replacement, clap"
        ),
        bootstrap: int = typer.Option(DEFAULT_RESAMPLES, help="resamples of the score intervals (0: none)"),
        seed: int = typer.Option(0, help="seed of FAD-inf's subsampling and of the intervals"),
        fad_inf_ci: bool = typer.Option(
            False, "--fad-inf-ci", help="also an interval for FAD-inf (25 distances per resample: slow)"
        ),
        fad_regularize: str = typer.Option(
            "auto",
            help="eps*I on the covariances: auto (only if the "
            "eigen-decomposition fails), always (when singular), never",
        ),
        fad_profile: str = typer.Option(
            DEFAULT_FAD_PROFILE,
            help=f"how FAD/FAD-inf embed and sample: {' or '.join(FAD_PROFILES)} (default: the study's)",
        ),
        clap_profile: str = typer.Option(
            DEFAULT_CLAP_PROFILE,
            help=f"how the CLAP score embeds clips over 10 s: {' or '.join(CLAP_PROFILES)} "
            "(default: the study's)",
        ),
        hop: float | None = typer.Option(
            None, "--hop-s", "--hop",
            help="per-clip profiles: seconds between 10 s windows of longer clips (default 10)",
        ),
        cache: Path | None = typer.Option(
            None, help="embedding cache folder (default ~/.cache/tta-energy/embeddings)"
        ),
        no_cache: bool = typer.Option(False, "--no-cache", help="neither read nor write cached embeddings"),
        per_clip: Path | None = typer.Option(None, help="also write the per-clip CLAP scores (CSV)"),
        device: str | None = typer.Option(None, help=DEVICE_HELP),
        batch_size: int = typer.Option(16, help="10 s windows per forward pass"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    ) -> None:
        from tta_energy.quality import score as sc
        from tta_energy.quality.cache import DEFAULT_CACHE_DIR, EmbeddingCache
        from tta_energy.quality.embeddings import check_backend, load_embedder, resolve_checkpoint

        # the user's values first, then the checkpoints: a bad input is named, not a missing checkpoint
        checks.device(device)
        checks.seed(seed)
        checks.not_with(no_cache and cache is not None, "--cache", "--no-cache")
        checks.at_least_one(batch_size, "--batch-size", "10 s windows per forward pass")
        check_resamples(bootstrap)
        checks.at_least_one(steps, "--steps", "the denoising steps the --generated clips were made with")
        check_backend(backend)
        wanted = checks.comma_list(metrics)
        checks.at_least_one(limit, "--caption-limit",
                            "the first N captions of each caption file, as in sweep")
        if limit is not None and "clap" not in wanted:
            raise TtaError(
                "--caption-limit cuts the caption files of the CLAP score; add clap to --metrics or leave "
                "--caption-limit out"
            )
        if fad_regularize not in ("auto", "always", "never"):
            raise TtaError(f"--fad-regularize {fad_regularize}: expected auto, always or never")
        if hop is not None and "per-clip" not in (fad_profile, clap_profile):
            raise TtaError(
                "--hop-s applies to the per-clip profiles (fadtk starts a window every 1 s, "
                "stable-audio-metrics lets CLAP crop); add --fad-profile per-clip or --clap-profile per-clip"
            )
        settings = sc.ScoreSettings(
            metrics=wanted,
            n_resamples=bootstrap,
            seed=seed,
            fad_inf_ci=fad_inf_ci,
            regularize=fad_regularize,
            fad_profile=parse_fad_profile(fad_profile, hop_s=hop if fad_profile == "per-clip" else None),
            clap_profile=parse_clap_profile(
                clap_profile, hop_s=hop if clap_profile == "per-clip" else None, seed=seed
            ),
            batch_windows=batch_size,
            progress=not quiet,
            caption_limit=limit,
        )
        for path, option in ((out, "--out"), (per_clip, "--per-clip")):
            if path is None:
                continue
            checks.writable_file(path, option)  # a folder is refused; nothing is created
            csv_name(path, option)
        if per_clip is not None and per_clip.resolve() == out.resolve():
            raise TtaError("--per-clip and --out must be different files")
        jobs = _jobs(generated, tree, reference, captions, model, dataset, steps, settings)
        planned = sc.plan_jobs(jobs, settings)  # every input checked before a model is loaded
        fad_path = resolve_checkpoint(fad_checkpoint, checkpoint_dir or ()) if settings.wants_fad else None
        clap_path = resolve_checkpoint(checkpoint, checkpoint_dir or ()) if "clap" in wanted else None
        device = chosen_device(device)
        if quiet:  # transformers' own loading bars too
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        loaded: dict[Path, object] = {}
        for path in (fad_path, clap_path):
            if path is not None and path.resolve() not in loaded:
                loaded[path.resolve()] = load_embedder(
                    path, backend=backend, device=device, batch_size=batch_size
                )
        fad_embedder = loaded[fad_path.resolve()] if fad_path is not None else None
        clap_embedder = loaded[clap_path.resolve()] if clap_path is not None else None
        store = EmbeddingCache(None if no_cache else (cache or DEFAULT_CACHE_DIR))
        result = sc.score_jobs(
            planned, settings, cache=store, fad_embedder=fad_embedder, clap_embedder=clap_embedder
        )
        write_csv_atomic(out, result.table)  # output folders checked above, before any scoring
        if per_clip is not None:
            write_csv_atomic(per_clip, result.per_clip)
        shown = ", ".join(f"{r.metric} {r.value:.4g}" for r in result.table.head(3).itertuples())
        more = " ..." if len(result.table) > 3 else ""
        typer.echo(
            f"scored {len(planned)} configuration(s) [{', '.join(wanted)}] -> {out} ({len(result.table)} "
            f"rows; {shown}{more}; embeddings: {result.computed} computed, {result.cached} from cache)"
        )


def _jobs(
    generated: Path | None,
    tree: Path | None,
    reference: list[str] | None,
    captions: list[str] | None,
    model: str | None,
    dataset: str | None,
    steps: int | None,
    settings: object,
) -> list:
    from tta_energy.quality.clap_score import bundled_captions
    from tta_energy.quality.score import ScoreJob, discover_tree

    if (generated is None) == (tree is None):
        raise TtaError("give exactly one of --generated DIR (one configuration) or --tree DIR (a sweep tree)")
    for option, value in (("--model", model), ("--dataset", dataset)):
        if value is not None and not value.strip():  # '' would fall back to a name taken from a folder
            raise TtaError(f"{option} {value!r} names nothing: give a name, or leave {option} out")
    ref_plain, ref_named = _named_paths(reference, "--reference")
    cap_plain, cap_named = _named_paths(captions, "--captions")
    # a bundled data set's name (audiocaps, clotho) stands for its caption file, as in `sweep --captions`
    if cap_plain is not None and not cap_plain.exists():
        cap_plain = bundled_captions(str(cap_plain)) or cap_plain
    cap_named = {name: path if path.exists() else bundled_captions(str(path)) or path
                 for name, path in cap_named.items()}

    def captions_for(name: str) -> Path | None:
        return cap_named.get(name) or cap_plain or bundled_captions(name)

    def reference_for(name: str) -> Path | None:
        return ref_named.get(name) or ref_plain

    if generated is not None:
        if ref_named or cap_named:
            raise TtaError("with --generated give --reference DIR and --captions FILE without DATASET=")
        name = (
            dataset
            or (ref_plain.name if ref_plain else None)
            or (re.sub(r"_captions$", "", cap_plain.stem) if cap_plain else None)
            or ""
        )
        return [
            ScoreJob(model or generated.resolve().name, name, steps, generated, ref_plain, captions_for(name))
        ]
    if model or dataset or steps is not None:
        raise TtaError("--model/--dataset/--steps name one --generated folder; a --tree names its own")
    configs = discover_tree(tree)
    datasets = sorted({d for _, d, _, _ in configs})
    if ref_plain is not None and len(datasets) > 1:
        raise TtaError(
            f"{tree} holds several data sets ({', '.join(datasets)}): give --reference DATASET=DIR"
        )
    return [ScoreJob(m, d, s, folder, reference_for(d), captions_for(d)) for m, d, s, folder in configs]
