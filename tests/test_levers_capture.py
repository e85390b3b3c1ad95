"""The example step a lever is captured and timed on (``denoiser_call``) is the call the denoising loop
makes, at batch 1 and at several waveforms per prompt: the same structure, shapes, dtypes and autograd mode,
so that the CUDA graph captured while applying ``graphs``/``max`` is the one the generation replays (a second
signature would capture a second graph, and the attention backend would have been timed on a call the loop
never makes)."""

from __future__ import annotations

import pytest
import torch

from tta_energy.levers.apply import CudaGraphDenoiser, DenoiserWrapper
from tta_energy.models.base import GenerationRequest
from tta_energy.models.catalogue import entry, model_names
from tta_energy.models.registry import build_model
from tta_energy.study import STUDY_PROMPT

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Recorder(DenoiserWrapper):
    """The denoiser, recording the CUDA-graph key of each call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__(inner)
        self.keys: list[tuple] = []

    def forward(self, *args, **kwargs):
        self.keys.append(CudaGraphDenoiser.signature(args, kwargs)[0])
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("model", model_names())
def test_the_example_step_is_the_call_the_loop_makes(model, batch):
    adapter = build_model(model, size="tiny", dtype="float32", device="cpu")
    recorder = adapter.denoiser = Recorder(adapter.denoiser)
    sized = entry(model).defaults.at_size("tiny")
    seconds = sized.fixed_duration_s or min(sized.duration_s, 1.0)
    call = adapter.denoiser_call(duration_s=seconds, batch=batch)
    with torch.inference_mode():  # as levers.apply captures it
        recorder(*call.args, **call.kwargs)
    adapter.generate(GenerationRequest(prompts=[STUDY_PROMPT], steps=10, duration_s=seconds, seed=3,
                                       waveforms_per_prompt=batch))
    example, loop = recorder.keys[0], set(recorder.keys[1:])
    assert len(loop) == 1 and example in loop
