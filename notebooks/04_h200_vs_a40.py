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
# # This project's H200 measurements against the study's A40 numbers
#
# The steps sweep on both platforms: energy per generation of each model at each step count side by side,
# the ratio H200 / A40, the energy per denoising step (slope of the least-squares fit) and the ranking of the
# models by it; then, from the H200 rows' host diagnostics, why the models move as they do. The H200 numbers
# are the project's run tables (e.g. `data/h200/steps.csv`, written by `tta-energy sweep`); the A40 numbers
# are the study's, imported into `data/study`.
#
# Mind the difference in method: the study measured single CodeCarbon windows without warm-up or
# synchronisation; the project's meter synchronises, discards a warm-up and (for short calls) repeats the
# call inside the window. Differences in the shortest generations are partly measurement, not hardware.

# %%
import pandas as pd
from IPython.display import display

from tta_energy.analysis import compare, efficiency, plots, spread, summaries
from tta_energy.analysis.figures import STUDY_PLATFORM
from tta_energy.analysis.reproduce import notebook_inputs
from tta_energy.analysis.summaries import AnalysisError
from tta_energy.devices import PROJECT_GPU, names_gpu, rows_of_gpu

pd.set_option("display.width", 160)

# %% tags=["parameters"]
runs_paths = None  # run tables or folders of them; None: the repository's data/
figures_dir = None  # where figures go; None: the repository's figures/

# %%
# the study's first call of each script carries CUDA warm-up (its 10-step means): left out here
inputs = notebook_inputs(runs_paths, figures_dir, drop_study_warmup=True)
try:
    steps = summaries.steps_summary(inputs.runs)
    fits = summaries.steps_fit(steps)
    available = compare.platforms(steps)
except AnalysisError:
    steps, fits, available = pd.DataFrame(), pd.DataFrame(), []
reference = STUDY_PLATFORM
others = [p for p in available if p != reference and names_gpu(PROJECT_GPU, p[1])]
print(f"platforms with a steps sweep: {[compare.platform_label(*p) for p in available]}")

# %%
if reference not in available or not others:
    missing = (
        [] if reference in available else ["the study's A40 data (data/study, `tta-energy import-study`)"]
    )
    if not others:
        missing.append(
            "H200 measurements (run tables such as data/h200/steps.csv, from `tta-energy sweep --model M "
            "--experiment steps --out-dir data/h200` on an H200)"
        )
    reason = "nothing to compare yet: missing " + " and ".join(missing)
    plots.skip_figure(inputs.figures, "platform-comparison", reason, "comparison")
else:
    per_steps, per_model = compare.platform_comparison(steps, fits, reference, others[0])
    print("energy per generation [J] on both platforms and the ratio")
    display(per_steps.round(3))
    print(
        "energy per step [J] (fit slope), ratio and ranking (1 = cheapest per step); Spearman rho:",
        round(float(per_model["spearman_rho"].iloc[0]), 3),
    )
    display(per_model.round(4))
    plots.plot_platform_comparison(
        per_steps,
        per_model,
        inputs.figures,
        note="A40 means leave out the study's first call of each script (CUDA warm-up).",
    )

# %% [markdown]
# ## Why the models move between the platforms: how busy the H200 was
#
# Each H200 row measured since the host diagnostics exist says how busy the GPU was (`gpu_busy_fraction`,
# the share of NVML's utilisation samples with a kernel running) and how much CPU time the generating
# process used (`cpu_time_s`). Run eagerly at batch 1, a small UNet issues many short kernels: the H200
# finishes each before the host has launched the next, so it sits mostly idle, draws little more than its idle
# power, and the generation lasts as long as the host takes to launch it. Its energy is then roughly idle-ish
# power x host-paced time, which a faster GPU does not shorten. A DiT or a large UNet keeps the GPU busy and
# gains from the H200's compute. The table below sets each model's per-step energy on both platforms (their
# ratio, and its rank on each) beside its busy fraction, mean power and the share of its energy that the idle
# power alone accounts for; the lines under it say the same per model.
#
# The process's CPU time / wall time (`cpu_time_per_wall_mean`) cannot tell launch work from waiting: CUDA
# synchronisation waits by spinning, so the host thread holds a core for the whole generation whether it is
# launching kernels or waiting. Read it only as whether the host was descheduled; the busy fraction shows
# which of the two the time was.

# %%
try:
    host_rows = summaries.host_rows(inputs.runs)
    host = summaries.host_summary(inputs.runs)
except AnalysisError as exc:
    host_rows, host = pd.DataFrame(), pd.DataFrame()
    print(f"no host diagnostics: {exc}")
plots.plot_host_diagnostics(host_rows, host, inputs.figures)
if not host.empty:
    display(host.round(3))

# %%
if not host.empty and reference in available and others:
    explained = compare.ranking_with_host(per_model, host, others[0])
    display(explained[["model", "slope_J_per_step_reference", "slope_J_per_step_other",
                       "slope_ratio_other_to_reference", "rank_reference", "rank_other", "rank_change",
                       "gpu_busy_fraction_mean", "power_W_mean", "idle_energy_share_mean"]].round(3))
    for line in compare.ranking_sentences(explained):
        print(line)
if not host.empty:
    print(compare.host_sentence(host))

# %% [markdown]
# ## How much of the energy becomes arithmetic: FLOP per joule
#
# The same sweep in the units of the hardware: the FLOPs of one denoiser call (counted by `tta-energy
# describe`: classifier-free guidance, 10 s, batch 1) over the energy one call costs (the slope of energy
# against denoiser calls over every run), and the FLOPs of a whole generation at 100 steps over its mean
# energy, in TFLOP per joule with 95% intervals; for the batch sweep, the denoising phase of each layout (its
# FLOPs over its measured phase energy). The H200's bf16 matrix-product ceiling, measured with the
# same meter by the levers experiment, is what the GPU can turn a joule into at best. A model far below it on
# both platforms is limited by something other than the arithmetic (launches, precision); a model that
# gains on the H200 is the one whose arithmetic the faster GPU can feed.

# %%
try:
    flop_table = efficiency.efficiency_table(inputs.runs, inputs.ceilings)
except AnalysisError as exc:
    flop_table = pd.DataFrame()
    print(f"no steps sweep: {exc}")
try:
    batch_flops = efficiency.batch_efficiency(inputs.runs, inputs.ceilings)
except AnalysisError as exc:
    batch_flops = pd.DataFrame()
    print(f"no batch sweep: {exc}")
plots.plot_flop_efficiency(flop_table, batch_flops, inputs.figures)
if not flop_table.empty:
    display(flop_table[["gpu_name", "model", "dtype", "gflop_per_call", "slope_J_per_call",
                        "denoiser_tflop_per_J", "generation_tflop_per_J", "denoiser_fraction_of_ceiling",
                        "reason"]].round(3))
if not batch_flops.empty:
    display(batch_flops.dropna(subset=["denoising_tflop_per_J"])[
        ["gpu_name", "model", "n_prompts", "waveforms_per_prompt", "n_runs", "denoising_tflop_per_J",
         "denoising_fraction_of_ceiling"]].round(3))

# %% [markdown]
# ## How far one configuration's energy moves, and why
#
# Repeats of one configuration scatter, more for the host-paced models. The table splits that scatter of log
# energy into a part between processes (one `tta-energy sweep` or `campaign run` each: host and process state)
# and a part within a process (a mixed model with the configuration as fixed effect and a random intercept per
# process; `docs/analysis.md`), and says how much of the scatter within a configuration its duration explains:
# a slope near 1 (log energy on log wall time) means a generation cost more because it took longer at the same
# power, which is what a host-paced GPU does; the GPU-bound models' energy moves far less than their duration.
# With the few processes each model has (`n_processes`) the between-process SD is rough (its bootstrap
# interval is in `figures/tables/spread_h200.csv`).

# %%
h200 = summaries.usable_runs(inputs.runs)
h200 = h200[rows_of_gpu(h200["gpu_name"])]
spread_steps = spread.spread_table(h200, experiments=("steps",), draws=0)
if not spread_steps.empty:
    display(spread_steps[["model", "n_processes", "between_process_sd_pct", "within_process_sd_pct",
                          "between_process_share", "gpu_busy_fraction_mean", "energy_time_slope",
                          "energy_time_r2"]].sort_values("gpu_busy_fraction_mean"))
