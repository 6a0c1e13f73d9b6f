"""Streamed class statistics and the online k-means step against all-at-once references."""

import numpy as np

from protolearn._core import _class_statistics as cs
from protolearn._core import _covariance, _prototypes


def _stream(X, y, n_classes, batches):
    means = np.zeros((n_classes, X.shape[1]))
    counts = np.zeros(n_classes, dtype=np.int64)
    cov, n_seen = np.zeros((X.shape[1], X.shape[1])), 0
    for rows in batches:
        Xb, yb = X[rows], y[rows]
        bc = np.bincount(yb, minlength=n_classes)
        bm = cs.batch_class_means(Xb, yb, n_classes, bc)
        cov = cs.merge_pooled_covariance(
            cov, n_seen, Xb - bm[yb], means, counts, bm, bc
        )
        means, counts = cs.merge_class_means(means, counts, bm, bc)
        n_seen += rows.size
    return means, counts, cov


def test_streamed_statistics_equal_all_at_once(rng):
    X = rng.normal(size=(300, 4)) * [1, 10, 0.1, 3] + 5
    y = rng.integers(0, 5, 300)
    # classes appear late and batches miss classes
    order = np.argsort(y, kind="stable")
    batches = np.array_split(order, 7)
    means, counts, cov = _stream(X, y, 5, batches)
    ref_means = _prototypes.class_means(X, y, 5)
    np.testing.assert_allclose(means, ref_means, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(counts, np.bincount(y))
    ref_cov = _covariance.pooled_covariance(X, y, ref_means)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10, atol=1e-12)


def test_online_kmeans_update_is_the_running_mean(rng):
    P0 = rng.normal(size=(3, 2))
    X = rng.normal(size=(40, 2))
    assign = rng.integers(0, 2, 40)  # prototype 2 gets no row
    counts = np.array([4, 0, 7])
    P, new_counts = _prototypes.online_kmeans_update(P0.copy(), counts, X, assign)
    np.testing.assert_array_equal(new_counts, counts + np.bincount(assign, minlength=3))
    for k in range(2):
        rows = X[assign == k]
        ref = (counts[k] * P0[k] + rows.sum(0)) / (counts[k] + rows.shape[0])
        np.testing.assert_allclose(P[k], ref, rtol=1e-12)
    np.testing.assert_array_equal(P[2], P0[2])
