"""Certified radii of nearest-prototype rules against attacks that flip predictions."""

import numpy as np
import pytest
import torch

from protolearn._core._covariance import precision_cholesky
from protolearn._core._distances import nearest
from protolearn._core._robustness import (
    linear_form,
    nearest_prototype_index,
    nearest_prototype_radius,
)


def _predict(Z, W, labels, metric, L):
    if metric == "mahalanobis":
        idx, _ = nearest(Z, W, "mahalanobis", precision_cholesky=L)
    else:
        idx, _ = nearest(Z, W, "sqeuclidean" if metric == "euclidean" else "cosine")
    return labels[idx]


def _smallest_flip(x, W, labels, metric, L, directions, t_max=50.0):
    """Smallest step along any of `directions` that changes the prediction (bisection)."""
    y0 = _predict(x[None], W, labels, metric, L)[0]
    best = np.inf
    for u in directions:
        ts = np.linspace(0, t_max, 401)[1:]
        flips = _predict(x[None] + ts[:, None] * u[None], W, labels, metric, L) != y0
        if not flips.any():
            continue
        hi = ts[np.argmax(flips)]
        lo = hi - ts[0]
        for _ in range(45):
            mid = (lo + hi) / 2
            if _predict((x + mid * u)[None], W, labels, metric, L)[0] != y0:
                hi = mid
            else:
                lo = mid
        best = min(best, hi)
    return best


def _setup(rng, metric, per_class):
    d, n_classes = 3, 4
    W = rng.normal(scale=2.0, size=(n_classes * per_class, d))
    labels = np.repeat(np.arange(n_classes), per_class)
    X = rng.normal(scale=2.0, size=(12, d))
    L = None
    if metric == "mahalanobis":
        A = rng.normal(size=(d, d))
        L = precision_cholesky(A @ A.T + 0.5 * np.eye(d))
    return X, W, labels, L


def _attack_directions(x, W, labels, metric, L):
    """Normals of every hyperplane between the winner's class and the others, plus
    straight lines towards each other-class prototype."""
    A, c = linear_form(W, metric, precision_cholesky=L)
    s = A @ x - c
    win = labels[np.argmax(s)]
    dirs = []
    for i in np.flatnonzero(labels == win):
        for j in np.flatnonzero(labels != win):
            a = A[j] - A[i]
            dirs.append(a / np.linalg.norm(a))
    for j in np.flatnonzero(labels != win):
        v = W[j] - x
        dirs.append(v / np.linalg.norm(v))
    return dirs


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "mahalanobis"])
def test_radius_is_exact_with_one_prototype_per_class(rng, metric):
    X, W, labels, L = _setup(rng, metric, per_class=1)
    r = nearest_prototype_radius(X, W, labels, metric=metric, precision_cholesky=L)
    for x, rx in zip(X, r):
        found = _smallest_flip(
            x, W, labels, metric, L, _attack_directions(x, W, labels, metric, L)
        )
        assert rx <= found + 1e-9
        assert rx == pytest.approx(found, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "mahalanobis"])
def test_radius_is_a_lower_bound_with_several_prototypes(rng, metric):
    X, W, labels, L = _setup(rng, metric, per_class=3)
    r = nearest_prototype_radius(X, W, labels, metric=metric, precision_cholesky=L)
    assert np.all(r >= 0)
    for x, rx in zip(X, r):
        found = _smallest_flip(
            x, W, labels, metric, L, _attack_directions(x, W, labels, metric, L)
        )
        assert rx <= found + 1e-9


def test_radius_brute_force_formula(rng):
    X, W, labels, _ = _setup(rng, "euclidean", per_class=2)
    r = nearest_prototype_radius(X, W, labels)
    for x, rx in zip(X, r):
        d = ((W - x) ** 2).sum(1)
        win = labels[d.argmin()]
        own, other = np.flatnonzero(labels == win), np.flatnonzero(labels != win)
        ref = min(
            max((d[j] - d[i]) / (2 * np.linalg.norm(W[i] - W[j])) for i in own)
            for j in other
        )
        assert rx == pytest.approx(ref, rel=1e-10)


def test_index_and_radius_on_torch(rng):
    X, W, labels, _ = _setup(rng, "euclidean", per_class=2)
    Xt = torch.from_numpy(X.astype(np.float32))
    r = nearest_prototype_radius(Xt, W, labels)
    assert isinstance(r, torch.Tensor) and r.dtype == torch.float32
    np.testing.assert_allclose(
        r.numpy(), nearest_prototype_radius(X, W, labels), rtol=1e-4, atol=1e-5
    )
    idx = nearest_prototype_index(Xt, W)
    np.testing.assert_array_equal(idx.numpy(), nearest(X, W)[0])


def test_mahalanobis_radius_accepts_low_rank_factor(rng):
    X, W, labels, _ = _setup(rng, "euclidean", per_class=1)
    omega = rng.normal(size=(2, 3))  # GMLVQ-style rank-2 metric, L = omega.T
    r = nearest_prototype_radius(
        X, W, labels, metric="mahalanobis", precision_cholesky=omega.T
    )
    for x, rx in zip(X[:5], r[:5]):
        found = _smallest_flip(
            x,
            W,
            labels,
            "mahalanobis",
            omega.T,
            _attack_directions(x, W, labels, "mahalanobis", omega.T),
        )
        assert rx == pytest.approx(found, rel=1e-6)
