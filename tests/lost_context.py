"""Fault injection for the tests of a lost CUDA context, on the CPU: the generations of one lever spec fail
as a kernel's launch failure does on a GPU (torch's error text; every later CUDA call of such a process fails
the same way). The rest of the path is the real one: the row is measured, written and judged as on a GPU.

In a test: ``install("channels-last")``. In a child process: put this folder and
``tests/lost_context_site`` on PYTHONPATH and set ``TTA_ENERGY_TEST_LOSE_CONTEXT=SPEC`` (and
``TTA_ENERGY_TEST_LOSE_CONTEXT_ONCE=FILE`` for one loss only, across processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: how torch words the CUDA runtime's cudaErrorLaunchFailure
LAUNCH_FAILURE = "CUDA error: unspecified launch failure"


class LosesContext:
    """``adapter`` whose generation raises the launch failure; everything else is the adapter's own."""

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def generate(self, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(LAUNCH_FAILURE)


def install(spec: str, once: Path | None = None) -> None:
    """From now on in this process, every generation (sweep, campaign, levers) of lever spec ``spec`` loses
    the context; with ``once``, only the first one while the file ``once`` does not exist (it is created)."""
    from tta_energy.experiments import runner
    from tta_energy.levers import experiment

    real = runner.measure_one

    def measure_one(meter: Any, adapter: Any, rc: Any, name: str, item: Any, is_warmup: bool) -> Any:
        if rc.opts.levers.spec == spec and not (once is not None and once.exists()):
            if once is not None:
                once.touch()
            adapter = LosesContext(adapter)
        return real(meter, adapter, rc, name, item, is_warmup)

    runner.measure_one = measure_one  # the sweeps' and the campaign's measure_pair
    experiment.measure_one = measure_one  # the levers harness
