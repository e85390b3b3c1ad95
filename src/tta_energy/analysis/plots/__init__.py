"""Figures (PDF + PNG) from the analysis tables, and the caption manifest behind ``figures/index.md``.

Each ``plot_*`` function draws one figure from a table (never from raw files), saves it with
:func:`save_figure` and returns the stem, or records a skipped figure with a note and returns ``None``.
Every model keeps one colour and every step count one marker across all figures. One module per figure
family; this package re-exports them.
"""

from tta_energy.analysis.plots.common import (
    DATASET_LABELS,
    MANIFEST,
    METRIC_LABELS,
    MODEL_PALETTE,
    STEP_MARKERS,
    model_colour,
    model_label,
    read_manifest,
    save_figure,
    skip_figure,
    slug,
)
from tta_energy.analysis.plots.comparison import plot_platform_comparison
from tta_energy.analysis.plots.efficiency import plot_flop_efficiency
from tta_energy.analysis.plots.host import plot_host_diagnostics
from tta_energy.analysis.plots.power import (
    generation_trace,
    phase_means,
    plot_phases,
    plot_power_trace,
    read_trace,
    resolve_trace,
)
from tta_energy.analysis.plots.quality import plot_pareto, plot_platform_fronts, plot_sanity
from tta_energy.analysis.plots.steps import plot_batch_energy, plot_energy_vs_steps
from tta_energy.analysis.plots.sweeps import plot_parameter_sweeps

__all__ = [
    "DATASET_LABELS",
    "MANIFEST",
    "METRIC_LABELS",
    "MODEL_PALETTE",
    "STEP_MARKERS",
    "generation_trace",
    "model_colour",
    "model_label",
    "phase_means",
    "plot_batch_energy",
    "plot_energy_vs_steps",
    "plot_flop_efficiency",
    "plot_host_diagnostics",
    "plot_pareto",
    "plot_parameter_sweeps",
    "plot_phases",
    "plot_platform_fronts",
    "plot_platform_comparison",
    "plot_power_trace",
    "plot_sanity",
    "read_manifest",
    "read_trace",
    "resolve_trace",
    "save_figure",
    "skip_figure",
    "slug",
]
