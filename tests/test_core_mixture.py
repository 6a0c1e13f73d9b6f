"""_core._mixture against independent references: mpmath / scipy vMF, sampled mixtures."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import vonmises_fisher

from protolearn._core import _mixture


def _ref_log_c(d, kappa):
    """log C_d(kappa) in 40-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(40):
        nu = mpmath.mpf(d) / 2 - 1
        k = mpmath.mpf(float(kappa))
        return float(
            nu * mpmath.log(k)
            - mpmath.mpf(d) / 2 * mpmath.log(2 * mpmath.pi)
            - mpmath.log(mpmath.besseli(nu, k))
        )


def _unit(A):
    return A / np.linalg.norm(A, axis=-1, keepdims=True)


# ------------------------------------------------------------------- normaliser


@pytest.mark.parametrize("d", [1, 2, 3, 16, 128, 384, 768, 1024])
def test_log_normalizer_matches_mpmath(d):
    kappas = np.logspace(-6, 5, 12)
    got = _mixture.vmf_log_normalizer(d, kappas)
    ref = np.array([_ref_log_c(d, k) for k in kappas])
    assert np.all(np.isfinite(got))
    # the Debye branch (high d, tiny kappa) is good to ~1e-8 absolute
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-7)
    # d/dkappa log C_d = -A_d(kappa) < 0: decreasing, up to rounding
    fine = _mixture.vmf_log_normalizer(d, np.logspace(-6, 5, 300))
    assert np.all(np.diff(fine) <= 1e-11 * np.abs(fine[1:]))


def test_log_normalizer_d1_closed_form():
    # On S^0 = {-1, +1} (counting measure) C_1(kappa) = 1 / (2 cosh kappa).
    for kappa in (1e-3, 0.7, 30.0):
        expected = -np.log(2 * np.cosh(kappa))
        assert _mixture.vmf_log_normalizer(1, kappa) == pytest.approx(expected, 1e-12)


# ---------------------------------------------------------------------- density


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [3, 16, 128])
def test_mixture_density_matches_scipy_vmf(dtype, d):
    rng = np.random.default_rng(d)
    mu = _unit(rng.normal(size=(4, d)))
    kappa = np.array([0.5, 5.0, 50.0, 500.0])
    w = rng.dirichlet(np.ones(4))
    samples = [
        vonmises_fisher(m, k).rvs(5, random_state=rng) for m, k in zip(mu, kappa)
    ]
    X = np.concatenate([rng.normal(size=(10, d)), *samples])
    comps = [vonmises_fisher(m, k).logpdf(_unit(X)) for m, k in zip(mu, kappa)]
    ref = logsumexp(np.stack(comps, 1) + np.log(w), axis=1)
    got = _mixture.vmf_mixture_log_density(
        X.astype(dtype), mu.astype(dtype), np.log(w), kappa
    )
    assert got.dtype == dtype
    # float32: the logits kappa mu.x and log C_d(kappa) cancel to ~kappa * eps
    atol = 1e-10 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=atol)


def test_mixture_density_half_precision_is_computed_in_float32():
    # kappa * mu overflows float16 (max 65504) and log C_d(kappa) ~ -kappa has a
    # spacing of 64 there: half-precision input is scored in float32.
    rng = np.random.default_rng(0)
    mu = _unit(rng.normal(size=(3, 64)))
    X16 = (mu[[0, 1, 2]] + 0.05 * rng.normal(size=(3, 64))).astype(np.float16)
    log_w = np.log(np.full(3, 1 / 3))
    for kappa in (10.0, 1e3, 1e5):
        ref = _mixture.vmf_mixture_log_density(X16.astype(np.float64), mu, log_w, kappa)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no overflow
            got = _mixture.vmf_mixture_log_density(X16, mu, log_w, kappa)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * kappa)


# ----------------------------------------------------------------- assignments


def test_sinkhorn_small_epsilon_keeps_every_row():
    # Rows far below the best similarity used to underflow to all-zero assignments
    # (exp(-88) in float32) and dropped out of the M-step.
    rng = np.random.default_rng(0)
    S = rng.uniform(-1, 1, size=(1, 200, 4))
    S[0, 0, 0] = 1.0
    for dtype in (np.float32, np.float64):
        for epsilon in (0.05, 0.01, 1e-3):
            Q = _mixture.sinkhorn(S.astype(dtype), epsilon, n_iter=3)
            assert Q.dtype == dtype and np.all(np.isfinite(Q))
            np.testing.assert_allclose(Q.sum(-1), 1.0, rtol=1e-5)
            assert np.all(Q.sum(-2) > 0)  # no prototype starved to zero


def test_sinkhorn_masses_equalise_with_rounds():
    rng = np.random.default_rng(1)
    S = rng.normal(size=(1, 120, 5))
    S[..., 0] += 2
    spread = []
    for n_iter in (1, 3, 30):
        col = _mixture.sinkhorn(S, 0.5, n_iter=n_iter).sum(-2)[0]
        spread.append(col.max() / col.min())
    assert spread[0] > spread[1] > spread[2]
    assert spread[2] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("balance", [True, False])
def test_e_step_keeps_top_k_components(balance):
    rng = np.random.default_rng(2)
    X = _unit(rng.normal(size=(40, 6)))
    y = np.r_[np.zeros(25, int), np.ones(15, int)]
    bucket = _mixture._Bucket(X, y, [0, 1])
    M = _unit(rng.normal(size=(2, 5, 6)))
    kappa = np.full((2, 5), 2.0)
    log_coef = np.log(np.full((2, 5), 0.2)) + _mixture.vmf_log_normalizer(6, 2.0)
    idx, R, _ = _mixture._e_step(bucket, M, log_coef, kappa, 3, balance, 0.5, 3)
    assert idx.shape == R.shape == (2, 25, 3)
    valid = bucket.valid
    np.testing.assert_allclose(R.sum(-1)[valid], 1.0)
    assert np.all(R[~valid] == 0)
    assert np.all((R > 0).sum(-1)[valid] == 3)
    # the kept components are the 3 best of each row
    S = np.einsum("bnd,bkd->bnk", bucket.Xp, M)
    if balance:
        S = _mixture.sinkhorn(S, 0.5, 3, row_mask=valid)
    best = np.sort(np.argsort(-S, axis=-1)[..., :3], axis=-1)
    np.testing.assert_array_equal(np.sort(idx, axis=-1)[valid], best[valid])


# -------------------------------------------------------------------------- EM


@pytest.mark.parametrize("d", [3, 16, 128])
def test_em_recovers_a_sampled_vmf_mixture(d):
    rng = np.random.default_rng(d)
    mu = np.linalg.qr(rng.normal(size=(d, 3)))[0].T  # orthonormal means
    kappa = np.array([20.0, 50.0, 100.0]) * max(1, d / 16)
    w = np.array([0.5, 0.3, 0.2])
    z = rng.choice(3, 3000, p=w)
    X = np.concatenate(
        [
            vonmises_fisher(mu[j], kappa[j]).rvs((z == j).sum(), random_state=rng)
            for j in range(3)
        ]
    )
    res = _mixture.fit_vmf_mixtures(
        X, np.zeros(3000, int), 1, 3, top_k=None, random_state=0, tol=1e-8
    )
    assert res.converged
    np.testing.assert_allclose(np.linalg.norm(res.means, axis=1), 1.0, atol=1e-12)
    match = np.argmax(res.means @ mu.T, axis=0)
    assert np.unique(match).size == 3
    assert np.all((res.means[match] * mu).sum(1) > 0.999)
    np.testing.assert_allclose(res.concentrations[match], kappa, rtol=0.1)
    np.testing.assert_allclose(res.weights[match], w, atol=0.03)


def test_small_epsilon_float32_weights_sum_to_one():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 16)).astype(np.float32)
    res = _mixture.fit_vmf_mixtures(
        X,
        np.zeros(300, int),
        1,
        4,
        balance=True,
        epsilon=2e-3,
        top_k=2,
        random_state=0,
    )
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert res.weights.min() > 0.1  # balanced: no prototype left without samples


@pytest.mark.parametrize("init", ["k-means++", "random", "kmeans"])
def test_zero_resultant_class_gets_a_unit_mean(init):
    # A class of exactly antipodal pairs sums to zero: its single mean used to be the
    # zero vector (every cosine score 0).
    X = np.r_[np.eye(4), -np.eye(4), np.eye(4)[[0, 1]] + 0.1]
    y = np.r_[np.zeros(8, int), np.ones(2, int)]
    res = _mixture.fit_vmf_mixtures(X, y, 2, 1, init=init, random_state=0)
    np.testing.assert_allclose(np.linalg.norm(res.means, axis=1), 1.0)
    assert np.all(np.isfinite(res.lower_bounds))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_identical_rows_cap_the_concentration(dtype):
    x = np.random.default_rng(0).normal(size=8)
    X = np.tile(x, (20, 1)).astype(dtype)
    res = _mixture.fit_vmf_mixtures(X, np.zeros(20, int), 1, 2, random_state=0)
    r = 1 - 1e-4  # the documented clip of the mean resultant length
    np.testing.assert_allclose(res.concentrations, r * (8 - r * r) / (1 - r * r))
    np.testing.assert_allclose(res.means, np.tile(_unit(x), (2, 1)), atol=1e-6)
    assert np.all(np.isfinite(res.lower_bounds))


# ------------------------------------------------------------------- logsumexp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_logsumexp_matches_scipy_and_torch(dtype, axis):
    """The one logsumexp of ``utils._array_api``: scipy's value (to rounding), ``-inf``
    on an all ``-inf`` row, keepdims, and torch's result for a tensor."""
    from protolearn.utils import _array_api

    A = (np.random.default_rng(0).normal(size=(40, 6)) * 30).astype(dtype)
    A[3] = -np.inf
    A[:, 2] = -np.inf
    got = _array_api.logsumexp(A, axis=axis)
    assert got.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, logsumexp(A, axis=axis), rtol=rtol)
    kept = _array_api.logsumexp(A, axis=axis, keepdims=True)
    np.testing.assert_array_equal(np.squeeze(kept, axis=axis), got)
    if axis != 0:
        assert got[3] == -np.inf
    torch = pytest.importorskip("torch")
    t = _array_api.logsumexp(torch.from_numpy(A), axis=axis)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.from_numpy(A).dtype
    np.testing.assert_allclose(t.numpy(), got, rtol=rtol)


# ------------------------------------------------------------------- EM driver


class _ScriptedModel:
    """A model whose E-steps return the summed log-likelihoods of a script."""

    def __init__(self, totals):
        self.totals, self.calls = list(totals), []

    def e_step(self):
        self.calls.append("E")
        return "resp", self.totals.pop(0)

    def m_step(self, resp):
        assert resp == "resp" or resp == "init"
        self.calls.append("M")


@pytest.mark.parametrize(
    "start, totals, n_iter, converged, calls",
    [
        # from responsibilities: M, E, test the latest two bounds
        ("resp", [10, 20, 20.5, 20.6, 99], 3, True, "MEMEME"),
        ("resp", [10, 20, 30], 3, False, "MEMEME"),
        # from parameters (scikit-learn's order): E first, the test looks one back
        (None, [10, 20, 20.5, 20.6, 99], 3, True, "EMEMEME"),
        (None, [10, 20, 30, 40], 3, False, "EMEMEME"),
    ],
)
def test_em_driver_stopping_rules(start, totals, n_iter, converged, calls):
    from protolearn._core._em import expectation_maximization

    model = _ScriptedModel(totals)
    res = expectation_maximization(
        model, max_iter=3, tol=0.2, n_samples=10, resp=start and "init"
    )
    assert (res.n_iter, res.converged) == (n_iter, converged)
    assert "".join(model.calls) == calls
    n_e = calls.count("E")
    np.testing.assert_array_equal(res.lower_bounds, np.array(totals[:n_e]) / 10)
