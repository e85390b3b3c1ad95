"""Fréchet distance and FAD-inf against closed forms (CPU, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from tta_energy.quality import frechet
from tta_energy.quality.frechet import (
    FrechetError,
    fad_inf,
    fad_inf_sample_sizes,
    fit_inverse_n,
    frechet_distance,
    frechet_distance_embeddings,
    gaussian_fit,
)


def _random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_commuting_covariances_match_closed_form() -> None:
    # same eigenbasis: FD = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(0)
    d = 12
    q = _random_rotation(d, rng)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_non_commuting_2d_matches_closed_form() -> None:
    # for 2 x 2: Tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2))
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    mu1, mu2 = np.array([0.3, -1.0]), np.array([1.0, 0.5])
    tr_sqrt = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-12)


def test_one_dimensional_is_mean_and_std_difference() -> None:
    assert frechet_distance([0.5], [[4.0]], [-1.0], [[0.25]]) == pytest.approx(1.5**2 + 1.5**2)


def _samples_with_exact_stats(
    mean: np.ndarray, basis: np.ndarray, stds: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n rows whose sample mean is ``mean`` and whose unbiased covariance is basis diag(stds^2) basis'."""
    centred = rng.normal(size=(n, len(stds)))
    centred -= centred.mean(axis=0)
    q, _ = np.linalg.qr(centred)  # orthonormal columns, each summing to zero
    return mean + np.sqrt(n - 1) * q @ np.diag(stds) @ basis.T


def test_rank_deficient_sample_covariances_fewer_samples_than_dimensions() -> None:
    rng = np.random.default_rng(1)
    d, n1, n2 = 40, 9, 7
    q = _random_rotation(d, rng)
    s1, s2 = rng.uniform(0.2, 2.0, 8), rng.uniform(0.2, 2.0, 6)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    x = _samples_with_exact_stats(mu1, q[:, :8], s1, n1, rng)
    y = _samples_with_exact_stats(mu2, q[:, :6], s2, n2, rng)
    m, c = gaussian_fit(x)
    assert np.allclose(m, mu1) and np.allclose(c, q[:, :8] @ np.diag(s1**2) @ q[:, :8].T)
    assert np.linalg.matrix_rank(c) == 8 < d
    # shared basis: sqrt eigenvalues pair up; the two extra directions of x have no partner
    s2_padded = np.concatenate([s2, [0.0, 0.0]])
    expected = float(((mu1 - mu2) ** 2).sum() + ((s1 - s2_padded) ** 2).sum())
    assert frechet_distance_embeddings(x, y) == pytest.approx(expected, rel=1e-9)  # factor route (n < d)
    assert frechet_distance(*gaussian_fit(x), *gaussian_fit(y)) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance_embeddings(y, x) == pytest.approx(expected, rel=1e-9)


def test_rank_one_non_commuting_closed_form() -> None:
    # two samples per set: covariance a^2 v v' and b^2 w w'; Tr sqrt(S1 S2) = a b |v . w|
    rng = np.random.default_rng(2)
    d = 16
    v, w = rng.normal(size=d), rng.normal(size=d)
    v, w = v / np.linalg.norm(v), w / np.linalg.norm(w)
    a, b = 1.7, 0.6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    x = np.stack([mu1 + a * v / np.sqrt(2), mu1 - a * v / np.sqrt(2)])
    y = np.stack([mu2 + b * w / np.sqrt(2), mu2 - b * w / np.sqrt(2)])
    expected = float(((mu1 - mu2) ** 2).sum() + a**2 + b**2 - 2 * a * b * abs(v @ w))
    assert frechet_distance_embeddings(x, y) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(*gaussian_fit(x), *gaussian_fit(y)) == pytest.approx(expected, rel=1e-9)


def test_symmetric_zero_for_identical_and_non_negative() -> None:
    rng = np.random.default_rng(3)
    for n, d in ((30, 64), (200, 16)):  # both routes: fewer and more samples than dimensions
        x = rng.normal(size=(n, d))
        y = rng.normal(size=(n + 5, d)) * 1.1 + 0.05
        assert frechet_distance_embeddings(x, x) == pytest.approx(0.0, abs=1e-10)
        xy, yx = frechet_distance_embeddings(x, y), frechet_distance_embeddings(y, x)
        assert xy > 0 and xy == pytest.approx(yx, rel=1e-10)
        assert frechet_distance(*gaussian_fit(x), *gaussian_fit(y)) == pytest.approx(xy, rel=1e-8)
    # nearly identical sets never go negative through rounding
    x = rng.normal(size=(50, 512)).astype(np.float32)
    assert frechet_distance_embeddings(x, x + np.float32(1e-7)) >= 0.0


def test_regularisation_modes() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 30)), rng.normal(size=(12, 30)) + 0.2
    exact = frechet_distance(*gaussian_fit(x), *gaussian_fit(y), regularize="never")
    assert frechet_distance(*gaussian_fit(x), *gaussian_fit(y)) == exact  # auto: nothing to repair
    regularised = frechet_distance(*gaussian_fit(x), *gaussian_fit(y), regularize="always", eps=1e-6)
    assert regularised != exact and regularised == pytest.approx(exact, rel=1e-3)
    assert frechet_distance_embeddings(x, y, regularize="always") == regularised
    # a clearly indefinite "covariance": auto adds eps*I and still fails -> one clear error
    bad = np.diag([1.0, -0.5])
    with pytest.raises(FrechetError, match="I added"):
        frechet_distance(np.zeros(2), bad, np.zeros(2), np.eye(2))
    with pytest.raises(FrechetError):
        frechet_distance(np.zeros(2), bad, np.zeros(2), np.eye(2), regularize="never")
    with pytest.raises(FrechetError, match="at least 2"):
        frechet_distance_embeddings(x[:1], y)
    with pytest.raises(FrechetError, match="NaN"):
        frechet_distance_embeddings(np.full((3, 2), np.nan), y[:, :2])


def test_inverse_n_fit_recovers_a_and_b() -> None:
    ns = np.array(fad_inf_sample_sizes(3000))
    assert ns[0] == 500 and ns[-1] == 3000 and len(ns) == 25
    slope, intercept, r2 = fit_inverse_n(ns, 37.5 / ns + 0.42)
    assert slope == pytest.approx(37.5, rel=1e-9) and intercept == pytest.approx(0.42, rel=1e-9)
    assert r2 == pytest.approx(1.0)
    assert fad_inf_sample_sizes(300)[0] == 150  # fewer embeddings than 500: the range starts at N / 2


def test_fad_inf_is_deterministic_and_follows_fadtk_definition() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(4000, 8))
    ev = rng.normal(size=(1200, 8)) * 1.05
    first, second = fad_inf(ev, ref, seed=7), fad_inf(ev, ref, seed=7)
    assert first.value == second.value and first.fads == second.fads
    assert fad_inf(ev, ref, seed=8).value != first.value
    assert first.ns == tuple(fad_inf_sample_sizes(1200))
    # every point is the distance of a with-replacement draw of n to the whole reference set
    draws = np.random.default_rng(7)
    n0 = first.ns[0]
    assert first.fads[0] == pytest.approx(
        frechet_distance_embeddings(ev[draws.choice(1200, size=n0, replace=True)], ref), rel=1e-12
    )
    slope, intercept, r2 = fit_inverse_n(np.array(first.ns), np.array(first.fads))
    assert (first.value, first.slope, first.r2) == (intercept, slope, r2)


def test_fad_inf_extrapolation_on_identical_distributions() -> None:
    # generated and reference from one Gaussian: FAD(n) is pure 1/n bias. Drawn without replacement the
    # intercept goes to ~0; fadtk's with-replacement draws repeat embeddings and land near the full-set FAD.
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(20000, 8))
    ev = rng.normal(size=(2000, 8))
    full = frechet_distance_embeddings(ev, ref)
    without = fad_inf(ev, ref, seed=0, replace=False)
    with_repl = fad_inf(ev, ref, seed=0, replace=True)
    assert without.r2 > 0.8 and without.slope > 0
    assert abs(without.value) < 0.3 * full
    assert with_repl.value == pytest.approx(full, rel=0.35)


def test_fad_inf_needs_a_few_embeddings() -> None:
    with pytest.raises(FrechetError, match="at least 4"):
        fad_inf(np.ones((3, 2)) * np.arange(3)[:, None], np.eye(2).repeat(3, axis=0))


def test_matches_frechet_audio_distance_package() -> None:
    fad_pkg = pytest.importorskip(
        "frechet_audio_distance",
        reason="frechet-audio-distance is not installed (pip install 'tta-energy[laion]')",
    )
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(400, 32)), rng.normal(size=(300, 32)) * 0.9 + 0.1
    (m1, c1), (m2, c2) = gaussian_fit(x), gaussian_fit(y)
    theirs = fad_pkg.FrechetAudioDistance.calculate_frechet_distance(None, m1, c1, m2, c2)
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(float(np.real(theirs)), rel=1e-6)
    assert frechet_distance_embeddings(x, y) == pytest.approx(float(np.real(theirs)), rel=1e-6)


def test_matches_fadtk() -> None:
    fadtk_fad = pytest.importorskip(
        "fadtk.fad", reason="fadtk is not installed (see inferences/envs/quality-peers.yml)"
    )
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(400, 32)), rng.normal(size=(300, 32)) * 1.2 - 0.1
    (m1, c1), (m2, c2) = gaussian_fit(x), gaussian_fit(y)
    theirs = float(np.real(fadtk_fad.calc_frechet_distance(m1, c1, m2, c2)))
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(theirs, rel=1e-6)


def test_negative_result_is_refused() -> None:
    with pytest.raises(AssertionError, match="negative"):
        frechet._checked(0.0, 1.0, 1.0, 1.5)
