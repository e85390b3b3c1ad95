"""Fréchet distance between Gaussian fits of embedding sets, and its extrapolation FAD-inf.

FD = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^1/2), always in float64.

``Tr((S1 S2)^1/2)`` is computed from eigenvalues, never with ``scipy.linalg.sqrtm`` (which regressed in SciPy
1.11, scipy#19415/#20178, and gives negative or complex FAD in the peers, fadtk#38):

* from covariances: the eigenvalues of the symmetric PSD matrix ``S1^1/2 S2 S1^1/2`` (same spectrum as S1 S2),
  with ``S1^1/2`` from ``eigh``; eigenvalues at rounding level (either sign) are set to zero;
* from embeddings with fewer rows than dimensions (300 clips x 512 CLAP dims): with S1 = A'A and S2 = B'B (A,
  B the centred embeddings / sqrt(n - 1)), the nonzero eigenvalues of S1 S2 are the squared singular values
  of A B', so the trace is the nuclear norm of the n1 x n2 matrix A B' — exact and much cheaper.

Both forms stay exact for singular (rank-deficient) covariances. eps * I is added to both covariances only
when the eigen-decomposition fails or reports a clearly indefinite matrix (``regularize="auto"``, the role the
offset plays in pytorch-fid/fadtk), or whenever a covariance is singular (``regularize="always"``). The result
is checked to be finite and non-negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from tta_energy.errors import TtaError

#: Number of sample sizes and smallest n of fadtk's FAD-inf (``score_inf(steps=25, min_n=500)``).
FAD_INF_STEPS = 25
FAD_INF_MIN_N = 500
#: Relative size of a negative eigenvalue (or result) still taken as rounding error.
NEGATIVE_TOLERANCE = 1e-8

Regularize = Literal["auto", "always", "never"]


class FrechetError(TtaError):
    """Embeddings or statistics that no Fréchet distance can be computed from."""


def gaussian_fit(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of ``embeddings`` (rows = samples)."""
    x = _as_matrix(embeddings, "embeddings")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(
    mu1: np.ndarray,
    cov1: np.ndarray,
    mu2: np.ndarray,
    cov2: np.ndarray,
    *,
    eps: float = 1e-6,
    regularize: Regularize = "auto",
) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2), computed in float64.

    ``regularize``: ``"auto"`` adds ``eps * I`` to both covariances only when the eigenvalue computation
    fails or finds a clearly indefinite matrix; ``"always"`` adds it whenever either covariance is singular;
    ``"never"`` never does (and raises instead of recovering).
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, dtype=np.float64)),
        np.atleast_1d(np.asarray(mu2, dtype=np.float64)),
    )
    cov1, cov2 = _as_covariance(cov1, "cov1"), _as_covariance(cov2, "cov2")
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise FrechetError(
            f"shape mismatch: means {mu1.shape}, {mu2.shape}; covariances {cov1.shape}, {cov2.shape}"
        )
    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        raise FrechetError("means contain NaN or Inf")
    if regularize == "always" and (_is_singular(cov1) or _is_singular(cov2)):
        cov1, cov2 = cov1 + eps * np.eye(d), cov2 + eps * np.eye(d)
    try:
        tr_sqrt = _trace_sqrt_product(cov1, cov2)
    except (np.linalg.LinAlgError, _IndefiniteError) as exc:
        if regularize != "auto":
            raise FrechetError(f"no Fréchet distance: {exc}") from exc
        cov1, cov2 = cov1 + eps * np.eye(d), cov2 + eps * np.eye(d)
        try:
            tr_sqrt = _trace_sqrt_product(cov1, cov2)
        except (np.linalg.LinAlgError, _IndefiniteError) as exc2:
            raise FrechetError(f"no Fréchet distance even with {eps:g} * I added: {exc2}") from exc2
    diff = mu1 - mu2
    return _checked(float(diff @ diff), float(np.trace(cov1)), float(np.trace(cov2)), tr_sqrt)


def frechet_distance_embeddings(
    x: np.ndarray, y: np.ndarray, *, eps: float = 1e-6, regularize: Regularize = "auto"
) -> float:
    """Fréchet distance between the Gaussian fits of two embedding sets (rows = samples)."""
    x, y = _as_matrix(x, "first embedding set"), _as_matrix(y, "second embedding set")
    if x.shape[1] != y.shape[1]:
        raise FrechetError(f"embedding sizes differ: {x.shape[1]} vs {y.shape[1]}")
    if regularize == "always" or min(len(x), len(y)) > x.shape[1]:
        return frechet_distance(*gaussian_fit(x), *gaussian_fit(y), eps=eps, regularize=regularize)
    return _frechet_from_factors(_centred_factor(x), x.mean(axis=0), _centred_factor(y), y.mean(axis=0))


@dataclass(frozen=True)
class FadInf:
    """FAD-inf: intercept ``value`` of the fit FAD(n) = slope / n + value over the sample sizes ``ns``."""

    value: float
    slope: float
    r2: float
    ns: tuple[int, ...] = field(repr=False)
    fads: tuple[float, ...] = field(repr=False)
    seed: int = 0


FadInfProcedure = Literal["fadtk", "per-clip"]


def fad_inf_sample_sizes(
    n_total: int,
    steps: int = FAD_INF_STEPS,
    min_n: int = FAD_INF_MIN_N,
    *,
    procedure: FadInfProcedure = "per-clip",
) -> list[int]:
    """The sample sizes of FAD-inf: ``int(n)`` for ``steps`` values of ``linspace(low, n_total)``.

    ``"fadtk"``: ``low = min_n`` always, as fadtk 1.1.0's ``score_inf`` (github.com/microsoft/fadtk,
    ``fadtk/fad.py``) does; with fewer than ``min_n`` embeddings the sizes run *down* from ``min_n`` to
    ``n_total`` (300 embeddings: draws of 500 ... 300 with replacement). ``"per-clip"``: below ``min_n`` the
    smallest size becomes ``n_total // 2`` (at least 2), so the fit spans a factor of two in n.
    """
    if n_total < 4:
        raise FrechetError(f"FAD-inf needs at least 4 embeddings, got {n_total}")
    if procedure == "fadtk":
        low = min_n
    elif procedure == "per-clip":
        low = min_n if n_total > min_n else max(2, n_total // 2)
    else:
        raise FrechetError(f"unknown FAD-inf procedure {procedure!r} (expected fadtk or per-clip)")
    return [int(n) for n in np.linspace(low, n_total, steps)]


def fad_inf(
    eval_embeddings: np.ndarray,
    reference: np.ndarray | GaussianStats,
    *,
    seed: int = 0,
    steps: int = FAD_INF_STEPS,
    min_n: int = FAD_INF_MIN_N,
    replace: bool = True,
    procedure: FadInfProcedure = "per-clip",
    eps: float = 1e-6,
    regularize: Regularize = "auto",
) -> FadInf:
    """FAD-inf as fadtk defines it (``score_inf``): FAD of random subsets of size n, fit a / n + b, report b.

    For each sample size n, n evaluation embeddings are drawn (with replacement, as fadtk does) and their
    Fréchet distance to the statistics of the whole reference set is computed; FAD = slope / n + intercept is
    fitted by least squares and the intercept is FAD-inf. The same inputs and seed give the same number.
    ``reference`` is the reference embeddings or their statistics (:func:`fadtk_pooled_statistics`).

    ``procedure="fadtk"`` follows fadtk 1.1.0 (github.com/microsoft/fadtk, ``fadtk/fad.py``,
    ``FrechetAudioDistance.score_inf``) step for step: sizes from :func:`fad_inf_sample_sizes` (from 500 even
    below 500), draws ``numpy.random.RandomState(seed).choice(N, n, replace=True)`` one size after the other
    (fadtk's global generator after ``numpy.random.seed(seed)`` draws the same indices), the mean of a draw
    taken in float16 as numpy does for fadtk's float16 embeddings (the covariance in float64).
    ``procedure="per-clip"`` draws with ``numpy.random.default_rng(seed)`` and starts at N / 2 below 500.

    With replacement, a draw of n from N repeats embeddings, so E[FAD(n)] grows like c (1/n + 1/N) and the
    intercept lands near the FAD of all N embeddings rather than at n = infinity. ``replace=False`` draws
    without replacement (E[FAD(n)] ~ c / n where that law holds; with fewer embeddings than dimensions it
    holds only roughly, see docs/quality.md). ``eps`` and ``regularize`` go to every distance of the fit, as
    to the plain FAD (:func:`statistics_distance`).
    """
    x = _as_matrix(eval_embeddings, "evaluation embeddings")
    ref_stats = (
        reference
        if isinstance(reference, GaussianStats)
        else GaussianStats.of(_as_matrix(reference, "reference embeddings"))
    )
    if x.shape[1] != ref_stats.dim:
        raise FrechetError(f"embedding sizes differ: {x.shape[1]} vs {ref_stats.dim}")
    ns = fad_inf_sample_sizes(len(x), steps, min_n, procedure=procedure)
    if not replace and max(ns) > len(x):
        raise FrechetError(f"cannot draw {max(ns)} of {len(x)} embeddings without replacement")
    if procedure == "fadtk":
        legacy = np.random.RandomState(seed)
        x16 = x.astype(np.float16)

        def draw(n: int) -> GaussianStats:
            return fadtk_sample_statistics(x16[legacy.choice(len(x), size=n, replace=replace)])

    else:
        rng = np.random.default_rng(seed)

        def draw(n: int) -> GaussianStats:
            return GaussianStats.of(x[rng.choice(len(x), size=n, replace=replace)])

    fads = [statistics_distance(draw(n), ref_stats, eps=eps, regularize=regularize) for n in ns]
    slope, intercept, r2 = fit_inverse_n(np.asarray(ns, dtype=np.float64), np.asarray(fads))
    return FadInf(value=intercept, slope=slope, r2=r2, ns=tuple(ns), fads=tuple(fads), seed=seed)


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of an embedding set, the covariance kept as a factor A (``A'A = cov``).

    The factor keeps the exact-for-singular routes of :func:`frechet_distance_embeddings` open for sets with
    fewer rows than dimensions; :attr:`covariance` forms the d x d matrix when it is needed.
    """

    mean: np.ndarray
    factor: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> GaussianStats:
        """Sample mean and unbiased covariance (float64)."""
        x = np.asarray(x, dtype=np.float64)
        return cls(x.mean(axis=0), _centred_factor(x))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @cached_property
    def covariance(self) -> np.ndarray:
        return self.factor.T @ self.factor


def fadtk_sample_statistics(x: np.ndarray) -> GaussianStats:
    """Statistics of one set of float16 embeddings as fadtk takes them (``calc_embd_statistics``).

    numpy returns the mean of a float16 array in float16 (summed in float32) and the covariance in float64;
    the factor is the exactly centred float64 rows, as ``np.cov`` centres them.
    """
    x16 = np.asarray(x).astype(np.float16)
    mean = np.mean(x16, axis=0).astype(np.float64)
    if len(x16) < 2:
        raise FrechetError(f"a covariance needs at least 2 embeddings, got {len(x16)}")
    return GaussianStats(mean, _centred_factor(x16.astype(np.float64)))


def fadtk_pooled_statistics(groups: Sequence[np.ndarray]) -> GaussianStats:
    """Statistics of a folder of embedding files as fadtk pools them (``calculate_embd_statistics_online``).

    fadtk 1.1.0 (github.com/microsoft/fadtk, ``fadtk/utils.py``) merges per-file means (float16, see
    :func:`fadtk_sample_statistics`) and per-file scatter matrices with Chan's update. Whatever the group
    means m_k, that update sums to ``sum_k S_k + sum_k n_k (m_k - m)(m_k - m)'`` with ``m = sum_k n_k m_k /
    N``, written here as a factor: the exactly centred rows of every file and one row ``sqrt(n_k) (m_k - m)``
    per file, over ``sqrt(N - 1)``. A file of one embedding adds no scatter (fadtk's ``np.cov`` of one row is
    NaN; such files do not occur with 1-s hops and clips of at least 1 s).
    """
    if not groups:
        raise FrechetError("no embeddings to pool")
    groups16 = [np.asarray(g).astype(np.float16) for g in groups]
    total = sum(len(g) for g in groups16)
    if total < 2:
        raise FrechetError(f"a covariance needs at least 2 embeddings, got {total}")
    means = [np.mean(g, axis=0).astype(np.float64) for g in groups16]
    mean = sum(len(g) * m for g, m in zip(groups16, means, strict=True)) / total
    rows = [_centred_factor(g.astype(np.float64)) * np.sqrt(len(g) - 1) for g in groups16 if len(g) > 1]
    rows.append(np.stack([np.sqrt(len(g)) * (m - mean) for g, m in zip(groups16, means, strict=True)]))
    return GaussianStats(mean, np.concatenate(rows) / np.sqrt(total - 1))


def statistics_distance(
    a: GaussianStats, b: GaussianStats, *, eps: float = 1e-6, regularize: Regularize = "auto"
) -> float:
    """Fréchet distance between two :class:`GaussianStats` (factor route when a factor has <= d rows)."""
    if a.dim != b.dim:
        raise FrechetError(f"embedding sizes differ: {a.dim} vs {b.dim}")
    if regularize == "always" or min(len(a.factor), len(b.factor)) > a.dim:
        return frechet_distance(a.mean, a.covariance, b.mean, b.covariance, eps=eps, regularize=regularize)
    return _frechet_from_factors(a.factor, a.mean, b.factor, b.mean)


def fit_inverse_n(ns: np.ndarray, values: np.ndarray) -> tuple[float, float, float]:
    """Least-squares fit values = slope / n + intercept; returns (slope, intercept, R^2)."""
    inv = 1.0 / np.asarray(ns, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    design = np.column_stack([inv, np.ones_like(inv)])
    (slope, intercept), *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = values - (slope * inv + intercept)
    total = float(((values - values.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 1.0
    return float(slope), float(intercept), r2


class _IndefiniteError(ArithmeticError):
    """A covariance (or the symmetric product) has a clearly negative eigenvalue."""


def _trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """Tr((cov1 cov2)^1/2) from the eigenvalues of cov1^1/2 cov2 cov1^1/2."""
    w, v = np.linalg.eigh(cov1)
    _check_eigenvalues(w, "cov1")
    root1 = (v * np.sqrt(_zero_rounding_noise(w))) @ v.T
    product = root1 @ cov2 @ root1
    ev = np.linalg.eigvalsh((product + product.T) / 2.0)
    _check_eigenvalues(ev, "cov1^1/2 cov2 cov1^1/2")
    return float(np.sqrt(_zero_rounding_noise(ev)).sum())


def _zero_rounding_noise(w: np.ndarray) -> np.ndarray:
    # eigenvalues of a singular PSD matrix come out as +-(d * machine eps * largest); their square roots
    # (~1e-8 relative) would add up over the null space, so they are set to exactly zero
    tol = len(w) * np.finfo(np.float64).eps * max(float(np.abs(w).max()), 1e-300)
    return np.where(w > tol, w, 0.0)


def _frechet_from_factors(a: np.ndarray, mu_a: np.ndarray, b: np.ndarray, mu_b: np.ndarray) -> float:
    # Tr((A'A B'B)^1/2) = sum of singular values of A B' (the nonzero spectra of XY and YX agree).
    singular = np.linalg.svd(a @ b.T, compute_uv=False)
    diff = mu_a - mu_b
    return _checked(float(diff @ diff), float((a * a).sum()), float((b * b).sum()), float(singular.sum()))


def _checked(mean_term: float, trace1: float, trace2: float, tr_sqrt: float) -> float:
    value = mean_term + trace1 + trace2 - 2.0 * tr_sqrt
    scale = max(mean_term + trace1 + trace2, 1e-300)
    if not np.isfinite(value):
        raise FrechetError(f"Fréchet distance is not finite ({value}: mean term {mean_term}, traces "
                           f"{trace1}, {trace2}, trace of the square root {tr_sqrt}); are the embeddings "
                           "finite?")
    if value < -NEGATIVE_TOLERANCE * scale:
        raise FrechetError(f"Fréchet distance is negative ({value:.3e}) beyond rounding error (mean term "
                           f"{mean_term:.3e}, traces {trace1:.3e} and {trace2:.3e}, trace of the square root "
                           f"{tr_sqrt:.3e})")
    return max(value, 0.0)


def _check_eigenvalues(w: np.ndarray, what: str) -> None:
    if not np.isfinite(w).all():
        raise np.linalg.LinAlgError(f"{what}: non-finite eigenvalues")
    if w.size and w.min() < -NEGATIVE_TOLERANCE * max(abs(w).max(), 1e-300):
        raise _IndefiniteError(f"{what}: eigenvalue {w.min():.3e} is clearly negative")


def _is_singular(cov: np.ndarray) -> bool:
    w = np.linalg.eigvalsh(cov)
    return bool(w.min() <= cov.shape[0] * np.finfo(np.float64).eps * max(abs(w).max(), 1e-300))


def _centred_factor(x: np.ndarray) -> np.ndarray:
    """A with A'A = the unbiased covariance of ``x``."""
    return (x - x.mean(axis=0)) / np.sqrt(len(x) - 1)


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise FrechetError(f"{what}: expected a 2-D array (samples x dims), got shape {x.shape}")
    if len(x) < 2:
        raise FrechetError(f"{what}: a covariance needs at least 2 embeddings, got {len(x)}")
    if not np.isfinite(x).all():
        raise FrechetError(f"{what}: contains NaN or Inf")
    return x


def _as_covariance(cov: np.ndarray, what: str) -> np.ndarray:
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise FrechetError(f"{what}: expected a square matrix, got shape {cov.shape}")
    if not np.isfinite(cov).all():
        raise FrechetError(f"{what}: contains NaN or Inf")
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12):
        raise FrechetError(f"{what}: not symmetric")
    return (cov + cov.T) / 2.0
