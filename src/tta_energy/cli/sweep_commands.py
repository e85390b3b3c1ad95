"""``tta-energy sweep``: the study's experiments and new ones; resumable; sharded over GPUs with torchrun."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from tta_energy.cli import checks, options
from tta_energy.cli.exits import ALL_FAILED_EXIT, INCOMPLETE_EXIT
from tta_energy.errors import TtaError
from tta_energy.fileio import DEFAULT_AUDIO_DIR
from tta_energy.levers.spec import DEFAULT_SPEC
from tta_energy.meter import IDLE_BASELINE_S, MIN_WINDOW_S, WARMUP_GENERATIONS
from tta_energy.models import catalogue
from tta_energy.study import STUDY_REPEATS, STUDY_STEPS

SWEEP_HELP = """Measure the energy of one model over an experiment's grid, one row per generation.

Experiments: steps (10..200 steps), batch (10 clips as 10x1, 5x2, 2x5, 1x10 waveforms per prompt, and p10 = 10
distinct prompts), quality (caption files x steps, audio saved under AUDIO_DIR/<model>/<dataset>/<steps>/),
duration (2.5, 5, 10, 20 s where allowed), guidance (model default vs 1 = off), precision (float32, float16,
bfloat16). Several experiments may be given comma-separated (one model build): tables go to
OUT_DIR/<experiment>.csv. An option none of them uses is refused, not ignored: --steps with steps or
quality, --duration-s with duration, --dtype with precision (their grids set it), --prompt with quality, and
--captions, --caption-limit, --audio-dir, --no-save-audio without quality.

Protocol: idle baseline with the model loaded, one warm-up generation per built model (is_warmup=True),
seeded random order within each repeat, per-phase energy, status oom / nan_audio / error recorded and the
sweep goes on.

Resumable: rows are appended atomically; running the same command again skips the (configuration, repeat)
pairs already recorded as ok / oom / nan_audio and retries error rows (--keep-errors: skip them too).
--time-budget-s stops starting generations that would end after the budget (exit status 3); run again to
finish. When every generation of a sweep failed, the distinct errors are listed and the exit status is 4.
One sweep or campaign run at a time writes a table: a second one on the same table is refused (each table
has a lock file).

Several GPUs: torchrun --nproc-per-node N -m tta_energy sweep ... shards the pairs over the ranks (one GPU
each), every rank writes <out>.rank<k>.csv and rank 0 merges them into the table.
"""


def per_experiment(values: list[str] | None, experiments: tuple[str, ...], option: str) -> dict[str, str]:
    """``--opt VALUE`` (one experiment) or ``--opt EXP=VALUE`` (repeatable) -> {experiment: value}."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, value = v.partition("=")
        if not sep:
            if len(experiments) != 1:
                raise TtaError(f"{option} {v}: with several experiments write {option} EXPERIMENT=VALUE")
            name, value = experiments[0], v
        name = name.strip()
        if name in out:
            raise TtaError(f"{option} is given twice for {name}")
        out[name] = value.strip()
    return out


def failure_lines(summaries: list) -> list[str]:
    """When no generation succeeded: how many failed and the first line of each distinct error."""
    measured = sum(sum(s.measured.values()) for s in summaries)
    if measured == 0 or any(s.measured.get("ok", 0) for s in summaries):
        return []
    errors: dict[str, int] = {}
    for s in summaries:
        for text, n in s.errors.items():
            errors[text] = errors.get(text, 0) + n
    return [f"all {measured} generation(s) failed:"] + [f"  {n} x {text}" for text, n in errors.items()]


def register(app: typer.Typer, fixed_model: str | None = None) -> None:
    """``sweep`` on ``app``; with ``fixed_model`` the command runs that model only (the inferences/ scripts)
    and has no --model option."""

    @app.command("sweep", help=SWEEP_HELP)
    def sweep_cmd(
        ctx: typer.Context,
        model: str = typer.Option(fixed_model or ..., "--model", "-m", help=catalogue.help_text(),
                                  hidden=fixed_model is not None),
        experiment: str = typer.Option(..., "--experiment", "-e",
                                       help="steps, batch, quality, duration, guidance, precision "
                                            "(comma list)"),
        size: str = typer.Option("full", help="full (the real architecture) or tiny (CPU tests)"),
        weights: str = typer.Option("random", help="'random' (replica) or a local weights folder / hub id"),
        device: str | None = options.DEVICE,
        dtype: str | None = typer.Option(None, help="dtype of every configuration (default: the study's on a "
                                                    "GPU, float32 on a CPU)"),
        repeats: list[str] | None = typer.Option(
            None, help=f"repeats (default: {STUDY_REPEATS}; quality 1); with several experiments EXP=N, "
                       "a comma list or repeated"),
        grid: list[str] | None = typer.Option(
            None, help="override the grid (e.g. 10,50,100); with several experiments EXP=a,b, repeatable"),
        steps: int | None = typer.Option(None,
                                         help=f"steps when the grid is not steps (default {STUDY_STEPS})"),
        duration: float | None = typer.Option(None, *options.DURATION_S_FLAGS,
                                              help="audio seconds when the grid is not duration "
                                                   "(default: the model's, 10 s)"),
        prompt: str | None = typer.Option(None, help="prompt of steps/batch/... (default: the study's)"),
        captions: list[str] | None = typer.Option(
            None, help="quality: caption file(s) (file_name, caption, duration) or audiocaps / clotho "
                       "(default: both)"),
        limit: int | None = typer.Option(None, "--caption-limit", "--limit",
                                         help="quality: first N captions of each file (a campaign's "
                                              "caption_limit)"),
        audio_dir: Path = typer.Option(DEFAULT_AUDIO_DIR, help="quality: where the WAVs go"),
        save_audio: bool = typer.Option(True, "--save-audio/--no-save-audio", help="quality: write the WAVs"),
        out: Path | None = typer.Option(None, help="output table (one experiment)"),
        out_dir: Path | None = typer.Option(None, help="folder of <experiment>.csv tables "
                                                       "(default: runs; not with --out)"),
        seed: int = typer.Option(0, help="seed of the initial noise and of the run order"),
        levers: str = typer.Option(DEFAULT_SPEC, "--levers", "--optimize",
                                   help="energy levers: none | graphs | max | lever,lever (see 'tta-energy "
                                        "levers explain'); --optimize is the same option's older name"),
        min_window: float = typer.Option(0.0, *options.MIN_WINDOW_S_FLAGS,
                                         help="repeat a generation until the meter window lasts S seconds "
                                              "(default 0: each generation once, as the study measured; "
                                              f"the campaign and levers run use {MIN_WINDOW_S:g})"),
        idle_s: float = typer.Option(IDLE_BASELINE_S,
                                     help="seconds of idle-power baseline before the sweep (0: none)"),
        warmup: int = typer.Option(WARMUP_GENERATIONS,
                                   help="warm-up generations per built model (recorded, flagged)"),
        codecarbon: bool = options.CODECARBON,
        country: str = options.COUNTRY,
        time_budget: float | None = typer.Option(None, *options.TIME_BUDGET_S_FLAGS,
                                                 help="seconds after which no new generation starts"),
        keep_errors: bool = typer.Option(False, "--keep-errors", help="do not retry errored configurations"),
        trace: bool = options.TRACE,
        progress: bool = options.PROGRESS,
    ) -> None:
        checks.device(device)
        checks.weights(weights)
        country = options.codecarbon_country(ctx, codecarbon, country)
        checks.not_with(not save_audio and bool(checks.given_options(ctx, {"audio_dir": "--audio-dir"})),
                        "--audio-dir", "--no-save-audio")
        from tta_energy.experiments.distributed import context_from_env
        from tta_energy.experiments.runner import (
            SweepOptions,
            check_options,
            check_sweep_device,
            check_writable,
            run_sweep,
        )
        from tta_energy.levers.spec import parse_levers

        experiments = checks.comma_list(experiment, "--experiment", absent_means_all=False)
        repeat_counts = {}
        counts = [item for value in repeats or () for item in checks.comma_list(
            value, "--repeats", absent_means_all=False, items_are="repeat counts")]
        for name, value in per_experiment(counts, experiments, "--repeats").items():
            try:
                repeat_counts[name] = int(value)
            except ValueError:
                raise TtaError(f"--repeats {value!r} is not an integer") from None
        # each grid as written, empty items kept: the library's grid rule names them
        grids = {name: tuple(value.split(","))
                 for name, value in per_experiment(grid, experiments, "--grid").items()}
        opts = SweepOptions(
            model=model, experiments=experiments, size=size, weights=weights, device=device, dtype=dtype,
            repeats=repeat_counts, grid=grids, steps=steps, duration_s=duration, prompt=prompt,
            captions=checks.comma_list(captions, "--captions"), limit=limit, audio_dir=audio_dir,
            save_audio=save_audio, out=out,
            out_dir=out_dir, seed=seed, levers=parse_levers(levers), min_window_s=min_window, idle_s=idle_s,
            warmup=warmup,
            codecarbon=codecarbon, country=country, time_budget_s=time_budget, keep_errors=keep_errors,
            trace=trace, progress=progress)
        given = checks.given_options(ctx, {
            "steps": "--steps", "duration": "--duration-s", "dtype": "--dtype", "prompt": "--prompt",
            "captions": "--captions", "limit": "--caption-limit", "audio_dir": "--audio-dir",
            "save_audio": "--save-audio" if save_audio else "--no-save-audio"})
        check_options(opts, given)  # every value and every output (the library's rules), before torch
        check_sweep_device(opts)
        check_writable(opts, context_from_env())
        checks.cpu_full_size_warning(device, size)
        summaries = run_sweep(opts, echo=typer.echo)
        failed = failure_lines(summaries)
        for line in failed:
            typer.echo(line, err=True)
        if failed:
            sys.exit(ALL_FAILED_EXIT)
        if any(s.left for s in summaries):
            sys.exit(INCOMPLETE_EXIT)  # SystemExit passes through click in non-standalone mode
