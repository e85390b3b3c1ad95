"""How well the priced dry run foretold the device calls: per call and model, the seconds the plan gave the
model's units against the seconds the model took, read from the calls' logs.

A call of ``scripts/gpu_levers.sh plan`` logs ``this call: <units> (N s)``, each unit priced, and per model
of each run ``<model>: G generations measured in T s (predicted P s)``; logs written before the prediction
was put on that line give it for the call's first run only, in its ``this call:`` line (a refill's run then
has no prediction). ``T`` counts the model's build, reference, warm-ups, compilations, generations and
profiles, as its units' price does; the call's start-up and ceilings are in neither.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

#: the columns :func:`read_forecasts` gives
FORECAST_COLUMNS = ["call", "model", "predicted_s", "measured_s", "generations", "cut"]

_THIS_CALL = re.compile(r"^this call: (.*)$", re.M)
_UNIT = re.compile(r"^(\S+) batch \d+: .* \((\d+) s\)$")
_MEASURED = re.compile(r"^(\S+): (\d+) generations measured in (\d+) s(?: \(predicted (\d+) s\))?"
                       r"( \(stopped: time budget\))?$", re.M)


def unit_prices(line: str) -> dict[str, float]:
    """Per model, the summed price of its units in a ``this call:`` line's text (after the colon)."""
    prices: dict[str, float] = {}
    for unit in line.split("; "):
        found = _UNIT.match(unit.strip())
        if found:
            prices[found.group(1)] = prices.get(found.group(1), 0.0) + float(found.group(2))
    return prices


def read_forecasts(logs: Iterable[Path]) -> pd.DataFrame:
    """One row per model run with a prediction in the call logs ``logs``: ``call`` (the log's name without
    ``log-levers-``), ``model``, ``predicted_s``, ``measured_s``, ``generations`` and ``cut`` (the time budget
    stopped it, so ``measured_s`` is what the budget allowed, not what the units took)."""
    rows = []
    for log in sorted(Path(p) for p in logs):
        text = log.read_text(encoding="utf-8", errors="replace")
        first = _THIS_CALL.search(text)
        first_run = unit_prices(first.group(1)) if first else {}
        for i, found in enumerate(_MEASURED.finditer(text)):
            model, generations, seconds, predicted, cut = found.groups()
            if predicted is None:  # an older log: only the first run's models, in the order it ran them
                if i >= len(first_run) or model not in first_run:
                    continue
                predicted = first_run[model]
            rows.append({"call": log.stem.removeprefix("log-levers-"), "model": model,
                         "predicted_s": float(predicted), "measured_s": float(seconds),
                         "generations": int(generations), "cut": cut is not None})
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS)


def forecast_text(forecasts: pd.DataFrame) -> str:
    """The measured over the predicted seconds of the model runs the time budget did not cut: their median
    and range, how many of them and in how many calls, and how many runs the budget cut."""
    whole = forecasts[~forecasts["cut"].astype(bool) & (forecasts["predicted_s"] > 0)]
    if whole.empty:
        return "no model run with a prediction in the call logs"
    ratio = whole["measured_s"] / whole["predicted_s"]
    within = float(np.mean((ratio >= 0.8) & (ratio <= 1.25)))
    cut = int(forecasts["cut"].astype(bool).sum())
    return (f"a model's measured time over its units' price was {ratio.median():.2f} in the median "
            f"({ratio.min():.2f} to {ratio.max():.2f}; within 0.8 to 1.25 in {within:.0%} of them) over "
            f"{len(whole)} model runs in {whole['call'].nunique()} calls; the time budget cut {cut} more")
