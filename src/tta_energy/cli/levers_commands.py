"""``tta-energy levers``: the energy-levers sweep, its report, the GPU's ceiling and what a spec means."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import typer

from tta_energy.cli import checks, options
from tta_energy.cli.exits import INCOMPLETE_EXIT, NOTHING_LEFT_EXIT
from tta_energy.devices import DEVICE_HELP
from tta_energy.fileio import DEFAULT_OUT_DIR
from tta_energy.levers.spec import (
    BATCH1_SPECS,
    CEILING_MATRIX_N,
    CEILING_S,
    CPU_CEILING_MATRIX_N,
    DEFAULT_BATCHES,
    DEFAULT_REPEATS,
    DEFAULT_STEPS,
    FULL_GRID_SPECS,
    SINGLE_SPECS,
)
from tta_energy.meter import IDLE_BASELINE_S, MIN_WINDOW_S
from tta_energy.models import catalogue
from tta_energy.study import STUDY_DURATION_S

LEVERS_HELP = """Energy levers: CUDA graphs, compilation, precision, attention kernels, batching.

Specs: none (the study's default), graphs (the denoiser as a CUDA graph), max (fp16, fastest attention
backend, channels-last, fused q/k/v, CUDA graph), or a comma list of levers: fp32, fp16, bf16, compile,
compile-graphs, compile-blocks (Inductor on the denoiser's repeated blocks; with max, inside one CUDA graph),
cudagraph, sdpa-flash, sdpa-cudnn, sdpa-efficient, sdpa-math, sdpa-best, channels-last,
fuse-qkv, trim-latents (Stable Audio Open: compute only the requested length; changes the output), fp8
(float8 linear layers through torchao, compute capability 8.9+; changes the output), tf32 (the denoiser's
float32 matrix products on TF32 tensor cores)."""


def _spec_list(value: str) -> tuple[str, ...]:
    """Lever specs of an option, split at spaces or semicolons: a spec holds commas (``max,fp8``)."""
    return tuple(t.strip() for t in value.split(";" if ";" in value else " ") if t.strip())


def _folders(patterns: tuple[str, ...]) -> list[Path]:
    """Folders named or matched by glob patterns (``data/h200/levers/partplan-*``), in order, each once; a
    named folder must exist (a pattern may match none: before the first call there is nothing done)."""
    import glob

    from tta_energy.errors import TtaError

    found: dict[Path, None] = {}
    for pattern in patterns:
        if not glob.has_magic(pattern) and not Path(pattern).is_dir():
            raise TtaError(f"--done: {pattern} is not a folder (a raw levers folder, or a glob of them)")
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        found.update((Path(m), None) for m in matches)
    return list(found)


#: the options whose values a plan file replaces (its cells, repeats, duration and seed): with --plan they are
#: refused rather than silently ignored
PLAN_REPLACES: dict[str, str] = {
    "full": "--full", "batch1": "--batch1", "single": "--single", "compile_models": "--compile-models",
    "lean_models": "--lean-models", "trim": "--trim/--no-trim", "steps": "--steps", "batches": "--batches",
    "repeats": "--repeats", "duration": "--duration-s", "seed": "--seed"}
#: the price history when --history is not given: those of these tables that exist, after the same tables of
#: a plan's own out_dir (its GPU's seconds first: a cell measured there is priced from them alone; the other
#: card's levers table fills the cells its own have not measured, mostly with longer compilations: a price
#: that errs long leaves time to a call's refill, one that errs short cuts a unit)
DEFAULT_HISTORY = ("data/h200/levers.csv", "data/h200/steps.csv", "data/h200/batch.csv",
                   "data/h100/levers.csv")


def check_folder_option(path: Path | None, option: str) -> None:
    """A folder option may name a folder that does not exist yet (the run creates it), never a file, and
    must be writable: a run measures for minutes before its report is written."""
    from tta_energy.fileio import output_folder_path

    if path is not None:
        output_folder_path(path, option)


def history_paths(value: str | None, own: Path | None = None) -> list[Path]:
    """--history: the tables named ('' names none; each is checked when read by ``read_history``), else
    those of :data:`DEFAULT_HISTORY` that exist, after the same tables in ``own`` (a plan's out_dir: its own
    GPU's rows, which ``read_history`` prefers)."""
    if value is not None:
        return [Path(h) for h in checks.comma_list(value)]
    defaults = [Path(h) for h in DEFAULT_HISTORY]
    candidates = [*(own / h.name for h in defaults if own is not None), *defaults]
    found = [p for p in candidates if p.is_file()]
    return list(dict.fromkeys(p.resolve() for p in found))


def price_history(opts: object, paths: list[Path], earlier: object) -> object:
    """The measured seconds that price the cells: the tables ``paths``, at ``opts``' size and clip length,
    and the compilations the ``earlier`` calls' runs (:func:`tta_energy.levers.calls.read_earlier_runs`)
    measured only in warm-ups."""
    from tta_energy.levers.calls import history_with_cut_units
    from tta_energy.levers.plan import read_history

    history = read_history(paths, size=opts.size, duration_s=opts.duration_s)
    return history_with_cut_units(history, earlier)


def dry_run_text(opts: object, history_rows: object, earlier: object) -> list[str]:
    """What ``levers run --dry-run`` prints: each cell left priced (from ``history_rows``,
    :func:`price_history`), the totals, and the device calls."""
    from tta_energy.levers.calls import merge_units, plan_calls_for
    from tta_energy.levers.plan import estimate_plan, estimate_text, stored_reference_steps

    calls = plan_calls_for(opts, history_rows, earlier)
    left = merge_units(u for call in calls.calls for u in call)
    lines: list[str] = []
    if left:
        est = estimate_plan(left, history_rows, min_window_s=opts.min_window_s,
                            stored_references=stored_reference_steps(opts.references_dir, left, opts.size))
        lines += [*estimate_text(est), ""]
    return lines + calls.text()


def register(app: typer.Typer) -> None:
    levers_app = typer.Typer(help=LEVERS_HELP, no_args_is_help=True)
    app.add_typer(levers_app, name="levers")

    @levers_app.command("run")
    def run_cmd(
        ctx: typer.Context,
        models: list[str] | None = typer.Option(
            None, "--model", "-m", help="models, a comma list or repeated (with --plan: which of its models, "
                                        "default all of them) " + catalogue.help_text()),
        out_dir: Path = typer.Option(DEFAULT_OUT_DIR / "levers",
                                     help="folder of the raw tables (the committed data/h200/levers only "
                                          "when named)"),
        full: str = typer.Option(" ".join(FULL_GRID_SPECS),
                                 help="specs measured over the whole grid (space separated)"),
        batch1: str = typer.Option(" ".join(BATCH1_SPECS),
                                   help="specs measured at batch 1, every step count"),
        single: str = typer.Option(" ".join(SINGLE_SPECS),
                                   help="specs measured at the largest step count, batch 1 ('' for none)"),
        compile_models: str = typer.Option("", help="models that also get compile and compile-graphs "
                                                    "(Inductor; minutes of compilation each)"),
        lean_models: str = typer.Option("", help="models measured with the full-grid specs only "
                                                 "(e.g. tango2, tango's architecture)"),
        trim: bool = typer.Option(True, "--trim/--no-trim", help="Stable Audio Open: trim-latents specs"),
        steps: str = typer.Option(",".join(map(str, DEFAULT_STEPS)), help="step counts"),
        batches: str = typer.Option(",".join(map(str, DEFAULT_BATCHES)), help="waveforms per prompt"),
        repeats: int = typer.Option(DEFAULT_REPEATS, help="measured repeats per cell"),
        duration: float = typer.Option(STUDY_DURATION_S, *options.DURATION_S_FLAGS,
                                       help="audio seconds per clip"),
        seed: int = typer.Option(0, help="seed of the noise (same for every configuration) and of the order"),
        size: str = typer.Option("full", help=" or ".join(catalogue.SIZES)),
        weights: str = typer.Option("random", help="'random', a local weights folder or a hub id (one model "
                                                   "only)"),
        device: str | None = typer.Option(None, help=DEVICE_HELP),
        ceiling_s: float = typer.Option(CEILING_S,
                                        help="seconds of the bf16 matmul ceiling loop (start and end)"),
        ceiling_n: int | None = typer.Option(
            None, help=f"matrix size of the ceiling loop (default {CEILING_MATRIX_N} on a GPU, "
                       f"{CPU_CEILING_MATRIX_N} on a CPU, where its energy is not measured)"),
        idle_s: float = typer.Option(IDLE_BASELINE_S, help="seconds of idle-power baseline"),
        min_window: float = typer.Option(MIN_WINDOW_S, *options.MIN_WINDOW_S_FLAGS,
                                         help="repeat shorter generations inside one meter window (s)"),
        profile: bool = typer.Option(True, "--profile/--no-profile",
                                     help="kernel profile of one step of none and of the fastest "
                                          "configuration that keeps the computation (a GPU's)"),
        time_budget: float | None = typer.Option(None, *options.TIME_BUDGET_S_FLAGS,
                                                 help="seconds after which no generation starts"),
        report: bool = typer.Option(True, "--report/--no-report", help="write levers.csv/summary/figure"),
        report_dir: Path | None = typer.Option(None, help="where the report goes (default: OUT_DIR/..)"),
        dry_run: bool = typer.Option(False, "--dry-run",
                                     help="print each cell's predicted seconds, the total and the split into "
                                          "device calls, and exit"),
        plan: Path | None = typer.Option(None, help="a levers plan file (TOML, e.g. "
                                                    "campaigns/h200_levers.toml): models, specs and cells "
                                                    "(not with the tier options it replaces)"),
        references: str = typer.Option("", help="folder of the stored fp32 references, reused where their "
                                                "key matches (scripts/gpu_levers.sh plan: "
                                                "data/h200/levers/references); '': computed every call"),
        compile_cache: Path | None = typer.Option(None, help="folder for Inductor's and Triton's caches "
                                                             "(carry it to the GPU machine and back)"),
        history: str | None = typer.Option(
            None, help="tables whose measured seconds price the cells (comma list: levers tables, and the "
                       "sweeps' run tables for the study default; default: the --plan's out_dir tables, then "
                       "those of " + ", ".join(DEFAULT_HISTORY) + " that exist; '': none)"),
        done: str = typer.Option("", help="with --plan: raw levers folders (comma list, globs allowed) whose "
                                          "measured cells are not measured again (scripts/gpu_levers.sh "
                                          "plan: 'data/h200/levers/partplan-*')"),
    ) -> None:
        """Measure every lever for each model: energy, equivalence with fp32, FLOP/J vs the ceiling. A model
        whose sweep fails never loses the others' rows; the run then exits with status 3, naming it. With
        --plan: exit status 6 when every cell of the plan is done (nothing is measured or written), 2 when
        no unit left fits --time-budget-s."""
        from tta_energy.levers.experiment import (
            TIER_OPTIONS,
            LeversOptions,
            check_device_levers,
            check_options,
            run_levers,
        )
        from tta_energy.levers.report import build_report
        from tta_energy.levers.spec import LeversError

        checks.device(device)
        opts = LeversOptions(
            models=checks.comma_list(models, "--model", absent_means_all=plan is not None), out_dir=out_dir,
            full_specs=_spec_list(full), batch1_specs=_spec_list(batch1), single_specs=_spec_list(single),
            compile_models=checks.comma_list(compile_models), lean_models=checks.comma_list(lean_models),
            trim=trim,
            steps=checks.comma_integers(steps, "--steps"),
            batches=checks.comma_integers(batches, "--batches"), repeats=repeats,
            duration_s=duration, seed=seed, size=size, weights=weights, device=device, ceiling_s=ceiling_s,
            ceiling_n=ceiling_n, idle_s=idle_s, min_window_s=min_window, profile=profile,
            time_budget_s=time_budget, references_dir=Path(references) if references else None,
            compile_cache=compile_cache, progress=typer.echo)
        # every option is checked here, before any file or folder is written
        done_folders = _folders(checks.comma_list(done))
        if done_folders and plan is None:
            raise LeversError("--done needs --plan (it skips the plan's cells that earlier calls measured)")
        replaced = checks.given_options(ctx, PLAN_REPLACES) if plan is not None else []
        if replaced:
            raise LeversError(f"{', '.join(replaced)}: {plan} sets the cells, repeats, duration and seed; "
                              "give them in the plan file, or leave --plan out")
        if report_dir is not None and not report:
            raise LeversError("--report-dir with --no-report: no report is written; give one of them")
        for folder, option in ((out_dir, "--out-dir"), (report_dir, "--report-dir"),
                               (opts.references_dir, "--references"), (compile_cache, "--compile-cache")):
            check_folder_option(folder, option)
        plan_file = None
        if plan is not None:
            from tta_energy.levers.plan import read_levers_plan

            plan_file = read_levers_plan(plan)
            opts = plan_file.applied_to(opts, plan)
        check_options(opts, plan)
        if device is not None or not dry_run:  # a dry run on no device prices the cells for a GPU
            from tta_energy.devices import chosen_device

            named = checks.given_options(ctx, {field.removesuffix("_specs"): option
                                               for option, field in TIER_OPTIONS.items()})
            check_device_levers(opts, chosen_device(device), named, plan)
        tables = history_paths(history, plan_file.out_dir if plan_file is not None else None)
        from tta_energy.levers.calls import read_earlier_runs

        earlier = read_earlier_runs(done_folders, size=opts.size, duration_s=opts.duration_s, seed=opts.seed,
                                    weights=opts.weights)
        history_rows = (price_history(opts, tables, earlier) if dry_run or plan is not None or history
                        else None)
        if dry_run:
            for line in dry_run_text(opts, history_rows, earlier):
                typer.echo(line)
            return
        refill = None
        if plan is not None:  # this call measures the plan's first call of what is left
            from tta_energy.levers.calls import plan_calls_for, plan_refill

            calls = plan_calls_for(opts, history_rows, earlier)
            done = f"({calls.done} of {calls.total} cells done)"
            if calls.waiting and not calls.calls:  # as a campaign run's budget that fits no cell: refused
                smallest_s = min(u.seconds for u in calls.waiting) + calls.overhead_s
                raise LeversError(
                    f"--time-budget-s {calls.budget_s:.0f} s: no unit left of levers plan {plan} fits it; "
                    f"{len(calls.waiting)} unit(s) wait for a call of {calls.full_call_s:.0f} s, the "
                    f"smallest {smallest_s:.0f} s with start-up {done}")
            if not calls.calls:
                typer.echo(f"levers plan {plan}: nothing left to measure {done}")
                sys.exit(NOTHING_LEFT_EXIT)
            if opts.time_budget_s is not None:
                typer.echo("this call: " + "; ".join(u.label() for u in calls.calls[0]))
            chosen = calls.next_call() if opts.time_budget_s is not None else calls.all_calls()
            if opts.time_budget_s is not None:  # time left after the first call's work: the next units
                refill = plan_refill(opts, history_rows, earlier, first=chosen)
            opts = dataclasses.replace(opts, declared=chosen, models=tuple(chosen),
                                       model_seconds=calls.model_seconds() if opts.time_budget_s else None)
        from tta_energy.cli.checks import cpu_full_size_warning

        cpu_full_size_warning(device, size)
        result = run_levers(opts, refill)
        if report:
            paths = build_report([result.folder], report_dir or result.folder.parent)
            typer.echo("wrote " + ", ".join(str(p) for p in paths))
        if result.failed_models:
            typer.echo(f"error: the levers sweep of {', '.join(result.failed_models)} failed (the reason is "
                       "above); the other models' rows are kept", err=True)
            sys.exit(INCOMPLETE_EXIT)

    @levers_app.command("report")
    def report_cmd(
        raw: list[Path] = typer.Argument(..., help="folder(s) written by 'levers run'"),
        out_dir: Path = typer.Option(DEFAULT_OUT_DIR, help="where levers.csv, levers_summary.md, "
                                                             "levers.png go (data/h200 only when named)"),
    ) -> None:
        """Combine raw folders (e.g. two GPU runs) into levers.csv, levers_summary.md and levers.png."""
        from tta_energy.errors import TtaError
        from tta_energy.levers.report import build_report

        missing = [str(r) for r in raw if not r.is_dir()]
        if missing:
            raise TtaError(f"not a folder: {', '.join(missing)}")
        check_folder_option(out_dir, "--out-dir")
        paths = build_report(raw, out_dir)
        typer.echo("wrote " + ", ".join(str(p) for p in paths))

    @levers_app.command("ceiling")
    def ceiling_cmd(
        seconds: float = typer.Option(CEILING_S, "--ceiling-s", "--seconds",
                                      help="length of the matmul loop, s (levers run's --ceiling-s)"),
        n: int = typer.Option(CEILING_MATRIX_N, "--ceiling-n", "--n",
                              help="matrix size (levers run's --ceiling-n)"),
        device: str | None = typer.Option(None, help="cuda or cuda:N (default: cuda); a CPU is refused"),
        out: Path | None = typer.Option(None, help="append the result to this CSV"),
        precision: str = typer.Option("bf16", help="operands: bf16, or fp8 (compute capability 8.9+)"),
    ) -> None:
        """The GPU's ceiling: bf16 (or fp8) matrix-product TFLOP per joule, measured with the project's
        meter. Needs an NVIDIA GPU: a CPU is refused (energy is not measured there)."""
        from tta_energy.levers.ceiling import measure_ceiling_once

        row = measure_ceiling_once(device=device, seconds=seconds, n=n, out=out, precision=precision)
        typer.echo(json.dumps(row, indent=1, default=str))

    @levers_app.command("explain")
    def explain_cmd(spec: str = typer.Argument(..., help="a lever spec, e.g. max or compile,bf16")) -> None:
        """Print what a lever spec switches on (parsed, without running anything)."""
        from tta_energy.levers.spec import describe_levers, parse_levers

        typer.echo(json.dumps(describe_levers(parse_levers(spec)), indent=1))
