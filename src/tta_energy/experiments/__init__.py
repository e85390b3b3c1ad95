"""Experiments: sweep definitions (grids), the measuring runner, resume and torchrun sharding; the smoke run
and the meter validation.

``tta-energy sweep`` (cli/sweep_commands.py) and the per-model scripts in ``inferences/`` call
:func:`tta_energy.experiments.runner.run_sweep`.
"""
