"""MahalanobisDetector and KNNDetector against brute force, peers and CLINC150; the
detector conventions shared by every protolearn OOD detector."""

import numpy as np
import pytest
from sklearn import config_context
from sklearn.base import clone
from sklearn.covariance import OAS
from sklearn.neighbors import NearestNeighbors

from protolearn.metrics import auroc
from protolearn.ood import KNNDetector, MahalanobisDetector, PrototypeMixtureDetector


def _blobs(rng, n_classes=3, per_class=80, d=6):
    y = np.repeat(np.arange(n_classes), per_class)
    A = rng.normal(size=(d, d))  # correlated features
    X = rng.normal(size=(y.size, d)) @ A + 4 * rng.normal(size=(n_classes, d))[y]
    return X, y


def _maha(X, mean, cov):
    Z = X - mean
    return np.einsum("nd,de,ne->n", Z, np.linalg.inv(cov), Z)


# -------------------------------------------------------------- Mahalanobis


def test_mahalanobis_scores_equal_bruteforce(rng):
    X, y = _blobs(rng)
    Xq = rng.normal(size=(50, X.shape[1])) * 5
    means = np.stack([X[y == c].mean(0) for c in range(3)])
    R = X - means[y]
    pooled = R.T @ R / len(X)
    m0 = X.mean(0)
    total = (X - m0).T @ (X - m0) / len(X)
    d_class = np.stack([_maha(Xq, mu, pooled) for mu in means], 1).min(1)
    d_0 = _maha(Xq, m0, total)
    expected = {"class": -d_class, "agnostic": -d_0, "relative": d_0 - d_class}
    for method, exp in expected.items():
        det = MahalanobisDetector(method=method, shrinkage=None).fit(X, y)
        np.testing.assert_allclose(det.score_samples(Xq), exp, rtol=1e-9)
        np.testing.assert_allclose(
            det.decision_function(Xq), exp - det.offset_, rtol=1e-9
        )


def test_mahalanobis_shrinkage_is_oas_and_normalize(rng):
    X, y = _blobs(rng, per_class=15, d=20)
    det = MahalanobisDetector(method="agnostic").fit(X)
    ref = OAS().fit(X)
    assert det.shrinkage_ == pytest.approx(ref.shrinkage_, rel=1e-10)
    Xq = rng.normal(size=(10, X.shape[1]))
    np.testing.assert_allclose(det.score_samples(Xq), -ref.mahalanobis(Xq), rtol=1e-8)
    det = MahalanobisDetector(shrinkage=0.3, normalize=True).fit(X, y)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    ref = MahalanobisDetector(shrinkage=0.3).fit(Xn, y)
    Xqn = Xq / np.linalg.norm(Xq, axis=1, keepdims=True)
    np.testing.assert_allclose(det.score_samples(Xq * 7), ref.score_samples(Xqn), 1e-9)


def test_mahalanobis_errors(rng):
    X, y = _blobs(rng)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MahalanobisDetector(method="relative").fit(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MahalanobisDetector(method="relative").fit(X, np.zeros(len(X), int))
    X_sing = np.c_[X, np.ones(len(X))]  # a constant column: singular covariance
    with pytest.raises(ValueError, match="shrinkage"):
        MahalanobisDetector(shrinkage=None).fit(X_sing, y)
    MahalanobisDetector().fit(X_sing, y)  # shrinkage="auto" copes
    # a zero covariance (identical samples) says so; no shrinkage can help it
    X_same = np.repeat(X[:1], 10, axis=0)
    for method in ("class", "agnostic"):
        with pytest.raises(ValueError, match="all samples are identical"):
            MahalanobisDetector(method=method).fit(X_same)
    with pytest.raises(ValueError, match="all samples are identical after L2"):
        MahalanobisDetector(normalize=True).fit(X_same * np.arange(1, 11)[:, None])
    with pytest.raises(ValueError, match="samples of each class are identical"):
        MahalanobisDetector(method="relative").fit(X[:6], np.arange(6))
    # without labels "class" is one Gaussian: the class-agnostic score
    a = MahalanobisDetector(shrinkage=None).fit(X)
    b = MahalanobisDetector(method="agnostic", shrinkage=None).fit(X)
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X), rtol=1e-9)


# ---------------------------------------------------------------------- KNN


@pytest.mark.parametrize("normalize", [True, False])
def test_knn_equals_sklearn_neighbors(rng, normalize):
    X, _ = _blobs(rng)
    Xq = rng.normal(size=(40, X.shape[1])) * 3

    def prep(A):
        return A / np.linalg.norm(A, axis=1, keepdims=True) if normalize else A

    det = KNNDetector(n_neighbors=7, normalize=normalize).fit(X)
    dist, _ = NearestNeighbors(n_neighbors=7).fit(prep(X)).kneighbors(prep(Xq))
    np.testing.assert_allclose(det.score_samples(Xq), -dist[:, -1], rtol=1e-9)


def test_knn_errors(rng):
    X, _ = _blobs(rng)
    with pytest.raises(ValueError, match="n_neighbors=500 must be below the 240"):
        KNNDetector(n_neighbors=500).fit(X)
    with pytest.raises(ValueError, match="n_neighbors=240 must be below the 240"):
        KNNDetector(n_neighbors=240).fit(X)


@pytest.mark.parametrize("k", [1, 7])
def test_knn_offset_leaves_each_training_sample_out(rng, k):
    # offset_: percentile of each training sample's distance to its k-th nearest
    # *other* training sample (sklearn's kneighbors() without X leaves the row out)
    X, _ = _blobs(rng)
    X = np.r_[X, X[:5]]  # exact duplicates: their twin is a genuine neighbour at 0
    det = KNNDetector(n_neighbors=k, contamination=0.1).fit(X)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    loo = NearestNeighbors(n_neighbors=k).fit(Xn).kneighbors()[0][:, -1]
    assert det.offset_ == pytest.approx(np.percentile(-loo, 10), rel=1e-6, abs=1e-7)
    # in-sample scores count the row itself, so fewer training rows are flagged
    assert np.mean(det.predict(X) == -1) <= 0.1


@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_contamination_is_the_share_of_new_inliers_flagged(clinc150, k):
    # fit on the in-scope train rows; the in-scope test rows are new in-distribution
    # samples: about 5% of them are flagged ("auto"). With in-sample training scores
    # k=1 flagged all of them (offset 0) and k=5 7.1%.
    det = KNNDetector(n_neighbors=k).fit(clinc150["X_train_in"])
    X_test = clinc150["X_test"][clinc150["y_test"] >= 0]
    assert 0.03 <= np.mean(det.predict(X_test) == -1) <= 0.08


# ------------------------------------------------------ shared conventions

DETECTORS = [
    MahalanobisDetector(method="relative"),
    MahalanobisDetector(method="class"),
    KNNDetector(n_neighbors=5),
    PrototypeMixtureDetector(n_prototypes=2, random_state=0),
]


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: repr(d))
@pytest.mark.filterwarnings("ignore:Could not adhere to working_memory")
def test_chunked_scoring_equals_unchunked(rng, det):
    """A tiny working_memory forces chunks of one to a few rows."""
    X, y = _blobs(rng)
    Xq = rng.normal(size=(97, X.shape[1])).astype(np.float32) * 4
    det.fit(X.astype(np.float32), y)
    full = det.score_samples(Xq)
    with config_context(working_memory=0.001):
        chunked = det.score_samples(Xq)
    assert chunked.dtype == np.float32
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: repr(d))
@pytest.mark.parametrize("contamination", ["auto", 0.2])
def test_outlier_conventions(rng, det, contamination):
    X, y = _blobs(rng)
    det.set_params(contamination=contamination).fit(X, y)
    share = 0.05 if contamination == "auto" else contamination
    s = det.score_samples(X)
    pred = det.predict(X)
    assert pred.dtype.kind == "i" and set(np.unique(pred)) == {-1, 1}
    if isinstance(det, KNNDetector):  # leave-one-out offset (tested above)
        assert np.mean(pred == -1) <= share
    else:
        assert det.offset_ == pytest.approx(np.percentile(s, 100 * share))
        assert np.mean(pred == -1) == pytest.approx(share, abs=1.5 / X.shape[0])
    np.testing.assert_allclose(det.decision_function(X), s - det.offset_)
    # far away points are outliers, training-like points inliers
    far = X.mean(0) + 100 * X.std(0)
    assert det.predict(far[None])[0] == -1


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: repr(d))
def test_fit_predict_uses_the_labels(rng, det):
    """OutlierMixin.fit_predict drops y; the detectors that use labels pass it on."""
    X, y = _blobs(rng)
    names = np.array(["c", "a", "b"])[y]
    pred = clone(det).fit_predict(X, names)
    np.testing.assert_array_equal(pred, clone(det).fit(X, names).predict(X))
    fitted = clone(det)
    fitted.fit_predict(X, names)
    labels = getattr(
        fitted, "class_labels_", getattr(fitted, "prototype_labels_", None)
    )
    if labels is not None:  # the detectors that use labels
        assert set(labels) == {"a", "b", "c"}


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: repr(d))
def test_torch_in_torch_out(rng, det):
    torch = pytest.importorskip("torch")
    X, y = _blobs(rng)
    X = X.astype(np.float32)
    det.fit(torch.from_numpy(X), torch.from_numpy(y))
    Xq = rng.normal(size=(20, X.shape[1])).astype(np.float32) * 4
    s = det.score_samples(torch.from_numpy(Xq))
    assert isinstance(s, torch.Tensor) and s.dtype == torch.float32
    np.testing.assert_allclose(s.numpy(), det.score_samples(Xq), rtol=1e-4, atol=1e-3)
    p = det.predict(torch.from_numpy(Xq))
    assert isinstance(p, torch.Tensor) and p.dtype == torch.int64
    np.testing.assert_array_equal(p.numpy(), det.predict(Xq))


# ---------------------------------------------------------------- real data


def test_clinc150_baseline_quality(clinc150):
    """Fit on in-scope train; in-scope test vs out-of-scope test (floors a bit below
    the measured values: relative 0.973, class 0.946, kNN 0.937)."""
    d = clinc150
    is_in = (d["y_test"] >= 0).astype(int)
    X_tr, y_tr = d["X_train_in"], d["y_train_in"]
    rel = MahalanobisDetector(method="relative").fit(X_tr, y_tr)
    cls = MahalanobisDetector().fit(X_tr, y_tr)
    # a third of train keeps the test fast (k scaled with it: the default k=50 on all
    # of train scores 0.935)
    knn = KNNDetector(n_neighbors=15).fit(X_tr[::3])
    a_rel = auroc(is_in, rel.score_samples(d["X_test"]))
    a_cls = auroc(is_in, cls.score_samples(d["X_test"]))
    a_knn = auroc(is_in, knn.score_samples(d["X_test"]))
    assert a_rel > 0.965
    assert a_cls > 0.94
    assert a_knn > 0.925
    assert a_rel > a_cls  # Ren et al.'s fix helps on near-OOD intents


# ------------------------------------------------------------------- peers


def test_same_scores_as_pytorch_ood(rng):
    """Our baselines rank like pytorch-ood's (benchmark environment only)."""
    torch = pytest.importorskip("torch")
    detector = pytest.importorskip("pytorch_ood.detector")
    X, y = _blobs(rng)
    Xq = rng.normal(size=(30, X.shape[1])) * 4
    # pytorch-ood keeps its statistics in float32
    z, zq = torch.from_numpy(X).float(), torch.from_numpy(Xq).float()
    yt = torch.from_numpy(y)
    n = len(X)
    # pytorch-ood: outlier score, covariance = scatter (not divided by n) + 1e-6 I
    po = detector.Mahalanobis(None).fit_features(z, yt).predict_features(zq).numpy()
    ours = MahalanobisDetector(shrinkage=None).fit(X, y).score_samples(Xq)
    np.testing.assert_allclose(po, -ours / (2 * n), rtol=1e-3)
    po = detector.RMD(None).fit_features(z, yt).predict_features(zq).numpy()
    ours = MahalanobisDetector(method="relative", shrinkage=None).fit(X, y)
    np.testing.assert_allclose(po, -ours.score_samples(Xq) / n, rtol=1e-3, atol=1e-6)
    po = detector.KNN(None, k=5).fit_features(z, yt).predict_features(zq).numpy()
    ours = KNNDetector(n_neighbors=5).fit(X).score_samples(Xq)
    np.testing.assert_allclose(po, -ours, rtol=1e-5)
