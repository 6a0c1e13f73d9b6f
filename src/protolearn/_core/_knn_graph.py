"""kNN search and kNN affinity graphs, the graph ``W`` of the Laplacian term.

- :func:`kneighbors`: each row's nearest other rows, exact (chunked all-pairs or a
  KD-tree) or approximate (:func:`ivf_kneighbors`, an inverted-file index), in memory
  bounded by ``working_memory``;
- :func:`knn_affinity`: the sparse (n, n) graph of one large point set, binary or heat
  weights, symmetrised or directed;
- :func:`batched_knn_affinity`: dense (T, n, n) graphs of many small point sets at once,
  from the points or from their Gram matrix;
- :func:`graph_product` (``W Y``), :func:`embed_graph` (a graph over a subset of the
  points) and :func:`cut_fraction` (the share of edge weight a labelling cuts).

numpy or torch (any device) in, the same kind out; a sparse graph is a
scipy.sparse matrix for numpy and a torch sparse tensor for torch.
"""

import numpy as np
from scipy import sparse
from sklearn import get_config

from ..utils._array_api import (
    as_index_like,
    asarray_like,
    clip_min,
    device,
    diagonal,
    full,
    get_namespace,
    is_torch,
    one_hot,
    smallest_k,
    to_numpy,
)
from ._batched import (
    batched_sqeuclidean,
    bmm,
    contiguous_label_columns,
    has_contiguous_label_columns,
    label_columns_product,
    on_cpu_torch,
    sum_per_task,
    task_dot,
)
from ._distances import iter_distance_chunks

AFFINITIES = ("binary", "heat")

TREE_MAX_FEATURES = 15
KNN_CHUNK_MIB = 64
#: From this many rows (numpy, more than TREE_MAX_FEATURES features) ``algorithm="auto"``
#: searches an inverted-file index (:func:`ivf_kneighbors`) instead of all pairs.
IVF_MIN_SAMPLES = 50_000


def kneighbors(X, n_neighbors, *, working_memory=None, algorithm="auto"):
    """Squared distances and indices of each row's nearest other rows, nearest first.

    The row itself is excluded by index (not by assuming it comes first, which fails for
    duplicated rows).  Exact search computed chunk by chunk over rows with the distances
    of :mod:`protolearn._core._distances` (numpy or torch, any device), so memory stays
    bounded by `working_memory` (scikit-learn's setting when None), and by
    :data:`KNN_CHUNK_MIB` MiB at most.  For numpy data with at most
    :data:`TREE_MAX_FEATURES` features, ``algorithm="auto"`` uses scikit-learn's
    KD-tree instead (exact too, and far faster for large ``n`` in few dimensions).

    Parameters
    ----------
    X : (n, d) numpy array or torch tensor
    n_neighbors : int in [1, n - 1]
    algorithm : {"auto", "brute", "ivf"}
        "ivf": the approximate :func:`ivf_kneighbors`, which "auto" uses for numpy
        data of at least :data:`IVF_MIN_SAMPLES` rows and more than
        :data:`TREE_MAX_FEATURES` features.

    Returns
    -------
    sqdist : (n, n_neighbors) like ``X``; indices : (n, n_neighbors) int64 (numpy or
        torch on ``X``'s device).
    """
    n = X.shape[0]
    if not 1 <= n_neighbors <= n - 1:
        raise ValueError(
            f"n_neighbors must be in [1, n_samples - 1] = [1, {n - 1}]; got {n_neighbors}."
        )
    if algorithm == "ivf" or (
        algorithm == "auto"
        and not is_torch(X)
        and X.shape[1] > TREE_MAX_FEATURES
        and n >= IVF_MIN_SAMPLES
    ):
        return ivf_kneighbors(to_numpy(X), n_neighbors, working_memory=working_memory)
    if algorithm == "auto" and not is_torch(X) and X.shape[1] <= TREE_MAX_FEATURES:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=n_neighbors, algorithm="kd_tree").fit(X)
        d, idx = nn.kneighbors()  # X=None: each point's neighbours, itself excluded
        return (d * d).astype(X.dtype, copy=False), idx.astype(np.int64)
    # Chunks of at most KNN_CHUNK_MIB (and `working_memory`): a chunk holds its distances
    # and argpartition's int64 indices, and larger chunks do not search any faster.
    xp = get_namespace(X)
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    working_memory = min(working_memory, KNN_CHUNK_MIB)
    dist, index = [], []
    for sl, D in iter_distance_chunks(
        X, X, "sqeuclidean", working_memory=working_memory
    ):
        rows = as_index_like(np.arange(sl.stop - sl.start), D)
        D[rows, rows + sl.start] = float("inf")
        v, i = smallest_k(D, n_neighbors)
        dist.append(v)
        index.append(i)
    return xp.concat(dist), xp.astype(xp.concat(index), xp.int64)


def ivf_kneighbors(X, n_neighbors, *, n_lists=None, n_probe=8, working_memory=None):
    """Approximate :func:`kneighbors` by an inverted-file index (IVF, as FAISS's
    ``IndexIVFFlat``): rows are split into ``n_lists`` (``sqrt(n)``) cells by k-means
    on a subsample, and the rows of each cell are compared exactly with the rows of
    the `n_probe` cells whose centres are nearest to its own.  Cost ``O(n * n_probe *
    n / n_lists * d)`` instead of ``O(n^2 d)`` (recall and timings in
    ``benchmarks/results/scale.md``).  Deterministic (the quantiser is seeded 0).
    numpy only.
    """
    from ._distances import nearest, squared_euclidean_distances
    from ._prototypes import kmeans

    n, d = X.shape
    n_lists = max(int(np.sqrt(n)), 1) if n_lists is None else int(n_lists)
    rng = np.random.RandomState(0)
    sample = rng.choice(n, size=min(n, 40 * n_lists), replace=False)
    C, _, _, _ = kmeans(X[sample], n_lists, max_iter=10, random_state=rng)
    assign, _ = nearest(X, C)
    assign = np.asarray(assign)
    order = np.argsort(assign, kind="stable")
    starts = np.searchsorted(assign[order], np.arange(n_lists + 1))
    sizes = np.diff(starts)
    probe_order = np.argsort(squared_euclidean_distances(C, C), axis=1, kind="stable")
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    budget = min(working_memory, KNN_CHUNK_MIB) * 2**20 // (3 * X.dtype.itemsize)
    out_d = np.empty((n, n_neighbors), dtype=X.dtype)
    out_i = np.empty((n, n_neighbors), dtype=np.int64)
    where = np.full(n, -1, dtype=np.int64)
    for cell in range(n_lists):
        rows = order[starts[cell] : starts[cell + 1]]
        if rows.size == 0:
            continue
        # the n_probe nearest cells, more while they hold too few rows
        reach = np.cumsum(sizes[probe_order[cell]])
        n_cells = max(n_probe, int(np.searchsorted(reach, n_neighbors + 1)) + 1)
        cells = probe_order[cell, :n_cells]
        cand = np.concatenate([order[starts[c] : starts[c + 1]] for c in cells])
        where[cand] = np.arange(cand.size)
        self_pos = where[rows]
        Y = X[cand]
        step = max(int(budget // max(cand.size, 1)), 1)
        for s in range(0, rows.size, step):
            q = rows[s : s + step]
            D = squared_euclidean_distances(X[q], Y)
            D[np.arange(q.size), self_pos[s : s + step]] = np.inf
            v, i = smallest_k(D, n_neighbors)
            out_d[q], out_i[q] = v, cand[i]
        where[cand] = -1
    return out_d, out_i


def heat_bandwidth(sqdist):
    """Kernel bandwidth ``h`` with ``h^2`` the mean squared kNN distance (as SLK estimates
    it); `sqdist` is (..., n, k): the mean is over the last two axes."""
    s = sqdist.reshape(*sqdist.shape[:-2], -1).mean(-1)
    tiny = float(np.finfo(np.float32).tiny)
    xp = get_namespace(sqdist)
    return xp.sqrt(xp.maximum(s, tiny))


def _edge_weights(sqdist, kind, bandwidth):
    if kind == "binary":
        return sqdist * 0 + 1
    if kind == "heat":
        h2 = bandwidth * bandwidth
        h2 = h2[..., None, None] if getattr(h2, "ndim", 0) else h2
        return get_namespace(sqdist).exp(-sqdist / (2 * h2))
    raise ValueError(f"affinity must be one of {AFFINITIES}; got {kind!r}.")


def knn_affinity(
    X,
    n_neighbors,
    *,
    kind="binary",
    symmetric=True,
    bandwidth=None,
    working_memory=None,
):
    """Sparse kNN affinity matrix ``W`` (n, n) of the rows of ``X``.

    ``w_pq`` is nonzero when ``q`` is among the `n_neighbors` nearest other rows of
    ``p``: 1 ("binary") or ``exp(-|x_p - x_q|^2 / (2 h^2))`` ("heat").  `symmetric`
    replaces ``W`` by ``(W + W^T) / 2`` (as scikit-learn's spectral clustering does);
    otherwise row ``p`` holds ``p``'s own neighbours (the official LaplacianShot graph).

    Parameters
    ----------
    X : (n, d) numpy array or torch tensor
    n_neighbors : int in [1, n - 1]
    kind : {"binary", "heat"}
    symmetric : bool
    bandwidth : float or None
        Heat-kernel ``h``; None: :func:`heat_bandwidth` of the kNN distances.

    Returns
    -------
    W : scipy.sparse.csr_matrix (numpy ``X``) or a coalesced torch sparse COO tensor on
        ``X``'s device, in ``X``'s dtype.
    bandwidth : float, the ``h`` used (also returned for "binary").
    """
    sqdist, index = kneighbors(X, n_neighbors, working_memory=working_memory)
    h = float(heat_bandwidth(sqdist)) if bandwidth is None else float(bandwidth)
    w = _edge_weights(sqdist, kind, h)
    n, k = index.shape
    if is_torch(X):  # the sparse formats differ: torch COO here, scipy CSR below
        import torch

        rows = torch.arange(n, device=X.device).repeat_interleave(k)
        W = torch.sparse_coo_tensor(
            torch.stack([rows, index.reshape(-1)]),
            w.reshape(-1),
            (n, n),
            device=X.device,
            check_invariants=False,  # indices built here, in range by construction
        ).coalesce()
        if symmetric:
            W = ((W + W.t()) * 0.5).coalesce()
        return W, h
    rows = np.repeat(np.arange(n), k)
    W = sparse.csr_matrix(
        (np.asarray(w).ravel(), (rows, np.asarray(index).ravel())),
        shape=(n, n),
        dtype=X.dtype,
    )
    if symmetric:
        W = ((W + W.T) * 0.5).tocsr().astype(X.dtype)
    return W, h


def _set_diagonal(D, value):
    """Set the diagonal of every (n, n) matrix of the stack D (T, n, n) in place."""
    r = as_index_like(np.arange(D.shape[1]), D)
    D[:, r, r] = value


def _largest_k(B, k):
    """Indices (T, n, k) of the k largest entries of each row of B, largest first
    (B may be overwritten).  A few argmax passes beat a partition for small k."""
    if is_torch(B) and not on_cpu_torch(B):  # on a GPU: one topk
        return B.topk(k, dim=-1, largest=True, sorted=True).indices
    if is_torch(
        B
    ):  # torch's CPU topk is slower than these argmax passes on numpy views
        import torch

        return torch.from_numpy(_largest_k(B.detach().numpy(), k))
    if k > 8:
        return smallest_k(-B, k)[1]
    T, n, m = B.shape
    out = np.empty((T, n, k), dtype=np.int64)
    flat = B.reshape(-1)  # a view: B is contiguous here
    row_start = np.arange(0, T * n * m, m).reshape(T, n)
    for j in range(k):
        a = B.argmax(-1)
        out[:, :, j] = a
        a += row_start
        flat[a] = -np.inf
    return out


def _binary_knn_graph(D, k, symmetric):
    """Binary kNN graph (T, m, m) from numpy ranking scores `D` (larger is nearer, the
    diagonal -inf): ``A_ij = 1`` for the k largest ``D_ij`` of row i, symmetrised to
    ``(A + A^T) / 2`` when `symmetric`.

    Every row's k-th largest score is read from one sort (numpy's SIMD sort of the
    rows takes a third of the time of k argmax passes), and the entries at or above it
    are the neighbours.  Where the (k+1)-th largest score ties the k-th, that set has
    more than k entries: those tasks take :func:`_largest_k` instead (ties broken
    towards the lower index, as everywhere), so the graph is always the argmax one.
    """
    T, m, _ = D.shape
    S = np.sort(D, axis=-1)
    kth = S[..., m - k]
    W = (D >= kth[..., None]).astype(D.dtype)
    tied = np.flatnonzero((S[..., m - k - 1] == kth).any(-1))
    if tied.size:
        index = _largest_k(D[tied], k)
        Wt = np.zeros((tied.size, m, m), dtype=D.dtype)
        np.put_along_axis(Wt, index, 1.0, axis=2)
        W[tied] = Wt
    if symmetric:
        W += W.swapaxes(1, 2)
        W *= 0.5
    return W


def batched_knn_affinity(
    X, n_neighbors, *, kind="binary", symmetric=True, bandwidth=None, gram=None
):
    """Dense kNN affinities of many small point sets at once: (T, n, d) -> (T, n, n).

    Same weights as :func:`knn_affinity`, per task (the heat bandwidth is estimated per
    task when `bandwidth` is None).  `gram` may pass ``X X^T`` (T, n, n) when it is
    already computed (`X` may then be None).  Returns ``W`` and the (T,) bandwidths.
    """
    T, n = (gram if X is None else X).shape[:2]
    if not 1 <= n_neighbors <= n - 1:
        raise ValueError(
            f"n_neighbors must be in [1, n_points - 1] = [1, {n - 1}]; got {n_neighbors}."
        )
    if gram is None:
        D = batched_sqeuclidean(X, X)
        _set_diagonal(D, float("inf"))
        sqdist, index = smallest_k(D, n_neighbors)
    else:
        # |x_i - x_j|^2 = zz_i + zz_j - 2 G_ij: within row i, the nearest j maximise
        # G_ij - zz_j / 2, so no distance matrix is formed; the k distances are then
        # computed from the selected entries only.
        zz = diagonal(gram)
        D = gram - 0.5 * zz[:, None, :]
        _set_diagonal(D, -float("inf"))
        on_cpu = not is_torch(D) or on_cpu_torch(D)
        if kind == "binary" and bandwidth is not None and on_cpu:
            # the binary graph from sorted scores, on numpy (views of CPU tensors)
            W = _binary_knn_graph(to_numpy(D), n_neighbors, symmetric)
            return asarray_like(W, D), full((T,), bandwidth, D)
        index = _largest_k(D, n_neighbors)
        sqdist = None  # binary weights with a given bandwidth need no distances
        if kind != "binary" or bandwidth is None:
            xp = get_namespace(gram)
            g = xp.take_along_axis(gram, index, axis=2)
            zj = xp.take_along_axis(zz, index.reshape(T, -1), axis=1)
            sqdist = clip_min(zz[:, :, None] + zj.reshape(index.shape) - 2 * g, 0)
    h = heat_bandwidth(sqdist) if bandwidth is None else full((T,), bandwidth, D)
    w = 1.0 if sqdist is None else _edge_weights(sqdist, kind, h)
    W = D  # the ranking buffer is no longer needed: reuse its memory
    W[...] = 0
    if is_torch(W):  # numpy writes (W + W^T) / 2 from the edge lists below instead
        W.scatter_(2, index, w)
        if symmetric:
            W = W + W.swapaxes(1, 2)
            W *= 0.5
        return W, h
    if not symmetric:
        np.put_along_axis(W, index, w, axis=2)
        return W, h
    # (W + W^T) / 2 from the edge lists: w/2 at (i, j), then w/2 added at (j, i) (the
    # pairs (i, j) are distinct, so one buffered += per entry is exact; halving is exact)
    half = np.broadcast_to(np.asarray(w * 0.5, dtype=W.dtype), index.shape)
    t, i = np.arange(T)[:, None, None], np.arange(n)[None, :, None]
    W[t, i, index] = half
    W[t, index, i] += half
    return W, h


def embed_graph(W, index, n):
    """Place a graph over a subset of the points (rows `index`) into an (n, n) graph.

    Dense (T, m, m) graphs become (T, n, n) with zero rows/columns for the other points;
    sparse (m, m) graphs are re-indexed without densifying.
    """
    index = np.asarray(to_numpy(index))
    if sparse.issparse(W):
        C = W.tocoo()
        return sparse.csr_matrix(
            (C.data, (index[C.row], index[C.col])), shape=(n, n), dtype=W.dtype
        )
    if is_torch(W) and W.is_sparse:  # the sparse formats differ: scipy above
        import torch

        idx = torch.as_tensor(index, device=W.device)
        ind = W.indices()
        return torch.sparse_coo_tensor(
            idx[ind], W.values(), (n, n), device=W.device
        ).coalesce()
    T = W.shape[0]
    out = full((T, n, n), 0.0, W)
    a = int(index[0]) if index.size else 0
    if np.array_equal(index, np.arange(a, a + index.size)):  # a block: basic slices
        out[:, a : a + index.size, a : a + index.size] = W
        return out
    ii = as_index_like(index, W)
    out[:, ii[:, None], ii[None, :]] = W
    return out


def graph_product(W, Y, symmetric=False):
    """``W Y`` for a graph ``W`` and soft labels ``Y`` (T, n, K); ``W=None`` means no edges.

    ``W`` is dense (T, n, n), or sparse (n, n) (scipy or torch) when T == 1.  A dense
    (T, m, m) ``W`` with m < n is a graph over the last m points only (the queries of
    episodes whose supports come first; the other rows of ``W Y`` are zero): for
    5-shot episodes a (75, 75) product per task instead of a (100, 100) one.  A
    `Y` with contiguous label columns (:func:`~._batched.contiguous_label_columns`)
    gives a result in that layout; `symmetric`: ``W`` is known to be symmetric (a
    faster product then).
    """
    if W is None:
        return Y * 0
    if sparse.issparse(W):
        return np.asarray(W @ Y[0])[None]
    if is_torch(W) and W.is_sparse:  # the sparse formats differ: scipy above
        import torch

        return torch.sparse.mm(W, Y[0])[None]
    n, m = Y.shape[1], W.shape[1]
    if m > n:
        raise ValueError(f"graph over {m} points for soft labels of {n} points.")
    if has_contiguous_label_columns(Y):
        if m == n:
            return label_columns_product(W, Y, symmetric)
        out = contiguous_label_columns(Y * 0)
        out[:, n - m :] = label_columns_product(W, Y[:, n - m :], symmetric)
        return out
    if m == n:
        return bmm(W, Y)
    xp = get_namespace(Y)
    out = xp.zeros(Y.shape, dtype=xp.result_type(W, Y), device=device(Y))
    bmm(W, Y[:, n - m :], out=out[:, n - m :])  # per-task products, no copy
    return out


def cut_fraction(W, Y):
    """(T,) numpy: the fraction of the graph's edge weight between points whose hard
    labels (arg-max of the soft labels `Y`, (T, n, K)) differ: ``<H, W (1 - H)> /
    sum(W)`` for the one-hot labels ``H``.  `W` as for :func:`graph_product`.

    The cut weight is summed directly (non-negative terms only), not as ``1 - <H, W H>
    / sum(W)``: a labelling that cuts no edge gets exactly 0, and two labellings
    cutting the same edges the same value, with no rounding residue of either sign."""
    H = one_hot(to_numpy(get_namespace(Y).argmax(Y, axis=2)), Y.shape[2], like=Y)
    cut = to_numpy(task_dot(H, graph_product(W, 1 - H)))
    if sparse.issparse(W):
        total = np.array([W.sum()])
    elif is_torch(W) and W.is_sparse:  # the sparse formats differ
        total = np.array([float(W.values().sum())])
    else:
        total = to_numpy(sum_per_task(W))
    return cut / np.maximum(total, np.finfo(np.float64).tiny)
