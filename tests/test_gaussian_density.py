"""Gaussian prototypes in ``_core/_gaussian.py``: covariance estimation, shrinkage,
precision Cholesky factors, log-densities and EM, against reference computations."""

import numpy as np
import pytest
from scipy import linalg
from scipy.stats import multivariate_normal
from sklearn.covariance import ledoit_wolf, oas
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, _cov
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from protolearn._core import _covariance
from protolearn._core import _gaussian as g


def _data(rng, n_per_class=(30, 40, 25), d=5, dtype=np.float64):
    X = np.concatenate(
        [rng.normal(size=(n, d)) * (c + 1) + 3 * c for c, n in enumerate(n_per_class)]
    )
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    return X.astype(dtype), y


def _dense_covariances(cov, covariance_type, K, d):
    """Each component's (d, d) covariance from the compact layout."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (K, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in cov])
    return np.stack([v * np.eye(d) for v in cov])


@pytest.mark.parametrize("covariance_type", _covariance.COVARIANCE_TYPES)
@pytest.mark.parametrize("shrinkage", [None, 0.3, "auto", "oas"])
def test_log_density_equals_scipy(rng, covariance_type, shrinkage):
    X, y = _data(rng)
    resp = np.eye(3)[y]
    nk, means, cov, _ = _covariance.estimate_gaussian_parameters(
        X, resp, covariance_type, shrinkage=shrinkage, pooling=0.25, reg_covar=1e-6
    )
    U = _covariance.compute_precision_cholesky(cov, covariance_type)
    L = g.log_gaussian_density(X, means, U, covariance_type)
    dense = _dense_covariances(cov, covariance_type, 3, X.shape[1])
    ref = np.stack(
        [multivariate_normal(means[k], dense[k]).logpdf(X) for k in range(3)], axis=1
    )
    np.testing.assert_allclose(L, ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(nk, np.bincount(y), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", _covariance.COVARIANCE_TYPES)
def test_float32_preserved_and_close(rng, covariance_type):
    X, y = _data(rng)
    nk, means, cov, _ = _covariance.estimate_gaussian_parameters(
        X, np.eye(3)[y], covariance_type, shrinkage="auto"
    )
    U64 = _covariance.compute_precision_cholesky(cov, covariance_type)
    U32 = _covariance.compute_precision_cholesky(
        cov.astype(np.float32), covariance_type
    )
    assert U32.dtype == np.float32
    L32 = g.log_gaussian_density(
        X.astype(np.float32), means.astype(np.float32), U32, covariance_type
    )
    assert L32.dtype == np.float32
    L64 = g.log_gaussian_density(X, means, U64, covariance_type)
    np.testing.assert_allclose(L32, L64, rtol=1e-4, atol=1e-3)


def test_torch_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    X, y = _data(rng)
    nk, means, cov, _ = _covariance.estimate_gaussian_parameters(
        X, np.eye(3)[y], "full", shrinkage=0.1
    )
    U = _covariance.compute_precision_cholesky(cov, "full")
    ref = g.log_gaussian_density(X, means, U, "full")
    out = g.log_gaussian_density(torch.as_tensor(X), means, U, "full")
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)


def test_precision_cholesky_factorises_the_inverse(rng):
    A = rng.normal(size=(6, 6))
    S = A @ A.T + 0.5 * np.eye(6)
    U = _covariance.compute_precision_cholesky(S, "tied")
    np.testing.assert_allclose(U @ U.T, np.linalg.inv(S), rtol=1e-10, atol=1e-12)
    assert np.allclose(U, np.triu(U))  # upper triangular, as in GaussianMixture
    np.testing.assert_allclose(
        g.log_det_precision_cholesky(U, "tied", 6), -0.5 * np.linalg.slogdet(S)[1]
    )


def _standardized(R, estimator):
    """sklearn's estimator on standardised residuals, scaled back (LDA's ``_cov``)."""
    sc = StandardScaler()
    S, s = estimator(sc.fit_transform(R))
    return sc.scale_[:, None] * S * sc.scale_[None, :], s


def test_shrinkage_intensities_match_sklearn(rng):
    X, y = _data(rng, n_per_class=(12, 15, 9), d=20)
    X *= np.logspace(-3, 3, 20)  # features on very different scales
    resp = np.eye(3)[y]
    nk, means, cov, inten = _covariance.estimate_gaussian_parameters(
        X, resp, "full", shrinkage="ledoit_wolf"
    )
    for c in range(3):  # each class's covariance is LDA's per-class estimate
        np.testing.assert_allclose(cov[c], _cov(X[y == c], "auto"), rtol=1e-9)
    S_lw, s_lw = _standardized(X[y == 0], ledoit_wolf)
    assert inten[0] == pytest.approx(s_lw, rel=1e-10)
    np.testing.assert_allclose(cov[0], S_lw, rtol=1e-10, atol=1e-12)
    nk, means, cov, inten = _covariance.estimate_gaussian_parameters(
        X, resp, "full", shrinkage="oas"
    )
    S_oas, s_oas = _standardized(X[y == 0], oas)
    assert inten[0] == pytest.approx(s_oas, rel=1e-10)
    np.testing.assert_allclose(cov[0], S_oas, rtol=1e-10, atol=1e-12)
    # tied: Ledoit-Wolf on the pooled within-class residuals, standardised
    S_lw, s_lw = _standardized(X - means[y], ledoit_wolf)
    _, _, cov_t, inten_t = _covariance.estimate_gaussian_parameters(
        X, resp, "tied", shrinkage="auto"
    )
    assert inten_t[0] == pytest.approx(s_lw, rel=1e-10)
    np.testing.assert_allclose(cov_t, S_lw, rtol=1e-10, atol=1e-12)
    # the LDA covariance: prior-weighted per-class shrunk covariances
    _, _, cov_f, _ = _covariance.estimate_gaussian_parameters(
        X, resp, "full", shrinkage="auto"
    )
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)
    np.testing.assert_allclose(
        np.tensordot(nk / nk.sum(), cov_f, axes=1), lda.covariance_, rtol=1e-9
    )


@pytest.mark.parametrize("shrinkage", [0.3, "auto", "oas"])
def test_standardized_shrinkage_is_scale_free(rng, shrinkage):
    X = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6))
    D = np.array([1e-3, 1.0, 50.0, 1e4, 2.0, 0.1])
    R = X - X.mean(0)
    S = R.T @ R / 40
    S1, s1 = _covariance.standardized_shrinkage(S, 40, shrinkage, R)
    S2, s2 = _covariance.standardized_shrinkage(
        D[:, None] * S * D, 40, shrinkage, R * D
    )
    assert s1 == pytest.approx(s2, rel=1e-10) and 0 < s1 <= 1
    np.testing.assert_allclose(S2, D[:, None] * S1 * D, rtol=1e-10)
    np.testing.assert_allclose(np.diag(S1), np.diag(S))  # variances unchanged
    with pytest.raises(ValueError, match="needs the residuals"):
        _covariance.standardized_shrinkage(S, 40, "ledoit_wolf")


def test_pooling_interpolates_full_and_tied(rng):
    X, y = _data(rng)
    resp = np.eye(3)[y]
    kw = dict(shrinkage=0.2)
    _, _, full, _ = _covariance.estimate_gaussian_parameters(X, resp, "full", **kw)
    _, _, tied, _ = _covariance.estimate_gaussian_parameters(X, resp, "tied", **kw)
    _, _, half, _ = _covariance.estimate_gaussian_parameters(
        X, resp, "full", pooling=0.5, **kw
    )
    _, _, one, _ = _covariance.estimate_gaussian_parameters(
        X, resp, "full", pooling=1.0, **kw
    )
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * tied[None], rtol=1e-12)
    np.testing.assert_allclose(one, np.broadcast_to(tied, one.shape), rtol=1e-12)
    _, _, diag, _ = _covariance.estimate_gaussian_parameters(
        X, resp, "diag", pooling=0.5, **kw
    )
    np.testing.assert_allclose(diag, np.stack([np.diag(c) for c in half]), rtol=1e-12)


def test_singular_covariance_raises_clear_error():
    X = np.r_[np.zeros((3, 4)), np.ones((3, 4))]
    X[:, 1] = X[:, 0]
    resp = np.eye(2)[np.repeat([0, 1], 3)]
    _, _, cov, _ = _covariance.estimate_gaussian_parameters(X, resp, "full")
    with pytest.raises(ValueError, match="shrinkage"):
        _covariance.compute_precision_cholesky(cov, "full")
    _, _, var, _ = _covariance.estimate_gaussian_parameters(X, resp, "diag")
    with pytest.raises(ValueError, match="reg_covar"):
        _covariance.compute_precision_cholesky(var, "diag")


@pytest.mark.parametrize("covariance_type", _covariance.COVARIANCE_TYPES)
def test_em_step_matches_sklearn_gaussian_mixture(rng, covariance_type):
    # One class, two components: at our EM fixed point, one EM iteration of
    # scikit-learn's GaussianMixture (started from our parameters) moves nothing.
    X = np.r_[rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) * 0.5 + 4]
    y = np.zeros(X.shape[0], dtype=int)
    res = g.fit_class_mixtures(
        X,
        y,
        1,
        2,
        covariance_type,
        reg_covar=1e-6,
        tol=1e-12,
        max_iter=500,
        random_state=0,
    )
    assert res["converged"]
    prec = res["precisions_cholesky"]
    if covariance_type == "full":
        precisions = np.einsum("kij,klj->kil", prec, prec)
    elif covariance_type == "tied":
        precisions = prec @ prec.T
    else:
        precisions = prec**2
    gm = GaussianMixture(
        2,
        covariance_type=covariance_type,
        reg_covar=1e-6,
        max_iter=1,
        weights_init=res["weights"],
        means_init=res["means"],
        precisions_init=precisions,
    )
    with pytest.warns(Warning):
        gm.fit(X)
    np.testing.assert_allclose(gm.means_, res["means"], atol=1e-6)
    np.testing.assert_allclose(gm.weights_, res["weights"], atol=1e-6)
    np.testing.assert_allclose(gm.covariances_, res["covariances"], atol=1e-6)
    # and the lower bound is the mean log-likelihood sklearn reports
    assert res["lower_bound"] == pytest.approx(gm.score(X), abs=1e-6)


def test_class_mixture_density_is_logsumexp(rng):
    X, y = _data(rng)
    res = g.fit_class_mixtures(X, y, 3, 2, "diag", shrinkage=0.1, random_state=0)
    L = g.class_mixture_log_density(
        X,
        res["weights"],
        res["means"],
        res["precisions_cholesky"],
        "diag",
        res["component_class"],
        3,
    )
    comp = g.log_gaussian_density(X, res["means"], res["precisions_cholesky"], "diag")
    for c in range(3):
        cols = res["component_class"] == c
        ref = np.log(np.exp(comp[:, cols]) @ res["weights"][cols])
        np.testing.assert_allclose(L[:, c], ref, rtol=1e-10)
    # weights sum to one within each class
    np.testing.assert_allclose(np.bincount(res["component_class"], res["weights"]), 1.0)
    assert linalg.norm(res["means"]) > 0


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_tied_class_mixture_density_equals_scipy(rng, k, offset, thread_chunks):
    # the tied fast path (one product, the per-row term after the logsumexp, rows
    # in threaded chunks) against scipy, far from the origin too; a zero weight
    # and an all-empty class give -inf as in the general path
    from scipy.special import logsumexp
    from sklearn import config_context

    C, d = 4, 5
    X = rng.normal(size=(300, d)) + offset
    means = rng.normal(size=(C * k, d)) * 2 + offset
    A = rng.normal(size=(d, d))
    cov = A @ A.T / d + np.eye(d)
    w = rng.dirichlet(np.ones(k), size=C).ravel()
    if k > 1:
        w[1] = 0.0
    cc = np.repeat(np.arange(C), k)
    U = _covariance.compute_precision_cholesky(cov, "tied")
    thread_chunks(4096)  # threaded chunks
    L = g.class_mixture_log_density(X, w, means, U, "tied", cc, C)
    with config_context(working_memory=1):  # serial chunks
        np.testing.assert_array_equal(
            g.class_mixture_log_density(X, w, means, U, "tied", cc, C), L
        )
    comp = np.stack(
        [multivariate_normal(means[j], cov).logpdf(X) for j in range(C * k)], 1
    )
    with np.errstate(divide="ignore"):
        ref = logsumexp((comp + np.log(w)).reshape(-1, C, k), axis=2)
    np.testing.assert_allclose(L, ref, rtol=1e-9, atol=1e-9 * (1 + offset**2))
    L32 = g.class_mixture_log_density(
        X.astype(np.float32), w, means.astype(np.float32), U.astype(np.float32),
        "tied", cc, C,
    )  # fmt: skip
    assert L32.dtype == np.float32
    np.testing.assert_allclose(L32, ref, rtol=1e-5, atol=1e-4 * (1 + offset**2 / 1e3))
    if k > 1:
        with np.errstate(divide="ignore"):
            w0 = np.where(cc == 0, 0.0, w)
            L0 = g.class_mixture_log_density(X, w0, means, U, "tied", cc, C)
        assert np.isneginf(L0[:, 0]).all() and np.isfinite(L0[:, 1:]).all()


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tied_class_argmax_equals_density_argmax(rng, k, offset, dtype, thread_chunks):
    # predict's folded path (the per-row term dropped, U U^T folded into the
    # prototypes, threaded chunks) picks the argmax of the class log-densities plus
    # the log-priors, far from the origin too; the general path (unequal
    # components per class, torch) is that argmax itself
    import torch

    C, d = 5, 6
    X = (rng.normal(size=(400, d)) * 3 + offset).astype(dtype)
    means = (rng.normal(size=(C * k, d)) * 2 + offset).astype(dtype)
    A = rng.normal(size=(d, d))
    U = _covariance.compute_precision_cholesky(A @ A.T / d + np.eye(d), "tied")
    U = U.astype(dtype)
    w = rng.dirichlet(np.ones(k), size=C).ravel()
    cc = np.repeat(np.arange(C), k)
    priors = np.log(rng.dirichlet(np.ones(C)))
    L = g.class_mixture_log_density(X.astype(np.float64), w, means, U, "tied", cc, C)
    S = L + priors
    top2 = np.sort(S, axis=1)[:, -2:]
    # rows whose best class leads by more than the dtype's rounding (centred)
    clear = top2[:, 1] - top2[:, 0] > (1e-6 if dtype == np.float64 else 1e-2)
    assert clear.mean() > 0.9
    thread_chunks(4096)  # threaded chunks
    form = g.tied_argmax_form(w, means, U, cc, C)
    assert form is not None and form["A"].shape == (d, C * k)
    for f in (None, form):
        a = g.class_mixture_argmax(X, w, means, U, "tied", cc, C, priors, form=f)
        np.testing.assert_array_equal(a[clear], S.argmax(1)[clear])
    at = g.class_mixture_argmax(torch.as_tensor(X), w, means, U, "tied", cc, C, priors)
    assert isinstance(at, torch.Tensor)
    np.testing.assert_array_equal(at.numpy()[clear], S.argmax(1)[clear])
    if k > 1:  # unequal components per class: no folded form, the general path
        keep = np.arange(C * k) != 1
        assert g.tied_argmax_form(w[keep], means[keep], U, cc[keep], C) is None
        wk = w[keep].copy()
        wk[0] = 1 - wk[1] if k == 3 else 1.0
        Lk = g.class_mixture_log_density(X, wk, means[keep], U, "tied", cc[keep], C)
        np.testing.assert_array_equal(
            g.class_mixture_argmax(X, wk, means[keep], U, "tied", cc[keep], C, priors),
            (Lk + priors.astype(dtype)).argmax(1),
        )


@pytest.mark.parametrize("k", [1, 2, 5, 9])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_class_logsumexp_argmax_prunes_exactly(rng, k, dtype):
    # the pruned argmax (a class's logsumexp only where its max + log k reaches the
    # best max) picks the argmax of every class's logsumexp: random scores far from
    # zero, classes whose maxima tie (every class a candidate), components and whole
    # classes at -inf, and an all -inf row (class 0, as argmax of -inf gives)
    C, n = 7, 300
    G = (rng.normal(size=(n, k * C)) * 5 + 1e3).astype(dtype)
    G[:40] = G[:40, :C].repeat(k, axis=1) + np.log(np.arange(1, k + 1)).repeat(C)[None]
    G[50:60, : (k - 1) * C] = -np.inf  # one component left per class
    G[60:70, 3::C] = -np.inf  # class 3 empty
    G[70] = -np.inf
    full = g._per_class_logsumexp(G.copy(), C)
    got = g._argmax_of_class_logsumexp(G.copy(), C)
    top2 = np.sort(full, axis=1)[:, -2:]
    with np.errstate(invalid="ignore"):
        clear = ~(top2[:, 1] - top2[:, 0] <= 1e-3)  # (nan: the -inf row)
    assert clear.sum() > 250
    np.testing.assert_array_equal(got[clear], full.argmax(1)[clear])
    assert got[70] == 0
    if k > 1:  # a class whose max is lower wins through its log k: not pruned
        H = np.full((1, k * C), -np.inf, dtype)
        H[0, 1::C] = 0.0  # class 1: logsumexp log k
        H[0, 2] = np.log(k) - 1e-3  # class 2: the best maximum, logsumexp the same
        assert g._per_class_logsumexp(H.copy(), C).argmax(1)[0] == 1
        assert g._argmax_of_class_logsumexp(H.copy(), C)[0] == 1


def test_exp_floor_leaves_logsumexp_unchanged(rng):
    # terms down to exp(-700) (subnormal and below in float32): the floored
    # logsumexp equals the plain one bit for bit
    from protolearn.utils._array_api import logsumexp

    for dtype in (np.float32, np.float64):
        A = (rng.uniform(-700, 0, size=(200, 50)) * rng.uniform(0, 1, (200, 1))).astype(
            dtype
        )
        m = A.max(1)
        plain = np.log(np.exp(A - m[:, None]).sum(1)) + m
        np.testing.assert_array_equal(
            logsumexp(A.copy(), axis=1, overwrite_input=True), plain
        )
