"""A levers plan cut into pieces that each fit one device call, and what earlier calls already measured.

A levers table is larger than one lent GPU's call (compilation alone takes minutes per model and shape), so
``levers run --plan PLAN --time-budget-s S`` measures it over several calls, each choosing what is left:

- a **unit** is one model at one batch size: its declared specs at that batch, with the study default
  (``none``) measured in the same call wherever the plan declares it there, because every reduction is taken
  against the default of the same run (the same process, the same host state). A unit larger than a call is
  split into several, each with its own ``none``;
- a cell (model, spec, steps, batch) is **done** when one earlier run holds ``repeats`` measured generations
  of it and, where the plan declares ``none`` at the same steps and batch, ``none``'s own repeats; or when an
  earlier run found the spec to be the same configuration as another; or when it could not be applied in
  :data:`FAILED_RUNS_SETTLE` earlier runs (``levers_configs.csv``), or failed in its warm-up or a generation
  in as many runs that measured none of it (its runs rows: out of memory, say; :func:`failures`): one
  failure may be passing (memory another unit of the process held), so the next call tries it once more
  and the dry run says so; or when, at that batch, it (or the default it is compared with) lost the
  process's CUDA context on :data:`CONTEXT_LOSSES_SETTLE` cards, or on the card this run measures on
  (:func:`tta_energy.levers.tables.context_losses`; every cell of the model where its fp32 reference lost
  it, since each unit of the model starts with the reference): a loss on one card may be that card's, so
  another card tries the configuration once more; a loss on two is the configuration's, and trying it again
  could cost a whole call, so it is reported (the dry run, the summary) and left out;
- :func:`pack_calls` puts the units, in the plan's order (batch 1 first: the targets' cells), into calls of
  ``call_budget_s`` first-fit; the dry run prints every call, and a run measures the first one;
- a run whose first call ends before its time budget (a compilation found in the cache, an overestimate)
  goes on with what fits the time left (:func:`plan_refill`): the plan is cut again, with the cells this
  call measured or tried counted as done.

Units are priced as :func:`tta_energy.levers.plan.estimate_plan` prices them alone (measured rows, else
scaled, else the catalogue's relative cost), each declared entry once while a unit is split; a model's fp32
reference and step profiles count in its first unit. A compilation that a unit cut by its time budget measured
only in its warm-ups prices the next calls too (:func:`history_with_cut_units`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tta_energy import schema
from tta_energy.levers.plan import (
    Cells,
    Declared,
    entry_rows,
    profiles_row,
    reference_rows,
    with_warmup_compilations,
)
from tta_energy.levers.spec import DEFAULT_SPEC, REFERENCE_SPEC
from tta_energy.levers.tables import (
    COMPILE_FILE,
    CONFIGS_FILE,
    RUNS_FILE,
    context_losses,
    failure_where,
    generation_failures,
    read_side,
    read_side_table,
    unique_folders,
)
from tta_energy.meter import MIN_WINDOW_S
from tta_energy.meter.sources import bare_uuid

if TYPE_CHECKING:
    from tta_energy.levers.experiment import LeversOptions

#: the status of a spec a run found to be the same configuration as another (``same as max``)
SAME_AS = "same as"
#: in how many runs a spec must fail to be applied before later calls stop trying it: a lever the model
#: lacks fails every time, while one failure may be passing (out of memory, a stale reference)
FAILED_RUNS_SETTLE = 2
#: on how many cards a configuration must lose the process's CUDA context before every later call leaves it
#: out at that batch size: a loss on one card may be that card's (a fault of the machine), a loss on two is
#: the configuration's; a card that lost it does not try it again
CONTEXT_LOSSES_SETTLE = 2

Cell = tuple[str, str, int, int]  # (model, spec, steps, batch)
Entry = tuple[str, Cells, int]  # (spec, cells, repeats), as a plan declares it


@dataclass(frozen=True)
class CallUnit:
    """One model at one batch size: the declared entries measured together, and their predicted seconds.

    ``follows`` names a model of the same denoiser (:func:`tta_energy.levers.plan.same_denoiser`) whose unit
    at the same batch size comes right before this one, in the same call: this unit is priced without the
    compilations of the specs that unit compiles (:func:`plan_units`), and is packed with it."""

    model: str
    batch: int
    entries: tuple[Entry, ...]
    seconds: float
    follows: str | None = None

    @property
    def specs(self) -> tuple[str, ...]:
        return tuple(spec for spec, _, _ in self.entries)

    def label(self) -> str:
        reuse = f", reusing {self.follows}'s compilations" if self.follows else ""
        return f"{self.model} batch {self.batch}: {', '.join(self.specs)} ({self.seconds:.0f} s{reuse})"


# ---------------------------------------------------------------------------------------------------------
# What earlier calls measured
# ---------------------------------------------------------------------------------------------------------
def _read(path: Path) -> pd.DataFrame:
    if path.name == RUNS_FILE:
        return schema.read_runs(path)
    return read_side_table(path)


@dataclass(frozen=True)
class EarlierRuns:
    """What raw levers folders hold of the runs of one model size, weights, clip duration and seed, read
    once (:func:`read_earlier_runs`): their rows (warm-ups and errors included), configuration rows and
    compilation rows."""

    rows: pd.DataFrame
    configs: pd.DataFrame
    compiles: pd.DataFrame

    def with_runs(self, other: EarlierRuns) -> EarlierRuns:
        """These runs and the runs of ``other`` that are not among them (a folder read again after a run
        wrote to it)."""
        known = set(self.rows["run_id"].astype(str))

        def joined(mine: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
            new = theirs[~theirs["run_id"].astype(str).isin(known)]
            parts = [df for df in (mine, new) if not df.empty]
            return pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else mine)

        return EarlierRuns(joined(self.rows, other.rows), joined(self.configs, other.configs),
                           joined(self.compiles, other.compiles))

    def settle(self, declared: Declared, card: str | None = None) -> Settled:
        """What these runs settle of the declared cells (see the module's rules). ``card``: the bare UUID of
        the card the next run measures on ('' for none, a CPU; None: not known), which does not retry what
        lost the CUDA context on it."""
        measured = _measured(self.rows, declared)
        fails = failures(self.rows, self.configs, declared)
        losses = loss_cards(context_losses(self.rows), card)
        return Settled(measured, fails, measured | _left_out(self.configs, declared, losses, fails), losses)

    def done(self, declared: Declared, card: str | None = None) -> set[Cell]:
        """The declared cells these runs settle, measured or left out (:meth:`settle`)."""
        return self.settle(declared, card).done


@dataclass(frozen=True)
class Settled:
    """What earlier runs settle of a plan's declared cells (:meth:`EarlierRuns.settle`)."""

    measured: set[Cell]  # measured with their repeats and, where declared, ``none``'s in the same run
    fails: dict[Cell, dict[str, str]]  # per cell the runs that failed it and why (:func:`failures`)
    done: set[Cell]  # measured, or left out (another spec, failed or lost the context too often)
    # per (model, spec, batch) that lost the CUDA context: its rows, what the next run does (loss_cards)
    losses: dict[tuple[str, str, int], tuple[pd.DataFrame, str]]


def read_earlier_runs(folders: Iterable[Path], *, size: str, duration_s: float, seed: int,
                      weights: str = "random") -> EarlierRuns:
    """The runs in the raw levers folders ``folders`` of model size ``size``, weights ``weights``, clip
    duration ``duration_s`` and seed ``seed``."""
    folders = unique_folders(folders)
    runs, configs = [], []
    for folder in folders:
        if (folder / RUNS_FILE).is_file():
            runs.append(_read(folder / RUNS_FILE))
        if (folder / CONFIGS_FILE).is_file():
            configs.append(_read(folder / CONFIGS_FILE))
    rows = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame(columns=["run_id", "status"])
    if runs:
        rows = rows[(rows["size"] == size) & (rows["weights"].astype(str) == weights)
                    & (pd.to_numeric(rows["seed"]) == seed)
                    & ((pd.to_numeric(rows["duration_s"]) - duration_s).abs() < 1e-9)]
    matching = set(rows["run_id"].astype(str))  # any row says the run's settings: warm-ups, errors too
    cfg = pd.concat(configs, ignore_index=True) if configs else pd.DataFrame(columns=["run_id"])
    compiles = read_side(folders, COMPILE_FILE)
    if compiles.empty:
        compiles = pd.DataFrame(columns=["run_id"])
    return EarlierRuns(rows, cfg[cfg["run_id"].astype(str).isin(matching)],
                       compiles[compiles["run_id"].astype(str).isin(matching)])


def history_with_cut_units(history: pd.DataFrame, earlier: EarlierRuns) -> pd.DataFrame:
    """``history`` (:func:`tta_energy.levers.plan.read_history`) and the compilations that the ``earlier``
    runs measured only in warm-ups, a unit cut by its time budget before its first generation
    (:func:`tta_energy.levers.plan.with_warmup_compilations`)."""
    return with_warmup_compilations(history, earlier.rows, earlier.configs, earlier.compiles)


def _measured(rows: pd.DataFrame, declared: Declared) -> set[Cell]:
    """The declared cells one earlier run measured: ``repeats`` generations of the cell and, where the plan
    declares ``none`` at the same steps and batch, ``none``'s own repeats in that run."""
    counts: dict[tuple[str, str, str, int, int], int] = {}
    if not rows.empty:
        ok = rows[schema.measured_generations(rows)]
        keys = ["run_id", "model", "optimize", "steps", "waveforms_per_prompt"]
        for (run_id, model, spec, steps, batch), n in ok.groupby(keys).size().items():
            counts[(str(run_id), model, spec, int(steps), int(batch))] = int(n)
    run_ids = {k[0] for k in counts}
    measured: set[Cell] = set()
    for model, entries in declared.items():
        default_repeats = {c: repeats for spec, cells, repeats in entries if spec == DEFAULT_SPEC
                           for c in cells}
        for spec, cells, repeats in entries:
            for steps, batch in cells:
                needs_default = default_repeats.get((steps, batch), 0)
                if any(counts.get((r, model, spec, steps, batch), 0) >= repeats
                       and counts.get((r, model, DEFAULT_SPEC, steps, batch), 0) >= needs_default
                       for r in run_ids):
                    measured.add((model, spec, steps, batch))
    return measured


def _left_out(cfg: pd.DataFrame, declared: Declared,
              losses: dict[tuple[str, str, int], tuple[pd.DataFrame, str]],
              fails: dict[Cell, dict[str, str]]) -> set[Cell]:
    """The declared cells that earlier runs (:class:`EarlierRuns`)
    settled without measuring them: found to be another spec, failed in :data:`FAILED_RUNS_SETTLE` runs
    (``fails``, :func:`failures`), or lost the CUDA context as :func:`loss_cards` rules (``losses``)."""
    settled = {(r.model, r.optimize, int(r.steps), int(r.waveforms_per_prompt)) for r in cfg.itertuples()
               if str(r.status).startswith(SAME_AS)}  # specs an earlier run found to be another spec
    settled |= {c for c, why in fails.items() if len(why) >= FAILED_RUNS_SETTLE}
    lost = {key for key, (_, why) in losses.items() if why != RETRIED}
    lost_reference = {model for model, spec, _ in lost if spec == REFERENCE_SPEC}
    return {cell for cell in declared_cells(declared)
            if cell in settled or cell[0] in lost_reference
            or {(cell[0], cell[1], cell[3]), (cell[0], DEFAULT_SPEC, cell[3])} & lost}


def failures(rows: pd.DataFrame, cfg: pd.DataFrame, declared: Declared) -> dict[Cell, dict[str, str]]:
    """Per declared cell, the earlier runs that failed it and why (run id -> error): a configuration it could
    not apply (``cfg``, :data:`~tta_energy.levers.tables.CONFIGS_FILE`), or a warm-up or generation of it
    that failed in a run that measured none of it (``rows``,
    :func:`~tta_energy.levers.tables.generation_failures`: a warm-up fails every step count of its spec and
    batch)."""
    found: dict[tuple[str, str, int | None, int], dict[str, str]] = {}
    for r in cfg.itertuples():
        if str(r.status) != "ok" and not str(r.status).startswith(SAME_AS):
            found.setdefault((r.model, r.optimize, int(r.steps), int(r.waveforms_per_prompt)), {})[
                str(r.run_id)] = str(r.status)
    for r in generation_failures(rows).itertuples():
        key = (r.model, r.optimize, None if r.is_warmup else int(r.steps), int(r.waveforms_per_prompt))
        found.setdefault(key, {}).setdefault(str(r.run_id), f"{failure_where(r)}: {r.error}")
    out: dict[Cell, dict[str, str]] = {}
    for model, entries in declared.items():
        for spec, cells, _ in entries:
            for steps, batch in cells:
                why = {**found.get((model, spec, None, batch), {}),
                       **found.get((model, spec, steps, batch), {})}
                if why:
                    out[(model, spec, steps, batch)] = why
    return out


def failure_lines(fails: dict[Cell, dict[str, str]], cells: Collection[Cell]) -> tuple[str, ...]:
    """The dry run's line per cell of ``cells`` (those not measured since) that earlier runs failed
    (``fails``, :func:`failures`): left out once it failed in :data:`FAILED_RUNS_SETTLE` runs, else tried
    once more."""
    lines = []
    for (model, spec, steps, batch), why in sorted(fails.items()):
        if (model, spec, steps, batch) not in cells:
            continue
        plural = "s" if len(why) > 1 else ""
        what = (f"left out, not tried again (it failed in {len(why)} run{plural})"
                if len(why) >= FAILED_RUNS_SETTLE else f"tried once more (it failed in {len(why)} run)")
        runs = "; ".join(f"run {run_id}, {error}" for run_id, error in why.items())
        lines.append(f"{what}: {model} `{spec}` {steps} steps batch {batch} ({runs})")
    return tuple(lines)


#: what :func:`loss_cards` says of a configuration that lost the CUDA context, as the dry run words it
SETTLED = f"left out, not tried again (it lost the CUDA context on {CONTEXT_LOSSES_SETTLE} cards)"
THIS_CARD = "left out on this card, which lost the CUDA context in it (another card tries it once more)"
RETRIED = "tried once more, on another card than the one that lost the CUDA context in it"


def loss_cards(losses: pd.DataFrame,
               card: str | None) -> dict[tuple[str, str, int], tuple[pd.DataFrame, str]]:
    """The rows of :func:`~tta_energy.levers.tables.context_losses` per (model, spec, batch), each with what
    later runs on ``card`` (a bare UUID, '' for a CPU, None: not known) do with it: :data:`SETTLED` (lost on
    :data:`CONTEXT_LOSSES_SETTLE` cards), :data:`THIS_CARD` or :data:`RETRIED`."""
    out = {}
    keys = ["model", "optimize", "waveforms_per_prompt"]
    for (model, spec, batch), rows in losses.groupby(keys, sort=True):
        cards = {bare_uuid(u) if isinstance(u, str) else "" for u in rows["gpu_uuid"]}
        why = (SETTLED if len(cards) >= CONTEXT_LOSSES_SETTLE else THIS_CARD if card in cards else RETRIED)
        out[(str(model), str(spec), int(batch))] = (rows, why)
    return out


def remaining(declared: Declared, done: set[Cell]) -> Declared:
    """``declared`` without its done cells; ``none`` stays wherever another spec of the same (steps, batch)
    is left, because the reduction needs the default of the same run."""
    out: Declared = {}
    for model, entries in declared.items():
        left = [(spec, tuple(c for c in cells if (model, spec, *c) not in done), repeats)
                for spec, cells, repeats in entries]
        needed = {c for spec, cells, _ in left if spec != DEFAULT_SPEC for c in cells}
        kept = []
        for (spec, cells, repeats), (_, declared_cells, _) in zip(left, entries, strict=True):
            if spec == DEFAULT_SPEC:
                cells = tuple(c for c in declared_cells if c in needed or c in cells)
            if cells:
                kept.append((spec, cells, repeats))
        if kept:
            out[model] = tuple(kept)
    return out


# ---------------------------------------------------------------------------------------------------------
# Units and calls
# ---------------------------------------------------------------------------------------------------------
def plan_units(declared: Declared, history: pd.DataFrame, budget_s: float, overhead_s: float, *,
               min_window_s: float = MIN_WINDOW_S, stored_references: set[tuple[str, int]] = frozenset(),
               references_kept: bool = True,
               compiled_before: Collection[tuple[str, str, int]] = ()) -> list[CallUnit]:
    """The units of ``declared``, batch 1 first (the targets' cells), then the plan's order, each priced as
    a call would run it alone (builds, warm-ups, compilation, repeats, step profiles) and split where it would
    not fit a call of ``budget_s`` with ``overhead_s``. A model's fp32 reference is priced in its first unit
    only when ``references_kept`` (stored for the later calls), else in each.

    Models of one denoiser (:func:`tta_energy.levers.plan.same_denoiser`: Tango and Tango 2) may be cut
    together at a batch size, spec by spec, so that the same specs of both land in one call: the second
    model's unit comes right after the first's (``follows``) and is priced without the compilations the first
    one's unit makes, since in one process the second model runs the graphs compiled for the first (the same
    classes and shapes; on the H100, Tango 2's ``compile-graphs,tf32`` at batch 1 compiled in 0.16 s right
    after Tango's 43.4 s: run 20261206T123642Z-e52e1f of ``data/h100/levers.csv``). A spec whose units of both
    models, each with its default, fit no call is cut model by model, and where cutting together predicts
    more seconds than cutting each model alone (each unit repeats its model's default), each is cut alone.
    ``compiled_before``: the (model, spec, batch) this process compiled already (a refill of a running call),
    whose specs a model of the same denoiser at that batch size is priced without compiling."""
    from tta_energy.levers.plan import same_denoiser

    capacity = budget_s - overhead_s
    entry_priced: dict[tuple[str, Entry], tuple[list[float], float]] = {}  # each entry's cells, priced once

    def entry_price(model: str, entry: Entry) -> tuple[list[float], float]:
        """An entry's rows' seconds, and the seconds of their compilations."""
        if (model, entry) not in entry_priced:
            rows = entry_rows(model, *entry, history, min_window_s=min_window_s)
            entry_priced[(model, entry)] = ([r["total_s"] for r in rows], sum(r["compile_s"] for r in rows))
        return entry_priced[(model, entry)]

    def price(model: str, group: Sequence[Entry], stored: set[tuple[str, int]],
              compiled: Collection[str] = ()) -> float:
        """What :func:`estimate_plan` gives ``group`` alone (its rows' seconds, summed in the same order),
        less the compilations of its specs in ``compiled`` (what a unit before it in the call compiles)."""
        seconds = [r["total_s"] for r in reference_rows(model, group, history, stored_references=stored)]
        reused = 0.0
        for entry in group:
            rows_s, compile_s = entry_price(model, entry)
            seconds += rows_s
            if entry[0] in compiled:
                reused += compile_s
        seconds.append(profiles_row(model, group)["total_s"])
        return float(np.sum(np.asarray(seconds, dtype=float))) - reused

    def at_batch(model: str, batch: int) -> list[Entry]:
        return [e for e in ((spec, tuple(c for c in cells if c[1] == batch), repeats)
                            for spec, cells, repeats in declared[model]) if e[1]]

    def cut(family: Sequence[str], batch: int, specs: Sequence[str],
            stored: set[tuple[str, int]]) -> list[CallUnit]:
        """The units of ``family`` (models of one denoiser) for ``specs`` at ``batch``, each with its
        default, cut greedily spec by spec, the same specs of every model together (``stored`` is updated
        with the references they store); with no ``specs``, the defaults alone."""
        entries = {m: at_batch(m, batch) for m in family}
        anchors = {m: [e for e in entries[m] if e[0] == DEFAULT_SPEC] for m in family}
        family = [m for m in family if entries[m]]

        kin = set(same_denoiser(family[0])) if family else set()
        before = {spec for model, spec, b in compiled_before if b == batch and model in kin}

        def priced(groups: dict[str, list[Entry]], stored: set[tuple[str, int]]) -> list[CallUnit]:
            out: list[CallUnit] = []
            compiled: set[str] = set()
            for m in family:
                group = groups[m]
                if specs and len(group) == len(anchors[m]):
                    continue  # only the default of this model: nothing here is compared with it
                alone = price(m, group, stored, before)
                reusing = price(m, group, stored, before | compiled) if out else alone
                leader = out[0].model if reusing < alone else None
                out.append(CallUnit(m, batch, tuple(group), reusing, leader))
                compiled |= {spec for spec, _, _ in group}
            return out

        def with_spec(groups: dict[str, list[Entry]], spec: str) -> dict[str, list[Entry]]:
            return {m: [*groups[m], *(e for e in entries[m] if e[0] == spec)] for m in family}

        units: list[CallUnit] = []

        def emit(groups: dict[str, list[Entry]]) -> None:
            for unit in priced(groups, stored):
                units.append(unit)
                if references_kept:
                    stored.update((unit.model, s) for _, cells, _ in unit.entries for s, _ in cells)

        groups = {m: list(anchors[m]) for m in family}
        for spec in specs:
            added = with_spec(groups, spec)
            grown = any(len(groups[m]) > len(anchors[m]) for m in family)
            if grown and sum(u.seconds for u in priced(added, stored)) > capacity:
                emit(groups)
                groups = with_spec(anchors, spec)
            else:
                groups = added
        if any(groups.values()):
            emit(groups)
        return units

    def each_alone(family: Sequence[str], batch: int, specs: Sequence[str],
                   stored: set[tuple[str, int]]) -> list[CallUnit]:
        out: list[CallUnit] = []
        for model in family:
            own = [s for s in specs if any(e[0] == s for e in at_batch(model, batch))]
            if own or not specs:
                out += cut([model], batch, own, stored)
        return out

    families: list[list[str]] = []
    for model in declared:
        if not any(model in f for f in families):
            families.append([model, *(m for m in same_denoiser(model)[1:] if m in declared)])
    units: list[CallUnit] = []
    stored = set(stored_references)
    for family in families:
        for batch in sorted({b for m in family for _, cells, _ in declared[m] for _, b in cells}):
            specs = list(dict.fromkeys(e[0] for m in family for e in at_batch(m, batch)
                                       if e[0] != DEFAULT_SPEC))
            chosen_stored = set(stored)
            chosen = each_alone(family, batch, specs, chosen_stored)
            if len(family) > 1:  # together where that predicts fewer seconds
                joint = [s for s in specs
                         if sum(u.seconds for u in cut(family, batch, [s], set(stored))) <= capacity]
                together_stored = set(stored)
                together = cut(family, batch, joint, together_stored) if joint else []
                apart = [s for s in specs if s not in joint]
                together += each_alone(family, batch, apart, together_stored) if apart else []
                if sum(u.seconds for u in together) < sum(u.seconds for u in chosen):
                    chosen, chosen_stored = together, together_stored
            units += chosen
            stored = chosen_stored
    return sorted(units, key=lambda u: u.batch)


def unit_blocks(units: Iterable[CallUnit]) -> list[list[CallUnit]]:
    """``units`` in the blocks a call takes whole: a unit with the units that follow it (``follows``)."""
    blocks: list[list[CallUnit]] = []
    for unit in units:
        if unit.follows is not None and blocks and blocks[-1][-1].batch == unit.batch and any(
                u.model == unit.follows for u in blocks[-1]):
            blocks[-1].append(unit)
        else:
            blocks.append([unit])
    return blocks


def block_seconds(block: Sequence[CallUnit]) -> float:
    return sum(u.seconds for u in block)


def pack_calls(units: Sequence[CallUnit], budget_s: float, overhead_s: float) -> list[list[CallUnit]]:
    """The units in calls of ``budget_s`` (``overhead_s`` each), first-fit in the units' order, so the first
    call holds the plan's first units; a unit with the units that follow it (:func:`unit_blocks`) goes into
    one call; a block larger than a call gets a call of its own, after the calls of the blocks that fit (a
    call measures what fits it whole before one its time budget must cut: a short call given a larger unit
    spent its time compiling and measured nothing)."""
    calls: list[list[CallUnit]] = []
    blocks = unit_blocks(units)
    oversized = [list(b) for b in blocks if overhead_s + block_seconds(b) > budget_s]
    for block in (b for b in blocks if overhead_s + block_seconds(b) <= budget_s):
        for call in calls:
            if overhead_s + block_seconds(call) + block_seconds(block) <= budget_s:
                call.extend(block)
                break
        else:
            calls.append(list(block))
    return calls + oversized


def merge_units(units: Iterable[CallUnit]) -> Declared:
    """The declared cells of ``units`` per model (a call with two units of a model measures them together)."""
    merged: dict[str, dict[str, tuple[list[tuple[int, int]], int]]] = {}
    for unit in units:
        specs = merged.setdefault(unit.model, {})
        for spec, cells, repeats in unit.entries:
            have, _ = specs.setdefault(spec, ([], repeats))
            have.extend(c for c in cells if c not in have)
    return {model: tuple((spec, tuple(cells), repeats) for spec, (cells, repeats) in specs.items())
            for model, specs in merged.items()}


def calls_text(calls: Sequence[Sequence[CallUnit]], budget_s: float, overhead_s: float,
               done: int, total: int, lost: Sequence[str] = (), waiting: Sequence[CallUnit] = (),
               full_call_s: float | None = None) -> list[str]:
    """The dry run's closing lines: cells done, the configurations that lost the CUDA context or failed and
    what is done with them (:func:`loss_cards`, :func:`failure_lines`), the units that wait for a call of
    the plan's size (``full_call_s``), then every call with its units and predicted seconds."""
    lines = [f"cells done by earlier calls: {done} of {total}", *lost]
    lines += [f"waits for a call of {full_call_s:.0f} s (larger than this one's {budget_s:.0f} s): "
              f"{unit.label()}" for unit in waiting]
    if not calls:
        return [*lines, "nothing left that fits this call" if waiting else "nothing left to measure"]
    seconds = sum(u.seconds for call in calls for u in call) + overhead_s * len(calls)
    plural = "s" if len(calls) > 1 else ""
    lines.append(f"left: {len(calls)} device call{plural} of at most {budget_s:.0f} s ({seconds:.0f} s "
                 f"predicted, of which {overhead_s:.0f} s per call of start-up, idle and ceilings)")
    for i, call in enumerate(calls, 1):
        load = overhead_s + sum(u.seconds for u in call)
        over = "  (larger than one call: the time budget cuts it)" if load > budget_s else ""
        lines.append(f"call {i} ({load:.0f} s){over}: " + "; ".join(u.label() for u in call))
    return lines


@dataclass(frozen=True)
class CallsPlan:
    """What is left of a plan after the earlier calls, in calls."""

    calls: list[list[CallUnit]]
    done: int  # declared cells already measured
    total: int  # declared cells
    budget_s: float
    overhead_s: float
    # a line per configuration that lost the CUDA context (:func:`loss_cards`) or failed (:func:`failures`)
    lost: tuple[str, ...] = ()
    # units larger than this call that a call of the plan's size (``full_call_s``) holds: left for one
    waiting: tuple[CallUnit, ...] = ()
    full_call_s: float | None = None

    def text(self) -> list[str]:
        return calls_text(self.calls, self.budget_s, self.overhead_s, self.done, self.total, self.lost,
                          self.waiting, self.full_call_s)

    def next_call(self) -> Declared:
        """The cells of the first call, per model."""
        return merge_units(self.calls[0]) if self.calls else {}

    def all_calls(self) -> Declared:
        """Every cell left, per model (a run without a time budget measures them all)."""
        return merge_units(u for call in self.calls for u in call)

    def within(self, seconds: float) -> CallsPlan:
        """The units that fit ``seconds`` each (with the overhead), packed first-fit into calls of
        ``seconds``: the first call takes what fits in the plan's order, a larger unit passed over."""
        units = [u for block in unit_blocks(u for call in self.calls for u in call)
                 if self.overhead_s + block_seconds(block) <= seconds for u in block]
        return CallsPlan(pack_calls(units, seconds, self.overhead_s), self.done, self.total, seconds,
                         self.overhead_s, self.lost, self.waiting, self.full_call_s)

    def model_seconds(self) -> dict[str, float]:
        """Predicted seconds per model in the first call (how the call's time budget is shared out)."""
        out: dict[str, float] = {}
        for unit in self.calls[0] if self.calls else ():
            out[unit.model] = out.get(unit.model, 0.0) + unit.seconds
        return out


def plan_calls(declared: Declared, history: pd.DataFrame, earlier: EarlierRuns, *, size: str,
               budget_s: float, overhead_s: float, min_window_s: float, references_dir: Path | None,
               tried: Iterable[Cell] = (), card: str | None = None,
               full_call_s: float | None = None,
               compiled_before: Collection[tuple[str, str, int]] = ()) -> CallsPlan:
    """``declared`` less what the ``earlier`` runs settle (and the cells ``tried`` already, measured or
    not), cut into units and packed into calls of ``budget_s``; ``card`` as :meth:`EarlierRuns.done` takes
    it; ``size`` (the model size) finds the stored fp32 references; ``compiled_before`` as
    :func:`plan_units` takes it.

    A unit larger than a call of ``budget_s`` that a call of ``full_call_s`` (the plan's size) holds waits
    for one (``waiting``): a short call given it would spend its time compiling and measure nothing. Only a
    unit larger than a call of the plan's size is started where the time budget must cut it."""
    from tta_energy.levers.plan import stored_reference_steps

    settled = earlier.settle(declared, card)
    left = remaining(declared, settled.done | set(tried))
    stored = stored_reference_steps(references_dir, left, size)
    units = plan_units(left, history, budget_s, overhead_s, min_window_s=min_window_s,
                       stored_references=stored, references_kept=references_dir is not None,
                       compiled_before=compiled_before)
    total = sum(len(cells) for entries in declared.values() for _, cells, _ in entries)
    # what earlier runs lost or failed, where a declared cell of it is still unmeasured (any of the model's,
    # for its fp32 reference)
    unmeasured = declared_cells(declared) - settled.measured
    lost = tuple(f"{why}: {model} `{spec}` batch {batch} ("
                 + "; ".join(f"run {r.run_id}{', warm-up' if r.is_warmup else ''}: {r.error}"
                             for r in runs.itertuples()) + ")"
                 for (model, spec, batch), (runs, why) in settled.losses.items()
                 if any(c[0] == model and (spec == REFERENCE_SPEC or (c[1], c[3]) == (spec, batch))
                        for c in unmeasured))
    lost += failure_lines(settled.fails, unmeasured)
    full_s = full_call_s or budget_s
    waiting = tuple(u for block in unit_blocks(units)
                    if budget_s < overhead_s + block_seconds(block) <= full_s for u in block)
    units = [u for u in units if u not in waiting]
    return CallsPlan(pack_calls(units, budget_s, overhead_s), len(settled.done), total, budget_s, overhead_s,
                     lost, waiting, full_call_s)


def card_of(device: str | None) -> str | None:
    """The bare UUID of the card a levers run on ``device`` measures on: '' on a CPU, None where torch does
    not report it (then no card counts as the one that lost a context)."""
    from tta_energy.devices import chosen_device, is_gpu
    from tta_energy.meter.sources import NvmlUnavailable, torch_device_uuids

    chosen = chosen_device(device)
    if not is_gpu(chosen):
        return ""
    import torch

    index = torch.device(chosen).index
    try:
        return torch_device_uuids([torch.cuda.current_device() if index is None else index])[0]
    except NvmlUnavailable:
        return None


def plan_calls_for(opts: LeversOptions, history: pd.DataFrame, earlier: EarlierRuns, *,
                   refill: bool = False, tried: Iterable[Cell] = (),
                   compiled_before: Collection[tuple[str, str, int]] = ()) -> CallsPlan:
    """What is left of ``opts``' declared cells after the ``earlier`` runs (:func:`read_earlier_runs` of
    ``opts``' size, clip duration, seed and weights) and ``tried``, packed into
    device calls of ``--time-budget-s`` (else the plan's ``call_budget_s``), priced from ``history``
    (:func:`tta_energy.levers.plan.read_history`). Each call carries its start-up, idle baseline and ceilings
    (:func:`tta_energy.levers.plan.call_overhead_s`); a ``refill`` of a running call: its new run's
    ceilings, and ``compiled_before`` what its process compiled (:func:`plan_units`)."""
    from tta_energy.levers.experiment import declared_plans
    from tta_energy.levers.plan import call_overhead_s, run_ceilings_s
    from tta_energy.levers.spec import LeversError

    declared = declared_plans(opts)
    fp8 = any("fp8" in spec for plans in declared.values() for spec, _, _ in plans)
    budget = opts.time_budget_s or opts.call_budget_s
    if refill:
        overhead = run_ceilings_s(opts.ceiling_s, fp8)
    else:
        overhead = call_overhead_s(opts.idle_s, opts.ceiling_s, fp8)
    if budget <= overhead and not refill:
        raise LeversError(f"a call of {budget:g} s cannot hold any cell: its start-up, idle baseline and "
                          f"ceiling loops take about {overhead:.0f} s; give --time-budget-s (or the plan's "
                          f"call_budget_s) above {overhead:.0f} s")
    return plan_calls(declared, history, earlier, size=opts.size, budget_s=budget, overhead_s=overhead,
                      min_window_s=opts.min_window_s, references_dir=opts.references_dir, tried=tried,
                      card=card_of(opts.device), full_call_s=opts.call_budget_s,
                      compiled_before=compiled_before)


def plan_progress(plan: Path, out_dir: Path | None = None) -> tuple[int, int]:
    """How far the table of the plan file ``plan`` is: its declared cells that the call folders under
    ``out_dir`` (default: the plan's own; ``levers/partplan-*``, as ``scripts/gpu_levers.sh`` keeps them)
    settle, measured or left out (:meth:`EarlierRuns.settle`), and all its declared cells: the dry run's
    "cells done by earlier calls"."""
    from tta_energy.levers.experiment import LeversOptions, declared_plans
    from tta_energy.levers.plan import read_levers_plan

    p = read_levers_plan(plan)
    opts = p.applied_to(LeversOptions(models=()), plan)
    declared = declared_plans(opts)
    out_dir = out_dir if out_dir is not None else p.out_dir
    folders = sorted((out_dir / "levers").glob("partplan-*")) if out_dir is not None else []
    earlier = read_earlier_runs(folders, size=opts.size, duration_s=opts.duration_s, seed=opts.seed,
                                weights=opts.weights)
    return len(earlier.done(declared)), len(declared_cells(declared))


def declared_cells(declared: Declared) -> set[Cell]:
    """Every (model, spec, steps, batch) of ``declared``."""
    return {(model, spec, s, b) for model, entries in declared.items()
            for spec, cells, _ in entries for s, b in cells}


#: a refill: the seconds the call has left and the models that failed in it -> the next work, or None
Refill = Callable[[float, Collection[str]], "LeversOptions | None"]


def plan_refill(opts: LeversOptions, history: pd.DataFrame, earlier: EarlierRuns,
                first: Declared) -> Refill:
    """For :func:`tta_energy.levers.experiment.run_levers`: given the seconds a call has left and the models
    that failed in it, the options of the plan's next units that fit those seconds (a unit too large is
    passed over for smaller ones behind it), or None when none fits. ``first`` is what the call measured
    first; the ``earlier`` runs and the cells measured in ``opts.out_dir`` (read again at each refill) count
    as done. Nothing the call tried is tried again in it:
    not a cell it tried, not a model that failed, and nothing at a (steps, batch) whose default (``none``) it
    did not finish (an error, out of memory, the deadline). Start-up and idle baseline are paid already: only
    the new run's ceilings are priced, and no compilation that a model of the same denoiser made in this
    process at the same batch size (:func:`plan_units`)."""
    from tta_energy.levers.experiment import declared_plans

    tried = declared_cells(first)
    declared = declared_plans(opts)

    def refill(left_s: float, failed_models: Collection[str] = ()) -> LeversOptions | None:
        this_call = read_earlier_runs([Path(opts.out_dir)], size=opts.size, duration_s=opts.duration_s,
                                      seed=opts.seed, weights=opts.weights)
        here = this_call.done(declared)
        unfinished = {(m, s, b) for m, spec, s, b in tried
                      if spec == DEFAULT_SPEC and (m, spec, s, b) not in here}
        skip = tried | {c for c in declared_cells(declared)
                        if c[0] in failed_models or (c[0], c[2], c[3]) in unfinished}
        # what this process compiled (levers_compile.csv of its runs), which Tango 2 runs for Tango's specs
        compiles = this_call.compiles
        compiled_before = set() if compiles.empty or "optimize" not in compiles else set(zip(
            compiles["model"], compiles["optimize"], compiles["waveforms_per_prompt"].astype(int),
            strict=True))
        calls = plan_calls_for(dataclasses.replace(opts, time_budget_s=left_s), history,
                               earlier.with_runs(this_call), refill=True, tried=skip,
                               compiled_before=compiled_before).within(left_s)
        if not calls.calls:
            return None
        chosen = calls.next_call()
        tried.update(declared_cells(chosen))
        return dataclasses.replace(opts, declared=chosen, models=tuple(chosen),
                                   model_seconds=calls.model_seconds())

    return refill
