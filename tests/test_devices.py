"""The one rule for device names: which are GPUs, and which index a CUDA name selects."""

import pytest
import torch

from tta_energy.devices import cuda_index, is_gpu
from tta_energy.precision import default_precision


@pytest.mark.parametrize(("device", "gpu", "index"), [
    ("cuda", True, 0), ("cuda:1", True, 1), (torch.device("cuda", 2), True, 2),
    (torch.device("cuda"), True, 0), ("cpu", False, None), (torch.device("cpu"), False, None),
    ("meta", False, None), ("cudafoo", False, None),
])
def test_a_device_is_a_gpu_exactly_when_it_names_a_cuda_index(device, gpu, index):
    assert is_gpu(device) is gpu
    assert cuda_index(str(device)) == index


def test_the_default_precision_is_float32_on_a_cpu_and_the_studys_elsewhere():
    assert default_precision("float16", "cpu") == "float32"
    assert default_precision("float16", "cuda:1") == "float16"
    assert default_precision("float16", "meta") == "float16"
    assert default_precision("float16", None) == "float16"
