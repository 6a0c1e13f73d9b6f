"""Public certificates for nearest-prototype and reasoning models given their parameters."""

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

from protolearn.classification import (
    CBCClassifier,
    GMLVQClassifier,
    NearestPrototypeClassifier,
)
from protolearn.metrics import (
    nearest_prototype_certified_radius,
    reasoning_certified_radius,
)


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_one_prototype_per_class_matches_the_bisector_distance(wine):
    X, y = wine
    W = np.stack([X[y == c].mean(0) for c in range(3)])
    r = nearest_prototype_certified_radius(X, W, np.arange(3))
    d2 = ((X[:, None, :] - W[None]) ** 2).sum(-1)
    win = d2.argmin(1)
    ref = np.full(len(X), np.inf)
    for j in range(3):
        gap = np.linalg.norm(W[win] - W[j], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = (d2[:, j] - d2[np.arange(len(X)), win]) / (2 * gap)
        ref = np.minimum(ref, np.where(win == j, np.inf, dist))
    np.testing.assert_allclose(r, ref, rtol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_equals_the_fitted_classifiers_certificate(wine):
    X, y = wine
    X = X.astype(np.float32)
    npc = NearestPrototypeClassifier(n_prototypes=2, random_state=0).fit(X, y)
    r = nearest_prototype_certified_radius(X, npc.prototypes_, npc.prototype_labels_)
    np.testing.assert_allclose(r, npc.certified_radius(X), rtol=1e-5)

    gm = GMLVQClassifier(max_iter=20, random_state=0).fit(X, y)
    r = nearest_prototype_certified_radius(
        X, gm.prototypes_, gm.prototype_labels_, metric="mahalanobis", omega=gm.omega_
    )
    np.testing.assert_allclose(r, gm.certified_radius(X), rtol=1e-4, atol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_reasoning_certificate_equals_cbc(wine):
    X, y = wine
    X = X[:, :4].astype(np.float32)
    cbc = CBCClassifier(n_components=4, max_iter=20, random_state=0).fit(X, y)
    pos, neg = cbc.reasoning_[..., 0], cbc.reasoning_[..., 1]
    r = reasoning_certified_radius(
        X, cbc.components_, pos, neg, sigma=cbc.sigma_, detection=cbc.detection
    )
    np.testing.assert_allclose(r, cbc.certified_radius(X), rtol=1e-4, atol=1e-6)


def test_bad_input_raises():
    W = np.eye(2)
    with pytest.raises(ValueError, match="features"):
        nearest_prototype_certified_radius(np.ones((3, 3)), W, [0, 1])
    with pytest.raises(ValueError, match="prototype_labels has 3"):
        nearest_prototype_certified_radius(np.ones((3, 2)), W, [0, 1, 1])
    with pytest.raises(ValueError, match="needs omega"):
        nearest_prototype_certified_radius(
            np.ones((3, 2)), W, [0, 1], metric="mahalanobis"
        )
    with pytest.raises(ValueError, match="metric"):
        nearest_prototype_certified_radius(np.ones((3, 2)), W, [0, 1], metric="l1")
    with pytest.raises(ValueError, match="sigma"):
        reasoning_certified_radius(np.ones((3, 2)), W, np.eye(2), sigma=0)
    with pytest.raises(ValueError, match="detection"):
        reasoning_certified_radius(
            np.ones((3, 2)), W, np.eye(2), sigma=1, detection="x"
        )
