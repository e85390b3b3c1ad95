"""Numeric precision: its names, the one rule that decides a generation's precision, and torch's dtypes.

A precision travels through the package as its canonical name (``float32``, ``float16``, ``bfloat16``, as
the run table's ``dtype`` column stores it); it becomes a ``torch.dtype`` only where a model is built or
cast (:func:`torch_dtype`). Importing this module does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tta_energy.devices import is_gpu
from tta_energy.errors import TtaError

if TYPE_CHECKING:
    import torch

#: canonical names, in the order the precision experiment and the figures use
DTYPE_NAMES: tuple[str, ...] = ("float32", "float16", "bfloat16")
#: accepted spellings -> canonical name (the short ones are also the precision levers' names)
DTYPE_ALIASES: dict[str, str] = {"float32": "float32", "fp32": "float32", "float16": "float16",
                                 "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


class PrecisionError(TtaError):
    """An unknown precision name; the message is one line."""


def canonical_dtype(name: str | torch.dtype) -> str:
    """``fp16``, ``float16`` or ``torch.float16`` -> ``float16``; one clear error for anything else."""
    text = str(name).removeprefix("torch.").lower()
    try:
        return DTYPE_ALIASES[text]
    except KeyError:
        raise PrecisionError(f"unknown dtype {str(name)!r}: use one of {', '.join(DTYPE_NAMES)}") from None


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    """The ``torch.dtype`` of a precision name (a ``torch.dtype`` is returned as it is)."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    return getattr(torch, canonical_dtype(name))


def default_precision(study_dtype: str, device: str | None) -> str:
    """What a model runs in when nothing asks for a precision: the study's precision on a GPU, float32 on a
    CPU (half precision there is slow or unsupported by some kernels). ``device`` None (not chosen yet) or
    ``meta`` (shapes only) keeps the study's."""
    if device is not None and device != "meta" and not is_gpu(device):
        return "float32"
    return canonical_dtype(study_dtype)


def generation_precision(model: str, lever: str | None = None, configured: str | None = None,
                         option: str | None = None, device: str | None = None) -> str:
    """The precision one generation runs in: the levers' precision (``fp16``, ``max``...), else the
    configuration's (the precision experiment's grid), else the command line's ``--dtype``, else the model's
    default: the study's precision (from the catalogue) on a GPU, float32 on a CPU (half precision there is
    slow or unsupported by some kernels). ``device`` None means a GPU: a plan made on a CPU for GPU runs
    (a campaign's cells) gets the study's precision."""
    from tta_energy.models.catalogue import entry

    for name in (lever, configured, option):
        if name is not None:
            return canonical_dtype(name)
    return default_precision(entry(model).defaults.dtype, device)
