"""_core distances: equality with brute-force references, chunking, dtype and device."""

import time

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn import config_context, get_config

from protolearn._core import _distances as D
from protolearn._core._covariance import precision_cholesky


def _data(rng, n=37, m=5, d=4, dtype=np.float64):
    return rng.normal(size=(n, d)).astype(dtype), rng.normal(size=(m, d)).astype(dtype)


@pytest.mark.parametrize(
    "metric, ref",
    [("sqeuclidean", "sqeuclidean"), ("euclidean", "euclidean"), ("cosine", "cosine")],
)
def test_pairwise_matches_scipy(rng, metric, ref):
    X, Y = _data(rng)
    np.testing.assert_allclose(
        D.pairwise_distances(X, Y, metric), cdist(X, Y, ref), rtol=1e-10, atol=1e-10
    )


def test_tied_mahalanobis_matches_scipy(rng):
    X, Y = _data(rng)
    A = rng.normal(size=(4, 4))
    cov = A @ A.T + np.eye(4)
    L = precision_cholesky(cov)
    VI = np.linalg.inv(cov)
    ref = cdist(X, Y, "mahalanobis", VI=VI) ** 2
    np.testing.assert_allclose(
        D.pairwise_distances(X, Y, "mahalanobis", precision_cholesky=L), ref, rtol=1e-9
    )


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_per_prototype_mahalanobis_brute_force(rng, covariance_type):
    X, Y = _data(rng)
    m, d = Y.shape
    covs = []
    for _ in range(m):
        if covariance_type == "full":
            A = rng.normal(size=(d, d))
            covs.append(A @ A.T + np.eye(d))
        elif covariance_type == "diag":
            covs.append(np.diag(rng.uniform(0.5, 2, d)))
        else:
            covs.append(np.eye(d) * rng.uniform(0.5, 2))
    Ls = np.stack([precision_cholesky(c) for c in covs])
    L = {
        "full": Ls,
        "diag": np.stack([np.diag(x) for x in Ls]),
        "spherical": Ls[:, 0, 0],
    }[covariance_type]
    ref = np.stack(
        [
            np.einsum("ij,jk,ik->i", X - Y[k], np.linalg.inv(covs[k]), X - Y[k])
            for k in range(m)
        ],
        axis=1,
    )
    got = D.pairwise_distances(
        X, Y, "mahalanobis", precision_cholesky=L, covariance_type=covariance_type
    )
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_bad_precision_shape_names_it(rng):
    X, Y = _data(rng)
    with pytest.raises(ValueError, match="must have shape"):
        D.pairwise_distances(
            X,
            Y,
            "mahalanobis",
            precision_cholesky=np.ones((3, 3)),
            covariance_type="full",
        )
    with pytest.raises(ValueError, match="metric must be one of"):
        D.pairwise_distances(X, Y, "manhattan")
    with pytest.raises(ValueError, match="features"):
        D.pairwise_distances(X, Y[:, :2])


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine", "mahalanobis"])
def test_chunking_gives_the_same_result(rng, metric):
    X, Y = _data(rng, n=3000, m=7, d=6)
    L = precision_cholesky(np.cov(X.T)) if metric == "mahalanobis" else None
    full = D.pairwise_distances(X, Y, metric, precision_cholesky=L)
    with config_context(working_memory=0.01):  # ~10 kB: many chunks
        chunks = list(D.iter_distance_chunks(X, Y, metric, precision_cholesky=L))
        assert len(chunks) > 10
        tiny = D.pairwise_distances(X, Y, metric, precision_cholesky=L)
    np.testing.assert_array_equal(full, tiny)


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine", "mahalanobis"])
def test_float32_stays_float32(rng, metric):
    X, Y = _data(rng, dtype=np.float32)
    L = (
        precision_cholesky(np.cov(X.T)).astype(np.float32)
        if metric == "mahalanobis"
        else None
    )
    out = D.pairwise_distances(X, Y, metric, precision_cholesky=L)
    assert out.dtype == np.float32
    ref = D.pairwise_distances(
        X.astype(np.float64), Y.astype(np.float64), metric, precision_cholesky=L
    )
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "metric", ["sqeuclidean", "euclidean", "cosine", "mahalanobis"]
)
def test_torch_in_torch_out(rng, metric):
    X, Y = _data(rng, dtype=np.float32)
    L = (
        precision_cholesky(np.cov(X.T)).astype(np.float32)
        if metric == "mahalanobis"
        else None
    )
    ref = D.pairwise_distances(X, Y, metric, precision_cholesky=L)
    out = D.pairwise_distances(torch.from_numpy(X), Y, metric, precision_cholesky=L)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
def test_cuda_tensor_stays_on_device(rng):
    X, Y = _data(rng, dtype=np.float32)
    out = D.pairwise_distances(torch.from_numpy(X).cuda(), Y, "cosine")
    assert out.device.type == "cuda"


def test_nearest_and_min_per_group(rng):
    X, Y = _data(rng, m=6)
    Dm = cdist(X, Y, "sqeuclidean")
    idx, dist = D.nearest(X, Y)
    np.testing.assert_array_equal(idx, Dm.argmin(1))
    np.testing.assert_allclose(dist, Dm.min(1))
    groups = np.array([0, 0, 1, 2, 2, 2])
    ref = np.stack([Dm[:, groups == g].min(1) for g in range(3)], axis=1)
    np.testing.assert_allclose(D.min_per_group(Dm, groups, 3), ref)
    np.testing.assert_allclose(
        D.min_per_group(torch.from_numpy(Dm), groups, 3).numpy(), ref
    )
    with pytest.raises(ValueError, match="sorted"):
        D.min_per_group(Dm, groups[::-1], 3)


def test_precision_cholesky_errors_name_the_cause():
    from protolearn._core._covariance import shrunk_precision_cholesky

    S = np.diag([1.0, 0.0])  # singular: shrinkage is the remedy
    with pytest.raises(ValueError, match="use shrinkage"):
        precision_cholesky(S)
    L, s = shrunk_precision_cholesky(S, 10, 0.5)
    np.testing.assert_allclose(L @ L.T, np.linalg.inv(0.5 * S + 0.25 * np.eye(2)))
    # zero (identical samples): shrinkage towards tr(S)/d * I cannot help, and the
    # message must not say it would
    for shrinkage in ("auto", 0.5, None):
        with pytest.raises(ValueError, match="is zero .*identical"):
            shrunk_precision_cholesky(np.zeros((2, 2)), 10, shrinkage)


def test_threaded_row_chunks_equal_one_chunk(rng, thread_chunks):
    # numpy inputs of several chunks run on threads (BLAS on one thread each):
    # the same rows, in order, as one chunk; tuples stacked; nested calls serial;
    # torch and a small working_memory serial
    import threading

    thread_chunks(160 * 50, threads=2)  # 50-row chunks
    X = rng.normal(size=(1000, 6)).astype(np.float32)
    Y = rng.normal(size=(40, 6)).astype(np.float32)
    index, seen = np.arange(len(X)), set()

    def fn(Xc, rows):
        seen.add(threading.get_ident())
        time.sleep(0.002)  # threads take chunks as they come: let both get some
        inner = D.map_row_chunks(lambda Z, _: Z @ Y.T, Xc, 160)
        return inner.argmax(1), (Xc @ Y.T).max(1), index[rows]

    whole = fn(X, slice(None))
    seen.clear()
    with config_context(working_memory=200):  # the caller's config in the threads
        parts = D.map_row_chunks(fn, X, 160)
        budgets = D.map_row_chunks(
            lambda Z, _: np.full(len(Z), get_config()["working_memory"]), X, 160
        )
    assert len(seen) == 2 and threading.get_ident() not in seen
    assert set(budgets) == {200}
    for a, b in zip(parts, whole):
        np.testing.assert_array_equal(a, b)
    seen.clear()
    with config_context(working_memory=0.01):
        serial = D.map_row_chunks(fn, X, 160)
    assert seen == {threading.get_ident()}
    np.testing.assert_array_equal(serial[0], whole[0])
    winner = D.map_row_chunks(
        lambda Z, _: (Z @ torch.as_tensor(Y).T).argmax(1), torch.as_tensor(X), 160
    )
    assert isinstance(winner, torch.Tensor)
    np.testing.assert_array_equal(winner.numpy(), whole[0])


def test_scratch_reused_within_a_call_only(rng, thread_chunks):
    # a chunk's temporaries are reused by the thread's next chunk of the same call
    # (no fresh pages per chunk) and never outlive the call; results are unchanged
    X = rng.normal(size=(1000, 6)).astype(np.float32)
    Y = rng.normal(size=(40, 6)).astype(np.float32)
    buffers = []

    def fn(Xc, _):
        S = D.chunk_matmul(D.chunk_shift(Xc, Y[0]), Y.T)
        buffers.append(S.__array_interface__["data"][0])
        return S.argmax(1)

    for threads, budget in ((2, 1024), (1, 160 * 50 / 2**20)):  # 50-row chunks
        thread_chunks(160 * 50, threads=threads)
        buffers.clear()
        with config_context(working_memory=budget):
            out = D.map_row_chunks(fn, X, 160)
        np.testing.assert_array_equal(out, ((X - Y[0]) @ Y.T).argmax(1))
        assert len(buffers) == 20 and len(set(buffers)) <= threads
    assert getattr(D._workspace, "arrays", None) is None
    a, b = D.scratch("k", (3, 2), np.float32), D.scratch("k", (3, 2), np.float32)
    assert a.shape == (3, 2) and not np.shares_memory(a, b)
