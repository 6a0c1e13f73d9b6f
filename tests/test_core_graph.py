"""kNN affinities and the Laplacian bound optimizer against brute-force numpy references."""

import numpy as np
import pytest
from scipy import sparse

from protolearn._core import (
    _batched,
    _knn_graph,
    _laplacian_solver,
    _prototype_step,
    _prototypes,
)


def _brute_knn(X, k):
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, idx, 1), idx


def _brute_affinity(X, k, kind, symmetric):
    d2, idx = _brute_knn(X, k)
    n = X.shape[0]
    h2 = d2.mean()
    W = np.zeros((n, n))
    for p in range(n):
        for j, q in enumerate(idx[p]):
            W[p, q] = 1.0 if kind == "binary" else np.exp(-d2[p, j] / (2 * h2))
    return (W + W.T) / 2 if symmetric else W


@pytest.mark.parametrize("algorithm", ["brute", "auto"])  # chunked / KD-tree
def test_kneighbors_excludes_self_and_matches_brute_force(rng, algorithm):
    X = rng.normal(size=(60, 5))
    X[7] = X[3]  # a duplicate: excluding "the first neighbour" would be wrong here
    d2, idx = _knn_graph.kneighbors(X, 4, working_memory=0.01, algorithm=algorithm)
    ref_d2, ref_idx = _brute_knn(X, 4)
    np.testing.assert_allclose(d2, ref_d2, atol=1e-10)
    assert not np.any(idx == np.arange(60)[:, None])
    assert idx[3, 0] == 7 and idx[7, 0] == 3
    np.testing.assert_array_equal(np.sort(idx, 1), np.sort(ref_idx, 1))
    with pytest.raises(ValueError, match="n_neighbors must be in"):
        _knn_graph.kneighbors(X, 60)


@pytest.mark.parametrize("kind", ["binary", "heat"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_knn_affinity_sparse_and_batched_match_brute_force(rng, kind, symmetric):
    X = rng.normal(size=(3, 40, 6))
    Wb, h = _knn_graph.batched_knn_affinity(X, 5, kind=kind, symmetric=symmetric)
    gram = X @ X.swapaxes(1, 2)  # the Gram path: argmax passes (k <= 8) or partition
    kw = dict(kind=kind, symmetric=symmetric, gram=gram)
    Wg, hg = _knn_graph.batched_knn_affinity(X, 5, **kw)
    W12, _ = _knn_graph.batched_knn_affinity(X, 12, **kw)
    for t in range(3):
        ref = _brute_affinity(X[t], 5, kind, symmetric)
        W, ht = _knn_graph.knn_affinity(X[t], 5, kind=kind, symmetric=symmetric)
        assert sparse.issparse(W) and W.nnz <= 2 * 5 * 40
        np.testing.assert_allclose(W.toarray(), ref, atol=1e-12)
        np.testing.assert_allclose(Wb[t], ref, atol=1e-12)
        np.testing.assert_allclose(Wg[t], ref, atol=1e-12)
        np.testing.assert_allclose(W12[t], _brute_affinity(X[t], 12, kind, symmetric),
                                   atol=1e-12)  # fmt: skip
        assert ht == pytest.approx(float(h[t])) == pytest.approx(float(hg[t]))
    with pytest.raises(ValueError, match="affinity must be one of"):
        _knn_graph.knn_affinity(X[0], 3, kind="gauss")


@pytest.mark.parametrize("symmetric", [True, False])
def test_binary_graph_from_sorted_scores_matches_argmax_passes(rng, symmetric):
    # binary weights with a given bandwidth: the graph comes from one sort of each
    # row (k-th largest score as threshold); tasks with a tie at the k-th place go
    # through the argmax passes, so the result is the argmax graph everywhere
    X = rng.normal(size=(6, 30, 5)).astype(np.float32)
    X[1, 7] = X[1, 3]  # duplicated rows: equal scores, ties in their neighbours' rows
    X[1, 12] = X[1, 3]
    X[4, :10] = X[4, 10:20]
    gram = X @ X.swapaxes(1, 2)
    kw = dict(kind="binary", symmetric=symmetric, gram=gram)
    for k in (1, 2, 3, 4, 5, 29):
        fast, h = _knn_graph.batched_knn_affinity(X, k, bandwidth=1.0, **kw)
        ref, _ = _knn_graph.batched_knn_affinity(
            X, k, **kw
        )  # index path (no bandwidth)
        assert fast.dtype == np.float32 and np.all(h == 1.0)
        np.testing.assert_array_equal(fast, ref)
        assert np.all(fast.sum(-1) >= (k / 2 if symmetric else k))
    # the fallback is exercised: in task 4 (rows in pairs) the 2nd and 3rd largest
    # scores of a row are a tied pair, i.e. a tie at the k-th place for k = 2
    scores = gram[4] - 0.5 * np.diag(gram[4])[None, :]
    np.fill_diagonal(scores, -np.inf)
    top = np.sort(scores, axis=1)[:, ::-1]
    assert np.any(top[:, 1] == top[:, 2])
    torch = pytest.importorskip("torch")
    Wt, _ = _knn_graph.batched_knn_affinity(
        torch.from_numpy(X), 3, bandwidth=1.0, kind="binary", symmetric=symmetric,
        gram=torch.from_numpy(gram),
    )  # fmt: skip
    assert isinstance(Wt, torch.Tensor)
    ref, _ = _knn_graph.batched_knn_affinity(X, 3, **kw)
    np.testing.assert_array_equal(Wt.numpy(), ref)


def test_embed_graph_places_subgraph(rng):
    X = rng.normal(size=(10, 3))
    W, _ = _knn_graph.knn_affinity(X, 2)
    idx = np.arange(4, 14)
    E = _knn_graph.embed_graph(W, idx, 14)
    np.testing.assert_array_equal(E.toarray()[4:, 4:], W.toarray())
    assert E[:4].nnz == 0
    Ed = _knn_graph.embed_graph(W.toarray()[None], idx, 14)
    np.testing.assert_array_equal(Ed[0], E.toarray())
    # scattered rows (the fancy-index path) against a loop
    idx = rng.permutation(14)[:10]
    ref = np.zeros((14, 14))
    for i, p in enumerate(idx):
        for j, q in enumerate(idx):
            ref[p, q] = W[i, j]
    np.testing.assert_array_equal(
        _knn_graph.embed_graph(W.toarray()[None], idx, 14)[0], ref
    )
    np.testing.assert_array_equal(_knn_graph.embed_graph(W, idx, 14).toarray(), ref)


def test_graph_product_over_the_last_points(rng):
    # a dense (T, m, m) graph with m < n is the graph over the last m points: the same
    # product as the embedded (T, n, n) graph, numpy and torch, zero rows elsewhere
    W = rng.random((3, 6, 6)).astype(np.float32)
    Y = rng.random((3, 9, 4)).astype(np.float32)
    full = _knn_graph.embed_graph(W, np.arange(3, 9), 9)
    ref = np.einsum("tij,tjk->tik", full.astype(np.float64), Y.astype(np.float64))
    out = _knn_graph.graph_product(W, Y)
    assert out.shape == Y.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert not out[:, :3].any()
    torch = pytest.importorskip("torch")
    out_t = _knn_graph.graph_product(torch.from_numpy(W), torch.from_numpy(Y))
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_allclose(out_t.numpy(), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="graph over 6 points"):
        _knn_graph.graph_product(W, Y[:, :4])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_contiguous_label_columns_products_and_task_selection(rng, backend):
    # soft labels held as views of (T, K, n) memory: graph products (a full graph, a
    # graph over the last points, symmetric or directed) equal the plain products and
    # come out in that layout; selecting tasks keeps the layout
    W = rng.random((3, 6, 6)).astype(np.float32)
    Wsym = W + W.swapaxes(1, 2)
    Y = rng.random((3, 9, 4)).astype(np.float32)
    Yf = Y[:, 3:].copy()
    if backend == "torch":
        torch = pytest.importorskip("torch")
        W, Wsym, Y, Yf = (torch.from_numpy(a) for a in (W, Wsym, Y, Yf))
    L, Lf = _batched.contiguous_label_columns(Y), _batched.contiguous_label_columns(Yf)
    assert _batched.has_contiguous_label_columns(
        L
    ) and not _batched.has_contiguous_label_columns(Y)
    assert _batched.contiguous_label_columns(L) is L
    for G, sym in ((W, False), (Wsym, True), (Wsym, False)):
        for lab, plain in ((L, Y), (Lf, Yf)):
            out = _knn_graph.graph_product(G, lab, symmetric=sym)
            want = _knn_graph.graph_product(G, plain)
            assert _batched.has_contiguous_label_columns(out) and tuple(
                out.shape
            ) == tuple(want.shape)
            np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-5)
    idx = np.array([2, 0])
    if backend == "torch":
        idx = torch.as_tensor(idx)
    picked = _batched.take_tasks(L, idx)
    assert _batched.has_contiguous_label_columns(picked)
    np.testing.assert_array_equal(np.asarray(picked), np.asarray(Y[idx]))
    np.testing.assert_array_equal(
        np.asarray(_batched.take_tasks(Y, idx)), np.asarray(Y[idx])
    )


def _reference_iteration(Z, Yfix, fixed, M, W, lam, T):
    """One iteration written out point by point: bound step, then K-means means."""
    n, K = Yfix.shape
    A = np.array([[((Z[p] - M[k]) ** 2).sum() / T for k in range(K)] for p in range(n)])
    Y0 = np.exp(-A) / np.exp(-A).sum(1, keepdims=True)
    Y0[fixed] = Yfix[fixed]
    Y1 = np.empty_like(Y0)
    for p in range(n):
        if fixed[p]:
            Y1[p] = Yfix[p]
            continue
        s = -A[p] + lam * sum(W[p, q] * Y0[q] for q in range(n))
        Y1[p] = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    M1 = np.array(
        [sum(Y1[p, k] * Z[p] for p in range(n)) / Y1[:, k].sum() for k in range(K)]
    )

    def energy(Y, M_):
        A_ = np.array(
            [[((Z[p] - M_[k]) ** 2).sum() / T for k in range(K)] for p in range(n)]
        )
        e = (Y * A_).sum()
        e += sum((Y[p] * np.log(Y[p])).sum() for p in range(n) if not fixed[p])
        e -= lam / 2 * sum(W[p, q] * Y[p] @ Y[q] for p in range(n) for q in range(n))
        return e

    return Y1, M1, energy(Y0, M), energy(Y1, M1)


@pytest.mark.parametrize(
    "d, symmetric",
    # d=4: explicit prototypes; d=30 > n: the Gram path, whose soft labels are held
    # with contiguous label columns and whose graph products go through W^T unless W
    # is symmetric
    [(4, True), (30, True), (30, False)],
)
def test_one_iteration_equals_brute_force_reference(rng, d, symmetric):
    n, K = 25, 3
    Z = rng.normal(size=(n, d))
    fixed = np.zeros(n, dtype=bool)
    fixed[:3] = True
    Yfix = np.zeros((n, K))
    Yfix[np.arange(3), np.arange(3)] = 1
    M = rng.normal(size=(K, d))
    W = _brute_affinity(Z, 4, "binary", symmetric)
    lam, T = 0.8, 2.0
    Y1, M1, E0, E1 = _reference_iteration(Z, Yfix, fixed, M, W, lam, T)
    for graph in (W[None], sparse.csr_matrix(W)):
        Y, Mo, n_iter, hist, _ = _laplacian_solver.laplacian_solve(
            Z[None], Yfix[None], fixed[None], M[None], graph, laplacian_weight=lam,
            temperature=T, max_iter=1, tol=0.0, safeguard=False,
        )  # fmt: skip
        np.testing.assert_allclose(Y[0], Y1, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(Mo[0], M1, rtol=1e-10)
        np.testing.assert_allclose(hist[0], [E0, E1], rtol=1e-10)
        assert n_iter[0] == 1


def test_kmodes_prototype_step_is_a_mean_shift_step(rng):
    Z = rng.normal(size=(1, 30, 3))
    Y = rng.dirichlet(np.ones(2), size=(1, 30))
    M = rng.normal(size=(1, 2, 3))
    h = np.array([1.3])
    M1 = _prototype_step.update_prototypes(Z, Y, M, "kmodes", h)
    for k in range(2):
        g = Y[0, :, k] * np.exp(-((Z[0] - M[0, k]) ** 2).sum(1) / (2 * 1.69))
        np.testing.assert_allclose(M1[0, k], g @ Z[0] / g.sum(), rtol=1e-10)
    # the weighted kernel sum cannot decrease (so the objective cannot increase)
    f0 = (Y * _prototype_step.prototype_term(Z, M, "kmodes", h)).sum()
    f1 = (Y * _prototype_step.prototype_term(Z, M1, "kmodes", h)).sum()
    assert f1 <= f0


def test_rectification_matches_bdcspn_formula(rng):
    S = rng.normal(size=(1, 6, 4))
    lab = np.array([0, 0, 1, 1, 2, 2])
    Q = rng.normal(size=(1, 9, 4))
    oh = np.eye(3)[lab][None]
    P0 = _prototypes.batched_class_means(S, oh)
    P = _prototypes.rectify_prototypes(S, oh, Q, P0, scale=10.0)
    Qs = Q[0] + S[0].mean(0) - Q[0].mean(0)

    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    pseudo = np.array([np.argmax([cos(q, P0[0, k]) for k in range(3)]) for q in Qs])
    for k in range(3):
        pts = np.vstack([S[0][lab == k], Qs[pseudo == k]])
        w = np.exp([10 * cos(x, P0[0, k]) for x in pts])
        np.testing.assert_allclose(P[0, k], w @ pts / w.sum(), rtol=1e-10)


@pytest.mark.parametrize("shot", [1, 3])
def test_rectification_weights_from_gram_match_explicit_rectification(rng, shot):
    # n-space rectification: the weights C over the rows (from the Gram matrix only)
    # give the prototypes of the explicit formula, C^T Z, on raw (unnormalised) rows,
    # zero rows included (their cosines are 0, as l2_normalize leaves them zero).
    T, K, nq, d = 4, 3, 10, 40
    lab = np.tile(np.repeat(np.arange(K), shot), (T, 1))
    oh = np.eye(K)[lab]
    S = rng.normal(size=(T, K * shot, d)) + 2 * rng.normal(size=(T, 1, d))
    Q = rng.normal(size=(T, nq, d)) * 1.5
    Q[1, 4] = 0
    S[2, 0] = 0  # a zero support row (a zero prototype at 1-shot)
    Z = np.concatenate([S, Q], axis=1)
    for scale in (0.0, 1.0, 10.0):
        P0 = _prototypes.batched_class_means(S, oh)
        ref = _prototypes.rectify_prototypes(S, oh, Q, P0, scale=scale)
        C = _prototypes.rectify_prototype_weights(Z @ Z.swapaxes(1, 2), oh, scale=scale)
        assert C.shape == (T, K * shot + nq, K)
        np.testing.assert_allclose(C.swapaxes(1, 2) @ Z, ref, rtol=1e-9, atol=1e-12)
    # float32 in -> float32 out, torch in -> torch out
    G32 = (Z @ Z.swapaxes(1, 2)).astype(np.float32)
    C32 = _prototypes.rectify_prototype_weights(G32, oh.astype(np.float32))
    assert C32.dtype == np.float32
    torch = pytest.importorskip("torch")
    Ct = _prototypes.rectify_prototype_weights(
        torch.from_numpy(G32), torch.from_numpy(oh.astype(np.float32))
    )
    assert isinstance(Ct, torch.Tensor) and Ct.dtype == torch.float32
    np.testing.assert_allclose(Ct.numpy(), C32, rtol=1e-4, atol=1e-6)


def test_safeguard_keeps_objective_non_increasing():
    # Two linked points with opposite preferences and a large lam: the plain parallel
    # step makes each adopt the other's label (a swap that raises E); halved steps do not.
    Z = np.array([[[0.0], [2.0]]])  # unary (z - m)^2 to m = 0, 1: [0, 1] and [4, 1]
    M = np.array([[[0.0], [1.0]]])
    W = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    Yfix, fixed = np.zeros((1, 2, 2)), np.zeros((1, 2), dtype=bool)
    kw = dict(laplacian_weight=10.0, update=False, max_iter=10, tol=0.0)
    _, _, _, raw, _ = _laplacian_solver.laplacian_solve(
        Z, Yfix, fixed, M, W, safeguard=False, **kw
    )
    assert raw[0, 1] > raw[0, 0] + 1  # the plain step goes up
    _, _, _, safe, _ = _laplacian_solver.laplacian_solve(
        Z, Yfix, fixed, M, W, safeguard=True, **kw
    )
    E = safe[0][~np.isnan(safe[0])]
    assert np.all(np.diff(E) <= 1e-12 * np.abs(E[:-1]))
    assert E[-1] < E[0] - 1
