"""Cross-checks against sklvq, the reference GLVQ / GMLVQ implementation.

They run in the benchmark environment (``../shared/BENCHMARKS.md``) and skip elsewhere.
The accuracy comparison is also in ``benchmarks/prototype_classifiers.py``
(``benchmarks/results/prototype_classifiers.md``).
"""

import numpy as np
import pytest

sklvq = pytest.importorskip("sklvq")

from protolearn._core._distances import (  # noqa: E402
    mahalanobis_distances,
    squared_euclidean_distances,
)
from protolearn._core._lvq import glvq_activation, glvq_mu  # noqa: E402
from protolearn._core._robustness import nearest_prototype_radius  # noqa: E402
from protolearn.classification import GLVQClassifier, GMLVQClassifier  # noqa: E402
from protolearn.datasets import load_demo_data  # noqa: E402


@pytest.fixture
def sklvq_compat(monkeypatch):
    """sklvq 0.1.2 predates scikit-learn 1.6 / numpy 2: map the removed names to their
    renamed equivalents for the duration of a test (the benchmark does the same)."""
    import sklvq.models._base as base
    from sklearn.utils.validation import check_array, validate_data

    def _check_array(X, force_all_finite=True, **kw):
        return check_array(X, ensure_all_finite=force_all_finite, **kw)

    def _validate(self, X, y, force_all_finite=True, **kw):
        return validate_data(self, X, y, ensure_all_finite=force_all_finite, **kw)

    monkeypatch.setattr(base, "check_array", _check_array)
    monkeypatch.setattr(base.LVQBaseClass, "_validate_data", _validate, raising=False)
    monkeypatch.setattr(np, "int", int, raising=False)


def _wine():
    d = load_demo_data("wine", random_state=0)
    return d.X_train.astype(np.float64), d.y_train, d.X_test.astype(np.float64)


def test_glvq_cost_equals_sklvq_objective(sklvq_compat):
    X, y, _ = _wine()
    peer = sklvq.GLVQ(random_state=0).fit(X, y)
    D = squared_euclidean_distances(X, peer.prototypes_)
    ours = glvq_activation(glvq_mu(D, y, peer.prototypes_labels_), "sigmoid", beta=1.0)
    np.testing.assert_allclose(ours.sum(), peer._objective(peer, X, y), rtol=1e-10)


def test_gmlvq_distance_and_cost_equal_sklvq(sklvq_compat):
    X, y, _ = _wine()
    peer = sklvq.GMLVQ(random_state=0).fit(X, y)
    ours = mahalanobis_distances(X, peer.prototypes_, peer.omega_.T, "tied")
    np.testing.assert_allclose(ours, peer._distance(X, peer), rtol=1e-8, atol=1e-10)
    cost = glvq_activation(
        glvq_mu(ours, y, peer.prototypes_labels_), "sigmoid", beta=1.0
    )
    np.testing.assert_allclose(cost.sum(), peer._objective(peer, X, y), rtol=1e-8)


def test_certified_radius_of_sklvq_gmlvq_is_tight(sklvq_compat):
    # The exact radius under the learned metric: stepping just below it keeps sklvq's
    # prediction, stepping just beyond it along the worst direction flips it.
    X, y, Xte = _wine()
    peer = sklvq.GMLVQ(random_state=0).fit(X, y)
    W, lab = peer.prototypes_, peer.prototypes_labels_
    r = nearest_prototype_radius(
        Xte, W, lab, metric="mahalanobis", precision_cholesky=peer.omega_.T
    )
    M = peer.omega_.T @ peer.omega_
    pred = np.searchsorted(peer.classes_, peer.predict(Xte))
    flipped_beyond = 0
    for i in range(len(Xte)):
        # the nearest boundary hyperplane: normal 2 M (w_j - w_pred)
        j_best, best = None, np.inf
        for j in np.flatnonzero(lab != pred[i]):
            a = 2 * M @ (W[j] - W[pred[i]])
            dist = W[j] @ M @ W[j] - W[pred[i]] @ M @ W[pred[i]] - a @ Xte[i]
            dist /= np.linalg.norm(a)
            if dist < best:
                j_best, best = j, dist
        a = 2 * M @ (W[j_best] - W[pred[i]])
        u = a / np.linalg.norm(a)
        np.testing.assert_allclose(best, r[i], rtol=1e-6, atol=1e-9)
        inside = peer.predict(Xte[i] + 0.999 * r[i] * u[None])[0]
        outside = peer.predict(Xte[i] + 1.001 * r[i] * u[None])[0]
        assert inside == peer.classes_[pred[i]]
        flipped_beyond += outside != peer.classes_[pred[i]]
    assert flipped_beyond == len(Xte)


@pytest.mark.parametrize(
    ("ours", "peer"), [(GLVQClassifier, "GLVQ"), (GMLVQClassifier, "GMLVQ")]
)
def test_at_least_as_accurate_as_sklvq_on_digits(sklvq_compat, ours, peer):
    d = load_demo_data("digits", random_state=0)
    acc_ours = ours(random_state=0).fit(d.X_train, d.y_train).score(d.X_test, d.y_test)
    model = getattr(sklvq, peer)(random_state=0).fit(
        d.X_train.astype(np.float64), d.y_train
    )
    acc_peer = model.score(d.X_test.astype(np.float64), d.y_test)
    assert acc_ours >= acc_peer, (acc_ours, acc_peer)
