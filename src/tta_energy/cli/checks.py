"""Checks of command-line values that run before torch is imported or a model is built.

Each returns the parsed value or raises :class:`TtaError` with one line naming the problem and what is
allowed, so that a bad value costs a fraction of a second instead of the imports and the model build.
The per-model rules (steps the sampler can run, durations) come from the catalogue, precision names from
:mod:`tta_energy.precision`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import re
import sys
from pathlib import Path

import typer

from tta_energy.devices import check_device
from tta_energy.errors import ModelError, TtaError, listed_once, positive_number, seed_number
from tta_energy.fileio import writable_file, writable_folder  # noqa: F401  (checks of the commands)
from tta_energy.models import catalogue
from tta_energy.models.weights import check_weights
from tta_energy.precision import canonical_dtype


def device(name: str | None) -> str | None:
    """``cpu``, ``cuda`` or ``cuda:N`` that this machine has (None: chosen later, cuda when available)."""
    return check_device(name)


def dtype(name: str | None) -> str | None:
    """A precision name (float32, float16, bfloat16 or fp32, fp16, bf16) as its canonical name."""
    return None if name is None else canonical_dtype(name)


def size(name: str) -> str:
    return catalogue.check_size(name, TtaError)


def model(name: str) -> catalogue.ModelEntry:
    try:
        return catalogue.entry(name)
    except catalogue.UnknownModelError as exc:
        raise TtaError(str(exc)) from None


def generation(name: str, *, size_name: str, prompts: list[str], steps: int, batch: int,
               duration_s: float | None, guidance_scale: float | None) -> None:
    """What ``name`` can generate at ``size_name``, from its catalogue row (the built model's rule too)."""
    entry = model(name)
    try:
        catalogue.check_generation(name, entry.defaults, prompts=prompts, steps=steps,
                                   waveforms_per_prompt=batch, duration_s=duration_s,
                                   guidance_scale=guidance_scale, size=size(size_name))
    except ModelError as exc:
        raise TtaError(str(exc)) from None


def duration(name: str, *, size_name: str, seconds: float) -> None:
    """A clip length ``name`` can generate at ``size_name``: the rule ``generate`` applies."""
    generation(name, size_name=size_name, prompts=["x"], steps=model(name).defaults.steps, batch=1,
               duration_s=seconds, guidance_scale=None)


def weights(value: str) -> str:
    """``random``, an existing local weights path or a hub id (:func:`.models.weights.check_weights`)."""
    return check_weights(value)


def comma_list(values: str | list[str] | None, option: str | None = None,
               absent_means_all: bool = True, items_are: str = "names") -> tuple[str, ...]:
    """The items of a comma list option (``a,b``; given several times, all of them), blanks dropped. With
    ``option``, the list is the user's: given with no item ('' or ',') it is refused rather than read as
    absent (which means "all" where ``absent_means_all``), and so is an empty item or one named twice."""
    given = [values] if isinstance(values, str) else list(values or ())
    raw = [t.strip() for v in given for t in v.split(",")]
    items = tuple(t for t in raw if t)
    if option is None or values is None:
        return items
    shown = ",".join(given)
    return listed_once(raw, f"{option} {shown!r}", items_are,
                       otherwise=f", or leave {option} out for all" if absent_means_all else "")


def comma_integers(value: str, option: str) -> tuple[int, ...]:
    """A comma list option of integers (``10,100``) the user gave: :func:`comma_list`'s rule, then each an
    integer."""
    items = comma_list(value, option, absent_means_all=False, items_are="integers")
    try:
        return tuple(int(t) for t in items)
    except ValueError:
        raise TtaError(f"{option} must be a comma list of integers, got {value!r}") from None


def positive(value: float | None, option: str, *, allow_zero: bool = False, unit: str = "") -> None:
    """An option's number, when given: finite and > 0 (>= 0 with ``allow_zero``): :func:`positive_number`."""
    if value is not None:
        positive_number(value, option, allow_zero=allow_zero, unit=unit)


def seed(value: int) -> int:
    """``--seed``: an integer from 0 to 2**32-1 (:func:`seed_number`)."""
    return seed_number(value, "--seed")


def at_least_one(value: int | None, option: str, what: str = "") -> None:
    """A count (batch size, steps) of at least 1; ``what`` says what the option means."""
    if value is not None and value < 1:
        raise TtaError(f"{option} must be >= 1{f' ({what})' if what else ''}, got {value}")


@functools.cache
def _codecarbon_countries() -> frozenset[str]:
    """ISO 3166 alpha-3 codes CodeCarbon holds a carbon intensity for (read without importing it)."""
    found = importlib.util.find_spec("codecarbon")
    if found is None or not found.submodule_search_locations:
        return frozenset()
    package = Path(next(iter(found.submodule_search_locations)))
    path = package / "data" / "private_infra" / "global_energy_mix.json"
    try:
        return frozenset(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return frozenset()


def country(code: str) -> str:
    """An ISO 3166 alpha-3 code that CodeCarbon knows (its carbon intensity is what the CO2 column uses)."""
    code = code.strip().upper()
    known = _codecarbon_countries()
    if not re.fullmatch(r"[A-Z]{3}", code) or (known and code not in known):
        raise TtaError(f"unknown country code {code!r}: use an ISO 3166 alpha-3 code that CodeCarbon knows "
                       "(e.g. ITA, USA, FRA, DEU)")
    return code


def cpu_full_size_warning(device_name: str | None, size_name: str) -> None:
    """Say on stderr that a full-size model on a CPU takes minutes per generation."""
    if size_name != "full":
        return
    on_cpu = device_name == "cpu"
    if device_name is None:
        with contextlib.suppress(Exception):
            import torch

            on_cpu = not torch.cuda.is_available()
    if on_cpu:
        print("warning: a full-size model on a CPU takes minutes per generation and several GB of memory; "
              "--size tiny runs in seconds (see README, 'On a CPU')", file=sys.stderr)


def not_with(given: bool, option: str, switch: str) -> None:
    """An option given (``given``) together with the switch that turns off what it sets is refused: the
    command would ignore it."""
    if given:
        raise TtaError(f"{option} sets what {switch} turns off: give one of them")


def given_options(ctx: typer.Context, names: dict[str, str]) -> list[str]:
    """The options of ``names`` (parameter -> option) that the command line set (not left at the default):
    an option a command would ignore is refused only when the user wrote it."""
    given = []
    for name, option in names.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given.append(option)
    return given
