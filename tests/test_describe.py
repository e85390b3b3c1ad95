"""describe: parameter counts, denoiser input shape and FLOPs on the meta device (within 1% of hand
counts)."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from tta_energy.models.base import ModuleCall
from tta_energy.models.catalogue import (
    BUILTIN_NAMES,
    DESCRIBE_DURATION_S,
    DESCRIBE_TABLE,
    model_names,
    precomputed_description,
)
from tta_energy.models.describe import FLOP_METHOD, count_flops, describe_model

# hand counts from the published configs (parameters, per-step and per-generation GFLOP)
EXPECTED = {
    "audioldm": {"total": 421.0e6, "denoiser": 185.0e6, "shape": [2, 8, 250, 16], "gflop_step": 202.5,
                 "per_generation": {"text_encoder": 193.0, "vae": 654.0, "vocoder": 1003.0}},
    "audioldm2": {"total": 1118.3e6, "denoiser": 346.9e6, "shape": [2, 8, 250, 16], "gflop_step": 334.4,
                  "per_generation": {"text_encoder": 193.0, "text_encoder_2": 24.74, "vae": 654.0,
                                     "vocoder": 1003.0}},  # T5-large over 20 tokens
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@functools.cache
def described(name: str) -> dict:
    return describe_model(name, "full")


def within(value: float, expected: float, tolerance: float = 0.01) -> bool:
    return abs(value - expected) <= tolerance * expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_full_size_matches_the_reference_table(name):
    d = described(name)
    want = EXPECTED[name]
    assert d["model"] == name and d["size"] == "full" and d["flop_method"] == FLOP_METHOD
    assert isinstance(d["total_params"], int) and isinstance(d["denoiser_params"], int)
    assert within(d["total_params"], want["total"]), d["total_params"]
    assert within(d["denoiser_params"], want["denoiser"]), d["denoiser_params"]
    assert d["denoiser_input_shape"] == want["shape"]
    assert within(d["gflop_per_step"], want["gflop_step"]), d["gflop_per_step"]
    by_call = d["gflop_once_per_generation_by_call"]
    for call, gflop in want["per_generation"].items():
        assert within(by_call[call], gflop), (call, by_call)
    assert d["gflop_once_per_generation"] == pytest.approx(sum(by_call.values()), rel=1e-6)
    assert sum(d["components"].values()) == d["total_params"]


def test_audioldm2_counts_gpt2_generation_and_keeps_clap_audio_branch():
    d = described("audioldm2")
    # 1 pass over 25 embeddings + 7 cached single-token passes, prompt and negative: ~11 GFLOP by hand
    assert 10.0 < d["gflop_once_per_generation_by_call"]["language_model"] < 15.0
    assert d["components"]["text_encoder"] == pytest.approx(193.9e6, rel=0.01)  # incl. HTSAT audio branch
    assert d["notes"]["t5_tokens"] == 20 and d["notes"]["clap_token_length"] == 512


def test_count_flops_is_two_per_multiply_add():
    layer = torch.nn.Linear(10, 20, device="meta")
    assert count_flops(ModuleCall("linear", layer, (torch.zeros(3, 10, device="meta"),))) == 2 * 3 * 10 * 20


@pytest.mark.parametrize("size", ["full", "tiny"])
@pytest.mark.parametrize("name", model_names())
def test_the_stored_table_is_what_describe_counts_now(name, size):
    """``tta-energy describe`` serves 10 s from a stored table; counted again here, it must match exactly
    (after a model change: python -m tta_energy.models.describe)."""
    stored = precomputed_description(name, size, DESCRIBE_DURATION_S)
    assert stored is not None, f"{name} ({size}) is missing from {DESCRIBE_TABLE}"
    counted = described(name) if size == "full" else describe_model(name, size)
    assert json.loads(json.dumps(counted)) == stored
    assert precomputed_description(name, size, 5.0) is None


@pytest.mark.parametrize("model", BUILTIN_NAMES)
def test_a_denoisers_flops_grow_linearly_with_its_batch(model):
    """What the batch sweep's FLOP per joule rests on (analysis/efficiency.py): one denoiser call of b clips
    does b times the arithmetic of one clip's."""
    one = describe_model(model, "tiny", batch=1)["gflop_per_step"]
    three = describe_model(model, "tiny", batch=3)["gflop_per_step"]
    assert three == pytest.approx(3 * one, rel=1e-3, abs=3e-3)  # the counts are rounded to 1e-3 GFLOP
