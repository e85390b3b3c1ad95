"""The one rule for a ``--device`` value, shared by every command and the runners behind them.

``cpu``, ``cuda`` or ``cuda:N``; a CUDA device only where torch sees that GPU. Torch is imported only for a
CUDA value, so a refused command pays for no import it does not need.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tta_energy.errors import TtaError

if TYPE_CHECKING:
    import pandas as pd

_CUDA = r"cuda(:\d+)?"
_DEVICE = re.compile(rf"^(cpu|{_CUDA})$")
#: what every command's --device option says
DEVICE_HELP = "cpu, cuda or cuda:N (default: cuda when available)"


def cuda_index(name: str) -> int | None:
    """The index of a ``cuda`` or ``cuda:N`` device name (``cuda`` is 0); None for any other name."""
    return int(name.partition(":")[2] or 0) if re.fullmatch(_CUDA, name) else None


def is_gpu(device: object) -> bool:
    """Whether ``device`` (a name such as ``cuda:1``, or a ``torch.device``) is a CUDA GPU: the rule for a
    device given by name, so ``cuda``, ``cuda:N`` and a torch device all answer alike."""
    return cuda_index(str(device)) is not None


def check_device(name: str | None, cpu_allowed: bool = True) -> str | None:
    """``name`` when this machine can run on it (None: chosen later, cuda when available), else one line
    naming the problem and what is allowed (``cpu_allowed``: whether that includes the CPU)."""
    if name is None:
        return None
    if not _DEVICE.match(name):
        raise TtaError(f"unknown device {name!r}: use cpu, cuda or cuda:N")
    if is_gpu(name):
        import torch

        if not torch.cuda.is_available():
            instead = "use --device cpu" if cpu_allowed else "this command measures an NVIDIA GPU"
            raise TtaError(f"--device {name} was asked for but torch sees no GPU ({instead})")
        count = torch.cuda.device_count()
        index = cuda_index(name)
        if index >= count:
            raise TtaError(f"--device {name}: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return name


#: the GPU (a part of its name) whose tables the committed figures and docs are built on (the campaign's)
PROJECT_GPU = "H200"


def names_gpu(required: str, gpu_name: str) -> bool:
    """Whether ``required`` (a part of a GPU's name, e.g. ``H200``, as plan files and tables give it) names
    the GPU called ``gpu_name`` (as NVML and torch report it): the one rule for matching a card; any case."""
    return bool(required) and required.lower() in str(gpu_name).lower()


def rows_of_gpu(gpu_names: pd.Series, required: str = PROJECT_GPU) -> pd.Series:
    """Which rows of a table's ``gpu_name`` column :func:`names_gpu` matches (a missing name matches none)."""
    return gpu_names.map(lambda name: isinstance(name, str) and names_gpu(required, name)).astype(bool)


def gpu_mismatch(required: str | None, device: str) -> str | None:
    """Why ``device`` is not the GPU ``required`` names (a part of its name, e.g. ``H200``; any case), or
    None when it is, or when nothing is required: a table of one GPU's numbers takes no other GPU's rows."""
    if not required:
        return None
    name = ""
    if is_gpu(device):
        import torch

        name = torch.cuda.get_device_name(torch.device(device))
    return None if names_gpu(required, name) else f"this device is {name or device}, not an {required}"


def chosen_device(name: str | None) -> str:
    """``name`` checked, or cuda when torch sees a GPU, else cpu."""
    if check_device(name) is not None:
        return name  # type: ignore[return-value]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
