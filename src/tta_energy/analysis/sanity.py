"""The study's sanity check: do the 300-caption subsets rank step counts as the full data sets do?

For each metric x model x data set with scores on both (the study's sanity check, arXiv 2505.07615):

* Pearson r and its two-sided p-value (``scipy.stats.pearsonr``) between the subset scores and the
  full-set scores, both ordered by steps;
* the "ANCOVA": ordinary least squares on the stacked points, ``score ~ steps * C(group)`` (statsmodels
  formula API, ``steps`` numeric, ``group`` in {subset, full}), reporting the p-value of the
  ``steps:group`` interaction (are the slopes different?).

With n = 6 step counts both numbers are weak evidence; the table also gives the mean shift between the
two scopes, which neither statistic looks at.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from tta_energy.analysis.summaries import AnalysisError


def interaction_pvalue(steps: np.ndarray, subset: np.ndarray, full: np.ndarray) -> tuple[float, float]:
    """OLS ``score ~ steps * C(group)`` on subset + full points: (interaction coefficient, its p-value)."""
    data = pd.DataFrame(
        {
            "score": np.concatenate([subset, full]),
            "steps": np.concatenate([steps, steps]).astype("float64"),
            "group": ["subset"] * len(steps) + ["full"] * len(steps),
        }
    )
    fit = smf.ols("score ~ steps * C(group)", data=data).fit()
    term = next(name for name in fit.params.index if ":" in name)
    return float(fit.params[term]), float(fit.pvalues[term])


def sanity_table(scores: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per metric x model x data set that has both subset and full-set scores."""
    if scores is None or scores.empty or "scope" not in scores.columns:
        raise AnalysisError("no score table with subset and full-set scores (scope column)")
    aggregate = scores[scores.get("caption_id", pd.Series("", index=scores.index)).fillna("") == ""]
    rows = []
    full = aggregate[aggregate["scope"] == "full"]
    for (metric, model, dataset), fgrp in full.groupby(["metric", "model", "dataset"], sort=True):
        sgrp = aggregate[
            (aggregate["scope"] == "subset")
            & (aggregate["metric"] == metric)
            & (aggregate["model"] == model)
            & (aggregate["dataset"] == dataset)
        ]
        pair = sgrp[["steps", "value"]].merge(
            fgrp[["steps", "value"]], on="steps", suffixes=("_subset", "_full")
        )
        pair = pair.sort_values("steps")
        if len(pair) < 3:
            continue
        x, y = pair["value_subset"].to_numpy(), pair["value_full"].to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant input makes r undefined: reported as NaN
            r, p = stats.pearsonr(x, y)
        coef, ancova_p = interaction_pvalue(pair["steps"].to_numpy(), x, y)
        rows.append(
            {
                "metric": metric,
                "model": model,
                "dataset": dataset,
                "pearson_r": float(r),
                "pearson_p": float(p),
                "ancova_p": ancova_p,
                "n_steps": len(pair),
                "interaction_coef": coef,
                "mean_shift_full_minus_subset": float(np.mean(y - x)),
            }
        )
    if not rows:
        raise AnalysisError(
            "no metric x model x data set has both subset and full-set scores at 3+ step counts"
        )
    table = pd.DataFrame(rows)
    if published is not None and not published.empty:
        pub = published.rename(
            columns={
                "pearson_r": "published_pearson_r",
                "pearson_p": "published_pearson_p",
                "ancova_p": "published_ancova_p",
            }
        )
        table = table.merge(pub, on=["metric", "model", "dataset"], how="left")
    return table
