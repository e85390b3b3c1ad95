# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Experiment 3: quality against energy, Pareto fronts, and the sanity check
#
# Each (model, steps) of the quality experiment has a mean GPU energy per generation (over the captions)
# and a CLAP score (higher is better) and a FAD-inf (lower is better) per data set. A configuration is on
# the front when no other configuration of the same data set has energy <= and a score at least as good,
# one of them strictly (the study's fronts, computed per data set and metric on raw values).
# `front_frequency` is how often a configuration stays on the front when the generations (and per-clip
# scores, where a score table has them) are resampled; the study published mean scores only, so with its
# data this reflects the energy noise alone.
#
# Scores and energies are joined on (model, data set, steps): the table printed by the study's notebook
# attached AudioCaps CLAP scores to Clotho rows and vice versa.

# %%
import pandas as pd
from IPython.display import display

from tta_energy.analysis import pareto, plots, sanity, summaries
from tta_energy.analysis.reproduce import notebook_inputs
from tta_energy.analysis.summaries import AnalysisError

pd.set_option("display.width", 160)

# %% tags=["parameters"]
runs_paths = None  # run tables or folders of them; None: the repository's data/
figures_dir = None  # where figures go; None: the repository's figures/
n_boot = 1000  # bootstrap resamples (front frequencies)

# %%
inputs = notebook_inputs(runs_paths, figures_dir)
platforms = inputs.platforms("quality")
print(f"platforms with a quality sweep: {[label for label, _ in platforms]}")

# %% [markdown]
# ## Fronts

# %%
COLUMNS = [
    "dataset",
    "metric",
    "model",
    "steps",
    "n_generations",
    "gpu_energy_J_mean",
    "gpu_energy_J_ci_low",
    "gpu_energy_J_ci_high",
    "score",
    "front_frequency",
]
for label, rows in platforms:
    try:
        table = pareto.pareto_table(rows, inputs.scores_for(rows), n_boot=n_boot)
    except AnalysisError as exc:
        plots.plot_pareto(pd.DataFrame(), inputs.figures, label)
        print(f"{label}: {exc}")
        continue
    print(f"{label}: configurations on the front")
    display(table[table["pareto_optimal"]][COLUMNS].round(4))
    unstable = table[(table["front_frequency"] > 0.005) & (table["front_frequency"] < 0.995)]
    print(f"{len(unstable)} configuration(s) on the front in some but not all resamples")
    display(unstable[COLUMNS].round(4))
    plots.plot_pareto(table, inputs.figures, label)
if not platforms:
    plots.plot_pareto(pd.DataFrame(), inputs.figures, "no data")

# %% [markdown]
# ## Does the caption set change the energy?
#
# The energy axis of the fronts is a mean over captions. Per model, steps and caption set: the mean energy per
# caption with its t interval, the ratio of Clotho to AudioCaps, Welch's t test of the two sets and Spearman's
# rho of energy against the caption's length in characters. The study ran AudioCaps first and Clotho after it,
# so a small "significant" difference there can as well be drift over the hours between them.

# %%
for label, rows in platforms:
    try:
        energy = summaries.quality_energy_summary(rows)
    except AnalysisError as exc:
        print(f"{label}: {exc}")
        continue
    print(f"{label}: energy per caption")
    display(energy[list(summaries.QUALITY_ENERGY_COLUMNS)].round(4))

# %% [markdown]
# ## Sanity check: the 300-caption subsets against the full data sets
#
# Pearson r (and p) between the six subset scores and the six full-set scores ordered by steps, and the
# p-value of the `steps:group` interaction of `score ~ steps * C(group)` (the study's "ANCOVA"). With six
# points per line both are weak evidence; the mean shift shows what neither looks at (absolute scores move).

# %%
try:
    table = sanity.sanity_table(inputs.scores, inputs.published_sanity)
    display(table.round(6))
except AnalysisError as exc:
    print(exc)
sanity_figure = plots.plot_sanity(
    inputs.scores,
    inputs.figures,
    "study A40" if inputs.scores is not None and (inputs.scores["source"] == "study").all() else "all scores",
)
