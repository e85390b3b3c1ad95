"""Validation of the energy meter against ground truth, side by side with its peers (CodeCarbon, Zeus).

It is an experiment on the meter, run by ``benchmarks/meter_validation.py``:

* :mod:`.protocol`: the protocol (ground-truth blocks, steady and isolated trials, overhead) over a rig;
* :mod:`.rigs`: the rigs it runs on: a simulated GPU in virtual time, and a real GPU with its workloads;
* :mod:`.report`: the statistics, the targets' verdicts and the written summary.
"""
