"""_core prototypes and covariances against scikit-learn / numpy references."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.covariance import oas

from protolearn._core import _gaussian, _prototypes
from protolearn._core._distances import l2_normalize


def test_class_means_match_numpy(rng):
    X = rng.normal(size=(50, 3)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    M = _prototypes.class_means(X, y, 4)
    assert M.dtype == np.float32
    for c in range(4):
        np.testing.assert_array_equal(M[c], X[y == c].mean(0))
    Mt = _prototypes.class_means(torch.from_numpy(X), torch.from_numpy(y), 4)
    np.testing.assert_allclose(Mt.numpy(), M, rtol=1e-6)


def test_kmeans_matches_sklearn_lloyd_from_same_init(rng):
    X = np.concatenate([rng.normal(loc=c, size=(60, 2)) for c in (-4, 0, 4)])
    init = X[[0, 70, 150]]
    centers, labels, inertia, _ = _prototypes.kmeans(X, 3, init=init, tol=0)
    ref = KMeans(3, init=init, n_init=1, algorithm="lloyd", tol=0).fit(X)
    np.testing.assert_allclose(centers, ref.cluster_centers_, rtol=1e-10)
    np.testing.assert_array_equal(labels, ref.labels_)
    np.testing.assert_allclose(inertia, ref.inertia_, rtol=1e-10)


def test_spherical_kmeans_centres_are_unit_and_fixed_points(rng):
    X = rng.normal(size=(200, 5))
    centers, labels, _, _ = _prototypes.kmeans(
        X, 4, metric="cosine", random_state=0, tol=0, max_iter=300
    )
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1, rtol=1e-12)
    Xn = l2_normalize(X)
    np.testing.assert_array_equal(labels, (Xn @ centers.T).argmax(1))
    for k in range(4):  # a converged centre is the normalised mean of its members
        m = Xn[labels == k].mean(0)
        np.testing.assert_allclose(centers[k], m / np.linalg.norm(m), atol=1e-10)


def test_kmeans_reseeds_empty_clusters(rng):
    X = rng.normal(size=(30, 2))
    init = np.r_[X[:2], [[1e6, 1e6]]]  # third centre attracts nothing
    centers, labels, *_ = _prototypes.kmeans(X, 3, init=init, max_iter=5)
    assert np.unique(labels).size == 3


def test_class_prototypes_per_class_counts_and_errors(rng):
    X = rng.normal(size=(40, 3))
    y = np.repeat([0, 1], 20)
    P, lab, n_iter = _prototypes.class_prototypes(X, y, 2, [1, 3], random_state=0)
    assert P.shape == (4, 3) and lab.tolist() == [0, 1, 1, 1] and n_iter >= 1
    np.testing.assert_allclose(P[0], X[:20].mean(0))
    with pytest.raises(ValueError, match="fewer than the 30 prototypes"):
        _prototypes.class_prototypes(X, y, 2, [1, 30])


def test_oas_matches_sklearn(rng):
    X = rng.normal(size=(30, 6)) @ rng.normal(size=(6, 6))
    S = np.cov(X.T, bias=True)
    _, ref = oas(X)
    assert _gaussian.oas_shrinkage(S, 30) == pytest.approx(ref, rel=1e-12)


def test_pooled_covariance_and_precision_cholesky(rng):
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60)
    M = _prototypes.class_means(X, y, 3)
    S = _gaussian.pooled_covariance(X, y, M)
    R = X - M[y]
    np.testing.assert_allclose(S, R.T @ R / 60)
    L = _gaussian.precision_cholesky(S)
    np.testing.assert_allclose(L @ L.T, np.linalg.inv(S), rtol=1e-9)
    Sh = _gaussian.shrink_covariance(S.copy(), 0.3)
    np.testing.assert_allclose(Sh, 0.7 * S + 0.3 * np.trace(S) / 3 * np.eye(3))
    with pytest.raises(ValueError, match="shrinkage"):
        _gaussian.precision_cholesky(np.zeros((3, 3)))


@pytest.mark.parametrize("n_features", [5, 530])  # small Gram / Lanczos branch
def test_cluster_top_variances_match_covariance_eigenvalues(rng, n_features):
    X = rng.normal(size=(1250, n_features))
    labels = np.repeat([0, 1, 2], [600, 649, 1])  # the last cluster is a singleton
    top = _prototypes.cluster_top_variances(X, labels, 3, random_state=0)
    for k in (0, 1):
        C = np.cov(X[labels == k].T, bias=True)
        np.testing.assert_allclose(top[k], np.linalg.eigvalsh(C)[-1], rtol=1e-6)
    assert np.isnan(top[2])
