"""Bringing a device call's campaign rows home: merge the tables a call returned into the campaign's folder.

A device call runs on a copy of the repository and returns its copy of the campaign's folder (tables, runs
log, traces). :func:`collect_call` merges that copy into the local one, so the next call starts from every row
measured so far:

- each experiment's run table, with the shard files an interrupted torchrun run left beside it
  (``steps.rank1.csv``): one measured row per (configuration, repeat), as :func:`.resume.deduplicate`
  decides (a row measured here and there is kept once; warm-ups kept). The new rows are appended in the order
  they were measured, so the lines already here stay as they are; only where the returned copy supersedes a
  local row (an ``error`` row measured again) is the table rewritten, sorted, by :func:`.resume.merge_into`;
  the table's line counts the new rows of runs that no runs log names (:func:`unlogged_note`);
- the runs log: the returned lines whose ``run_id`` is not logged yet, appended in their order;
- traces: the returned files not present yet.

Every returned table is read against the schema, and its rows against the campaign's GPU, size and weights
(:func:`foreign_rows`), before anything is written, so an invalid or foreign one leaves the campaign's folder
as it was. It holds the same locks as ``campaign run`` while it writes, and collecting the
same folder twice adds nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy import schema
from tta_energy.devices import names_gpu
from tta_energy.errors import TtaError
from tta_energy.experiments import distributed, resume
from tta_energy.experiments.campaign_plan import read_runs_log
from tta_energy.experiments.campaign_spec import RUNS_LOG, Campaign
from tta_energy.fileio import warn_if_cut

TRACES = "traces"


def merge_table(local: Path, theirs: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """Bring the rows ``theirs`` (a returned run table, read) into the table ``local``: (the rows it did not
    hold before, rows added net of the local rows they superseded, rows in all)."""
    ours = schema.read_runs(local) if local.is_file() else theirs.iloc[0:0]
    merged = resume.deduplicate(pd.concat([ours, theirs], ignore_index=True))
    ours_keys, merged_keys = set(schema.row_keys(ours)), schema.row_keys(merged)
    new = merged[~merged_keys.isin(ours_keys)].sort_values("timestamp", kind="stable")
    if not local.is_file() or not ours_keys <= set(merged_keys):  # new, or a local row superseded: rewrite
        schema.write_runs(local, resume.sort_table(merged))
        return new, len(merged) - len(ours), len(merged)
    for record in new.to_dict("records"):
        schema.append_row(local, {k: (np.nan if v is pd.NA else v) for k, v in record.items()})
    return new, len(new), len(ours) + len(new)


def foreign_rows(campaign: Campaign, rows: pd.DataFrame) -> str | None:
    """Why some of ``rows`` cannot enter the campaign's tables, or None: measured on another GPU than the one
    the campaign names (``gpu``), or of another model size or weights than it declares (``campaign run``
    measures only those, so such rows come from a sweep or another campaign's copy)."""
    why = []
    gpus = rows["gpu_name"].fillna("").astype(str)
    if campaign.gpu:
        other = sorted(set(gpus[~gpus.map(lambda name: names_gpu(campaign.gpu, name))]))
        if other:
            why.append(f"measured on {', '.join(name or 'no GPU' for name in other)}, not an {campaign.gpu}")
    for column in ("size", "weights"):
        other = sorted(set(rows[column].astype(str)) - {getattr(campaign, column)})
        if other:
            why.append(f"{column} {', '.join(other)}, not {getattr(campaign, column)}")
    return "; ".join(why) or None


def unlogged_note(rows: pd.DataFrame, logged: set[str]) -> str:
    """What a table's merge line adds about ``rows`` whose run no runs log names (neither here nor in the
    returned copy): a call killed outright writes rows but no log line, and rows measured outside the
    campaign (a sweep's copy) have none either, so they are merged and said, not refused."""
    unlogged = rows[~rows["run_id"].astype(str).isin(logged)]
    if unlogged.empty:
        return ""
    runs = sorted(set(unlogged["run_id"].astype(str)))
    listed = ", ".join(runs[:3]) + (", ..." if len(runs) > 3 else "")
    return (f"; {len(unlogged)} of them from {len(runs)} run(s) no runs log names ({listed}: a call killed "
            "outright, or rows measured outside the campaign)")


def collect_call(campaign: Campaign, returned: Path) -> list[str]:
    """Merge ``returned`` (a device call's copy of the campaign's folder) into ``campaign.out_dir``; one line
    per table, the runs log and the traces saying what was added."""
    from tta_energy.experiments.campaign import append_jsonl, campaign_locks

    returned = Path(returned)
    if not returned.is_dir():
        raise TtaError(f"{returned}: not a folder (the campaign folder a device call returned)")
    if returned.resolve() == Path(campaign.out_dir).resolve():
        raise TtaError(f"{returned} is the campaign's own folder: give the copy a device call returned")
    experiments = list(dict.fromkeys(e.experiment for e in campaign.entries))
    tables = {e: returned / campaign.table(e).name for e in experiments}
    sources = {e: [p for p in (table, *resume.shard_paths(table)) if p.is_file()]
               for e, table in tables.items()}
    if not any(sources.values()) and not (returned / RUNS_LOG).is_file():
        raise TtaError(f"{returned}: holds none of the campaign's tables "
                       f"({', '.join(p.name for p in tables.values())}) nor {RUNS_LOG}")
    for path in (*(p for paths in sources.values() for p in paths), *map(campaign.table, experiments)):
        warn_if_cut(path)  # read without its row in flight (a local one loses it at the next append)
    # every returned table and both runs logs are read (and validated) before anything is written, the
    # campaign's folder made or locked: an invalid one stops the merge
    frames = {e: pd.concat([schema.read_runs(p) for p in paths], ignore_index=True)
              for e, paths in sources.items() if paths}
    for experiment, rows in frames.items():
        why = foreign_rows(campaign, rows)
        if why:
            raise TtaError(f"{tables[experiment]}: rows {why}: campaign {campaign.name} ({campaign.path}) "
                           "holds only its own; nothing was merged")
    calls = read_runs_log(returned / RUNS_LOG)
    log = campaign.out_dir / RUNS_LOG
    read_runs_log(log)
    said: list[str] = []
    with campaign_locks(campaign, experiments, distributed.context_from_env({})):
        known = {str(line.get("run_id")) for line in read_runs_log(log)}  # as it is now, under the lock
        logged = known | {str(line.get("run_id")) for line in calls}
        for experiment, theirs in frames.items():
            local = campaign.table(experiment)
            new, added, total = merge_table(local, theirs)
            said.append(f"{local}: {added:+d} rows ({total} in all){unlogged_note(new, logged)}")
        new = [line for line in calls if str(line.get("run_id")) not in known]
        for line in new:
            append_jsonl(log, line)
        said.append(f"{log}: {len(new)} call(s) added")
        copied = 0
        if (returned / TRACES).is_dir():
            (campaign.out_dir / TRACES).mkdir(parents=True, exist_ok=True)
            for trace in sorted((returned / TRACES).iterdir()):
                target = campaign.out_dir / TRACES / trace.name
                if trace.is_file() and not target.exists():
                    shutil.copy2(trace, target)
                    copied += 1
        said.append(f"{campaign.out_dir / TRACES}: {copied} trace(s) added")
    return said
