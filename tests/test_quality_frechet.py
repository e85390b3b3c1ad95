"""Fréchet distance and FAD-inf against closed forms (CPU, no model)."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import scipy
import scipy.linalg

from tta_energy.quality import frechet
from tta_energy.quality.frechet import (
    FrechetError,
    GaussianStats,
    fad_inf,
    fad_inf_sample_sizes,
    fadtk_pooled_statistics,
    fit_inverse_n,
    frechet_distance,
    frechet_distance_embeddings,
    gaussian_fit,
    statistics_distance,
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


def test_fadtk_sample_sizes_start_at_500_even_below_500() -> None:
    assert fad_inf_sample_sizes(3000, procedure="fadtk") == fad_inf_sample_sizes(3000)  # same above 500
    sizes = fad_inf_sample_sizes(300, procedure="fadtk")
    assert sizes[0] == 500 and sizes[-1] == 300 and len(sizes) == 25 and sizes == sorted(sizes, reverse=True)
    assert fad_inf_sample_sizes(3300, procedure="fadtk")[:2] == [500, 616]  # int(linspace): 616.66 -> 616
    with pytest.raises(FrechetError, match="unknown FAD-inf procedure"):
        fad_inf_sample_sizes(300, procedure="torchmetrics")


def test_fadtk_procedure_draws_legacy_seeded_indices_and_float16_means() -> None:
    rng = np.random.default_rng(12)
    ev = rng.normal(size=(120, 6)).astype(np.float16).astype(np.float64)
    ref = rng.normal(size=(200, 6)) + 0.1
    fit = fad_inf(ev, ref, seed=3, procedure="fadtk")
    legacy = np.random.RandomState(3)  # what numpy.random.seed(3) makes of fadtk's np.random.choice
    for n, value in zip(fit.ns, fit.fads, strict=True):
        draw = ev[legacy.choice(120, size=n, replace=True)].astype(np.float16)
        mean16 = np.mean(draw, axis=0)  # numpy keeps a float16 mean for float16 input
        assert mean16.dtype == np.float16
        expected = frechet_distance(mean16, np.cov(draw, rowvar=False), *gaussian_fit(ref))
        assert value == pytest.approx(expected, rel=1e-10)
    slope, intercept, _ = fit_inverse_n(np.array(fit.ns), np.array(fit.fads))
    assert np.polyfit(1 / np.array(fit.ns), fit.fads, 1) == pytest.approx([slope, intercept], rel=1e-8)
    assert fit.value == intercept
    with pytest.raises(FrechetError, match="without replacement"):  # 500 of 120
        fad_inf(ev, ref, seed=3, procedure="fadtk", replace=False)


def test_fadtk_pooled_statistics_equal_chans_online_merge() -> None:
    rng = np.random.default_rng(13)
    groups = [rng.normal(size=(k, 5)).astype(np.float16) for k in (3, 7, 2, 11)]
    # Chan's pairwise update over files, each file's mean in float16 (the order fadtk reads them in)
    mu, scatter, n = np.zeros(5), np.zeros((5, 5)), 0
    for g in groups:
        g_mu, g_n = np.mean(g, axis=0), len(g)
        delta = g_mu - mu
        mu = mu + g_n / (n + g_n) * delta
        scatter = scatter + np.cov(g, rowvar=False) * (g_n - 1) + np.outer(delta, delta) * n * g_n / (n + g_n)
        n += g_n
    pooled = fadtk_pooled_statistics(groups)
    np.testing.assert_allclose(pooled.mean, mu, rtol=1e-13)
    np.testing.assert_allclose(pooled.covariance, scatter / (n - 1), rtol=1e-12, atol=1e-15)
    # float16 means move the statistics only slightly off the exact ones of all rows
    exact = GaussianStats.of(np.concatenate(groups).astype(np.float64))
    assert statistics_distance(pooled, exact) < 1e-6
    assert statistics_distance(pooled, pooled) == pytest.approx(0.0, abs=1e-12)


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


def peer_sqrtm_skip_reason() -> str | None:
    """Why the peers' Fréchet distance cannot run here, or None.

    fadtk 1.1.0 (``fadtk/fad.py``) and frechet_audio_distance 0.3.4 call
    ``scipy.linalg.sqrtm(..., disp=False)``; SciPy deprecated ``disp`` and removes it in 1.18, where those
    calls raise TypeError.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scipy.linalg.sqrtm(np.eye(2), disp=False)
        except TypeError:
            return (
                f"SciPy {scipy.__version__} has no sqrtm(disp=...), which fadtk 1.1.0 and "
                "frechet_audio_distance 0.3.4 pass: the peers cannot run here"
            )
    return None


def _peer(module: str, reason: str) -> ModuleType:
    peer = pytest.importorskip(module, reason=reason)
    why = peer_sqrtm_skip_reason()
    if why:
        pytest.skip(why)
    return peer


def test_peer_guard_skips_when_sqrtm_loses_disp(monkeypatch: pytest.MonkeyPatch) -> None:
    def sqrtm_without_disp(a: np.ndarray, *, blocksize: int = 64) -> np.ndarray:
        return a

    monkeypatch.setattr(scipy.linalg, "sqrtm", sqrtm_without_disp)
    assert "no sqrtm(disp=...)" in peer_sqrtm_skip_reason()
    monkeypatch.undo()
    has_disp = "disp" in inspect.signature(scipy.linalg.sqrtm).parameters
    assert (peer_sqrtm_skip_reason() is None) == has_disp


def _peer_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    full_x, full_y = rng.normal(size=(400, 32)), rng.normal(size=(300, 32)) * 0.9 + 0.1
    # fewer samples than dimensions: both covariances singular
    low_x, low_y = rng.normal(size=(20, 48)), rng.normal(size=(25, 48)) * 1.1 + 0.05
    near_y = full_x + 1e-4 * rng.normal(size=full_x.shape)
    return {
        "full rank": (full_x, full_y),
        "rank-deficient": (low_x, low_y),
        "near-identical": (full_x, near_y),
    }


#: the peers take Tr sqrt(S1 S2) from a non-symmetric eigen-decomposition: exact up to rounding for full-rank
#: covariances, ~1e-7 relative off when the product is singular (measured with fadtk 1.1.0 on SciPy 1.17).
PEER_TOLERANCE = {"full rank": 1e-9, "rank-deficient": 1e-6, "near-identical": 1e-6}


@pytest.mark.parametrize("case", list(PEER_TOLERANCE))
def test_matches_frechet_audio_distance_package(case: str) -> None:
    fad_pkg = _peer(
        "frechet_audio_distance", "frechet-audio-distance is not installed (pip install 'tta-energy[laion]')"
    )
    x, y = _peer_cases()[case]
    (m1, c1), (m2, c2) = gaussian_fit(x), gaussian_fit(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = float(np.real(fad_pkg.FrechetAudioDistance.calculate_frechet_distance(None, m1, c1, m2, c2)))
    scale = np.trace(c1) + np.trace(c2)  # near-identical sets: compare on the scale of the terms
    assert abs(frechet_distance(m1, c1, m2, c2) - theirs) <= PEER_TOLERANCE[case] * max(theirs, scale)
    assert abs(frechet_distance_embeddings(x, y) - theirs) <= PEER_TOLERANCE[case] * max(theirs, scale)


@pytest.mark.parametrize("case", list(PEER_TOLERANCE))
def test_matches_fadtk(case: str) -> None:
    fadtk_fad = _peer("fadtk.fad", "fadtk is not installed (see inferences/envs/quality-peers.yml)")
    x, y = _peer_cases()[case]
    (m1, c1), (m2, c2) = gaussian_fit(x), gaussian_fit(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = float(np.real(fadtk_fad.calc_frechet_distance(m1, c1, m2, c2)))
    scale = np.trace(c1) + np.trace(c2)
    assert abs(frechet_distance(m1, c1, m2, c2) - theirs) <= PEER_TOLERANCE[case] * max(theirs, scale)


def _float16_clips(
    rng: np.random.Generator, clips: int, windows: int, d: int, shift: float = 0.0
) -> list[np.ndarray]:
    """Per-clip groups of unit-norm window embeddings stored as float16, as fadtk's cache files hold them."""
    out = []
    for _ in range(clips):
        w = rng.normal(size=d) + 0.4 * rng.normal(size=(windows, d)) + shift
        out.append((w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float16))
    return out


#: (clips, windows per clip, dims) of the evaluation set: 600 embeddings (fadtk's sizes 500 ... 600), 90
#: (500 ... 90: below 500), 40 in 48 dimensions (every covariance singular)
SCORE_INF_CASES = {"n >= 500": (60, 10, 16), "n < 500": (30, 3, 16), "rank-deficient": (8, 5, 48)}


@pytest.mark.parametrize("case", [*SCORE_INF_CASES, "near-identical"])
def test_fad_inf_matches_fadtk_score_inf(case: str, tmp_path: Path) -> None:
    fadtk_fad = _peer("fadtk.fad", "fadtk is not installed (see inferences/envs/quality-peers.yml)")
    rng = np.random.default_rng(11)
    clips, windows, d = SCORE_INF_CASES.get(case, (60, 10, 16))
    reference = _float16_clips(rng, clips + 1, max(2, windows - 1), d)
    generated = (
        [(r.astype(np.float64) + 1e-3 * rng.normal(size=r.shape)).astype(np.float16) for r in reference]
        if case == "near-identical"
        else _float16_clips(rng, clips, windows, d, shift=0.05)
    )
    # fadtk's layout: <reference>/embeddings/<model>/*.npy (statistics pooled file by file), eval .npy files
    name = "clap-laion-audio"
    (tmp_path / "ref" / "embeddings" / name).mkdir(parents=True)
    (tmp_path / "eval").mkdir()
    for i, g in enumerate(reference):
        np.save(tmp_path / "ref" / "embeddings" / name / f"{i:04d}.npy", g)
    eval_files = []
    for i, g in enumerate(generated):
        eval_files.append(tmp_path / "eval" / f"{i:04d}.npy")
        np.save(eval_files[-1], g)
    peer = object.__new__(fadtk_fad.FrechetAudioDistance)  # no model, no torch side effects
    peer.ml, peer.audio_load_worker = SimpleNamespace(name=name), 1
    state = np.random.get_state()
    np.random.seed(5)  # fadtk draws from numpy's global generator
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = peer.score_inf(tmp_path / "ref", eval_files)
    finally:
        np.random.set_state(state)
    ours = fad_inf(np.concatenate(generated), fadtk_pooled_statistics(reference), seed=5, procedure="fadtk")
    assert list(ours.ns) == [n for n, _ in theirs.points]
    tolerance = 1e-6 if case == "rank-deficient" else 1e-9  # measured: 1e-8 (the peer's eig), 3e-13, 2e-14
    np.testing.assert_allclose(ours.fads, [f for _, f in theirs.points], rtol=tolerance)
    assert ours.value == pytest.approx(float(theirs.score), rel=tolerance)
    assert ours.slope == pytest.approx(float(theirs.slope), rel=max(tolerance, 1e-7))


def test_negative_or_non_finite_result_is_refused_as_one_error_line() -> None:
    with pytest.raises(FrechetError, match="negative .* beyond rounding error"):
        frechet._checked(0.0, 1.0, 1.0, 1.5)
    with pytest.raises(FrechetError, match="not finite"):
        frechet._checked(float("inf"), 1.0, 1.0, 0.5)


def test_fad_inf_uses_the_regularisation_the_plain_fad_uses() -> None:
    """Every distance of the FAD-inf fit takes ``eps`` and ``regularize``, as the plain FAD does."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 30)), rng.normal(size=(50, 30)) + 0.2
    plain = fad_inf(x, y, seed=1)
    regularised = fad_inf(x, y, seed=1, regularize="always", eps=1.0)
    assert regularised.ns == plain.ns
    rng, reference = np.random.default_rng(1), GaussianStats.of(y)  # the fit's draws, one size after another
    expected = [statistics_distance(GaussianStats.of(x[rng.choice(40, size=n, replace=True)]), reference,
                                    regularize="always", eps=1.0) for n in plain.ns]
    np.testing.assert_allclose(regularised.fads, expected, rtol=1e-12)
    assert regularised.value != pytest.approx(plain.value, rel=1e-3)


def test_synthetic_embeddings_are_seeded_unit_vectors_with_a_shifted_mean() -> None:
    from tta_energy.quality.synthetic import SyntheticEmbeddings

    def fresh() -> SyntheticEmbeddings:
        return SyntheticEmbeddings(np.random.default_rng(3), 8)

    first = fresh()
    gen = first.draw(50, 1.0)
    np.testing.assert_array_equal(fresh().draw(50, 1.0), gen)  # the seed fixes distributions and draws
    np.testing.assert_allclose(np.linalg.norm(gen, axis=1), 1.0)
    assert gen.shape == (50, 8) and not np.allclose(gen, first.draw(50, 1.0))  # new draws each call
    # from the same noise, a generated vector is the reference one moved by the shift
    moved = fresh().centres(50, 1.0) - fresh().centres(50, 0.0)
    np.testing.assert_allclose(moved, np.tile(first.shift, (50, 1)))
    assert np.linalg.norm(first.shift) > 0
