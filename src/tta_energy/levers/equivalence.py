"""The equivalence check: does a lever configuration still compute the model's function?

Each configuration's final latents and waveforms are compared with an fp32 eager reference of the same seed
and weights (:func:`relative_error`), and judged against the error of the study's own default: the model in
its default precision, eager (``none``). A configuration is lossless when its error is within
:data:`YARDSTICK_FACTOR` times that error (:func:`is_lossless`; :data:`ERROR_FLOOR` where it is 0 or
unknown). The yardstick does not move with the configuration's precision: an fp16 configuration of a model
the study ran in fp32 is judged against the fp32 eager error, so a change of precision counts as lossless
only where it keeps the study's own accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tta_energy.levers.spec import Levers, parse_levers
from tta_energy.precision import canonical_dtype

if TYPE_CHECKING:
    import torch


def _as_float64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        import torch

        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def relative_error(value: torch.Tensor | np.ndarray | None,
                   reference: torch.Tensor | np.ndarray | None) -> float:
    """``||value - reference|| / ||reference||`` in float64; NaN when either is missing, the shapes differ
    (a behaviour-changing lever) or the reference is zero; inf when ``value`` is not finite."""
    if value is None or reference is None:
        return float("nan")
    v, r = _as_float64(value), _as_float64(reference)
    if v.shape != r.shape:
        return float("nan")
    if not np.isfinite(v).all():
        return float("inf")
    norm = float(np.linalg.norm(r))
    if norm == 0.0:
        return float("nan")
    return float(np.linalg.norm(v - r) / norm)


#: The tolerance at each study precision where the study default's error gives no yardstick (not measured,
#: or 0: a default that computes the reference's own kernels, against which any reordering would fail).
ERROR_FLOOR: dict[str, float] = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 1.6e-2}
#: A lever may move the output by this factor times the error of the study's default (``none``).
YARDSTICK_FACTOR = 2.0


def error_tolerance(study_dtype: str, yardstick: float | None) -> float:
    """Largest relative error a lossless configuration of a model may show: ``YARDSTICK_FACTOR`` times the
    error of the model's study default (``none``, eager, in ``study_dtype``, its default precision); the
    :data:`ERROR_FLOOR` of ``study_dtype`` only where that error is missing, not finite or 0."""
    if yardstick is None or not np.isfinite(yardstick) or yardstick <= 0:
        return ERROR_FLOOR.get(canonical_dtype(study_dtype), ERROR_FLOOR["bfloat16"])
    return YARDSTICK_FACTOR * float(yardstick)


def is_lossless(levers: Levers | str, study_dtype: str, rel_error: float, yardstick: float | None) -> bool:
    """True when the configuration computes the model's function as accurately as the study's default does:
    its error against fp32 within :func:`error_tolerance` of the study default's error ``yardstick``."""
    levers = parse_levers(levers)
    if levers.changes_behaviour:
        return False
    if rel_error is None or not np.isfinite(rel_error):
        return False
    return bool(rel_error <= error_tolerance(study_dtype, yardstick))

