"""_core prototypes and covariances against scikit-learn / numpy references."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.covariance import oas

from protolearn._core import _covariance, _prototypes
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
    assert _covariance.oas_shrinkage(S, 30) == pytest.approx(ref, rel=1e-12)


def test_pooled_covariance_and_precision_cholesky(rng):
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60)
    M = _prototypes.class_means(X, y, 3)
    S = _covariance.pooled_covariance(X, y, M)
    R = X - M[y]
    np.testing.assert_allclose(S, R.T @ R / 60)
    L = _covariance.precision_cholesky(S)
    np.testing.assert_allclose(L @ L.T, np.linalg.inv(S), rtol=1e-9)
    Sh = _covariance.shrink_covariance(S.copy(), 0.3)
    np.testing.assert_allclose(Sh, 0.7 * S + 0.3 * np.trace(S) / 3 * np.eye(3))
    with pytest.raises(ValueError, match="shrinkage"):
        _covariance.precision_cholesky(np.zeros((3, 3)))


@pytest.mark.parametrize("n_features", [5, 530])  # small Gram / Lanczos branch
def test_cluster_top_variances_match_covariance_eigenvalues(rng, n_features):
    X = rng.normal(size=(1250, n_features))
    labels = np.repeat([0, 1, 2], [600, 649, 1])  # the last cluster is a singleton
    top = _prototypes.cluster_top_variances(X, labels, 3, random_state=0)
    for k in (0, 1):
        C = np.cov(X[labels == k].T, bias=True)
        np.testing.assert_allclose(top[k], np.linalg.eigvalsh(C)[-1], rtol=1e-6)
    assert np.isnan(top[2])


# ------------------------------------------------------------ audit: k-means references
def _brute_lloyd(X, C, max_iter, cosine=False):
    """Plain numpy Lloyd loop (tol=0: until the centres stop moving)."""
    X, C = X.astype(np.float64), C.astype(np.float64)
    if cosine:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        C = C / np.linalg.norm(C, axis=1, keepdims=True)

    def dist(C):
        return 1 - X @ C.T if cosine else ((X[:, None] - C[None]) ** 2).sum(-1)

    for it in range(1, max_iter + 1):  # noqa: B007
        lab = dist(C).argmin(1)
        new = np.array([X[lab == k].mean(0) for k in range(len(C))])
        if cosine:
            new /= np.linalg.norm(new, axis=1, keepdims=True)
        moved = ((new - C) ** 2).sum()
        C = new
        if moved == 0:
            break
    D = dist(C)
    return C, D.argmin(1), D.min(1).sum(), it


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kmeans_matches_brute_force_lloyd_from_its_own_seeding(metric):
    from sklearn.cluster import kmeans_plusplus

    cosine = metric == "cosine"
    for seed in range(4):
        r = np.random.default_rng(seed)
        X = r.normal(size=(300, 4)) + r.normal(size=4)
        init, _ = kmeans_plusplus(
            l2_normalize(X) if cosine else X, 6, random_state=seed
        )
        C, lab, inertia, it = _prototypes.kmeans(
            X, 6, metric=metric, random_state=seed, tol=0, max_iter=300
        )
        Cb, labb, inb, itb = _brute_lloyd(X, init, 300, cosine)
        np.testing.assert_allclose(C, Cb, atol=1e-12)
        np.testing.assert_array_equal(lab, labb)
        assert inertia == pytest.approx(inb, rel=1e-12) and it == itb


def test_kmeans_seeding_quality_matches_sklearn():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(600, n_features=5, centers=8, cluster_std=2.0, random_state=0)
    best = KMeans(8, n_init=10, random_state=0).fit(X).inertia_
    ours = [_prototypes.kmeans(X, 8, random_state=s)[2] for s in range(10)]
    assert min(ours) <= 1.01 * best
    # one k-means++ draw per seed, the same draws as sklearn's single runs
    sk = [KMeans(8, n_init=1, random_state=s).fit(X).inertia_ for s in range(10)]
    np.testing.assert_allclose(ours, sk, rtol=1e-10)


def test_kmeans_empty_cluster_relocation_matches_sklearn():
    # two centres far away attract nothing; sklearn moves the farthest points to
    # them, out of their old clusters (the old code left them in: 58/200 seeds
    # converged elsewhere, seeds 0 and 5 among them)
    for seed in (0, 5, 7, 11):
        X = np.random.default_rng(seed).normal(size=(40, 2))
        init = np.r_[X[:3], [[50.0, 50.0], [-50.0, -50.0]]]
        C, lab, inertia, it = _prototypes.kmeans(X, 5, init=init, tol=0, max_iter=300)
        ref = KMeans(5, init=init, n_init=1, tol=0, max_iter=300).fit(X)
        np.testing.assert_allclose(C, ref.cluster_centers_, atol=1e-12)
        np.testing.assert_array_equal(lab, ref.labels_)
        assert inertia == pytest.approx(ref.inertia_, rel=1e-12)
        assert it == ref.n_iter_


def test_kmeans_fewer_distinct_points_than_clusters_warns():
    from sklearn.exceptions import ConvergenceWarning

    X = np.repeat([[1.0, 0.0], [0.0, 2.0]], 5, axis=0)  # 2 points, 2 directions
    for metric in ("euclidean", "cosine"):
        with pytest.warns(ConvergenceWarning, match=r"distinct clusters \(2\).*\(3\)"):
            C, lab, inertia, _ = _prototypes.kmeans(X, 3, metric=metric, random_state=0)
        assert np.unique(lab).size == 2 and inertia == pytest.approx(0, abs=1e-12)
        assert np.unique(C.round(12), axis=0).shape[0] == 2  # a duplicated centre
    with warnings.catch_warnings():  # enough distinct points: no warning
        warnings.simplefilter("error", ConvergenceWarning)
        _prototypes.kmeans(np.arange(20.0).reshape(10, 2), 3, random_state=0)


def test_kmeans_reproducible_and_dtype_device_kinds(rng):
    X = rng.normal(size=(120, 3))
    y = np.repeat([0, 1], 60)
    a = _prototypes.class_prototypes(X, y, 2, [3, 2], random_state=0)[0]
    np.testing.assert_array_equal(
        a, _prototypes.class_prototypes(X, y, 2, [3, 2], random_state=0)[0]
    )
    rs = np.random.RandomState(0)
    b = _prototypes.class_prototypes(X, y, 2, [3, 2], random_state=rs)[0]
    np.testing.assert_array_equal(a, b)  # same draws as the int seed ...
    c = _prototypes.class_prototypes(X, y, 2, [3, 2], random_state=rs)[0]
    assert not np.allclose(b, c)  # ... and the instance advances
    for metric in ("euclidean", "cosine"):
        C, lab, inertia, _ = _prototypes.kmeans(X, 4, metric=metric, random_state=0)
        C32, lab32, in32, _ = _prototypes.kmeans(
            X.astype(np.float32), 4, metric=metric, random_state=0
        )
        assert C32.dtype == np.float32
        np.testing.assert_allclose(C32, C, atol=1e-5)
        np.testing.assert_array_equal(lab32, lab)
        assert in32 == pytest.approx(inertia, rel=1e-5)
        Ct, labt, int_, _ = _prototypes.kmeans(
            torch.from_numpy(X), 4, metric=metric, random_state=0
        )
        assert isinstance(Ct, torch.Tensor) and Ct.dtype == torch.float64
        np.testing.assert_allclose(Ct.numpy(), C, atol=1e-12)
        np.testing.assert_array_equal(labt.numpy(), lab)


def test_integer_input_gives_float_means_and_centres(rng):
    Xi = rng.integers(0, 10, size=(40, 2))
    y = np.repeat([0, 1], 20)
    M = _prototypes.class_means(Xi, y, 2)
    assert M.dtype == np.float64  # was int64, the means truncated
    np.testing.assert_array_equal(M, [Xi[:20].mean(0), Xi[20:].mean(0)])
    Ci = _prototypes.kmeans(Xi, 3, random_state=0)[0]
    np.testing.assert_array_equal(
        Ci, _prototypes.kmeans(Xi * 1.0, 3, random_state=0)[0]
    )
    Mt = _prototypes.class_means(torch.from_numpy(Xi), torch.from_numpy(y), 2)
    np.testing.assert_array_equal(Mt.numpy(), M)


def test_cosine_single_prototype_is_spherical_kmeans_with_one_centre(rng):
    # rows of very different norms: the spherical centre is the normalised mean of
    # the normalised rows, for one prototype as for several
    X = rng.normal(size=(60, 3)) + [2.0, 0, 0]
    X *= rng.uniform(0.1, 10, size=(60, 1))
    y = np.repeat([0, 1], 30)
    P, lab, _ = _prototypes.class_prototypes(X, y, 2, [1, 2], metric="cosine")
    Xn = l2_normalize(X[:30])
    m = Xn.mean(0)
    np.testing.assert_allclose(P[0], m / np.linalg.norm(m), rtol=1e-12)
    C1 = _prototypes.kmeans(X[:30], 1, metric="cosine", init=X[:1], tol=0)[0]
    np.testing.assert_allclose(P[0], C1[0], rtol=1e-12)


# ----------------------------------------------------- audit: BD-CSPN rectification
def _brute_rectify(S, ys, Q, K, scale):
    def nrm(A):
        return A / np.linalg.norm(A, axis=-1, keepdims=True)

    Qs = Q + S.mean(0) - Q.mean(0)
    Pn = nrm(np.array([S[ys == k].mean(0) for k in range(K)]))
    yq = (nrm(Qs) @ Pn.T).argmax(1)
    out = []
    for k in range(K):
        Xk = np.r_[S[ys == k], Qs[yq == k]]
        cos = nrm(Xk) @ Pn[k]
        w = np.exp(scale * (cos - cos.max()))
        out.append((w[:, None] * Xk).sum(0) / w.sum())
    return np.array(out)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [0.0, 1.0, 10.0, 1000.0])
def test_rectification_matches_brute_force_at_any_scale(rng, dtype, scale):
    T, ns, nq, d, K = 3, 15, 20, 6, 5
    S = rng.normal(size=(T, ns, d)) + 1
    Q = rng.normal(size=(T, nq, d)) + 1.5
    ys = np.tile(np.arange(K), (T, 3))
    oh = np.eye(K)[ys]
    ref = np.stack([_brute_rectify(S[t], ys[t], Q[t], K, scale) for t in range(T)])
    S, Q, oh = S.astype(dtype), Q.astype(dtype), oh.astype(dtype)
    M = _prototypes.batched_class_means(S, oh)
    R = _prototypes.rectify_prototypes(S, oh, Q, M, scale=scale)
    Z = np.concatenate([S, Q], 1)
    C = _prototypes.rectify_prototype_weights(Z @ Z.swapaxes(1, 2), oh, scale=scale)
    tol = 1e-12 if dtype == np.float64 else 2e-4
    if scale == 1000.0 and dtype == np.float32:
        tol = 2e-2  # one float32 ulp of a cosine, times 1000, in the weights
    for out in (R, C.swapaxes(1, 2) @ Z):
        assert out.dtype == dtype and np.isfinite(out).all()  # was NaN at 1000, f32
        np.testing.assert_allclose(out, ref, atol=tol)
    Rt = _prototypes.rectify_prototypes(
        *(torch.from_numpy(a) for a in (S, oh, Q, M)), scale=scale
    )
    np.testing.assert_allclose(Rt.numpy(), R, atol=10 * tol)
