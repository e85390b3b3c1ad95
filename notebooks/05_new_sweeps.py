# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Beyond the study: duration, guidance, precision
#
# Three sweeps the study did not run, one 10-s generation at 100 steps each unless the sweep varies it:
#
# * **duration**: 2.5, 5, 10 and 20 s of audio asked for, where the model allows it;
# * **guidance**: classifier-free guidance at the model's own scale vs off (scale 1: the denoiser runs on
#   half the batch, the unconditional branch is dropped);
# * **precision**: the whole model in float32, float16 and bfloat16.
#
# The tables give the mean GPU energy per generation (std and t interval where there are several runs), the
# energy per second of audio returned, the wall time and `ratio_to_reference`: the ratio to the 10-s
# request, to guidance on, and to float32 (also for models whose own dtype is float16).
#
# Mind the latent length (`latent_seconds`): Stable Audio Open always computes 47.55 s of latents and trims
# the audio to the duration asked, and Tango always computes 10.24 s (only its 10-s request is measured).
# Their energy per generation does not follow the requested duration; their energy per second of audio
# returned falls as the request grows.

# %%
import pandas as pd
from IPython.display import display

from tta_energy.analysis import plots, summaries
from tta_energy.analysis.reproduce import notebook_inputs
from tta_energy.analysis.summaries import AnalysisError

pd.set_option("display.width", 160)

# %% tags=["parameters"]
runs_paths = None  # run tables or folders of them; None: the repository's data/
figures_dir = None  # where figures go; None: the repository's figures/

# %%
inputs = notebook_inputs(runs_paths, figures_dir)
EXPERIMENTS = tuple(summaries.PARAMETER_COLUMNS)  # the sweeps beyond the study
platforms = {label: rows for experiment in EXPERIMENTS for label, rows in inputs.platforms(experiment)}
print(f"platforms with a duration, guidance or precision sweep: {sorted(platforms)}")

# %%
for label, rows in sorted(platforms.items()):
    tables = {}
    for experiment in EXPERIMENTS:
        try:
            tables[experiment] = summaries.parameter_summary(rows, experiment)
        except AnalysisError:
            tables[experiment] = pd.DataFrame()
            print(f"{label}: no {experiment} sweep")
            continue
        print(f"{label}: {experiment}")
        columns = list(summaries.parameter_summary_columns(experiment))
        display(tables[experiment][columns].round(3))
    plots.plot_parameter_sweeps(
        tables["duration"], tables["guidance"], tables["precision"], inputs.figures, label
    )
if not platforms:
    plots.plot_parameter_sweeps(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), inputs.figures, "no data")
