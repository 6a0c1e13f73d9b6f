"""float32 features far from the origin (raw tabular columns: years, prices, sensor
counts) against the same data in float64.

The expanded distance ``|x|^2 - 2 x.y + |y|^2`` (and the linear forms ``A x - c`` of the
certified radii) cancels catastrophically there in float32; ``_core`` centres both sides
on the prototypes first (``common_centre``).  Before that, at an offset of 1e4,
nearest-prototype, Gaussian, RBF and CBC predictions were at chance level (agreeing with
float64 on ~50% of rows), GLVQ training diverged (NaN loss) and the Mahalanobis
detector's scores were uncorrelated with the float64 ones."""

import numpy as np
import pytest

from protolearn._core import _distances, _robustness
from protolearn.classification import (
    CBCClassifier,
    GaussianPrototypeClassifier,
    GLVQClassifier,
    GMLVQClassifier,
    NearestPrototypeClassifier,
    RBFClassifier,
)
from protolearn.ood import KNNDetector, MahalanobisDetector
from protolearn.transductive import LaplacianKMeans

OFFSET = 1e4


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 0.5]
    y = np.repeat([0, 1], 300)
    p = rng.permutation(600)
    return X[p] + OFFSET, y[p]


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "mahalanobis"])
def test_distances_keep_their_digits_far_from_the_origin(blobs, metric):
    X, _ = blobs
    W = X[:7] + 0.1
    L = np.linalg.cholesky(np.linalg.inv(np.cov(X.T)))
    kw = {"precision_cholesky": L} if metric == "mahalanobis" else {}
    ref = _distances.pairwise_distances(X, W, metric, **kw)
    X32, W32 = X.astype(np.float32), W.astype(np.float32)
    kw32 = {"precision_cholesky": L.astype(np.float32)} if kw else {}
    # the float32 rounding of the inputs themselves (~1e-3 at 1e4) bounds the error
    exact = _distances.pairwise_distances(
        X32.astype(float), W32.astype(float), metric, **kw
    )
    D32 = _distances.pairwise_distances(X32, W32, metric, **kw32)
    assert D32.dtype == np.float32
    np.testing.assert_allclose(D32, exact, rtol=1e-3, atol=1e-3 * np.median(ref))
    # the one-chunk functions centre too
    if metric == "sqeuclidean":
        np.testing.assert_allclose(
            _distances.squared_euclidean_distances(X32, W32), exact, rtol=1e-3,
            atol=1e-3 * np.median(ref),
        )  # fmt: skip


def test_linear_forms_keep_their_digits_far_from_the_origin(blobs):
    X, y = blobs
    W = np.stack([X[y == 0].mean(0), X[y == 1].mean(0)])
    X32, W32 = X.astype(np.float32), W.astype(np.float32)
    ref = _robustness.nearest_prototype_index(X32.astype(float), W32.astype(float))
    assert np.mean(_robustness.nearest_prototype_index(X32, W32) == ref) > 0.99
    r64 = _robustness.nearest_prototype_radius(
        X32.astype(float), W32.astype(float), np.array([0, 1])
    )
    r32 = _robustness.nearest_prototype_radius(X32, W32, np.array([0, 1]))
    np.testing.assert_allclose(r32, r64, atol=1e-2)


@pytest.mark.parametrize(
    "est",
    [
        NearestPrototypeClassifier(),
        NearestPrototypeClassifier(metric="mahalanobis"),
        NearestPrototypeClassifier(n_prototypes=3, random_state=0),
        GaussianPrototypeClassifier(),
        GLVQClassifier(random_state=0),
        GMLVQClassifier(random_state=0),
        RBFClassifier(random_state=0),
        CBCClassifier(random_state=0),
    ],
    ids=repr,
)
def test_classifiers_in_float32_agree_with_float64(blobs, est):
    X, y = blobs
    p64 = est.fit(X, y).predict(X)
    acc64 = np.mean(p64 == y)
    p32 = est.fit(X.astype(np.float32), y).predict(X.astype(np.float32))
    assert np.mean(p32 == y) > acc64 - 0.02  # was ~0.5 (chance)
    assert np.mean(p32 == p64) > 0.95


@pytest.mark.parametrize(
    "det",
    [MahalanobisDetector(), KNNDetector(n_neighbors=5, normalize=False)],
    ids=repr,
)
def test_detectors_in_float32_agree_with_float64(blobs, det):
    X, y = blobs
    s64 = det.fit(X, y).score_samples(X[:200])
    s32 = det.fit(X.astype(np.float32), y).score_samples(X[:200].astype(np.float32))
    assert np.corrcoef(s64, s32)[0, 1] > 0.999  # Mahalanobis was -0.003


def test_clustering_in_float32_agrees_with_float64():
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    X, y = make_blobs(600, centers=4, n_features=20, cluster_std=7.0, random_state=1)
    X = X + OFFSET
    a = LaplacianKMeans(n_clusters=4, random_state=0).fit(X)
    b = LaplacianKMeans(n_clusters=4, random_state=0).fit(X.astype(np.float32))
    assert adjusted_rand_score(a.labels_, b.labels_) > 0.99
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_, atol=0.05)
    # predict (nearest centre) in float32 matches float64's
    assert np.mean(b.predict(X.astype(np.float32)) == a.predict(X)) > 0.99


def test_transductive_without_preprocessing_in_float32_agrees_with_float64():
    # preprocessing=None: the model depends on distances only, and is solved on rows
    # centred on the episode's mean (was 0.995 -> 0.975 query accuracy at 1e4)
    from sklearn.datasets import make_blobs

    from protolearn.transductive import (
        LaplacianFewShotClassifier,
        laplacian_fewshot_episodes,
    )

    X, y = make_blobs(600, centers=4, n_features=20, cluster_std=7.0, random_state=1)
    X = X + OFFSET
    y_semi = np.full(600, -1)
    for c in range(4):
        y_semi[np.flatnonzero(y == c)[:2]] = c
    q = y_semi < 0
    fits = [
        LaplacianFewShotClassifier(preprocessing=None).fit(X.astype(dt), y_semi)
        for dt in (np.float64, np.float32)
    ]
    assert np.mean(fits[1].transduction_[q] == fits[0].transduction_[q]) > 0.995
    # the prototypes are in the input space (inductive predict agrees too)
    np.testing.assert_allclose(fits[1].prototypes_, fits[0].prototypes_, atol=0.05)
    assert (
        np.mean(fits[1].predict(X[q].astype(np.float32)) == fits[0].predict(X[q]))
        > 0.99
    )
    S, s_lab, Q = X[~q][None], y_semi[~q][None], X[q][None]
    out = [
        laplacian_fewshot_episodes(
            S.astype(dt), s_lab, Q.astype(dt), preprocessing=None
        )
        for dt in (np.float64, np.float32)
    ]
    assert np.mean(out[1].labels == out[0].labels) > 0.995
    np.testing.assert_allclose(out[1].prototypes, out[0].prototypes, atol=0.05)
