"""The latent-diffusion (LDM) DDIM sampler that Make-An-Audio 1 and 2 use, with its "uniform" step spacing.

LDM's ``make_ddim_timesteps(ddim_discr_method="uniform")`` takes the integer stride ``c = T // n`` and the
timesteps ``range(0, T, c)`` shifted by one, so the number of denoiser calls is ``ceil(T / (T // n))``, not
``n``: for T = 1000, n = 150 gives stride 6 and **167** calls (as the study's Make-An-Audio runs made,
arXiv 2505.07615), while 10, 25, 50, 100 and 200 are exact.

Per step (eta = 0, ``DDIMSampler.p_sample_ddim``): with a_t = alphas_cumprod[t] and a_prev the value at the
previous (smaller) DDIM timestep (``alphas_cumprod[0]`` after the last one),
``x0 = (x - sqrt(1 - a_t) * eps) / sqrt(a_t)`` and ``x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps``.
Noise schedule: LDM "linear" = betas ``linspace(sqrt(start), sqrt(end), T) ** 2`` (diffusers "scaled_linear").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tta_energy.models.spacing import denoiser_iterations, ldm_uniform_timesteps

__all__ = ["LdmDdimSampler", "ldm_alphas_cumprod", "ldm_denoiser_calls", "ldm_uniform_timesteps"]


def ldm_denoiser_calls(steps: int, train_timesteps: int = 1000) -> int:
    """Denoiser evaluations LDM's DDIM makes for ``steps`` nominal steps (one per visited timestep)."""
    return denoiser_iterations("ldm-uniform", steps, train_timesteps)


def ldm_alphas_cumprod(
    linear_start: float = 0.00085, linear_end: float = 0.012, train_timesteps: int = 1000
) -> torch.Tensor:
    """LDM's "linear" schedule (computed in float64, stored in float32 as LDM's buffers are)."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


class LdmDdimSampler:
    """Deterministic DDIM (eta 0) over LDM's uniform timesteps."""

    def __init__(
        self, linear_start: float = 0.00085, linear_end: float = 0.012, train_timesteps: int = 1000
    ) -> None:
        self.train_timesteps = train_timesteps
        self.alphas_cumprod = ldm_alphas_cumprod(linear_start, linear_end, train_timesteps)

    def timesteps(self, steps: int) -> np.ndarray:
        return ldm_uniform_timesteps(steps, self.train_timesteps)

    def sample(
        self, x: torch.Tensor, steps: int, eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, int]:
        """Run the loop from noise ``x``; ``eps_fn(x, t)`` returns the (guided) noise prediction.

        ``t`` is a long tensor of shape (batch,) on ``x``'s device. Returns (x_0, denoiser evaluations).
        """
        ts = self.timesteps(steps)
        alphas = self.alphas_cumprod[ts]
        alphas_prev = torch.cat([self.alphas_cumprod[:1], self.alphas_cumprod[ts[:-1]]])
        calls = 0
        for i in reversed(range(len(ts))):
            t = torch.full((x.shape[0],), int(ts[i]), device=x.device, dtype=torch.long)
            eps = eps_fn(x, t)
            calls += 1
            a_t, a_prev = float(alphas[i]), float(alphas_prev[i])
            x0 = (x - (1.0 - a_t) ** 0.5 * eps) / a_t**0.5
            x = a_prev**0.5 * x0 + (1.0 - a_prev) ** 0.5 * eps
        return x, calls
