"""NearestPrototypeClassifier: real-data accuracy, brute-force references, partial_fit,
explanations, certified radii, torch tensors and bad input."""

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.neighbors import NearestCentroid

from protolearn.classification import NearestPrototypeClassifier as NPC


# --------------------------------------------------------------------- real data
def test_clinc150_euclidean_equals_nearest_centroid(clinc150):
    c = clinc150
    ours = NPC(metric="euclidean", n_prototypes=1).fit(c["X_train_in"], c["y_train_in"])
    ref = NearestCentroid().fit(c["X_train_in"], c["y_train_in"])
    np.testing.assert_array_equal(
        ours.predict(c["X_test_in"]), ref.predict(c["X_test_in"])
    )
    acc = ours.score(c["X_test_in"], c["y_test_in"])
    assert acc == pytest.approx(0.920, abs=0.002)  # the data README's sanity figure


@pytest.mark.parametrize(
    "params",
    [
        dict(metric="cosine", n_prototypes=3),
        dict(metric="euclidean", n_prototypes=3),
        dict(metric="mahalanobis"),
    ],
)
def test_clinc150_richer_models_at_least_as_accurate(clinc150, params):
    c = clinc150
    base = (
        NPC()
        .fit(c["X_train_in"], c["y_train_in"])
        .score(c["X_test_in"], c["y_test_in"])
    )
    clf = NPC(random_state=0, **params).fit(c["X_train_in"], c["y_train_in"])
    acc = clf.score(c["X_test_in"], c["y_test_in"])
    assert acc >= base
    assert acc >= 0.925


def test_digits_accuracy_floor(digits):
    clf = NPC(metric="mahalanobis").fit(digits.X_train, digits.y_train)
    assert clf.score(digits.X_test, digits.y_test) > 0.93


# ----------------------------------------------------------- brute-force reference
def _brute_scores(X, P, labels, classes, metric, prec=None):
    if metric == "euclidean":
        Dm = ((X[:, None, :] - P[None]) ** 2).sum(-1)
    elif metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
        Dm = 1 - Xn @ Pn.T
    else:
        M = prec @ prec.T
        diff = X[:, None, :] - P[None]
        Dm = np.einsum("npi,ij,npj->np", diff, M, diff)
    return -np.stack([Dm[:, labels == c].min(1) for c in classes], axis=1)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "mahalanobis"])
@pytest.mark.parametrize("k", [1, 2])
def test_scores_match_brute_force(rng, metric, k):
    X = rng.normal(size=(120, 5))
    y = rng.integers(0, 3, 120)
    Xq = rng.normal(size=(30, 5))
    clf = NPC(metric=metric, n_prototypes=k, random_state=0, temperature=0.7).fit(X, y)
    prec = getattr(clf, "precision_cholesky_", None)
    ref = _brute_scores(
        Xq, clf.prototypes_, clf.prototype_labels_, clf.classes_, metric, prec
    )
    np.testing.assert_allclose(clf.decision_function(Xq), ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(clf.predict(Xq), clf.classes_[ref.argmax(1)])
    np.testing.assert_allclose(clf.predict_proba(Xq), softmax(ref / 0.7, axis=1))


def test_mahalanobis_covariance_and_shrinkage(rng):
    X = rng.normal(size=(80, 4))
    y = np.repeat([0, 1], 40)
    clf = NPC(metric="mahalanobis", shrinkage=0.25).fit(X, y)
    R = X - np.stack([X[y == c].mean(0) for c in (0, 1)])[y]
    S = R.T @ R / 80
    np.testing.assert_allclose(clf.covariance_, S)
    # shrunk in standardised units (scale-free): the correlation towards I
    sd = np.sqrt(np.diag(S))
    shrunk = 0.75 * S + 0.25 * np.diag(sd**2)
    L = clf.precision_cholesky_
    np.testing.assert_allclose(L @ L.T, np.linalg.inv(shrunk), rtol=1e-8)
    D = np.array([1e-3, 1.0, 1e3, 5.0])  # the same model on rescaled features
    clf2 = NPC(metric="mahalanobis", shrinkage="auto").fit(X * D, y)
    clf1 = NPC(metric="mahalanobis", shrinkage="auto").fit(X, y)
    assert clf2.shrinkage_ == pytest.approx(clf1.shrinkage_, rel=1e-10)
    np.testing.assert_array_equal(clf2.predict(X * D), clf1.predict(X))


def test_binary_decision_function_is_one_dimensional(rng):
    X = rng.normal(size=(40, 3))
    y = np.repeat(["a", "b"], 20)
    clf = NPC().fit(X, y)
    dec = clf.decision_function(X)
    assert dec.shape == (40,)
    np.testing.assert_array_equal(clf.predict(X), np.where(dec > 0, "b", "a"))


# ------------------------------------------------------------------- partial_fit
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "mahalanobis"])
def test_partial_fit_in_batches_equals_fit(rng, metric):
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = rng.integers(0, 5, 300)
    full = NPC(metric=metric, shrinkage=0.1).fit(X, y)
    inc = NPC(metric=metric, shrinkage=0.1)
    for sl in np.array_split(np.arange(300), 7):
        inc.partial_fit(X[sl], y[sl])
    np.testing.assert_array_equal(inc.classes_, full.classes_)
    np.testing.assert_allclose(inc.prototypes_, full.prototypes_, rtol=1e-4, atol=1e-5)
    if metric == "mahalanobis":
        np.testing.assert_allclose(
            inc.covariance_, full.covariance_, rtol=1e-4, atol=1e-5
        )
    np.testing.assert_array_equal(inc.predict(X), full.predict(X))
    assert inc.n_samples_seen_ == 300


def test_partial_fit_new_classes_appear(digits):
    X, y = digits.X_train, digits.y_train
    clf = NPC(n_prototypes=2, random_state=0)
    for classes in ([0, 1, 2], [3, 4, 5, 6], [7, 8, 9]):
        m = np.isin(y, classes)
        clf.partial_fit(X[m], y[m])
        assert set(classes) <= set(clf.classes_.tolist())
    assert clf.classes_.tolist() == list(range(10))
    assert clf.prototypes_.shape == (20, X.shape[1])
    # a second pass moves existing prototypes by online k-means and keeps quality
    clf.partial_fit(X, y)
    assert clf.score(digits.X_test, digits.y_test) > 0.85
    assert clf.prototype_counts_.sum() == 2 * len(y)


def test_partial_fit_new_class_too_small_for_its_prototypes(rng):
    clf = NPC(n_prototypes=3).partial_fit(
        rng.normal(size=(12, 2)), np.repeat([0, 1], 6)
    )
    with pytest.raises(ValueError, match=r"7 has 2 < 3"):
        clf.partial_fit(rng.normal(size=(2, 2)), [7, 7])


def test_partial_fit_after_fit_seeds_a_new_class(rng):
    # fit then partial_fit with a new class needing k-means (used to raise
    # AttributeError: no '_rng'); the new class's seeding is reproducible.
    X = rng.normal(size=(60, 3))
    y = np.repeat([0, 1, 2], 20)
    X[y == 2] += 5
    fits = []
    for _ in range(2):
        clf = NPC(n_prototypes=2, random_state=0).fit(X[y < 2], y[y < 2])
        clf.partial_fit(X[y == 2], y[y == 2])
        fits.append(clf)
    assert fits[0].classes_.tolist() == [0, 1, 2]
    assert fits[0].prototypes_.shape == (6, 3)
    np.testing.assert_array_equal(fits[0].prototypes_, fits[1].prototypes_)
    np.testing.assert_array_equal(fits[0].predict(X[y == 2]), 2)


def test_failed_partial_fit_leaves_the_model_unchanged(rng):
    X = rng.normal(size=(40, 3))
    y = np.repeat([0, 1], 20)
    X[y == 1] += 3
    # a first batch that fails leaves the estimator unfitted, not half-initialised
    clf = NPC(n_prototypes=2)
    with pytest.raises(ValueError, match="0 has 1 < 2"):
        clf.partial_fit(X[[0, 20, 21]], [0, 1, 1])
    assert not hasattr(clf, "prototypes_") and not hasattr(clf, "classes_")
    # a later batch that fails (singular covariance) keeps the classes consistent:
    # before, class means were merged but prototypes were not, and the next call
    # crashed ("argmin of an empty sequence")
    clf = NPC(metric="mahalanobis")
    with pytest.raises(ValueError, match="within-class covariance is zero"):
        clf.partial_fit(X[[0, 20]], [0, 1])
    clf.partial_fit(X, y)
    ref = NPC(metric="mahalanobis").fit(X, y)
    np.testing.assert_allclose(clf.prototypes_, ref.prototypes_)
    np.testing.assert_array_equal(clf.predict(X), ref.predict(X))
    before = {k: np.copy(v) for k, v in vars(clf).items() if k.endswith("_")}
    with pytest.raises(ValueError, match="3 features"):
        clf.partial_fit(X[:, :2], y)
    with pytest.raises(ValueError, match="cannot be mixed"):
        clf.partial_fit(X[:5], ["a"] * 5)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(clf, k), v)


def test_partial_fit_rejects_string_labels_after_numeric(rng):
    # np.union1d silently turned the int classes into strings ('0', '1', 'x'), so
    # predict returned strings for the old classes.
    clf = NPC().partial_fit(rng.normal(size=(6, 2)), [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="numeric and string labels"):
        clf.partial_fit(rng.normal(size=(3, 2)), ["x", "x", "x"])
    assert clf.classes_.tolist() == [0, 1]
    assert clf.predict(rng.normal(size=(2, 2))).dtype.kind == "i"


def test_mahalanobis_without_within_class_spread_says_so():
    # one sample per class: the pooled covariance is 0; the message used to advise
    # "use shrinkage (e.g. shrinkage='auto')", the setting already in use
    X = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 0.0]])
    with pytest.raises(ValueError, match="within-class covariance is zero") as err:
        NPC(metric="mahalanobis").fit(X, [0, 1, 2])
    assert "shrinkage='auto'" not in str(err.value)
    with pytest.raises(ValueError, match="within-class covariance is zero"):
        NPC(metric="mahalanobis").fit(np.repeat(X, 2, axis=0), np.repeat([0, 1, 2], 2))


# --------------------------------------------------------------- explanations
def test_explain_returns_prototypes_and_exemplars(digits):
    X, y = digits.X_train, digits.y_train
    clf = NPC(n_prototypes=2, random_state=0, exemplars_per_prototype=5).fit(X, y)
    e = clf.explain(digits.X_test[:20], n_exemplars=3, n_prototypes=4)
    Dm = ((digits.X_test[:20, None, :] - clf.prototypes_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(e.prototype_index[:, 0], Dm.argmin(1))
    np.testing.assert_array_equal(
        e.prototype_label[:, 0], clf.predict(digits.X_test[:20])
    )
    assert np.all(np.diff(e.prototype_distance, axis=1) >= 0)
    assert e.exemplar_index.shape == (20, 3)
    # exemplars are real training rows of the winning class, at the stated distances
    np.testing.assert_array_equal(y[e.exemplar_index], e.exemplar_label)
    d = ((digits.X_test[:20, None, :] - X[e.exemplar_index]) ** 2).sum(-1)
    np.testing.assert_allclose(d, e.exemplar_distance, rtol=1e-4)
    assert np.all(np.diff(e.exemplar_distance, axis=1) >= 0)
    with pytest.raises(ValueError, match="exemplars_per_prototype"):
        clf.explain(X[:2], n_exemplars=6)


# ------------------------------------------------------------- certified radius
def test_certified_radius_is_tight_for_nearest_class_mean(digits):
    clf = NPC().fit(digits.X_train, digits.y_train)
    X = digits.X_test[:40].astype(np.float64)
    r = clf.certified_radius(X)
    P = clf.prototypes_.astype(np.float64)
    pred = clf.predict(X)
    for x, rx, p in zip(X, r, pred):
        # the closest decision hyperplane: move along its normal by r(1 -+ eps)
        i = np.searchsorted(clf.classes_, p)
        cands = [j for j in range(len(P)) if j != i]
        dist = [
            (((x - P[j]) ** 2).sum() - ((x - P[i]) ** 2).sum())
            / (2 * np.linalg.norm(P[i] - P[j]))
            for j in cands
        ]
        j = cands[int(np.argmin(dist))]
        u = (P[j] - P[i]) / np.linalg.norm(P[j] - P[i])
        assert clf.predict((x + rx * (1 - 1e-6) * u)[None])[0] == p
        assert clf.predict((x + rx * (1 + 1e-6) * u)[None])[0] != p


# ----------------------------------------------------------------- torch tensors
def test_torch_tensor_in_tensor_out(digits):
    clf = NPC(metric="cosine", n_prototypes=2, random_state=0).fit(
        torch.from_numpy(digits.X_train), torch.from_numpy(digits.y_train)
    )
    assert (
        isinstance(clf.prototypes_, np.ndarray) and clf.prototypes_.dtype == np.float32
    )
    Xt = torch.from_numpy(digits.X_test)
    for method in ("predict", "decision_function", "predict_proba", "certified_radius"):
        out = getattr(clf, method)(Xt)
        assert isinstance(out, torch.Tensor), method
        ref = getattr(clf, method)(digits.X_test)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_string_labels_with_torch_input_come_back_as_numpy(rng):
    X = rng.normal(size=(30, 2)).astype(np.float32)
    y = np.repeat(["cat", "dog", "eel"], 10)
    clf = NPC().fit(X, y)
    out = clf.predict(torch.from_numpy(X))
    assert isinstance(out, np.ndarray) and out.dtype.kind == "U"


# --------------------------------------------------------------------- dtypes
def test_float32_preserved_and_ints_become_float64(rng):
    X = rng.normal(size=(30, 3)).astype(np.float32)
    y = np.repeat([0, 1, 2], 10)
    clf = NPC(metric="mahalanobis").fit(X, y)
    assert clf.prototypes_.dtype == np.float32
    assert clf.decision_function(X).dtype == np.float32
    clf64 = NPC().fit((X * 10).astype(int), y)
    assert clf64.prototypes_.dtype == np.float64


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.array([[0.0, np.nan], [1, 1]]), [0, 1], "NaN"),
        (np.array([[0.0, np.inf], [1, 1]]), [0, 1], "infinity"),
        (np.array([[0.0, 1.0]]), [0], "1 sample|at least 2 classes"),
        (np.ones((4, 2)), [0, 0, 0, 0], "at least 2 classes"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), [0, 1], "could not convert"),
        (np.ones((2, 2), dtype=complex), [0, 1], "Complex"),
        (np.ones((3, 2)), [0.5, 1.5, 2.5], "Unknown label type"),
    ],
)
def test_bad_fit_input_raises_clear_errors(X, y, match):
    with pytest.raises(ValueError, match=match):
        NPC().fit(X, y)


def test_bad_predict_input_and_parameters(rng):
    X = rng.normal(size=(20, 3))
    y = np.repeat([0, 1], 10)
    clf = NPC().fit(X, y)
    with pytest.raises(ValueError, match="3 features"):
        clf.predict(X[:, :2])
    with pytest.raises(ValueError, match="3 features"):
        clf.predict(torch.ones(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match=r"1 has 10 < 12|0 has 10 < 12"):
        NPC(n_prototypes=12).fit(X, y)
    with pytest.raises(ValueError, match="not in y"):
        NPC(n_prototypes={5: 2}).fit(X, y)
    with pytest.raises(ValueError, match="temperature"):
        NPC(temperature=-1).fit(X, y)
    with pytest.raises(ValueError, match="metric"):
        NPC(metric="manhattan").fit(X, y)


@pytest.mark.parametrize("name", ["npc", "gaussian", "glvq"])
def test_predict_log_proba_is_finite_for_confident_rows(name):
    # log(softmax) gave -inf (and a divide-by-zero warning) where a probability rounds
    # to 0; the log-softmax stays finite and equals log(predict_proba) elsewhere
    import warnings

    from protolearn.classification import GaussianPrototypeClassifier, GLVQClassifier

    make = {
        "npc": lambda: NPC(),
        "gaussian": lambda: GaussianPrototypeClassifier(),
        "glvq": lambda: GLVQClassifier(random_state=0),
    }[name]
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 30]
    y = np.repeat([0, 1], 30)
    clf = make().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        L = clf.predict_log_proba(X)
    assert np.all(np.isfinite(L))
    assert L[:30, 1].max() < -30  # far from class 1
    P = clf.predict_proba(X)
    ok = P > 1e-300
    np.testing.assert_allclose(L[ok], np.log(P[ok]), rtol=1e-6, atol=1e-9)
    Lt = clf.predict_log_proba(torch.from_numpy(X))
    np.testing.assert_allclose(Lt.numpy(), L, rtol=1e-6, atol=1e-9)
