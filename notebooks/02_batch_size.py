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
# # Experiment 2: batch size
#
# Ten 10-s clips at 100 steps, made as 10 calls of 1 waveform, 5 of 2, 2 of 5 or 1 of 10 (waveforms of the
# same prompt, as in the study), repeated over runs. Per run the energy of its calls is summed (the energy
# for 10 clips); the table gives the mean and the standard deviation of these totals over runs, the energy
# per clip and per second of audio, and the ratio to batch 1.
#
# The study's own error bars (`study_error_J`) are a standard error for b = 1, 2, 5 and a standard
# deviation for b = 10; this project reports the standard deviation for every b. Tango's batch of 10 runs as
# two passes (8 + 2): see `denoiser_calls` in the run table.

# %%
import pandas as pd
from IPython.display import display

from tta_energy.analysis import plots, summaries
from tta_energy.analysis.reproduce import notebook_inputs

pd.set_option("display.width", 160)

# %% tags=["parameters"]
runs_paths = None  # run tables or folders of them; None: the repository's data/
figures_dir = None  # where figures go; None: the repository's figures/

# %%
inputs = notebook_inputs(runs_paths, figures_dir)
platforms = inputs.platforms("batch")
print(f"platforms with a batch sweep: {[label for label, _ in platforms]}")

# %%
COLUMNS = [
    "model",
    "n_prompts",
    "n_clips",
    "n_runs",
    "calls_per_run",
    "gpu_energy_J_per_10_clips_mean",
    "gpu_energy_J_per_10_clips_std",
    "gpu_energy_J_per_10_clips_ci_low",
    "gpu_energy_J_per_10_clips_ci_high",
    "gpu_energy_J_per_clip_mean",
    "gpu_energy_J_per_audio_s_mean",
    "ratio_to_batch1",
    "study_error_J",
    "study_error_kind",
]
for label, rows in platforms:
    batch = summaries.batch_summary(rows)
    print(label)
    display(batch[COLUMNS].round(3))
    plots.plot_batch_energy(batch, inputs.figures, label)
if not platforms:
    plots.plot_batch_energy(pd.DataFrame(), inputs.figures, "no data")
