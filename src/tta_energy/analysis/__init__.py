"""Analysis of run tables: the study's import, summaries, Pareto fronts, sanity statistics and figures.

Modules:

* :mod:`~tta_energy.analysis.study_tree` — the study's tree: where it is, its names, its CodeCarbon files;
* :mod:`~tta_energy.analysis.study_import` — the study's published tree -> run-record rows + score tables;
* :mod:`~tta_energy.analysis.summaries` — steps / batch summaries and per-step fits;
* :mod:`~tta_energy.analysis.pareto` — energy-vs-quality fronts with bootstrap front frequencies;
* :mod:`~tta_energy.analysis.sanity` — subset-vs-full-set statistics (Pearson r, "ANCOVA");
* :mod:`~tta_energy.analysis.compare` — the study's own aggregates, H200 vs A40 comparison;
* :mod:`~tta_energy.analysis.tables` — the analysis tables of ``tta-energy analyze`` written atomically;
* :mod:`~tta_energy.analysis.plots` — figures (PDF + PNG) and the caption manifest;
* :mod:`~tta_energy.analysis.reproduce` — executes the notebooks and writes ``figures/index.md``.
"""
