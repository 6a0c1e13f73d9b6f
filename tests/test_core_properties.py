"""Property-based tests (hypothesis) of the `_core` math: distances are non-negative
and symmetric, probabilities sum to one, certified radii are sound against random and
gradient attacks, and streamed (chunked) results equal one-shot results.

The example budget is the bounded ``protolearn`` profile of tests/conftest.py.
"""

import warnings

import numpy as np
import pytest
import torch
from _attacks import pgd_search

from protolearn._core import _covariance, _distances, _gaussian, _reasoning, _robustness
from protolearn.utils import _array_api as xp

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

METRICS = ["sqeuclidean", "euclidean", "cosine", "mahalanobis"]


@st.composite
def point_sets(draw, max_rows=12, max_features=5, scale=1e3):
    """Two float64 point sets (n, d), (m, d) and a Mahalanobis precision factor."""
    d = draw(st.integers(1, max_features))
    n = draw(st.integers(1, max_rows))
    m = draw(st.integers(1, max_rows))
    el = st.floats(-scale, scale, allow_nan=False, allow_infinity=False, width=64)
    X = draw(arrays(np.float64, (n, d), elements=el))
    Y = draw(arrays(np.float64, (m, d), elements=el))
    A = draw(arrays(np.float64, (d, d), elements=st.floats(-2, 2, width=64)))
    L = _covariance.precision_cholesky(A @ A.T + 0.5 * np.eye(d))
    return X, Y, L


def _dist(X, Y, metric, L, **kw):
    return _distances.pairwise_distances(
        X, Y, metric, precision_cholesky=L if metric == "mahalanobis" else None, **kw
    )


def _tol(X, Y, metric, L):
    """Rounding allowance of the expanded formula: eps times the squared scale."""
    s = max(np.abs(X).max(), np.abs(Y).max(), 1.0)
    if metric == "mahalanobis":
        s *= max(np.abs(L).max(), 1.0)
    if metric == "cosine":
        s = 1.0
    tol = 1e-12 * X.shape[1] * s**2
    # euclidean: the square root of a rounding error of the squared distance
    return np.sqrt(tol) if metric == "euclidean" else tol


@pytest.mark.parametrize("metric", METRICS)
@given(data=point_sets())
def test_distances_are_non_negative_and_symmetric(metric, data):
    X, Y, L = data
    D = _dist(X, Y, metric, L)
    assert D.shape == (X.shape[0], Y.shape[0])
    assert np.isfinite(D).all() and (D >= 0).all()
    tol = _tol(X, Y, metric, L)
    np.testing.assert_allclose(D, _dist(Y, X, metric, L).T, rtol=1e-9, atol=tol)
    # a point is at distance 0 from itself (cosine: except an all-zero row, which has
    # no direction and is at distance 1 from everything, as documented)
    rows = np.linalg.norm(X, axis=1) > 1e-100 if metric == "cosine" else slice(None)
    np.testing.assert_allclose(np.diag(_dist(X, X, metric, L))[rows], 0, atol=tol)


@pytest.mark.parametrize("metric", METRICS)
@given(data=point_sets())
def test_streamed_distances_equal_one_shot(metric, data):
    X, Y, L = data
    one_shot = _dist(X, Y, metric, L, working_memory=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not adhere to memory"
        streamed = _dist(X, Y, metric, L, working_memory=1e-6)  # one row a chunk
        idx, near = _distances.nearest(
            X,
            Y,
            metric,
            precision_cholesky=L if metric == "mahalanobis" else None,
            working_memory=1e-6,
        )
    # equal up to the last bit or so: BLAS picks its kernels by the number of rows
    tol = _tol(X, Y, metric, L)
    np.testing.assert_allclose(streamed, one_shot, rtol=1e-13, atol=tol)
    np.testing.assert_allclose(near, one_shot.min(1), rtol=1e-13, atol=tol)
    # the nearest index is a minimiser (ties may resolve either way)
    rows = np.arange(X.shape[0])
    np.testing.assert_allclose(one_shot[rows, idx], near, rtol=1e-13, atol=tol)


@given(
    scores=arrays(
        np.float64,
        st.tuples(st.integers(1, 8), st.integers(1, 6)),
        elements=st.floats(-1e300, 1e300, width=64),
    )
)
def test_probabilities_sum_to_one(scores):
    for S in (scores, scores.astype(np.float32, casting="unsafe")):
        if not np.isfinite(S).all():
            continue
        P = xp.softmax(S, axis=1)
        assert np.isfinite(P).all() and (P >= 0).all()
        np.testing.assert_allclose(P.sum(1), 1, rtol=1e-5)
        logP = xp.log_softmax(S, axis=1)
        assert not np.isnan(logP).any()
        np.testing.assert_allclose(np.exp(logP).sum(1), 1, rtol=1e-5)


@given(data=point_sets(scale=10.0))
def test_gaussian_posteriors_and_reasoning_weights_sum_to_one(data):
    X, Y, L = data
    logp = _gaussian.log_gaussian_density(X, Y, L, "tied")
    P = xp.softmax(logp, axis=1)
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(1), 1, rtol=1e-9)
    W = _reasoning.decode_rbf_weights(Y)  # any (C, K) logits
    np.testing.assert_allclose(W.sum(1), 1, rtol=1e-9)


@st.composite
def prototype_problems(draw):
    d = draw(st.integers(2, 4))
    n_classes = draw(st.integers(2, 3))
    per_class = draw(st.integers(1, 2))
    el = st.floats(-3, 3, width=64)
    W = draw(arrays(np.float64, (n_classes * per_class, d), elements=el))
    X = draw(arrays(np.float64, (draw(st.integers(1, 5)), d), elements=el))
    labels = np.repeat(np.arange(n_classes), per_class)
    seed = draw(st.integers(0, 2**16))
    return X, W, labels, seed


def _class_scores(Z, W, labels):
    """(n, C) torch scores of the nearest-prototype rule: -min squared distance."""
    D = torch.cdist(Z, torch.as_tensor(W), p=2) ** 2
    return torch.stack([-D[:, labels == c].amin(1) for c in np.unique(labels)], dim=1)


@given(problem=prototype_problems())
def test_certified_radius_is_sound_against_attacks(problem):
    X, W, labels, seed = problem
    # the rule is ill-defined on ties: keep prototypes and points apart
    if (
        np.linalg.norm(W[:, None] - W[None], axis=2)[~np.eye(len(W), dtype=bool)].min(
            initial=np.inf
        )
        < 1e-3
    ):
        return
    r = _robustness.nearest_prototype_radius(X, W, labels)
    pred = _robustness.nearest_prototype_index(X, W)
    assert (r >= 0).all()
    # random attack: no perturbation of norm just below the radius flips the class
    rng = np.random.default_rng(seed)
    for x, rx, p in zip(X, r, pred):
        if not np.isfinite(rx) or rx < 1e-6:
            continue
        U = rng.normal(size=(256, X.shape[1]))
        U *= 0.999 * rx / np.linalg.norm(U, axis=1, keepdims=True)
        idx = _robustness.nearest_prototype_index(x[None] + U, W)
        assert (labels[idx] == labels[p]).all()
    # gradient attack: PGD never flips a prediction within the certified radius
    found = pgd_search(
        lambda Z: _class_scores(Z, W, labels), X, upper=2 * r + 1e-3, n_bisect=6,
        n_steps=15, seed=seed,
    )  # fmt: skip
    assert (r <= found * (1 + 1e-6) + 1e-9).all(), (r, found)
    # streamed radius equals one-shot
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        streamed = _robustness.nearest_prototype_radius(
            X, W, labels, working_memory=1e-6
        )
    np.testing.assert_allclose(streamed, r, rtol=1e-12, atol=1e-12)


def _robust_estimators():
    from _estimators import FAST_PARAMS

    from protolearn.utils import all_estimators

    for name, cls in all_estimators(type_filter="classifier"):
        if hasattr(cls, "certified_radius"):
            yield pytest.param(cls(**FAST_PARAMS.get(name, {})), id=name)


_ROBUST_FITTED = {}


def _fitted_on_iris(est):
    """`est` fitted once on standardised iris (float64)."""
    name = type(est).__name__
    if name not in _ROBUST_FITTED:
        from sklearn.datasets import load_iris

        X, y = load_iris(return_X_y=True)
        X = (X - X.mean(0)) / X.std(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _ROBUST_FITTED[name] = (est.fit(X, y), X)
    return _ROBUST_FITTED[name]


@pytest.mark.parametrize("est", list(_robust_estimators()))
@given(
    rows=st.lists(st.integers(0, 149), min_size=1, max_size=3, unique=True),
    noise=st.floats(0, 1.5),
    seed=st.integers(0, 2**16),
)
@hypothesis.settings(max_examples=3)
def test_estimator_certified_radius_is_sound(est, rows, noise, seed):
    """Every estimator's ``certified_radius``: no random perturbation and no PGD
    attack on its own (differentiable, torch) scores flips a prediction within it."""
    est, X_train = _fitted_on_iris(est)
    rng = np.random.default_rng(seed)
    X = X_train[rows] + noise * rng.normal(size=(len(rows), X_train.shape[1]))
    r = np.asarray(est.certified_radius(X))
    pred = est.predict(X)
    assert (r >= 0).all()
    for x, rx, p in zip(X, r, pred):
        if not np.isfinite(rx) or rx < 1e-9:
            continue
        U = rng.normal(size=(128, X.shape[1]))
        U *= 0.999 * rx / np.linalg.norm(U, axis=1, keepdims=True)
        assert (est.predict(x[None] + U) == p).all()
    found = pgd_search(
        lambda Z: est.predict_log_proba(Z),
        X,
        upper=2 * r + 1e-3,
        n_bisect=4,
        n_steps=15,
        seed=seed,
    )
    assert (r <= found * (1 + 1e-6) + 1e-9).all(), (r, found)
