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
from pathlib import Path

import pandas as pd
from IPython.display import display

from tta_energy.analysis import fronts, pareto, plots, sanity, summaries
from tta_energy.analysis.reproduce import notebook_inputs, repo_root
from tta_energy.analysis.summaries import AnalysisError
from tta_energy.devices import rows_of_gpu
from tta_energy.fileio import write_csv_atomic
from tta_energy.models import catalogue

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
# ## The same question on the H200
#
# Random-weight replicas make noise, so the H200 cannot score its own audio; energy depends on shapes and
# arithmetic, not on weight values, and lossless levers keep the output. Each (model, steps) keeps the
# study's published score; its energy per clip is the H200 steps sweep's at the study's default, and the best
# lossless levers configuration where the levers were measured (no ratio carried to other step counts). The
# A40 points leave out the study's first call of each script (warm-up). `front_change`: A40 -> H200 default.

# %%
h200_steps = inputs.runs[
    (inputs.runs["experiment"] == "steps") & rows_of_gpu(inputs.runs["gpu_name"])
]
a40_quality = fronts.a40_quality_runs(inputs.runs)
levers_paths = fronts.find_levers_tables(runs_paths or [repo_root() / "data"])
levers = (
    pd.concat([pd.read_csv(p) for p in levers_paths], ignore_index=True) if levers_paths else pd.DataFrame()
)
try:
    steps_h200 = summaries.steps_summary(h200_steps)
except AnalysisError:
    steps_h200 = pd.DataFrame()
front_table = (
    fronts.platform_fronts(steps_h200, a40_quality, inputs.scores, levers)
    if inputs.scores is not None
    else pd.DataFrame()
)
if not front_table.empty:
    scored = catalogue.ordered(front_table["model"].unique())
    committed = any(Path(s).resolve().is_relative_to(repo_root() / "data" / "study") for s in inputs.sources)
    origin = "the subset committed in data/study" if committed else "an imported copy of its repository"
    quality_source = (
        f"the study's published CLAP score and FAD-inf (arXiv 2505.07615) for "
        f"{', '.join(catalogue.label(m) for m in scored)} ({len(scored)} of {len(catalogue.BUILTIN_MODELS)} "
        f"models, from {origin})"
    )
    tables_dir = inputs.figures / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(tables_dir / "pareto_h200.csv", front_table)
    on_any = front_table[front_table.filter(like="on_front_").fillna(False).astype(bool).any(axis=1)]
    display(on_any.round(3))
    plots.plot_platform_fronts(front_table, inputs.figures, quality_source)
else:
    plots.plot_platform_fronts(front_table, inputs.figures, "")

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
