"""protolearn on dask (the ``protolearn[dask]`` extra), on a two-worker LocalCluster.

Every numeric-input estimator from ``all_estimators()`` is searched with GridSearchCV under joblib's
dask backend and applied blockwise to a dask array; estimators that cannot are listed
in ``EXPECTED_FAILURES`` with the reason.
"""

import numpy as np
import pytest
from _estimators import FAST_PARAMS, PARAM_GRIDS
from _inputs import numeric_estimators
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone, is_classifier, is_clusterer, is_outlier_detector
from sklearn.datasets import load_wine
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    cross_validate,
)
from sklearn.preprocessing import StandardScaler

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")
parallel = pytest.importorskip("protolearn.parallel")

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning",
    "ignore:.*(Port|port).*:UserWarning",
)

ALL = dict(numeric_estimators())
# name -> reason: estimators the checks below do not apply to.
EXPECTED_FAILURES = {}

ROW_METHODS = (
    "predict",
    "predict_proba",
    "decision_function",
    "score_samples",
    "transform",
)

X_WINE, Y_WINE = load_wine(return_X_y=True)
XS = StandardScaler().fit_transform(X_WINE).astype(np.float32)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def make(name):
    return ALL[name](**FAST_PARAMS.get(name, {}))


def _score_detector(est, X, y=None):
    return float(np.mean(est.score_samples(X)))


def _search(name):
    est = make(name)
    if is_outlier_detector(est):
        return GridSearchCV(
            est, PARAM_GRIDS[name], cv=KFold(2), scoring=_score_detector
        )
    cv = StratifiedKFold(2) if is_classifier(est) else KFold(2)
    return GridSearchCV(est, PARAM_GRIDS[name], cv=cv)


def _fit(est):
    if is_clusterer(est) or is_outlier_detector(est):
        return est.fit(XS)
    return est.fit(XS, Y_WINE)


def test_every_estimator_has_a_grid_or_a_reason():
    assert set(ALL) - set(EXPECTED_FAILURES) <= set(PARAM_GRIDS)


def _xy(name):
    est = make(name)
    return XS, (None if is_clusterer(est) or is_outlier_detector(est) else Y_WINE)


@pytest.mark.parametrize("name", sorted(set(ALL) - set(EXPECTED_FAILURES)))
def test_cross_validate_on_the_joblib_dask_backend_equals_local(client, name):
    search = _search(name)  # its cv and scoring
    X, y = _xy(name)
    kw = dict(cv=search.cv, scoring=search.scoring)
    local = cross_validate(make(name), X, y, **kw)
    with joblib.parallel_backend("dask"):
        remote = cross_validate(make(name), X, y, n_jobs=-1, **kw)
    assert_allclose(remote["test_score"], local["test_score"])


@pytest.mark.parametrize(
    "name", ["GaussianPrototypeClassifier", "MahalanobisDetector", "LaplacianKMeans"]
)
def test_grid_search_on_the_joblib_dask_backend_equals_local(client, name):
    X, y = _xy(name)
    local = _search(name).fit(X, y)
    with joblib.parallel_backend("dask"):
        remote = _search(name).set_params(n_jobs=-1).fit(X, y)
    assert remote.best_params_ == local.best_params_
    assert_allclose(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )


@pytest.mark.parametrize("name", sorted(set(ALL) - set(EXPECTED_FAILURES)))
def test_blockwise_methods_equal_in_memory_and_ship_the_model_once(client, name):
    est = _fit(make(name))
    Xd = da.from_array(XS, chunks=(50, 7))  # 4 row blocks, column blocks merged
    methods = [m for m in ROW_METHODS if callable(getattr(est, m, None))]
    assert methods
    for method in methods:
        out = parallel.blockwise(est, Xd, method)
        assert out.numblocks[0] == 4
        graph = dict(out.__dask_graph__())
        held = [
            k for k, v in graph.items() if v is est or getattr(v, "value", 0) is est
        ]
        n_model_keys = sum(1 for k in graph if type(est).__name__ in str(k))
        assert n_model_keys == 1 or len(held) == 1, (method, list(graph)[:8])
        got = out.compute()
        want = getattr(est, method)(XS)
        if np.asarray(want).dtype.kind == "f":
            assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        else:
            assert_array_equal(got, want)


def test_blockwise_over_a_dask_dataframe_and_parallel_post_fit(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    from protolearn.classification import GaussianPrototypeClassifier
    from protolearn.ood import MahalanobisDetector

    frame = pd.DataFrame(XS, columns=[f"f{i}" for i in range(XS.shape[1])])
    ddf = dd.from_pandas(frame, npartitions=3)
    clf = GaussianPrototypeClassifier().fit(frame, Y_WINE)
    proba = parallel.blockwise(clf, ddf, "predict_proba").compute()
    assert list(proba.columns) == list(clf.classes_)
    assert_allclose(proba.to_numpy(), clf.predict_proba(frame), rtol=1e-6)
    det = MahalanobisDetector().fit(frame)
    scores = parallel.blockwise(det, ddf, "score_samples").compute()
    assert_allclose(scores.to_numpy(), det.score_samples(frame), rtol=1e-6)
    # dask-ml's wrapper covers predict / predict_proba / score as it is
    wrapped = wrappers.ParallelPostFit(GaussianPrototypeClassifier()).fit(XS, Y_WINE)
    Xd = da.from_array(XS, chunks=50)
    assert_array_equal(wrapped.predict(Xd).compute(), clf.predict(frame))
    assert wrapped.score(Xd, da.from_array(Y_WINE, chunks=50)) == pytest.approx(
        clf.score(frame, Y_WINE)
    )
    with pytest.raises(TypeError, match="dask array or dask DataFrame"):
        parallel.blockwise(clf, XS, "predict")


def _episodes():
    from protolearn.model_selection import sample_episodes

    return sample_episodes(
        Y_WINE, n_way=3, n_shot=2, n_query=6, n_episodes=40, random_state=0
    )


def test_batched_episodes_on_dask_equal_in_memory(client):
    from protolearn.model_selection import evaluate_episodes
    from protolearn.transductive import (
        LaplacianFewShotClassifier,
        laplacian_fewshot_episodes,
    )

    eps = _episodes()
    S = np.stack([XS[e.support_index] for e in eps])
    Q = np.stack([XS[e.query_index] for e in eps])
    L = np.stack([e.support_labels for e in eps])
    want = laplacian_fewshot_episodes(S, L, Q, max_iter=20)
    got = parallel.solve_episodes(
        da.from_array(S, chunks=(10, -1, -1)), L, da.from_array(Q, chunks=(10, -1, -1)),
        max_iter=20,
    )  # fmt: skip
    assert got.labels.numblocks[0] == 4
    assert_array_equal(got.labels.compute(), want.labels)
    assert_allclose(got.label_distributions.compute(), want.label_distributions,
                    rtol=1e-5, atol=1e-6)  # fmt: skip

    est = LaplacianFewShotClassifier(max_iter=20)
    local = evaluate_episodes(est, XS, eps, transductive=True, batched=True)
    remote = parallel.evaluate_episodes(
        clone(est), XS, eps, npartitions=4, transductive=True, batched=True
    )
    assert_array_equal(remote.scores, local.scores)
    assert remote.mean == pytest.approx(local.mean)


def test_fit_blocks_equals_a_full_fit_where_the_update_is_exact(client):
    from protolearn.classification import GaussianPrototypeClassifier
    from protolearn.ood import KNNDetector, MahalanobisDetector

    wrappers = pytest.importorskip("dask_ml.wrappers")
    Xd, yd = da.from_array(XS, chunks=(40, 7)), da.from_array(Y_WINE, chunks=40)
    clf = GaussianPrototypeClassifier(covariance_type="full", shrinkage="auto")
    got = parallel.fit_blocks(clf, Xd, yd, shuffle_blocks=True, random_state=0)
    assert not hasattr(clf, "means_")  # the estimator passed is not modified
    full = clone(clf).fit(XS, Y_WINE)
    for attr in ("means_", "covariances_", "shrinkage_", "priors_"):
        assert_allclose(
            getattr(got, attr), getattr(full, attr), rtol=1e-6, err_msg=attr
        )
    assert_array_equal(got.predict(XS), full.predict(XS))
    # dask-ml's Incremental gives the same for a classifier (it has a score method)
    # on row-only chunks (of column blocks it feeds the first only)
    inc = wrappers.Incremental(clone(clf), shuffle_blocks=False)
    inc.fit(Xd.rechunk({1: -1}), yd)
    assert_allclose(inc.estimator_.means_, full.means_, rtol=1e-6)
    # without labels (where Incremental passes each block's key as y)
    for det in (MahalanobisDetector(method="agnostic"), KNNDetector()):
        got = parallel.fit_blocks(det, Xd)
        assert_allclose(got.score_samples(XS), clone(det).fit(XS).score_samples(XS),
                        rtol=1e-5, atol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="same row blocks"):
        parallel.fit_blocks(clf, Xd, da.from_array(Y_WINE, chunks=60))
    with pytest.raises(TypeError, match="dask array"):
        parallel.fit_blocks(clf, XS, Y_WINE)


def test_fit_blocks_runs_epochs_of_a_deep_head_as_local_partial_fit(client):
    pytest.importorskip("torch")
    from protolearn.deep import DeepGaussianPrototypeClassifier

    clf = DeepGaussianPrototypeClassifier(hidden_layer_sizes=(8,), random_state=0)
    Xd, yd = da.from_array(XS, chunks=60), da.from_array(Y_WINE, chunks=60)
    got = parallel.fit_blocks(clf, Xd, yd, epochs=2)  # classes from y
    local = clone(clf)
    for _ in range(2):
        for rows in np.array_split(np.arange(len(XS)), [60, 120]):
            local.partial_fit(XS[rows], Y_WINE[rows], classes=np.unique(Y_WINE))
    assert got.n_iter_ == local.n_iter_ == 6
    assert_allclose(got.prototypes_, local.prototypes_, rtol=1e-4, atol=1e-5)
    assert_array_equal(got.predict(XS), local.predict(XS))
