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
# # Experiment 1: energy against the number of denoising steps
#
# One 10-s clip per call, step counts {10, 25, 50, 100, 150, 200}, repeated (5 runs in the study).
# For every platform in the run tables (the study's A40 data imported into `data/study`, the project's own
# sweeps): the energy per generation with its spread, the least-squares energy per step, where the energy goes
# (per phase, when measured) and the power during one generation (when a trace exists).
#
# All logic is in `tta_energy.analysis`; this notebook only calls it. `make reproduce` runs it.

# %%
import pandas as pd
from IPython.display import display

from tta_energy.analysis import plots, summaries
from tta_energy.analysis.reproduce import notebook_inputs, repo_root

pd.set_option("display.width", 160)

# %% tags=["parameters"]
runs_paths = None  # run tables or folders of them; None: the repository's data/
figures_dir = None  # where figures go; None: the repository's figures/

# %%
inputs = notebook_inputs(runs_paths, figures_dir)
platforms = inputs.platforms("steps")
print(
    f"{len(inputs.sources)} run table(s); platforms with a steps sweep: {[label for label, _ in platforms]}"
)

# %% [markdown]
# ## Energy per generation (mean, sample std, 95 % interval) and per second of audio

# %%
COLUMNS = [
    "model",
    "steps",
    "denoiser_calls",
    "n_runs",
    "gpu_energy_J_mean",
    "gpu_energy_J_std",
    "gpu_energy_J_ci_low",
    "gpu_energy_J_ci_high",
    "gpu_energy_J_per_audio_s_mean",
    "energy_J_mean",
    "codecarbon_duration_s_mean",
    "first_generation_included",
]
summaries_by_platform = {}
for label, rows in platforms:
    summary = summaries.steps_summary(rows)
    summaries_by_platform[label] = summary
    print(label)
    display(summary[COLUMNS].round(3))
    plots.plot_energy_vs_steps(summary, inputs.figures, label)
    plots.plot_energy_vs_steps(summary, inputs.figures, label, log=True)
if not platforms:
    plots.plot_energy_vs_steps(pd.DataFrame(), inputs.figures, "no data")

# %% [markdown]
# ## Energy per step: least squares of the per-step-count means
#
# Against the nominal step count (the study's x axis) and against the denoiser calls actually made
# (Make-An-Audio and Make-An-Audio 2 run 167 DDIM iterations when asked for 150).

# %%
for label, summary in summaries_by_platform.items():
    print(label)
    display(summaries.steps_fit(summary).drop(columns=["source", "gpu_name"]).round(4))

# %% [markdown]
# ## The study's unflagged warm-up
#
# The first generation of each of the study's scripts (run 1 at 10 steps) includes CUDA warm-up. Dropping it
# changes the 10-step means (and their spread) and nothing else.

# %%
for label, rows in platforms:
    if not rows["first_generation"].any():
        continue
    with_first = summaries.steps_summary(rows)
    without = summaries.steps_summary(rows[~rows["first_generation"]])
    effect = with_first[["model", "steps", "gpu_energy_J_mean", "gpu_energy_J_std"]].merge(
        without[["model", "steps", "gpu_energy_J_mean", "gpu_energy_J_std"]],
        on=["model", "steps"],
        suffixes=("_as_study", "_warmup_dropped"),
    )
    print(label)
    display(effect[effect["steps"] == effect["steps"].min()].round(2))

# %% [markdown]
# ## Where the energy goes: per-phase energy, and the power of one generation
#
# Only the project's own sweeps measure the phases (text encoding, denoising loop, decoding, vocoder) and
# keep a power trace; the study logged one number per generation.

# %%
for label, rows in platforms:
    plots.plot_phases(rows[rows["experiment"] == "steps"], inputs.figures, label)
    trace, window, note = plots.generation_trace(rows, repo_root())
    plots.plot_power_trace(
        trace,
        inputs.figures,
        label,
        window=window,
        title=note if trace is not None else "",
        reason=f"{label}: {note}",
    )
