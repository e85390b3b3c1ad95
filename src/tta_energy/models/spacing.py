"""Which step counts a model's sampler can run, without torch: the early checks of the command line and the
adapters share these rules.

* ``diffusers``: a diffusers scheduler spaces ``steps`` over its training timesteps and refuses more steps
  than it has (1000 for every model here);
* ``ldm-uniform``: LDM's DDIM "uniform" spacing (Make-An-Audio 1 and 2) takes the integer stride
  ``c = T // n`` and the timesteps ``range(0, T, c)`` shifted by one, so it makes ``ceil(T / (T // n))``
  denoiser calls, not ``n`` (150 steps -> 167), and fails when the last timestep reaches ``T`` (3, 9, 27, 37
  steps for T = 1000).
"""

from __future__ import annotations

import numpy as np

SPACINGS: tuple[str, ...] = ("diffusers", "ldm-uniform")


def ldm_uniform_timesteps(steps: int, train_timesteps: int = 1000) -> np.ndarray:
    """The DDIM timesteps LDM visits for ``steps`` nominal steps, ascending (1, 1 + c, 1 + 2c, ...)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps > train_timesteps:
        raise ValueError(f"steps ({steps}) cannot exceed the {train_timesteps} training timesteps")
    stride = train_timesteps // steps
    timesteps = np.arange(0, train_timesteps, stride, dtype=np.int64) + 1
    if timesteps[-1] >= train_timesteps:
        # LDM indexes alphas_cumprod[train_timesteps] here and fails (stride divides T - 1: 3, 9, 27, 37, ...)
        raise ValueError(f"LDM's uniform DDIM spacing cannot run {steps} steps: stride {stride} reaches "
                         f"timestep {timesteps[-1]}, past the last of {train_timesteps}")
    return timesteps


def denoiser_iterations(spacing: str, steps: int, train_timesteps: int = 1000) -> int:
    """Denoiser iterations a sampler with ``spacing`` runs for ``steps`` nominal steps: ``steps`` for the
    diffusers schedulers, one per visited timestep for LDM's uniform DDIM spacing (150 -> 167)."""
    if spacing == "ldm-uniform":
        return len(ldm_uniform_timesteps(steps, train_timesteps))
    if spacing != "diffusers":
        raise ValueError(f"unknown step spacing {spacing!r}: expected one of {', '.join(SPACINGS)}")
    return int(steps)


def steps_problem(spacing: str, steps: int, train_timesteps: int = 1000) -> str | None:
    """Why a sampler with ``spacing`` cannot run ``steps`` steps (one line), or None when it can."""
    if steps < 1:
        return f"steps must be >= 1, got {steps}"
    if steps > train_timesteps:
        return f"steps must be <= {train_timesteps} (the sampler's training timesteps), got {steps}"
    if spacing == "ldm-uniform":
        try:
            ldm_uniform_timesteps(steps, train_timesteps)
        except ValueError as exc:
            return str(exc)
    elif spacing != "diffusers":
        raise ValueError(f"unknown step spacing {spacing!r}: expected one of {', '.join(SPACINGS)}")
    return None
