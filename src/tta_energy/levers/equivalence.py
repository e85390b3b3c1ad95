"""The equivalence check: does a lever configuration still compute the model's function?

Each configuration's final latents and waveforms are compared with an fp32 eager reference of the same seed
and weights (:func:`relative_error`), and judged against the error of the study's own default: the model in
its default precision, eager (``none``), at the same step count, its *yardstick*. :func:`judge_lossless` is
the rule, in this order:

* the fp32 reference (:data:`~tta_energy.levers.spec.REFERENCE_SPEC`) is lossless: it is what every error is
  measured against;
* a configuration that changes the computation by design (``fp8``, ``trim-latents``) never is;
* without a finite latents yardstick (the default's latents error not measured) it is not judged lossless;
* its latents error must be within :func:`error_tolerance`: :data:`YARDSTICK_FACTOR` times the yardstick, or
  the :data:`ERROR_FLOOR` of the study's precision where the yardstick is 0;
* its waveform error likewise, against the default's waveform error (the floor where that error is 0 or
  not measured), except where the default's waveform error is :data:`UNINFORMATIVE_ERROR` or more: then the
  waveform is not judged and the latents decide.

A missing or non-finite error of the configuration itself is never within a tolerance. The yardstick does not
move with the configuration's precision: an fp16 configuration of a model the study ran in fp32 is judged
against the fp32 eager error, so a change of precision counts as lossless only where it keeps the study's own
accuracy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tta_energy.levers.spec import REFERENCE_SPEC, Levers, parse_levers
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


#: The tolerance at each study precision where the study default's error is 0 (a default that computes the
#: reference's own kernels, against which any reordering of a sum would fail), and for the waveform where the
#: default's waveform error was not measured.
ERROR_FLOOR: dict[str, float] = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 1.6e-2}
#: A lever may move the output by this factor times the error of the study's default (``none``).
YARDSTICK_FACTOR = 2.0
#: A study default whose waveform differs this much from fp32 makes the waveform comparison uninformative at
#: that precision (random-weight vocoders can output ~1e-10, which underflows in fp16); the latents decide.
UNINFORMATIVE_ERROR = 0.5


def _measured(x: float | None) -> bool:
    return x is not None and bool(np.isfinite(x))


def error_tolerance(study_dtype: str, yardstick: float | None) -> float:
    """Largest relative error one output (latents or waveform) of a lossless configuration may show:
    ``YARDSTICK_FACTOR`` times ``yardstick``, the error of the model's study default (``none``, eager, in
    ``study_dtype``, its default precision); the :data:`ERROR_FLOOR` of ``study_dtype`` where ``yardstick``
    is 0, missing or not finite. (:func:`judge_lossless` never reaches the floor for a missing latents
    yardstick: without it a configuration is not judged lossless.)"""
    if not _measured(yardstick) or yardstick <= 0:
        return ERROR_FLOOR.get(canonical_dtype(study_dtype), ERROR_FLOOR["bfloat16"])
    return YARDSTICK_FACTOR * float(yardstick)


def is_lossless(levers: Levers | str, study_dtype: str, rel_error: float, yardstick: float | None) -> bool:
    """One output's check of :func:`judge_lossless`: False for a configuration that changes the computation
    by design (``fp8``, ``trim-latents``) or a missing or non-finite ``rel_error``; else whether
    ``rel_error`` (against fp32) is within :func:`error_tolerance` of ``yardstick`` (the floor where it is 0,
    missing or not finite)."""
    levers = parse_levers(levers)
    if levers.changes_behaviour:
        return False
    if not _measured(rel_error):
        return False
    return bool(rel_error <= error_tolerance(study_dtype, yardstick))


def judge_lossless(levers: Levers | str, study_dtype: str, latents_error: float | None,
                   latents_yardstick: float | None, audio_error: float | None,
                   audio_yardstick: float | None) -> bool:
    """Whether a configuration computes the model's function as accurately as the study's default does (the
    rule of the module's docstring): the fp32 reference always; otherwise never where the configuration
    changes the computation or ``latents_yardstick`` is missing or not finite; else its latents error within
    tolerance (:func:`is_lossless`; the floor where the yardstick is 0) and its waveform error too, unless
    ``audio_yardstick`` is :data:`UNINFORMATIVE_ERROR` or more (a missing ``audio_yardstick`` holds the
    waveform to the floor)."""
    levers = parse_levers(levers)
    if levers.spec == REFERENCE_SPEC:
        return True
    if not _measured(latents_yardstick):
        return False
    if not is_lossless(levers, study_dtype, latents_error, latents_yardstick):
        return False
    if audio_yardstick is not None and audio_yardstick >= UNINFORMATIVE_ERROR:
        return True
    return is_lossless(levers, study_dtype, audio_error, audio_yardstick)
