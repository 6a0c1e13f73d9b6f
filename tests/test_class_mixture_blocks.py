"""Class-conditional Gaussian mixture EM on (n, k) responsibilities (each row over its
own class's k components) against dense (n, K) references: the block M-step of
``estimate_gaussian_parameters(groups=...)``, its chunked pooled covariance, and the
whole fit (``fit_class_mixtures``, ``GaussianPrototypeClassifier``)."""

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn import config_context

from protolearn._core import _covariance, _em
from protolearn._core import _gaussian as g
from protolearn.classification import GaussianPrototypeClassifier

COUNTS = (40, 60, 90)  # unequal class sizes
OPTIONS = [
    dict(shrinkage="auto"),
    dict(shrinkage="oas", pooling=0.5),
    dict(shrinkage=0.1, pooling=0.3),
    dict(shrinkage=None),
]


def _data(seed=0, d=5):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(COUNTS)), COUNTS)
    rng.shuffle(y)
    X = rng.normal(size=(y.size, d)) * np.linspace(0.5, 2.0, d) + 3 * np.eye(d)[y]
    return X, y


def _dense(block, y, n_classes):
    """The (n, C k) responsibilities that the (n, k) block stands for."""
    n, k = block.shape
    out = np.zeros((n, n_classes * k))
    out[np.arange(n)[:, None], y[:, None] * k + np.arange(k)] = block
    return out


class _DenseClassMixtures:
    """The class EM with dense (n, K) responsibilities, brute force: the E-step takes
    every row's log-density under every component and masks the other classes'."""

    def __init__(self, X, y, component_class, covariance_type, options):
        self.X, self.y, self.cc, self.ct, self.options = (
            X,
            y,
            component_class,
            covariance_type,
            options,
        )
        self.counts = np.bincount(y)

    def m_step(self, resp):
        nk, self.means, self.covariances, self.intensities = (
            _covariance.estimate_gaussian_parameters(
                self.X, resp, self.ct, **self.options
            )
        )
        self.weights = nk / self.counts[self.cc]
        self.precisions_cholesky = _covariance.compute_precision_cholesky(
            self.covariances, self.ct
        )

    def e_step(self):
        L = g.log_gaussian_density(
            self.X, self.means, self.precisions_cholesky, self.ct
        ) + np.log(self.weights)
        L[self.y[:, None] != self.cc[None, :]] = -np.inf
        norm = logsumexp(L, axis=1)
        return np.exp(L - norm[:, None]), norm.sum()


def _dense_fit(X, y, n_classes, k, covariance_type, options, **em_kw):
    max_iter, tol = em_kw.get("max_iter", 100), em_kw.get("tol", 1e-3)
    rs = em_kw.get("random_state", 0)
    block, cc = g._initial_responsibilities(X, y, n_classes, k, rs, max_iter)
    model = _DenseClassMixtures(X, y, cc, covariance_type, options)
    resp = _dense(block, y, n_classes)
    if k == 1:
        model.m_step(resp)
        return model, dict(n_iter=1, converged=True, lower_bounds=np.array([]))
    em = _em.expectation_maximization(
        model, max_iter=max_iter, tol=tol, n_samples=X.shape[0], resp=resp
    )
    return model, em


@pytest.mark.parametrize("covariance_type", _covariance.COVARIANCE_TYPES)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_block_estimates_equal_dense(covariance_type, options):
    """Soft responsibilities with zeros, and a group without rows: the block M-step
    is the dense one to rounding (nk, means, covariances, intensities)."""
    X, y = _data(1)
    rng = np.random.default_rng(2)
    k, n_groups = 3, len(COUNTS) + 1  # the last group has no rows
    block = rng.dirichlet(np.ones(k), size=y.size)
    block[rng.random(block.shape) < 0.2] = 0.0  # rows that skip a component
    kw = dict(options, reg_covar=1e-6)
    got = _covariance.estimate_gaussian_parameters(
        X, block, covariance_type, groups=y, n_groups=n_groups, **kw
    )
    dense = np.zeros((y.size, n_groups * k))
    dense[:, : len(COUNTS) * k] = _dense(block, y, len(COUNTS))
    want = _covariance.estimate_gaussian_parameters(X, dense, covariance_type, **kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
@pytest.mark.parametrize("shrinkage", ["ledoit_wolf", "oas", 0.2])
def test_pooled_covariance_in_chunks_equals_one_pass(covariance_type, shrinkage):
    """Beyond working_memory the pooled covariance (and its Ledoit-Wolf intensity,
    from summed fourth moments) is accumulated chunk by chunk: the same numbers."""
    X, y = _data(3)
    block = np.random.default_rng(4).dirichlet(np.ones(2), size=y.size)
    kw = dict(groups=y, shrinkage=shrinkage, pooling=0.4, reg_covar=1e-6)
    want = _covariance.estimate_gaussian_parameters(X, block, covariance_type, **kw)
    with config_context(working_memory=0.002):  # chunks of about 13 rows
        got = _covariance.estimate_gaussian_parameters(X, block, covariance_type, **kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_groups_are_checked():
    X, y = _data()
    with pytest.raises(ValueError, match="groups must hold one integer"):
        _covariance.estimate_gaussian_parameters(X, np.ones((y.size, 1)), groups=y[1:])
    with pytest.raises(ValueError, match="groups must hold one integer"):
        _covariance.estimate_gaussian_parameters(
            X, np.ones((y.size, 1)), groups=y, n_groups=2
        )


@pytest.mark.parametrize("covariance_type", _covariance.COVARIANCE_TYPES)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_class_mixture_fit_equals_dense_em(covariance_type, k, options):
    """The whole EM on (n, k) responsibilities equals the dense (n, K) one: every
    parameter, the bounds, the iteration count and convergence."""
    X, y = _data()
    kw = dict(options, reg_covar=1e-6)
    em_kw = dict(max_iter=40, tol=1e-4)  # some converge, some stop at max_iter
    res = g.fit_class_mixtures(
        X, y, len(COUNTS), k, covariance_type, random_state=0, **em_kw, **kw
    )
    ref, em = _dense_fit(X, y, len(COUNTS), k, covariance_type, kw, **em_kw)
    assert (res["n_iter"], res["converged"]) == (em["n_iter"], em["converged"])
    if k > 1:
        assert res["n_iter"] > 2  # EM ran
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        np.testing.assert_allclose(
            res[name], getattr(ref, name), rtol=1e-10, atol=1e-12, err_msg=name
        )
    np.testing.assert_allclose(res["intensities"], ref.intensities, rtol=1e-10)
    np.testing.assert_allclose(res["lower_bounds"], em["lower_bounds"], rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["tied", "full"])
def test_classifier_float32_equals_dense_em(covariance_type, monkeypatch):
    """GaussianPrototypeClassifier (float32, default shrinkage, three components per
    class) fitted through the block EM and through the dense reference."""
    X, y = _data(5, d=8)
    X = X.astype(np.float32)
    clf = GaussianPrototypeClassifier(
        covariance_type=covariance_type, n_components_per_class=3, random_state=0
    )
    got = clf.fit(X, y)
    got = {a: getattr(got, a) for a in ("means_", "weights_", "covariances_")} | {
        "precisions_cholesky_": got.precisions_cholesky_,
        "shrinkage_": got.shrinkage_,
        "n_iter_": got.n_iter_,
        "converged_": got.converged_,
    }

    def dense_fit_class_mixtures(X, y, n_classes, k, ct, *, max_iter, tol, **kw):
        em_kw = dict(max_iter=max_iter, tol=tol, random_state=kw.pop("random_state"))
        ref, em = _dense_fit(X.astype(np.float64), y, n_classes, k, ct, kw, **em_kw)
        return dict(
            weights=ref.weights,
            means=ref.means,
            covariances=ref.covariances,
            precisions_cholesky=ref.precisions_cholesky,
            component_class=np.repeat(np.arange(n_classes), k),
            intensities=ref.intensities,
            n_iter=em["n_iter"],
            converged=em["converged"],
        )

    monkeypatch.setattr(g, "fit_class_mixtures", dense_fit_class_mixtures)
    want = GaussianPrototypeClassifier(
        covariance_type=covariance_type, n_components_per_class=3, random_state=0
    ).fit(X, y)
    for name, value in got.items():
        np.testing.assert_allclose(
            value, getattr(want, name), rtol=1e-5, atol=1e-6, err_msg=name
        )
