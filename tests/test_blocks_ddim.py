"""LDM DDIM sampler: uniform spacing (150 steps = 167 calls), step math checked against diffusers' DDIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from tta_energy.models.blocks.ddim import (
    LdmDdimSampler,
    ldm_alphas_cumprod,
    ldm_denoiser_calls,
    ldm_uniform_timesteps,
)


@pytest.mark.parametrize("steps", [10, 25, 50, 100, 200])
def test_study_step_counts_other_than_150_are_exact(steps: int) -> None:
    assert ldm_denoiser_calls(steps) == steps


def test_150_steps_make_167_calls_with_stride_6() -> None:
    ts = ldm_uniform_timesteps(150)
    assert len(ts) == 167 == ldm_denoiser_calls(150)
    assert ts[0] == 1 and ts[-1] == 997 and set(np.diff(ts)) == {6}


@pytest.mark.parametrize(("steps", "said"), [
    (0, "steps must be >= 1, got 0"),
    *[(n, f"cannot run {n} steps: stride {1000 // n} reaches timestep 1000, past the last of 1000")
      for n in (3, 9, 27, 1000)],
    (1001, r"steps \(1001\) cannot exceed the 1000 training timesteps"),
])
def test_step_counts_ldm_cannot_run_are_rejected(steps: int, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        ldm_uniform_timesteps(steps)


def test_schedule_is_diffusers_scaled_linear() -> None:
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    torch.testing.assert_close(ldm_alphas_cumprod(), scheduler.alphas_cumprod, rtol=1e-5, atol=1e-6)


def _fake_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a denoiser's noise prediction (depends on x and t)."""
    return 0.3 * x + torch.sin(t.float() / 100.0).view(-1, 1, 1)


@pytest.mark.parametrize("steps", [25, 150])
def test_loop_matches_diffusers_ddim_on_ldm_timesteps(steps: int) -> None:
    """Same timesteps, same eps -> diffusers' DDIM (eta 0, final alpha alphas_cumprod[0]) gives the same x0.

    diffusers' own ``set_timesteps`` spaces 150 steps differently, so its timesteps are set to LDM's; its step
    uses ``t - 1000 // num_inference_steps`` as the previous timestep, which is LDM's stride.
    """
    x0 = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    ours, calls = LdmDdimSampler().sample(x0.clone(), steps, _fake_eps)

    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        set_alpha_to_one=False,
        clip_sample=False,
        steps_offset=1,
    )
    scheduler.set_timesteps(steps)
    scheduler.timesteps = torch.from_numpy(ldm_uniform_timesteps(steps)[::-1].copy())
    x = x0.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(_fake_eps(x, t.expand(2)), int(t), x, eta=0.0).prev_sample
    assert calls == len(scheduler.timesteps) == ldm_denoiser_calls(steps)
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-5)
