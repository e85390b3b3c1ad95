"""Synthetic CLAP-like embeddings: checks of the Fréchet statistics (``benchmarks/quality_*.py``) without a
model or audio.

Vectors are draws of an anisotropic Gaussian (a random mixing matrix whose columns shrink from 1 to 0.05,
squared), normalised to unit length as LAION-CLAP's embeddings are; a generated set (offset 1) differs from
the reference set (offset 0) by a small mean shift.
"""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit length along its last axis."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class SyntheticEmbeddings:
    """One pair of distributions in ``dim`` dimensions; every draw comes from ``rng`` (the mixing matrix and
    the shift first, so that a seed fixes the distributions and then the draws)."""

    def __init__(self, rng: np.random.Generator, dim: int) -> None:
        self.rng = rng
        self.dim = dim
        self.mixing = rng.normal(size=(dim, dim)) * (np.linspace(1.0, 0.05, dim) ** 2)
        self.shift = rng.normal(size=dim) * 0.03

    def centres(self, count: int, offset: float) -> np.ndarray:
        """``count`` vectors before normalisation (offset 1: generated, 0: reference)."""
        return self.rng.normal(size=(count, self.dim)) @ self.mixing.T + offset * self.shift

    def draw(self, count: int, offset: float) -> np.ndarray:
        """``count`` unit vectors (offset 1: generated, 0: reference)."""
        return unit(self.centres(count, offset))
