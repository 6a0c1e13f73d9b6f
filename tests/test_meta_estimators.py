"""Every public estimator inside scikit-learn's meta-estimators and tools, as a
scikit-learn user would use them: Pipeline, cross-validation in worker processes
(joblib loky: the estimators, torch inside, are pickled), GridSearchCV, calibration,
one-vs-rest, voting, stacking, bagging, permutation importance, decision-boundary
plots; novelty detectors with custom scorers; the transductive estimators with the
semi-supervised ``y == -1`` convention; EpisodeSplit as ``cv=``.

Real small data (load_wine / load_iris / load_digits, standardised) and string class
labels throughout; the assertions compare the meta-estimators' outputs with the same
quantities computed directly from the fitted estimators.
"""

import warnings

import numpy as np
import pytest
from _estimators import FAST_PARAMS, PARAM_GRIDS
from _inputs import numeric_estimators
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone, is_classifier, is_clusterer, is_outlier_detector
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.ensemble import BaggingClassifier, StackingClassifier, VotingClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, log_loss, roc_auc_score
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    cross_val_predict,
    cross_val_score,
    cross_validate,
    train_test_split,
)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier

from protolearn.classification import (
    GaussianPrototypeClassifier,
    NearestPrototypeClassifier,
)
from protolearn.model_selection import EpisodeSplit

# Trained classifiers stop early (max_iter=20) and may warn; so may LaplacianShot.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Fast constructor parameters (tests/_estimators.py's FAST_PARAMS, except that the
# mixture detector gets 4 prototypes: the data here are real, not the checks' tiny
# classes, and one unlabelled prototype of standardised digits is no detector).
FAST_PARAMS = {
    **FAST_PARAMS,
    "PrototypeMixtureDetector": {"n_prototypes": 4, "random_state": 0},
    "KNNDetector": {"n_neighbors": 5},
    # (likewise; its default projection starts at the identity)
    "DeepPrototypeMixtureDetector": {
        "n_prototypes": 4,
        "max_iter": 5,
        "random_state": 0,
    },
}

# tests/_estimators.py's grids, with a second parameter for the nearest prototypes and
# soft K-means (lam=0) against the Laplacian for the clustering.
GRIDS = {
    **PARAM_GRIDS,
    "NearestPrototypeClassifier": {
        "n_prototypes": [1, 2],
        "metric": ["euclidean", "cosine"],
    },
    "LaplacianKMeans": {"lam": [0.0, 1.0]},
}

ALL = dict(numeric_estimators())
CLASSIFIERS = sorted(n for n, c in ALL.items() if is_classifier(c()))
DETECTORS = sorted(n for n, c in ALL.items() if is_outlier_detector(c()))
CLUSTERERS = sorted(n for n, c in ALL.items() if is_clusterer(c()))


def make(name, **params):
    return ALL[name](**{**FAST_PARAMS.get(name, {}), **params})


def alternative_params(name):
    """The last value of each grid parameter (differs from the fast default)."""
    return {k: v[-1] for k, v in GRIDS[name].items()}


def test_every_estimator_is_covered():
    assert set(CLASSIFIERS) | set(DETECTORS) | set(CLUSTERERS) == set(ALL)
    assert set(GRIDS) == set(ALL), "add a GRIDS entry for the new estimator"
    assert "LaplacianKMeans" in CLUSTERERS
    assert "LaplacianFewShotClassifier" in CLASSIFIERS


# --------------------------------------------------------------------------- data

WINE_NAMES = np.array(["barolo", "grignolino", "barbera"])


def _wine():
    X, y = load_wine(return_X_y=True)
    return X, WINE_NAMES[y], y


X_WINE, Y_WINE, Y_WINE_INT = _wine()
XS_WINE = StandardScaler().fit_transform(X_WINE)
BINARY = Y_WINE_INT < 2  # barolo vs grignolino
CV3 = StratifiedKFold(3, shuffle=True, random_state=0)


def _allclose(a, b):
    assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- classifiers


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_pipeline_equals_manual_scaling_and_exposes_params(name):
    pipe = make_pipeline(StandardScaler(), make(name)).fit(X_WINE, Y_WINE)
    step = pipe.steps[-1][0]
    assert step == name.lower()
    direct = make(name).fit(XS_WINE, Y_WINE)
    assert pipe.classes_.dtype.kind == "U"
    assert_array_equal(pipe.classes_, np.unique(Y_WINE))
    assert_array_equal(pipe.predict(X_WINE), direct.predict(XS_WINE))
    for method in ("predict_proba", "decision_function", "predict_log_proba"):
        _allclose(getattr(pipe, method)(X_WINE), getattr(direct, method)(XS_WINE))
    assert pipe.score(X_WINE, Y_WINE) > 0.9

    # get_params(deep=True) exposes every parameter of the step under step__param
    deep = pipe.get_params(deep=True)
    assert deep[step] is pipe[-1]
    for key, value in direct.get_params().items():
        assert deep[f"{step}__{key}"] is value or deep[f"{step}__{key}"] == value
    # ...and set_params through the pipeline reaches the step
    alt = alternative_params(name)
    pipe.set_params(**{f"{step}__{k}": v for k, v in alt.items()})
    assert {k: getattr(pipe[-1], k) for k in alt} == alt

    # Pipeline with explicit names behaves the same
    named = Pipeline([("scale", StandardScaler()), ("clf", make(name))]).fit(
        X_WINE, Y_WINE
    )
    assert_array_equal(named.predict(X_WINE), direct.predict(XS_WINE))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_cross_validate_in_worker_processes_matches_local_fits(name):
    pipe = make_pipeline(StandardScaler(), make(name))
    res = cross_validate(
        pipe,
        X_WINE,
        Y_WINE,
        cv=CV3,
        n_jobs=2,
        scoring=["accuracy", "neg_log_loss"],
        return_estimator=True,
        return_indices=True,
    )
    for k, (tr, te) in enumerate(zip(res["indices"]["train"], res["indices"]["test"])):
        local = clone(pipe).fit(X_WINE[tr], Y_WINE[tr])
        remote = res["estimator"][k]  # fitted in a worker, pickled back
        assert_array_equal(remote.predict(X_WINE[te]), local.predict(X_WINE[te]))
        _allclose(remote.predict_proba(X_WINE[te]), local.predict_proba(X_WINE[te]))
        assert res["test_accuracy"][k] == pytest.approx(
            local.score(X_WINE[te], Y_WINE[te])
        )
        expected_ll = -log_loss(
            Y_WINE[te], local.predict_proba(X_WINE[te]), labels=local.classes_
        )
        assert res["test_neg_log_loss"][k] == pytest.approx(expected_ll, rel=1e-5)
    assert res["test_accuracy"].mean() > 0.85
    scores = cross_val_score(pipe, X_WINE, Y_WINE, cv=CV3, n_jobs=2)
    _allclose(scores, res["test_accuracy"])


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_grid_search_refit_equals_fresh_fit_with_best_params(name):
    pipe = make_pipeline(StandardScaler(), make(name))
    step = pipe.steps[-1][0]
    grid = {f"{step}__{k}": v for k, v in GRIDS[name].items()}
    search = GridSearchCV(pipe, grid, cv=CV3, n_jobs=2).fit(X_WINE, Y_WINE)
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    assert len(search.cv_results_["params"]) == n_candidates
    means = search.cv_results_["mean_test_score"]
    assert search.best_score_ == pytest.approx(means.max())
    assert search.best_params_ == search.cv_results_["params"][search.best_index_]
    assert search.best_score_ > 0.85
    fresh = clone(pipe).set_params(**search.best_params_).fit(X_WINE, Y_WINE)
    assert_array_equal(search.predict(X_WINE), fresh.predict(X_WINE))
    _allclose(search.predict_proba(X_WINE), fresh.predict_proba(X_WINE))
    _allclose(search.decision_function(X_WINE), fresh.decision_function(X_WINE))
    assert_array_equal(search.classes_, np.unique(Y_WINE))


@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_calibrated_classifier_cv(name, binary):
    X, y = (XS_WINE[BINARY], Y_WINE[BINARY]) if binary else (XS_WINE, Y_WINE)
    cal = CalibratedClassifierCV(make(name), cv=3).fit(X, y)
    assert_array_equal(cal.classes_, np.unique(y))
    assert len(cal.calibrated_classifiers_) == 3
    proba = cal.predict_proba(X)
    assert proba.shape == (len(y), len(cal.classes_))
    assert_allclose(proba.sum(1), 1.0, rtol=1e-7)
    assert_array_equal(cal.predict(X), cal.classes_[proba.argmax(1)])
    assert cal.score(X, y) > 0.9
    if binary:
        # sklearn calibrates decision_function (1-D, positive = classes_[1]): the
        # calibrated P(classes_[1]) must increase with it, which needs the sign
        # convention right (a wrong sign gives a decreasing sigmoid)
        cc = cal.calibrated_classifiers_[0]
        f = cc.estimator.decision_function(X)
        assert f.shape == (len(y),)
        p1 = cc.predict_proba(X)[:, 1]
        order = np.argsort(f, kind="stable")
        assert np.all(np.diff(p1[order]) >= -1e-12)
        assert np.corrcoef(f, p1)[0, 1] > 0.5


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_one_vs_rest(name):
    ovr = OneVsRestClassifier(make(name)).fit(XS_WINE, Y_WINE)
    assert len(ovr.estimators_) == 3
    for est in ovr.estimators_:
        assert_array_equal(est.classes_, [0, 1])
    df = ovr.decision_function(XS_WINE)
    assert df.shape == (len(Y_WINE), 3)
    for k, est in enumerate(ovr.estimators_):
        _allclose(df[:, k], est.decision_function(XS_WINE))
    assert_array_equal(ovr.predict(XS_WINE), ovr.classes_[df.argmax(1)])
    assert ovr.score(XS_WINE, Y_WINE) > 0.9


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_voting_hard_and_soft(name):
    members = [
        ("proto", make(name)),
        ("lr", LogisticRegression()),
        ("nb", GaussianNB()),
    ]
    soft = VotingClassifier(members, voting="soft").fit(XS_WINE, Y_WINE)
    mean_proba = np.mean([e.predict_proba(XS_WINE) for e in soft.estimators_], axis=0)
    _allclose(soft.predict_proba(XS_WINE), mean_proba)
    assert_array_equal(soft.predict(XS_WINE), soft.classes_[mean_proba.argmax(1)])
    assert soft.score(XS_WINE, Y_WINE) > 0.9

    hard = VotingClassifier(members, voting="hard").fit(XS_WINE, Y_WINE)
    # the members are fitted on encoded labels 0..K-1; majority vote by hand
    votes = np.stack([e.predict(XS_WINE) for e in hard.estimators_]).astype(int)
    assert set(np.unique(votes)) <= {0, 1, 2}
    majority = np.array([np.bincount(v, minlength=3).argmax() for v in votes.T])
    assert_array_equal(hard.predict(XS_WINE), hard.le_.inverse_transform(majority))
    assert hard.score(XS_WINE, Y_WINE) > 0.9


@pytest.mark.parametrize("method", ["predict_proba", "decision_function"])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_stacking_uses_proba_or_decision_function(name, method):
    for mask, n_cols in ((slice(None), 3), (BINARY, 1)):
        X, y = XS_WINE[mask], Y_WINE[mask]
        stack = StackingClassifier(
            [("proto", make(name))],
            final_estimator=LogisticRegression(),
            cv=3,
            stack_method=method,
        ).fit(X, y)
        assert stack.stack_method_ == [method]
        Z = stack.transform(X)
        assert Z.shape == (len(y), n_cols)
        out = getattr(stack.estimators_[0], method)(X)
        if n_cols == 1:  # binary: the positive column / the 1-D decision function
            out = out[:, 1:] if method == "predict_proba" else out[:, None]
        _allclose(Z, out)
        assert stack.score(X, y) > 0.9
    auto = StackingClassifier([("proto", make(name))], cv=3).fit(XS_WINE, Y_WINE)
    assert auto.stack_method_ == ["predict_proba"]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_bagging_with_and_without_sample_weight(name):
    # no protolearn estimator takes sample_weight: bagging draws rows by index
    assert "sample_weight" not in ALL[name].fit.__code__.co_varnames
    bag = BaggingClassifier(
        make(name), n_estimators=4, max_features=0.6, random_state=0
    ).fit(XS_WINE, Y_WINE)
    assert all(e.n_features_in_ == 7 for e in bag.estimators_)
    mean_proba = np.mean(
        [
            e.predict_proba(XS_WINE[:, f])
            for e, f in zip(bag.estimators_, bag.estimators_features_)
        ],
        axis=0,
    )
    _allclose(bag.predict_proba(XS_WINE), mean_proba)
    assert_array_equal(bag.predict(XS_WINE), bag.classes_[mean_proba.argmax(1)])
    assert bag.score(XS_WINE, Y_WINE) > 0.9

    # sample_weight: rows drawn with probability ~ weight (zero-weight rows never)
    w = np.ones(len(Y_WINE))
    w[::3] = 0.0
    wbag = BaggingClassifier(make(name), n_estimators=3, random_state=0).fit(
        XS_WINE, Y_WINE, sample_weight=w
    )
    for rows in wbag.estimators_samples_:
        assert np.all(w[rows] > 0)
    assert wbag.score(XS_WINE, Y_WINE) > 0.9


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_permutation_importance(name):
    X, y = load_iris(return_X_y=True)
    y = np.array(["setosa", "versicolor", "virginica"])[y]
    X = np.c_[X, np.full(len(y), 3.0)]  # a constant column: permuting it is a no-op
    pipe = make_pipeline(StandardScaler(), make(name)).fit(X, y)
    r = permutation_importance(pipe, X, y, n_repeats=3, random_state=0)
    assert r.importances.shape == (5, 3)
    assert_array_equal(r.importances[4], 0.0)
    # the petal measurements (columns 2, 3) carry iris; sepal width (1) least
    assert r.importances_mean[2:4].max() > 0.1
    assert r.importances_mean[2:4].max() > r.importances_mean[1]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_decision_boundary_display_on_two_features(name):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.inspection import DecisionBoundaryDisplay

    X, y = load_iris(return_X_y=True)
    X2 = StandardScaler().fit_transform(X[:, 2:4])
    y = np.array(["setosa", "versicolor", "virginica"])[y]
    try:
        for mask in (slice(None), y != "setosa"):
            est = make(name).fit(X2[mask], y[mask])
            K = len(est.classes_)
            for method in ("predict", "predict_proba", "decision_function"):
                disp = DecisionBoundaryDisplay.from_estimator(
                    est, X2[mask], response_method=method, grid_resolution=15
                )
                grid = np.c_[disp.xx0.ravel(), disp.xx1.ravel()]
                if method == "predict":  # string labels are plotted as class indices
                    want = np.searchsorted(est.classes_, est.predict(grid))
                else:
                    want = getattr(est, method)(grid)
                    if method == "predict_proba" and K == 2:
                        want = want[:, 1]
                shape = disp.xx0.shape + ((K,) if K > 2 and method != "predict" else ())
                assert disp.response.shape == shape
                _allclose(disp.response, np.reshape(want, shape))
    finally:
        plt.close("all")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_clone_of_fitted_and_set_params_then_refit(name):
    est = make(name).fit(XS_WINE, Y_WINE)
    c = clone(est)
    assert c.get_params() == est.get_params()
    assert not hasattr(c, "classes_") and not hasattr(c, "n_features_in_")
    assert hasattr(est, "classes_")  # the original keeps its fit
    alt = alternative_params(name)
    refit = est.set_params(**alt).fit(XS_WINE, Y_WINE)
    assert refit is est
    fresh = make(name, **alt).fit(XS_WINE, Y_WINE)
    assert_array_equal(refit.predict(XS_WINE), fresh.predict(XS_WINE))
    _allclose(refit.predict_proba(XS_WINE), fresh.predict_proba(XS_WINE))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_binary_threshold_tuning_and_frozen_calibration(name):
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import TunedThresholdClassifierCV

    X, y = XS_WINE[BINARY], Y_WINE[BINARY]
    tuned = TunedThresholdClassifierCV(make(name), cv=3, random_state=0).fit(X, y)
    # the threshold is on predict_proba of classes_[1] (the response sklearn picks)
    est = tuned.estimator_
    want = np.where(
        est.predict_proba(X)[:, 1] >= tuned.best_threshold_,
        est.classes_[1],
        est.classes_[0],
    )
    assert_array_equal(tuned.predict(X), want)
    assert tuned.score(X, y) > 0.9

    fitted = make(name).fit(X, y)
    cal = CalibratedClassifierCV(FrozenEstimator(fitted)).fit(X, y)
    assert cal.calibrated_classifiers_[0].estimator.estimator is fitted  # not refitted
    assert cal.score(X, y) > 0.9


def test_partial_fit_then_fit_starts_afresh():
    est = NearestPrototypeClassifier(random_state=0)
    est.partial_fit(XS_WINE[BINARY], Y_WINE[BINARY], classes=np.unique(Y_WINE))
    est.fit(XS_WINE, Y_WINE)
    fresh = NearestPrototypeClassifier(random_state=0).fit(XS_WINE, Y_WINE)
    assert_array_equal(est.predict_proba(XS_WINE), fresh.predict_proba(XS_WINE))


def test_gmlvq_as_a_transformer_step():
    from sklearn.neighbors import KNeighborsClassifier

    pipe = make_pipeline(
        StandardScaler(),
        make("GMLVQClassifier", n_components=2),
        KNeighborsClassifier(),
    )
    scores = cross_val_score(pipe, X_WINE, Y_WINE, cv=CV3, n_jobs=2)
    assert scores.mean() > 0.9
    pipe.fit(X_WINE, Y_WINE)
    gmlvq = pipe[1]
    _allclose(pipe[:-1].transform(X_WINE), gmlvq.transform(XS_WINE))
    assert list(pipe[:-1].get_feature_names_out()) == [
        "gmlvqclassifier0",
        "gmlvqclassifier1",
    ]


def test_nota_rejection_inside_meta_estimators():
    """With ``nota`` set, ``predict`` may return ``nota_label``, which is not in
    ``classes_`` (documented).  Meta-estimators that go through predict_proba stay
    closed-set; hard voting, which bincounts the members' encoded predictions, cannot
    take the -1 that a member fitted on encoded labels returns."""
    rng = np.random.RandomState(0)
    X_far = np.r_[XS_WINE, 6 * rng.randn(20, XS_WINE.shape[1])]
    g = GaussianPrototypeClassifier(nota="quantile", alpha=0.1, random_state=0)
    assert "NOTA" in set(clone(g).fit(XS_WINE, Y_WINE).predict(X_far))
    for meta in (
        BaggingClassifier(g, n_estimators=3, random_state=0),
        OneVsRestClassifier(g),
        VotingClassifier([("g", g), ("lr", LogisticRegression())], voting="soft"),
    ):
        pred = meta.fit(XS_WINE, Y_WINE).predict(X_far)
        assert set(pred) <= set(WINE_NAMES)
    hard = VotingClassifier(
        [("g", g), ("lr", LogisticRegression()), ("nb", GaussianNB())], voting="hard"
    ).fit(XS_WINE, Y_WINE)
    assert -1 in hard.estimators_[0].predict(X_far)  # nota_label "auto" -> -1 on ints
    with pytest.raises(ValueError, match="negative"):
        hard.predict(X_far)


# ------------------------------------------------------------ novelty detectors


def _digits_ood():
    X, y = load_digits(return_X_y=True)
    inl = y < 5
    X_in, X_out, y_in = X[inl], X[~inl], y[inl]
    X_tr, X_te, y_tr, _ = train_test_split(
        X_in, y_in, test_size=0.3, stratify=y_in, random_state=0
    )
    return X_tr, y_tr, X_te, X_out


X_TR, Y_TR, X_TE, X_OUT = _digits_ood()


def auroc_against_outliers(est, X_val, y_val=None):
    """Custom scorer: AUROC of score_samples, held-out inliers (1) vs X_OUT (0)."""
    s = np.r_[est.score_samples(X_val), est.score_samples(X_OUT)]
    t = np.r_[np.ones(len(X_val)), np.zeros(len(X_OUT))]
    return roc_auc_score(t, s)


@pytest.mark.parametrize("labelled", [False, True], ids=["unlabelled", "labelled"])
@pytest.mark.parametrize("name", DETECTORS)
def test_detector_pipeline_conventions(name, labelled):
    y = Y_TR if labelled else None
    pipe = make_pipeline(StandardScaler(), make(name)).fit(X_TR, y)
    det = pipe[-1]
    X_eval = np.r_[X_TE, X_OUT]
    Z = pipe[0].transform(X_eval)
    s = pipe.score_samples(X_eval)
    assert s.shape == (len(X_eval),)
    _allclose(s, det.score_samples(Z))
    d = pipe.decision_function(X_eval)
    _allclose(d, s - det.offset_)
    p = pipe.predict(X_eval)
    assert p.dtype.kind == "i"
    assert set(np.unique(p)) <= {-1, 1}
    assert_array_equal(p, np.where(d < 0, -1, 1))
    assert auroc_against_outliers(pipe, X_TE) > 0.85
    # contamination="auto": about 5% of new inliers flagged
    assert np.mean(pipe.predict(X_TE) == -1) < 0.15
    assert np.mean(pipe.predict(X_OUT) == -1) > np.mean(pipe.predict(X_TE) == -1)
    # Pipeline.fit_predict passes y through to the detector
    fp = clone(pipe).fit_predict(X_TR, y)
    assert_array_equal(fp, pipe.predict(X_TR))


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_grid_search_with_custom_scorer(name):
    pipe = make_pipeline(StandardScaler(), make(name))
    step = pipe.steps[-1][0]
    grid = {f"{step}__{k}": v for k, v in GRIDS[name].items()}
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, grid, cv=cv, scoring=auroc_against_outliers, n_jobs=2)
    search.fit(X_TR)
    # the fold scores are the scorer on the held-out fold, computed directly
    folds = list(cv.split(X_TR))
    for i, params in enumerate(search.cv_results_["params"]):
        for k, (tr, te) in enumerate(folds):
            est = clone(pipe).set_params(**params).fit(X_TR[tr])
            want = auroc_against_outliers(est, X_TR[te])
            got = search.cv_results_[f"split{k}_test_score"][i]
            assert got == pytest.approx(want, rel=1e-9)
    assert search.best_score_ > 0.8
    fresh = clone(pipe).set_params(**search.best_params_).fit(X_TR)
    _allclose(search.score_samples(X_TE), fresh.score_samples(X_TE))
    _allclose(search.decision_function(X_TE), fresh.decision_function(X_TE))
    assert_array_equal(search.predict(X_OUT), fresh.predict(X_OUT))
    assert search.score(X_TE) == pytest.approx(auroc_against_outliers(fresh, X_TE))


@pytest.mark.parametrize("labelled", [False, True], ids=["unlabelled", "labelled"])
@pytest.mark.parametrize("name", DETECTORS)
def test_detector_decision_boundary_display_and_no_classes(name, labelled):
    """Like scikit-learn's outlier detectors (IsolationForest, EllipticEnvelope, ...),
    a detector has no ``classes_``: its predict space is {-1, +1}, whatever labels
    it was fitted with."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.inspection import DecisionBoundaryDisplay

    X, y = load_iris(return_X_y=True)
    X2 = StandardScaler().fit_transform(X[:, 2:4])
    det = make(name).fit(X2, y if labelled else None)
    try:
        for method in ("decision_function", "predict"):
            disp = DecisionBoundaryDisplay.from_estimator(
                det, X2, response_method=method, grid_resolution=12
            )
            grid = np.c_[disp.xx0.ravel(), disp.xx1.ravel()]
            want = getattr(det, method)(grid).reshape(disp.xx0.shape)
            _allclose(disp.response, want)
    finally:
        plt.close("all")
    assert not hasattr(det, "classes_")


# ------------------------------------------------------------------ transductive


def test_laplacian_kmeans_pipeline():
    pipe = make_pipeline(StandardScaler(), make("LaplacianKMeans"))
    labels = pipe.fit_predict(X_WINE)
    km = pipe[-1]
    assert_array_equal(labels, km.labels_)
    direct = make("LaplacianKMeans").fit(XS_WINE)
    assert_array_equal(km.labels_, direct.labels_)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert adjusted_rand_score(Y_WINE, labels) > 0.8
    assert_allclose(km.label_distributions_.sum(1), 1.0, rtol=1e-6)
    assert_array_equal(km.label_distributions_.argmax(1), km.labels_)
    assert km.cluster_centers_.shape == (3, X_WINE.shape[1])
    assert_array_equal(pipe.predict(X_WINE), direct.predict(XS_WINE))
    assert np.mean(pipe.predict(X_WINE) == labels) > 0.9
    assert pipe.score(X_WINE) == pytest.approx(direct.score(XS_WINE))


def test_laplacian_kmeans_cross_validation_with_ari():
    pipe = make_pipeline(StandardScaler(), make("LaplacianKMeans"))
    cv = KFold(3, shuffle=True, random_state=0)
    res = cross_validate(
        pipe,
        X_WINE,
        Y_WINE,
        cv=cv,
        scoring="adjusted_rand_score",
        n_jobs=2,
        return_indices=True,
    )
    for k, (tr, te) in enumerate(zip(res["indices"]["train"], res["indices"]["test"])):
        est = clone(pipe).fit(X_WINE[tr])  # y is ignored by fit
        want = adjusted_rand_score(Y_WINE[te], est.predict(X_WINE[te]))
        assert res["test_score"][k] == pytest.approx(want)
    assert res["test_score"].mean() > 0.7

    # default scoring: LaplacianKMeans.score (minus the inertia), as KMeans
    inertia = cross_val_score(pipe, X_WINE, cv=cv)
    for k, (tr, te) in enumerate(cv.split(X_WINE)):
        est = clone(pipe).fit(X_WINE[tr])
        assert inertia[k] == pytest.approx(est.score(X_WINE[te]))
        assert inertia[k] < 0

    search = GridSearchCV(
        pipe, {"laplaciankmeans__lam": [0.0, 1.0]}, cv=cv, scoring="adjusted_rand_score"
    ).fit(X_WINE, Y_WINE)
    fresh = clone(pipe).set_params(**search.best_params_).fit(X_WINE)
    assert_array_equal(search.predict(X_WINE), fresh.predict(X_WINE))
    assert_array_equal(search.best_estimator_[-1].labels_, fresh[-1].labels_)


DIGIT_NAMES = np.array([f"digit{k}" for k in range(10)])


def _semi_supervised_digits(n_labelled=3):
    X, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    lab = np.concatenate(
        [
            rng.choice(np.flatnonzero(y == k), n_labelled, replace=False)
            for k in range(10)
        ]
    )
    y_semi = np.full(len(y), -1, dtype=object)  # strings + the integer -1 (object)
    y_semi[lab] = DIGIT_NAMES[y[lab]]
    return X, DIGIT_NAMES[y], y, y_semi, lab


def test_fewshot_classifier_in_pipeline_with_unlabelled_rows():
    X, y_true, y_int, y_semi, lab = _semi_supervised_digits()
    query = np.ones(len(y_true), dtype=bool)
    query[lab] = False
    pipe = make_pipeline(StandardScaler(), make("LaplacianFewShotClassifier"))
    pipe.fit(X, y_semi)  # Pipeline passes y (with its -1 rows) to the last step
    clf = pipe[-1]
    assert_array_equal(clf.classes_, DIGIT_NAMES)  # -1 is no class
    assert_array_equal(pipe.classes_, DIGIT_NAMES)
    t = clf.transduction_
    assert t.shape == (len(y_true),)
    assert_array_equal(t[lab], y_semi[lab])  # supports keep their labels
    assert set(t) <= set(DIGIT_NAMES)
    D = clf.label_distributions_
    assert_allclose(D.sum(1), 1.0, rtol=1e-5)
    assert_array_equal(clf.classes_[D.argmax(1)], t)
    acc = np.mean(t[query] == y_true[query])
    assert acc > 0.8
    # the same as fitting the step on the scaled data
    direct = make("LaplacianFewShotClassifier").fit(
        StandardScaler().fit_transform(X), y_semi
    )
    assert_array_equal(direct.transduction_, t)
    pred = pipe.predict(X)
    assert set(pred) <= set(DIGIT_NAMES)
    assert np.mean(pred == y_true) > 0.8

    # integer labels with -1 for the queries: the same solution, integer classes
    y_semi_int = np.where(query, -1, y_int)
    pipe_int = clone(pipe).fit(X, y_semi_int)
    assert_array_equal(pipe_int.classes_, np.arange(10))
    assert_array_equal(DIGIT_NAMES[pipe_int[-1].transduction_], t)

    # scikit-learn's LabelSpreading in the same pipeline, same y
    ls = make_pipeline(StandardScaler(), LabelSpreading()).fit(X, y_semi_int)
    assert ls[-1].transduction_.shape == t.shape
    assert acc > np.mean(ls[-1].transduction_[query] == y_int[query]) - 0.05


def test_fewshot_classifier_in_self_training():
    X, y_true, y_int, _, lab = _semi_supervised_digits(n_labelled=5)
    y_semi = np.full(len(y_int), -1)
    y_semi[lab] = y_int[lab]
    Xs = StandardScaler().fit_transform(X)
    st = SelfTrainingClassifier(make("LaplacianFewShotClassifier"), max_iter=2).fit(
        Xs, y_semi
    )
    assert_array_equal(st.classes_, np.arange(10))
    assert set(np.unique(st.transduction_)) <= set(range(-1, 10))
    assert_array_equal(st.transduction_[lab], y_int[lab])
    assert st.score(Xs, y_int) > 0.7


def test_fewshot_string_minus_one_label_is_refused():
    X, _, y_int, _, lab = _semi_supervised_digits()
    y_str = np.full(len(y_int), "-1", dtype="<U8")
    y_str[lab] = DIGIT_NAMES[y_int[lab]]
    pipe = make_pipeline(StandardScaler(), make("LaplacianFewShotClassifier"))
    with pytest.raises(ValueError, match="object array"):
        pipe.fit(X, y_str)


def test_fewshot_classifier_cross_validation_is_inductive():
    """Without -1 rows the few-shot classifier is an ordinary (inductive) classifier in
    cross-validation: predict on the held-out fold from the refined prototypes."""
    X, y_true, _, _, _ = _semi_supervised_digits()
    pipe = make_pipeline(StandardScaler(), make("LaplacianFewShotClassifier"))
    scores = cross_val_score(pipe, X, y_true, cv=CV3, n_jobs=2)
    assert scores.mean() > 0.85


# ----------------------------------------------------------------- EpisodeSplit


def _episode_cv():
    return EpisodeSplit(n_way=5, n_shot=2, n_query=5, n_episodes=8, random_state=0)


def test_episode_split_in_cross_val_score():
    X, y_true, _, _, _ = _semi_supervised_digits()
    cv = _episode_cv()
    pipe = make_pipeline(StandardScaler(), NearestPrototypeClassifier(random_state=0))
    scores = cross_val_score(pipe, X, y_true, cv=cv, n_jobs=2)
    assert scores.shape == (8,)
    direct = []
    for tr, te in cv.split(X, y_true):
        assert len(tr) == 10 and len(te) == 25
        assert set(y_true[te]) == set(y_true[tr]) and len(set(y_true[tr])) == 5
        direct.append(clone(pipe).fit(X[tr], y_true[tr]).score(X[te], y_true[te]))
    _allclose(scores, direct)
    assert np.mean(scores) > 0.6


@pytest.mark.parametrize(
    "name, grid",
    [
        ("NearestPrototypeClassifier", {"metric": ["euclidean", "cosine"]}),
        ("LaplacianFewShotClassifier", {"lam": [0.0, 0.7]}),
    ],
)
def test_episode_split_in_grid_search(name, grid):
    X, y_true, _, _, _ = _semi_supervised_digits()
    cv = _episode_cv()
    pipe = make_pipeline(StandardScaler(), make(name))
    step = pipe.steps[-1][0]
    grid = {f"{step}__{k}": v for k, v in grid.items()}
    search = GridSearchCV(pipe, grid, cv=cv, n_jobs=2).fit(X, y_true)
    assert search.n_splits_ == 8
    splits = list(cv.split(X, y_true))
    for i, params in enumerate(search.cv_results_["params"]):
        for k, (tr, te) in enumerate(splits):
            est = clone(pipe).set_params(**params).fit(X[tr], y_true[tr])
            got = search.cv_results_[f"split{k}_test_score"][i]
            assert got == pytest.approx(est.score(X[te], y_true[te]))
    # refit on all the rows, all ten classes
    assert_array_equal(search.classes_, DIGIT_NAMES)
    fresh = clone(pipe).set_params(**search.best_params_).fit(X, y_true)
    assert_array_equal(search.predict(X), fresh.predict(X))


def test_cross_val_predict_refuses_episode_split():
    X, y_true, _, _, _ = _semi_supervised_digits()
    pipe = make_pipeline(StandardScaler(), NearestPrototypeClassifier())
    with pytest.raises(ValueError, match="only works for partitions"):
        cross_val_predict(pipe, X, y_true, cv=_episode_cv())


def test_no_warning_in_the_parent_process_of_parallel_cross_validation():
    """Dispatching torch-trained estimators to loky workers (pickling them, the
    results coming back) raises no warning in the user's process (warnings in the
    workers themselves are not forwarded by joblib)."""
    pipe = make_pipeline(StandardScaler(), make("GLVQClassifier", max_iter=200))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        scores = cross_val_score(pipe, X_WINE, Y_WINE, cv=CV3, n_jobs=2)
    assert scores.mean() > 0.9
