"""``tta-energy campaign plan|run|status|cost|collect``: the measurement campaign a TOML file declares."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from tta_energy.cli import checks, options
from tta_energy.cli.exits import INCOMPLETE_EXIT, NOTHING_LEFT_EXIT
from tta_energy.errors import TtaError

CAMPAIGN_HELP = """A measurement campaign: the experiments x models a folder of run tables must hold, with
repeats until the 95% confidence interval of each cell's mean is within the target (campaigns/h200.toml).

plan: what is missing and its estimated GPU time; run: measure it (resumable, --time-budget-s, torchrun);
status: cells done and at target (--json: one object per cell); cost: GPU time per experiment and the
overhead of the calls, from campaign_runs.jsonl and the rows each call wrote; collect: merge what a device
call returned into the campaign's folder."""

DEFAULT_CAMPAIGN = Path("campaigns/h200.toml")


def _load(path: Path, out_dir: Path | None):  # noqa: ANN202 - Campaign, imported lazily
    """The campaign file, its folder replaced by ``--out-dir``; weights are checked as ``sweep --weights``
    is, and a folder that names a file is refused (an absent one is fine: nothing measured yet, or made by
    ``run``/``collect``)."""
    from dataclasses import replace

    from tta_energy.experiments.campaign import CampaignError, load_campaign
    from tta_energy.fileio import folder_path

    campaign = load_campaign(path)
    try:
        checks.weights(campaign.weights)
    except TtaError as exc:
        raise CampaignError(f"{campaign.path}: {exc}") from None
    if out_dir is not None:
        campaign = replace(campaign, out_dir=out_dir)
    folder_path(campaign.out_dir, "--out-dir" if out_dir is not None else f"{campaign.path}: out_dir")
    return campaign


def _reports(path: Path, out_dir: Path | None, model: list[str] | None, experiment: list[str] | None):  # noqa: ANN202
    from tta_energy.experiments.campaign import RunOptions, check_run_options
    from tta_energy.experiments.campaign_plan import campaign_state

    campaign = _load(path, out_dir)
    models, experiments = checks.comma_list(model, "--model"), checks.comma_list(experiment, "--experiment")
    check_run_options(campaign, RunOptions(models=models, experiments=experiments))
    return campaign, *campaign_state(campaign, models, experiments)


CAMPAIGN_OPT = typer.Option(DEFAULT_CAMPAIGN, "--campaign", "-c", help="the campaign file (TOML)")
OUT_DIR_OPT = typer.Option(None, "--out-dir", help="folder of the tables (default: the campaign's out_dir)")
MODEL_OPT = typer.Option(None, "--model", "-m", help="only these models (comma list, repeatable)")
EXPERIMENT_OPT = typer.Option(None, "--experiment", "-e", help="only these experiments (comma list)")


def _cost(spec, frames: list = ()) -> dict:  # noqa: ANN001 - Campaign, imported lazily
    """What the campaign's calls cost; ``frames``: its tables already read (none read twice)."""
    from tta_energy.experiments.campaign import cost_of_calls

    return cost_of_calls(spec.out_dir, frames)


def _header(spec) -> None:  # noqa: ANN001 - Campaign, imported lazily
    """Which campaign and folder; a folder not made yet is said (a mistyped --out-dir shows nothing done)."""
    typer.echo(f"campaign {spec.name} ({spec.path}), tables in {spec.out_dir}")
    if not spec.out_dir.exists():
        typer.echo(f"({spec.out_dir} does not exist yet: nothing measured there)")


def _seconds(s: float) -> str:
    return "n/a" if s != s else f"{s:,.0f}"  # NaN: no row to estimate from


def register(app: typer.Typer) -> None:
    campaign_app = typer.Typer(help=CAMPAIGN_HELP, no_args_is_help=True)
    app.add_typer(campaign_app, name="campaign")

    @campaign_app.command("plan")
    def plan_cmd(campaign: Path = CAMPAIGN_OPT, out_dir: Path | None = OUT_DIR_OPT,
                 model: list[str] | None = MODEL_OPT, experiment: list[str] | None = EXPERIMENT_OPT) -> None:
        """Per experiment: cells, cells done, generations missing and their estimated GPU seconds."""
        from tta_energy.experiments.campaign import plan_table
        from tta_energy.experiments.campaign_plan import pace_range_text, run_paces

        spec, reports, est, frames = _reports(campaign, out_dir, model, experiment)
        rows, overhead = plan_table(reports, est)
        _header(spec)
        typer.echo(f"{'experiment':<12}{'cells':>7}{'done':>7}{'missing gens':>14}{'est. GPU s':>12}")
        for r in rows:
            typer.echo(f"{r['experiment']:<12}{r['cells']:>7}{r['done']:>7}{r['generations_missing']:>14}"
                       f"{_seconds(r['estimated_s']):>12}")
        typer.echo(f"{'model builds + warm-ups':<40}{_seconds(overhead):>12}")
        total = sum(r["estimated_s"] for r in rows) + overhead
        typer.echo(f"{'total':<12}{sum(r['cells'] for r in rows):>7}{sum(r['done'] for r in rows):>7}"
                   f"{sum(r['generations_missing'] for r in rows):>14}{_seconds(total):>12}")
        if paced := pace_range_text(total - overhead, overhead, run_paces(frames)):
            typer.echo(paced)

    @campaign_app.command("status")
    def status_cmd(campaign: Path = CAMPAIGN_OPT, out_dir: Path | None = OUT_DIR_OPT,
                   model: list[str] | None = MODEL_OPT, experiment: list[str] | None = EXPERIMENT_OPT,
                   as_json: bool = typer.Option(False, "--json", help="one JSON object per cell, one a line")
                   ) -> None:
        """Cells done (the stopping rule met) and at target (interval within the target), per experiment."""
        spec, reports, _, frames = _reports(campaign, out_dir, model, experiment)
        if as_json:
            for r in reports:
                typer.echo(json.dumps(r.as_dict()))
            return
        from tta_energy.experiments.campaign import overhead_text, status_table

        _header(spec)
        typer.echo(f"{'experiment':<12}{'cells':>7}{'done':>7}{'at target':>11}")
        for row in status_table(reports):
            typer.echo(f"{row['experiment']:<12}{row['cells']:>7}{row['done']:>7}{row['at_target']:>11}")
        cost = _cost(spec, frames)
        if cost["calls"]:
            typer.echo(f"{cost['calls']} campaign call(s): {cost['gpu_s']:,.0f} GPU s, overhead "
                       f"{overhead_text(cost)} (see `tta-energy campaign cost`)")

    @campaign_app.command("cost")
    def cost_cmd(campaign: Path = CAMPAIGN_OPT, out_dir: Path | None = OUT_DIR_OPT,
                 as_json: bool = typer.Option(False, "--json", help="one JSON object")) -> None:
        """What the campaign's calls cost (from campaign_runs.jsonl): GPU seconds per experiment, and the
        overhead = GPU time of the calls / seconds inside their measured windows (warm-ups included, read
        from the rows each call wrote)."""
        from tta_energy.experiments.campaign import RUNS_LOG, overhead_text
        from tta_energy.experiments.campaign_plan import outside_windows_text

        spec = _load(campaign, out_dir)
        log = spec.out_dir / RUNS_LOG
        if not spec.out_dir.is_dir():
            raise TtaError(f"{spec.out_dir}: no such folder (the campaign's tables and its {RUNS_LOG})")
        if not log.is_file():
            raise TtaError(f"no {log}: no campaign call is logged there (campaign run writes it; give the "
                           "campaign's folder with --out-dir)")
        cost = _cost(spec)
        if as_json:
            typer.echo(json.dumps(cost))
            return
        typer.echo(f"campaign {spec.name}: {cost['calls']} call(s) logged in {log}")
        typer.echo(f"{'experiment':<12}{'calls':>7}{'rows':>7}{'GPU s':>10}")
        for row in cost["by_experiment"]:
            typer.echo(f"{row['experiment']:<12}{row['calls']:>7}{row['rows']:>7}{row['gpu_s']:>10,.0f}")
        typer.echo(f"{'total':<26}{cost['gpu_s']:>10,.0f}")
        typer.echo(f"measured windows {cost['measured_s']:,.0f} s; overhead {overhead_text(cost)}")
        if outside := outside_windows_text(cost):
            typer.echo(outside)

    @campaign_app.command("collect")
    def collect_cmd(returned: Path = typer.Argument(..., help="a device call's copy of the campaign's folder "
                                                             "(e.g. the unpacked data/h200 it returned)"),
                    campaign: Path = CAMPAIGN_OPT, out_dir: Path | None = OUT_DIR_OPT) -> None:
        """Merge the tables, runs log and traces a device call returned into the campaign's folder (each
        measured row once; collecting twice adds nothing)."""
        from tta_energy.experiments.campaign_collect import collect_call

        for line in collect_call(_load(campaign, out_dir), returned):
            typer.echo(line)

    @campaign_app.command("run")
    def run_cmd(ctx: typer.Context, campaign: Path = CAMPAIGN_OPT, out_dir: Path | None = OUT_DIR_OPT,
                model: list[str] | None = MODEL_OPT, experiment: list[str] | None = EXPERIMENT_OPT,
                time_budget: float | None = typer.Option(
                    None, *options.TIME_BUDGET_S_FLAGS,
                    help="seconds of wall time (model builds and warm-ups included) after which no "
                         "generation starts"),
                device: str | None = options.DEVICE, codecarbon: bool = options.CODECARBON,
                country: str = options.COUNTRY, trace: bool = options.TRACE,
                progress: bool = options.PROGRESS,
                ) -> None:
        """Measure what the campaign misses, in seeded rounds over its unfinished cells; resumable. Exit
        status 3 when cells are left unfinished (the time budget stopped it, or errors: run the same command
        again), 6 when every cell was already done (nothing is measured); a budget in which no cell fits is
        refused before anything is built (exit 2, naming the smallest useful budget)."""
        from tta_energy.experiments.campaign import RunOptions, run_campaign

        device = checks.device(device)
        country = options.codecarbon_country(ctx, codecarbon, country)
        spec = _load(campaign, out_dir)
        ro = RunOptions(models=checks.comma_list(model, "--model"),
                        experiments=checks.comma_list(experiment, "--experiment"),
                        time_budget_s=time_budget, device=device, codecarbon=codecarbon, country=country,
                        trace=trace, progress=progress)
        result = run_campaign(spec, ro, echo=typer.echo)
        if result.nothing_left:
            sys.exit(NOTHING_LEFT_EXIT)
        if result.unfinished:
            sys.exit(INCOMPLETE_EXIT)
