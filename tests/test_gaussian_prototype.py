"""GaussianPrototypeClassifier: reference equalities (LDA), conventions, NOTA label
handling, dtypes, torch, mixtures and input errors."""

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning

from protolearn.classification import GaussianPrototypeClassifier


@pytest.fixture
def blobs(rng):
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    X = np.concatenate([rng.normal(size=(40, 2)) + c for c in centers])
    y = np.repeat([0, 1, 2], 40)
    return X, y


def test_tied_without_shrinkage_is_lda():
    X, y = make_classification(
        n_samples=300,
        n_features=8,
        n_informative=5,
        n_redundant=0,
        n_classes=4,
        n_clusters_per_class=1,
        weights=[0.1, 0.2, 0.3, 0.4],
        random_state=0,
    )
    ours = GaussianPrototypeClassifier(
        covariance_type="tied", shrinkage=None, reg_covar=0.0
    ).fit(X, y)
    lda = LinearDiscriminantAnalysis(solver="lsqr").fit(X, y)
    np.testing.assert_array_equal(ours.predict(X), lda.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), lda.predict_proba(X), atol=1e-8)
    # decision functions differ only by a per-sample constant
    D = ours.decision_function(X) - lda.decision_function(X)
    np.testing.assert_allclose(D - D[:, :1], 0, atol=1e-7)
    # and the default (SVD) solver agrees too on balanced classes
    Xb, yb = make_classification(
        n_samples=300,
        n_features=8,
        n_informative=5,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        random_state=1,
    )
    ours = GaussianPrototypeClassifier(shrinkage=None, reg_covar=0.0).fit(Xb, yb)
    ours.set_params(priors=np.ones(3)).fit(Xb, yb)
    lda = LinearDiscriminantAnalysis(priors=np.ones(3) / 3).fit(Xb, yb)
    np.testing.assert_array_equal(ours.predict(Xb), lda.predict(Xb))


@pytest.mark.parametrize("covariance_type", ["tied", "full", "diag", "spherical"])
def test_accuracy_and_conventions(covariance_type):
    X, y = load_iris(return_X_y=True)
    clf = GaussianPrototypeClassifier(covariance_type=covariance_type).fit(X, y)
    assert clf.score(X, y) > 0.9
    D = clf.decision_function(X)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[D.argmax(1)])
    P = clf.predict_proba(X)
    np.testing.assert_allclose(P.sum(1), 1)
    np.testing.assert_array_equal(P.argmax(1), D.argmax(1))
    assert clf.margins_ is None and clf.nota_label_ is None
    np.testing.assert_allclose(clf.priors_, np.full(3, 1 / 3))


def test_float32_preserved(blobs):
    X, y = blobs
    clf = GaussianPrototypeClassifier(
        covariance_type="full", nota="adaptive", random_state=0
    ).fit(X.astype(np.float32), y)
    for attr in ("means_", "covariances_", "precisions_cholesky_"):
        assert getattr(clf, attr).dtype == np.float32, attr
    assert clf.decision_function(X.astype(np.float32)).dtype == np.float32
    assert clf.score_samples(X.astype(np.float32)).dtype == np.float32
    ref = GaussianPrototypeClassifier(
        covariance_type="full", nota="adaptive", random_state=0
    ).fit(X, y)
    np.testing.assert_allclose(clf.margins_, ref.margins_, rtol=1e-4)


@pytest.mark.parametrize("nota", ["global", "quantile", "adaptive"])
def test_nota_label_in_predict_only(blobs, rng, nota):
    X, y = blobs
    # 20 calibration samples per class: enough for alpha=0.1 to reject anything
    clf = GaussianPrototypeClassifier(
        nota=nota, alpha=0.1, calibration_size=0.5, random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    far = rng.normal(size=(20, 2)) * 0.5 + [30.0, 30.0]
    Xq = np.r_[X, far]
    pred = clf.predict(Xq)
    assert np.all(pred[-20:] == -1)
    s = clf.score_samples(Xq)
    np.testing.assert_array_equal(pred == -1, s < 0)
    accepted = pred != -1
    D = clf.decision_function(Xq)
    np.testing.assert_array_equal(pred[accepted], clf.classes_[D.argmax(1)][accepted])
    assert clf.predict_proba(Xq).shape == (60 * 2 + 20, 3)
    assert clf.margins_.shape == (3,)


def test_string_labels_and_known_unknowns(blobs, rng):
    X, y = blobs
    names = np.array(["north", "east", "west"])[y]
    # known-unknown rows (label "NOTA") sit between classes 0 and 1
    unk = rng.normal(size=(30, 2)) * 0.7 + [3.0, 0.0]
    Xa = np.r_[X, unk]
    ya = np.r_[names, np.full(30, "NOTA")]
    clf = GaussianPrototypeClassifier(nota="adaptive", random_state=0).fit(Xa, ya)
    assert clf.nota_label_ == "NOTA"
    assert "NOTA" not in clf.classes_
    pred = clf.predict(np.r_[X, rng.normal(size=(30, 2)) * 0.7 + [3.0, 0.0]])
    assert pred.dtype.kind == "U"
    assert np.mean(pred[-30:] == "NOTA") > 0.6
    assert np.mean(pred[:-30] == names) > 0.85
    # the margins rose for the classes the unknowns lie next to (north/east); the far
    # class (west), which no negative reached, keeps the common level and rejects
    # few of its own
    west = list(clf.classes_).index("west")
    others = np.delete(clf.margins_, west)
    assert (
        clf.margins_[west] <= others.min() + 1e-9 and others.max() > clf.margins_[west]
    )
    assert np.mean(clf.score_samples(X[y == 2]) >= 0) >= 0.9
    # the same rows with nota=None are an ordinary class
    closed = GaussianPrototypeClassifier().fit(Xa, ya)
    assert "NOTA" in closed.classes_


def test_custom_nota_label(blobs, rng):
    X, y = blobs
    clf = GaussianPrototypeClassifier(nota="global", nota_label=99, random_state=0).fit(
        X, y
    )
    assert clf.predict(rng.normal(size=(5, 2)) + 40).tolist() == [99] * 5
    with pytest.raises(ValueError, match="nota_label"):
        GaussianPrototypeClassifier(nota="global", nota_label="NOTA").fit(X, y)


def test_torch_tensor_in_tensor_out(blobs):
    torch = pytest.importorskip("torch")
    X, y = blobs
    clf = GaussianPrototypeClassifier(
        covariance_type="diag", nota="adaptive", random_state=0
    ).fit(X, y)
    Xq = np.r_[X, X + 10]
    Xt = torch.as_tensor(Xq)
    pred = clf.predict(Xt)
    assert isinstance(pred, torch.Tensor)
    np.testing.assert_array_equal(pred.numpy(), clf.predict(Xq))
    np.testing.assert_allclose(
        clf.score_samples(Xt).numpy(), clf.score_samples(Xq), rtol=1e-10
    )
    np.testing.assert_allclose(
        clf.predict_proba(Xt).numpy(), clf.predict_proba(Xq), rtol=1e-10
    )
    # fitting on a tensor gives the same model
    clf_t = GaussianPrototypeClassifier(
        covariance_type="diag", nota="adaptive", random_state=0
    ).fit(torch.as_tensor(X), y)
    np.testing.assert_allclose(clf_t.margins_, clf.margins_)


def test_mixture_prototypes_fit_multimodal_classes(rng):
    # class 0 is two blobs on either side of class 1 (XOR-like): one Gaussian per
    # class with a shared covariance cannot separate them, two components can.
    X0 = np.r_[
        rng.normal(size=(60, 2)) * 0.5 + [-4, 0],
        rng.normal(size=(60, 2)) * 0.5 + [4, 0],
    ]
    X1 = np.r_[
        rng.normal(size=(60, 2)) * 0.5 + [0, -4],
        rng.normal(size=(60, 2)) * 0.5 + [0, 4],
    ]
    X, y = np.r_[X0, X1], np.repeat([0, 1], 120)
    one = GaussianPrototypeClassifier(covariance_type="tied").fit(X, y)
    two = GaussianPrototypeClassifier(
        covariance_type="tied", n_components_per_class=2, random_state=0
    ).fit(X, y)
    assert two.score(X, y) > 0.98 > one.score(X, y)
    assert two.means_.shape == (4, 2)
    np.testing.assert_array_equal(two.component_labels_, [0, 0, 1, 1])
    assert two.converged_


def test_convergence_warning(rng):
    X = rng.normal(size=(80, 3))
    y = np.repeat([0, 1], 40)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        GaussianPrototypeClassifier(
            n_components_per_class=3, max_iter=1, tol=0.0, random_state=0
        ).fit(X, y)


def test_bad_input_errors(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="at least 2 classes"):
        GaussianPrototypeClassifier().fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="at least 2 samples"):
        GaussianPrototypeClassifier(nota="adaptive").fit(
            X[[0, 1, 40, 80]], y[[0, 1, 40, 80]]
        )
    with pytest.raises(ValueError, match="n_components_per_class"):
        GaussianPrototypeClassifier(n_components_per_class=3).fit(
            X[[0, 1, 40, 41, 80, 81]], y[[0, 1, 40, 41, 80, 81]]
        )
    with pytest.raises(ValueError, match="priors"):
        GaussianPrototypeClassifier(priors=[0.5, 0.5]).fit(X, y)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GaussianPrototypeClassifier().fit(Xn, y)
    clf = GaussianPrototypeClassifier().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :1])
    # repeated samples: a zero per-class covariance without regularisation
    with pytest.raises(ValueError, match="shrinkage"):
        GaussianPrototypeClassifier(
            covariance_type="full", shrinkage=None, reg_covar=0
        ).fit(X[[0, 0, 40, 40]], y[[0, 0, 40, 40]])


def test_nota_model_pickles_and_grid_searches_with_known_unknowns(blobs, rng):
    import pickle

    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    X, y = blobs
    # known-unknown rows labelled -1 travel through the CV splits with the data;
    # the default accuracy score counts NOTA as one more class
    Xa = np.r_[X, rng.normal(size=(60, 2)) * 0.8 + [3.0, 3.0]]
    ya = np.r_[y, np.full(60, -1)]
    clf = GaussianPrototypeClassifier(nota="adaptive", random_state=0)
    search = GridSearchCV(
        clf,
        {"margin_shrinkage": [0.0, 0.5, 1.0]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(Xa, ya)
    assert search.best_score_ > 0.85
    best = search.best_estimator_
    np.testing.assert_array_equal(best.classes_, [0, 1, 2])
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict(Xa), best.predict(Xa))
    np.testing.assert_array_equal(restored.margins_, best.margins_)


def test_relative_scores_are_likelihood_ratios(blobs):
    from scipy.stats import multivariate_normal

    X, y = blobs
    plain = GaussianPrototypeClassifier(shrinkage=None).fit(X, y)
    rel = GaussianPrototypeClassifier(shrinkage=None, relative=True).fit(X, y)
    np.testing.assert_array_equal(rel.predict(X), plain.predict(X))
    np.testing.assert_allclose(rel.predict_proba(X), plain.predict_proba(X), atol=1e-12)
    # background: one Gaussian with the ML covariance of all samples
    bg = multivariate_normal(X.mean(0), np.cov(X.T, bias=True) + 1e-6 * np.eye(2))
    np.testing.assert_allclose(
        rel.score_samples(X), plain.score_samples(X) - bg.logpdf(X), rtol=1e-9
    )


def test_quantile_ignores_known_unknown_rows(blobs, rng):
    X, y = blobs
    Xa = np.r_[X, rng.normal(size=(10, 2)) + 30]
    ya = np.r_[y, np.full(10, -1)]
    clf = GaussianPrototypeClassifier(
        nota="quantile", alpha=0.1, calibration_size=0.5, random_state=0
    ).fit(Xa, ya)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    ref = GaussianPrototypeClassifier(
        nota="quantile", alpha=0.1, calibration_size=0.5, random_state=0
    ).fit(X, y)
    np.testing.assert_allclose(clf.margins_, ref.margins_)


def test_nota_label_dtypes(blobs, rng):
    """Bool classes with rejection come back as int64 0 / 1 / -1 (a bool array cannot
    hold -1), still comparable with the bools and scorable; uint64 labels beyond 2**53
    stay exact (numpy would have promoted them with -1 to float64 and merged them)."""
    X, y = blobs
    X, y = X[y < 2], y[y < 2]
    far = rng.normal(size=(5, 2)) + 40
    yb = y == 1
    closed = GaussianPrototypeClassifier().fit(X, yb)
    assert closed.predict(X).dtype == bool
    clf = GaussianPrototypeClassifier(nota="global", random_state=0).fit(X, yb)
    np.testing.assert_array_equal(clf.classes_, [False, True])
    pred = clf.predict(np.r_[X, far])
    assert pred.dtype == np.int64
    assert set(pred.tolist()) <= {0, 1, -1} and np.all(pred[-5:] == -1)
    assert np.mean(pred[:-5] == yb) > 0.9
    assert clf.score(X, yb) > 0.9  # sklearn metrics accept bool truth vs int labels

    big = np.array([2**63 + 1, 2**63 + 3], dtype=np.uint64)
    clf = GaussianPrototypeClassifier(nota="global", random_state=0).fit(X, big[y])
    pred = clf.predict(np.r_[X, far])
    assert [int(v) for v in pred[-5:]] == [-1] * 5
    kept = [int(v) for v in pred[:-5] if v != -1]
    assert set(kept) == {2**63 + 1, 2**63 + 3}
    assert np.mean([int(p) == int(t) for p, t in zip(pred[:-5], big[y])]) > 0.9
    # int8 labels with -1: plain int64
    pred = (
        GaussianPrototypeClassifier(nota="global", random_state=0)
        .fit(X, y.astype(np.int8))
        .predict(far)
    )
    assert pred.dtype == np.int64 and pred.tolist() == [-1] * 5


@pytest.mark.parametrize("nota", ["quantile", "adaptive"])
def test_too_few_samples_for_the_split_names_the_class(blobs, nota):
    X, y = blobs
    rows = np.r_[0:2, 40:50, 80:90]  # class 0 has 2 samples: 1 is held out
    with pytest.raises(
        ValueError,
        match=r"as many samples as n_components_per_class in the .*: 0 has 1 < 2",
    ):
        GaussianPrototypeClassifier(
            nota=nota, n_components_per_class=2, random_state=0
        ).fit(X[rows], y[rows])


@pytest.mark.parametrize(
    "covariance_type, n_components", [("full", 1), ("diag", 2), ("spherical", 2)]
)
def test_quantile_rejects_about_alpha_of_in_distribution_queries(
    covariance_type, n_components
):
    """Split-conformal: the expected in-class rejection is floor(alpha (n + 1)) /
    (n + 1) <= alpha for n calibration scores per (well separated) class."""
    means = np.random.RandomState(0).normal(scale=5, size=(3, 3))
    rates = []
    for rep in range(40):
        r = np.random.RandomState(rep)
        X = np.concatenate([r.normal(size=(100, 3)) + m for m in means])
        y = np.repeat([0, 1, 2], 100)
        Xt = np.concatenate([r.normal(size=(200, 3)) + m for m in means])
        clf = GaussianPrototypeClassifier(
            covariance_type=covariance_type,
            n_components_per_class=n_components,
            nota="quantile",
            alpha=0.2,
            random_state=rep,
        ).fit(X, y)
        rates.append(np.mean(clf.predict(Xt) == -1))
    expected = np.floor(0.2 * 31) / 31  # 30 calibration scores per class
    assert abs(np.mean(rates) - expected) < 0.025, (np.mean(rates), expected)
