"""kNN affinity graphs and the Laplacian-regularised bound optimizer.

The model (LaplacianShot, Ziko et al., ICML 2020; "Scalable Laplacian K-modes", Ziko et
al., NeurIPS 2018; Ziko et al., 2021) assigns every point ``p`` a soft label ``y_p`` in
the simplex and every class/cluster ``k`` a prototype ``m_k``, minimising

    E(Y, M) = sum_p sum_k y_pk a_pk            a_pk = f(x_p, m_k) / temperature
              + sum_{p free} sum_k y_pk log y_pk           (negative-entropy barrier)
              - lam / 2 * sum_{p, q} w_pq y_p . y_q          (Laplacian term, kNN W)

with the rows of labelled points held at their one-hot labels.  ``f`` is the squared
euclidean distance ("kmeans") or minus a Gaussian kernel ``-exp(-|x - m|^2 / (2 h^2))``
("kmodes").  One iteration of :func:`laplacian_solve` is

1. the bound step: the concave pairwise term is replaced by its tangent at the current
   ``Y``, whose minimiser over the simplex is, for every free point at once,
   ``y_p <- softmax(-a_p + lam * (W Y)_p)`` (:func:`bound_step`);
2. the prototype step: for fixed ``Y``, weighted means (K-means) or one mean-shift step
   (K-modes), both of which cannot increase ``E``.

With class masses imposed on the free rows (``marginals``: e.g. balanced query classes,
as PT-MAP assumes), the bound step's minimiser over the simplex rows that also meet
those column sums is the entropic transport plan ``softmax(-a_p + lam (W Y)_p + g)``
with K class potentials ``g`` (:func:`balanced_softmax`); everything below holds
unchanged, since that set is convex.

For a symmetric ``W`` the bound step's direction ``Y_new - Y`` is a descent direction of
``E`` (the tangent bound and ``E`` share their gradient at ``Y``, and the bound is convex
in ``Y``), so when a full step would increase ``E`` (``W`` is not positive semi-definite
in general) the step is halved until ``E`` does not increase: the objective history is
non-increasing by construction.  For a directed ``W`` (the official LaplacianShot code and
easyfsl) no such guarantee exists and full steps are always taken.

Every array here carries a leading task axis ``T`` (many episodes solved as one
computation); numpy or torch (any device) in, the same kind out.  The graph ``W`` is a
dense (T, n, n) array for batches of small episodes, or, for one large problem (T == 1),
a scipy.sparse matrix (numpy) or a torch sparse tensor (torch) built from a chunked
neighbour search, so no n x n dense matrix is ever formed.
"""

import numpy as np
from scipy import sparse
from sklearn import get_config

from ..utils import _array_api as xp
from ._distances import iter_distance_chunks

AFFINITIES = ("binary", "heat")
PROTOTYPE_TERMS = ("kmeans", "kmodes")


# --------------------------------------------------------------------------- helpers
def _sum_tasks(A):
    """Sum over every axis but the first: (T, ...) -> (T,)."""
    return A.reshape(A.shape[0], -1).sum(1)


def _sum_points(A):
    """Sum of (T, n, K) over its middle axis -> (T, K).  For numpy a product with a
    vector of ones: numpy's reduction over a middle axis with a short last axis takes
    ~10x longer ((163, 80, 5): 150 vs 15 us)."""
    if xp.is_torch(A):
        return A.sum(1)
    return np.ones(A.shape[1], dtype=A.dtype) @ A


def _on_cpu_torch(A):
    return xp.is_torch(A) and A.device.type == "cpu"


def bmm(A, B, out=None):
    """``A @ B`` for stacks of matrices, into `out` when given.  torch CPU tensors go
    through numpy views of the same memory: for the many small products of batched
    episodes, numpy's per-matrix BLAS calls are 1.5-2x faster than torch's CPU ``bmm``
    (measured: (1000, 80, 384) Gram 51 vs 79 ms, (1000, 80, 80) x (1000, 80, 5) 2.9 vs
    5.7 ms, one thread)."""
    if _on_cpu_torch(A) and not (A.requires_grad or B.requires_grad):
        import torch

        if out is not None:
            np.matmul(A.numpy(), B.numpy(), out=out.numpy())
            return out
        return torch.from_numpy(np.matmul(A.numpy(), B.numpy()))
    if not xp.is_torch(A):
        return np.matmul(A, B, out=out)
    if out is None:
        return A @ B
    out.copy_(A @ B)
    return out


def label_major(A):
    """A (T, n, K) stack as a view of (T, K, n) memory ("label-major": each label's
    column of a task contiguous).  The soft labels, unaries and prototype weights of
    :func:`laplacian_solve` are held this way on the Gram path: with K of a few labels,
    numpy's elementwise steps broadcast a per-point or per-label value along a
    contiguous axis of n points instead of along rows of K entries (2-3x faster at
    (250, 80, 5)), the reductions over the labels are K contiguous passes, and
    ``C^T G`` is one product of contiguous (K, n) and (n, n) matrices (~1.4x faster
    than ``G C`` there).  Elementwise operations keep the layout (order "K")."""
    if is_label_major(A):
        return A
    if xp.is_torch(A):
        return A.transpose(1, 2).contiguous().transpose(1, 2)
    return np.ascontiguousarray(A.swapaxes(1, 2)).swapaxes(1, 2)


def is_label_major(A):
    """Whether the (T, n, K) stack `A` is a view of contiguous (T, K, n) memory."""
    At = A.transpose(1, 2) if xp.is_torch(A) else A.swapaxes(1, 2)
    contiguous = At.is_contiguous() if xp.is_torch(A) else At.flags.c_contiguous
    return bool(contiguous) and A.shape[1] > 1 and A.shape[2] > 1


def take_tasks(A, index):
    """``A[index]`` over the leading (task) axis, keeping a label-major layout."""
    if is_label_major(A):
        return A.swapaxes(1, 2)[index].swapaxes(1, 2)
    return A[index]


def _product_label_major(A, Y, symmetric=False):
    """``A @ Y`` for stacks (T, m, m) and a label-major (T, m, K) `Y`, returned
    label-major: computed as ``(Y^T A^T)^T``, or ``(Y^T A)^T`` when `A` is symmetric."""
    Yt = Y.swapaxes(1, 2)
    return bmm(Yt, A if symmetric else A.swapaxes(1, 2)).swapaxes(1, 2)


def all_finite(A):
    """Whether every entry of `A` is finite.  A sum is non-finite whenever an entry is
    (inf and NaN propagate), so the exact elementwise test only runs when the sum
    overflows; torch's CPU ``isfinite`` is ~30x slower than a sum."""
    if xp.is_torch(A):
        return bool(A.sum().isfinite()) or bool(A.isfinite().all())
    return bool(np.isfinite(A.sum())) or bool(np.isfinite(A).all())


def batched_sqeuclidean(A, B):
    """Squared euclidean distances between the rows of ``A`` (T, n, d) and ``B`` (T, m, d)."""
    D = A @ B.swapaxes(1, 2)
    D *= -2
    D += (A * A).sum(-1)[:, :, None]
    D += (B * B).sum(-1)[:, None, :]
    return xp.clip_min(D, 0)


def center_l2_normalize(X, center=None, *, normalize=True):
    """Centre (T, n, d) rows on `center` ((d,), (T, d) or None = each task's mean) and
    divide them by their L2 norm ("CL2N", Wang et al., 2019)."""
    if center is None:
        Z = X - X.mean(1)[:, None, :]
    else:
        c = xp.asarray_like(center, X)
        Z = X - (c[None, None, :] if c.ndim == 1 else c[:, None, :])
    if not normalize:
        return Z
    return batched_l2_normalize(Z)


def batched_l2_normalize(Z):
    """Rows of (T, n, d) divided by their L2 norm (all-zero rows stay zero)."""
    if xp.is_torch(Z):
        norms = Z.norm(dim=-1, keepdim=True)
    else:  # einsum: no (T, n, d) temporary for the squares
        norms = np.sqrt(np.einsum("tnd,tnd->tn", Z, Z))[:, :, None]
    norms[norms == 0] = 1
    return Z / norms


# ------------------------------------------------------------------ neighbour search
TREE_MAX_FEATURES = 15
KNN_CHUNK_MIB = 64


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
    algorithm : {"auto", "brute"}

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
    if algorithm == "auto" and not xp.is_torch(X) and X.shape[1] <= TREE_MAX_FEATURES:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=n_neighbors, algorithm="kd_tree").fit(X)
        d, idx = nn.kneighbors()  # X=None: each point's neighbours, itself excluded
        return (d * d).astype(X.dtype, copy=False), idx.astype(np.int64)
    # Chunks of at most KNN_CHUNK_MIB (and `working_memory`): a chunk holds its distances
    # and argpartition's int64 indices, and larger chunks do not search any faster
    # (22,500 x 384: the same 6-7 s at 32 MiB and 1 GiB, but 33 MiB vs 770 MiB peak).
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    working_memory = min(working_memory, KNN_CHUNK_MIB)
    dist, index = [], []
    for sl, D in iter_distance_chunks(
        X, X, "sqeuclidean", working_memory=working_memory
    ):
        rows = np.arange(sl.stop - sl.start)
        if xp.is_torch(D):
            import torch

            r = torch.as_tensor(rows, device=D.device)
            D[r, r + sl.start] = float("inf")
        else:
            D[rows, rows + sl.start] = np.inf
        v, i = xp.smallest_k(D, n_neighbors)
        dist.append(v)
        index.append(i)
    index = xp.concat(index)
    if not xp.is_torch(index):
        index = index.astype(np.int64)
    return xp.concat(dist), index


def heat_bandwidth(sqdist):
    """Kernel bandwidth ``h`` with ``h^2`` the mean squared kNN distance (as SLK estimates
    it); `sqdist` is (..., n, k): the mean is over the last two axes."""
    s = sqdist.reshape(*sqdist.shape[:-2], -1).mean(-1)
    tiny = float(np.finfo(np.float32).tiny)
    if xp.is_torch(s):
        return s.clamp(min=tiny).sqrt()
    return np.sqrt(np.maximum(s, tiny))


def _edge_weights(sqdist, kind, bandwidth):
    if kind == "binary":
        return sqdist * 0 + 1
    if kind == "heat":
        h2 = bandwidth * bandwidth
        h2 = h2[..., None, None] if getattr(h2, "ndim", 0) else h2
        return xp.exp(-sqdist / (2 * h2))
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
    if xp.is_torch(X):
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
    r = np.arange(D.shape[1])
    if xp.is_torch(D):
        import torch

        r = torch.as_tensor(r, device=D.device)
    D[:, r, r] = value


def _largest_k(B, k):
    """Indices (T, n, k) of the k largest entries of each row of B, largest first
    (B may be overwritten).  A few argmax passes beat a partition for small k."""
    if xp.is_torch(B) and not _on_cpu_torch(B):
        return B.topk(k, dim=-1, largest=True, sorted=True).indices
    if xp.is_torch(B):  # torch's CPU topk is ~10x slower than these argmax passes
        import torch

        return torch.from_numpy(_largest_k(B.detach().numpy(), k))
    if k > 8:
        return xp.smallest_k(-B, k)[1]
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
        sqdist, index = xp.smallest_k(D, n_neighbors)
    else:
        # |x_i - x_j|^2 = zz_i + zz_j - 2 G_ij: within row i, the nearest j maximise
        # G_ij - zz_j / 2, so no distance matrix is formed; the k distances are then
        # computed from the selected entries only.
        zz = xp.diagonal(gram)
        D = gram - 0.5 * zz[:, None, :]
        _set_diagonal(D, -float("inf"))
        on_cpu = not xp.is_torch(D) or _on_cpu_torch(D)
        if kind == "binary" and bandwidth is not None and on_cpu:
            h = xp.full((T,), bandwidth, D)
            if xp.is_torch(D):
                W = _binary_knn_graph(D.detach().numpy(), n_neighbors, symmetric)
                return xp.asarray_like(W, D), h
            return _binary_knn_graph(D, n_neighbors, symmetric), h
        index = _largest_k(D, n_neighbors)
        sqdist = None  # binary weights with a given bandwidth need no distances
        if kind != "binary" or bandwidth is None:
            if xp.is_torch(gram):
                g = gram.gather(2, index)
                zj = zz.gather(1, index.reshape(T, -1)).reshape(index.shape)
            else:
                g = np.take_along_axis(gram, index, axis=2)
                zj = zz[np.arange(T)[:, None, None], index]
            sqdist = xp.clip_min(zz[:, :, None] + zj - 2 * g, 0)
    h = heat_bandwidth(sqdist) if bandwidth is None else xp.full((T,), bandwidth, D)
    w = 1.0 if sqdist is None else _edge_weights(sqdist, kind, h)
    W = D  # the ranking buffer is no longer needed: reuse its memory
    W[...] = 0
    if xp.is_torch(W):
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
    index = np.asarray(xp.to_numpy(index))
    if sparse.issparse(W):
        C = W.tocoo()
        return sparse.csr_matrix(
            (C.data, (index[C.row], index[C.col])), shape=(n, n), dtype=W.dtype
        )
    if xp.is_torch(W) and W.is_sparse:
        import torch

        idx = torch.as_tensor(index, device=W.device)
        ind = W.indices()
        return torch.sparse_coo_tensor(
            idx[ind], W.values(), (n, n), device=W.device
        ).coalesce()
    T = W.shape[0]
    out = xp.full((T, n, n), 0.0, W)
    a = int(index[0]) if index.size else 0
    if np.array_equal(index, np.arange(a, a + index.size)):  # a block: basic slices
        out[:, a : a + index.size, a : a + index.size] = W
        return out
    ii = xp.as_index_like(index, W)
    out[:, ii[:, None], ii[None, :]] = W
    return out


def graph_product(W, Y, symmetric=False):
    """``W Y`` for a graph ``W`` and soft labels ``Y`` (T, n, K); ``W=None`` means no edges.

    ``W`` is dense (T, n, n), or sparse (n, n) (scipy or torch) when T == 1.  A dense
    (T, m, m) ``W`` with m < n is a graph over the last m points only (the queries of
    episodes whose supports come first; the other rows of ``W Y`` are zero): for
    5-shot episodes a (75, 75) product per task instead of a (100, 100) one.  A
    label-major `Y` (:func:`label_major`) gives a label-major result; `symmetric`:
    ``W`` is known to be symmetric (a faster product then).
    """
    if W is None:
        return Y * 0
    if sparse.issparse(W):
        return np.asarray(W @ Y[0])[None]
    if xp.is_torch(W) and W.is_sparse:
        import torch

        return torch.sparse.mm(W, Y[0])[None]
    n, m = Y.shape[1], W.shape[1]
    if m > n:
        raise ValueError(f"graph over {m} points for soft labels of {n} points.")
    if is_label_major(Y):
        if m == n:
            return _product_label_major(W, Y, symmetric)
        out = label_major(Y * 0)
        out[:, n - m :] = _product_label_major(W, Y[:, n - m :], symmetric)
        return out
    if m == n:
        return bmm(W, Y)
    if xp.is_torch(Y):
        out = Y.new_zeros(Y.shape)
        out[:, n - m :] = bmm(W, Y[:, n - m :])
        return out
    out = np.zeros(Y.shape, dtype=np.result_type(W, Y))
    np.matmul(W, Y[:, n - m :], out=out[:, n - m :])  # per-task BLAS calls, no copy
    return out


# ------------------------------------------------------------------------ the model
def _term_from_sqdist(D, kind, bandwidth):
    if kind == "kmeans":
        return D
    if kind == "kmodes":
        h2 = bandwidth * bandwidth
        return -xp.exp(-D / (2 * h2[:, None, None]))
    raise ValueError(f"prototype must be one of {PROTOTYPE_TERMS}; got {kind!r}.")


def prototype_term(Z, M, kind="kmeans", bandwidth=None):
    """``f(z_p, m_k)`` (T, n, K): squared distance ("kmeans") or minus the Gaussian kernel
    ``exp(-|z - m|^2 / (2 h^2))`` ("kmodes", `bandwidth` h of shape (T,))."""
    return _term_from_sqdist(batched_sqeuclidean(Z, M), kind, bandwidth)


def prototype_weights(Y, f, kind="kmeans"):
    """Per-point weights ``C`` (T, n, K) of the prototype step, ``M_new = C^T Z``.

    K-means: ``C = Y`` normalised per column (weighted means).  K-modes: ``Y`` times the
    kernel ``-f`` at the current prototypes, normalised (one mean-shift step towards
    each weighted mode).  Neither step increases ``E``.  Also returns the (T, K) mask of
    prototypes whose total weight is positive (the others must be kept as they are).
    """
    G = Y if kind == "kmeans" else Y * (-f)
    mass = _sum_points(G)  # (T, K)
    tiny = float(np.finfo(np.float32).tiny)
    return G / xp.clip_min(mass * 1, tiny)[:, None, :], mass > tiny


def update_prototypes(Z, Y, M, kind="kmeans", bandwidth=None):
    """The prototype step for fixed ``Y`` (see :func:`prototype_weights`)."""
    f = prototype_term(Z, M, kind, bandwidth) if kind == "kmodes" else None
    C, keep = prototype_weights(Y, f, kind)
    return xp.where(keep[:, :, None], bmm(C.swapaxes(1, 2), Z), M)


def laplacian_energy(Y, A, WY, lam, free):
    """``E`` per task (T,) from soft labels ``Y``, unary ``A`` = f / temperature,
    ``WY`` = :func:`graph_product` ``(W, Y)``, and the (T, n) mask of free rows."""
    rest = _energy_rest(Y, lam * WY if lam else None, free)
    return rest + _task_dot(Y, A)


def _colwise_dot(A, B):
    """``sum_p A_pk B_pk`` per task and column, numpy (T, n, K) x 2 -> (T, K)."""
    return np.einsum("tnk,tnk->tk", A, B)


def _task_dot(A, B):
    """``sum(A * B)`` over every axis but the first: (T, n, K) x 2 -> (T,)."""
    if xp.is_torch(A):
        return (A * B).sum((1, 2))
    return np.einsum("tnk,tnk->t", A, B)


def _energy_rest(Y, LWY, free):
    """The parts of ``E`` that do not depend on the prototypes: the entropy of the free
    rows minus half the Laplacian term (``LWY = lam * W Y``, or None when lam = 0)."""
    tiny = float(np.finfo(np.float32).tiny)
    if xp.is_torch(Y):
        logY = xp.log(xp.clip_min(Y * 1, tiny))
    else:  # one temporary, updated in place
        logY = np.maximum(Y, tiny)
        np.log(logY, out=logY)
    logY *= Y
    ent = logY.sum(-1) if xp.is_torch(logY) else _last_axis(logY, np.add)
    ent *= free
    E = ent.sum(1)
    if LWY is not None:
        E = E - 0.5 * _task_dot(Y, LWY)
    return E


def _last_axis(A, op):
    """``op``-reduce (np.add / np.maximum) over a short last axis of a numpy array.
    numpy reduces a last axis of a few entries row by row (~1 ms for (1000, 80, 5));
    a running ``op`` over its K slices takes a tenth of that."""
    K = A.shape[-1]
    if K > 16:
        return op.reduce(A, axis=-1)
    out = A[..., 0].copy()
    for k in range(1, K):
        op(out, A[..., k], out=out)
    return out


def _softmax(L, lse=False):
    """Softmax over the last axis of (T, n, K) logits (in place for numpy); with
    `lse`, also the log-sum-exp of each row: ``(Y, lse)``."""
    if xp.is_torch(L):  # (torch's softmax is ~5x slower over a short last axis)
        m = L.amax(-1, keepdim=True)
        L = L - m
        L.exp_()
        s = L.sum(-1, keepdim=True)
        L.div_(s)
        return (L, (m + s.log())[..., 0]) if lse else L
    m = _last_axis(L, np.maximum)
    L -= m[..., None]
    np.exp(L, out=L)
    s = _last_axis(L, np.add)
    L /= s[..., None]
    if not lse:
        return L
    np.log(s, out=s)
    s += m
    return L, s


def bound_step(A, WY, lam, Y_fixed, fixed, marginals=None):
    """One bound update for every free point in parallel:
    ``y_p <- softmax(-a_p + lam (W Y)_p)``; rows where `fixed` keep ``Y_fixed``.

    With `marginals` (T, K), the minimiser over the soft labels whose free rows also
    sum to ``marginals[t, k]`` per class (see :func:`balanced_softmax`)."""
    fixed3 = fixed[:, :, None]
    bal = None if marginals is None else _Balance(marginals, fixed3)
    return _bound_step(A, lam * WY if lam else None, Y_fixed, fixed3, bal)


def _bound_step(A, LWY, Y_fixed, fixed3, balance=None):
    L = -A if LWY is None else LWY - A
    if balance is not None:
        return xp.where(fixed3, Y_fixed, balance.project(L))
    if xp.is_torch(L):
        return xp.where(fixed3, Y_fixed, _softmax(L))
    L = _softmax(L)  # a new array, softmax-ed in place: fixed rows copied into it
    np.copyto(L, Y_fixed, where=fixed3)
    return L


# The balanced bound step solves for its K class potentials by damped Newton steps:
# at most BALANCE_MAX_ITER of them, stopping once every class's mass is within
# BALANCE_TOL relative error of its target.
BALANCE_MAX_ITER, BALANCE_TOL = 50, 1e-3


def _solve_small(H, b):
    """Batched solve of (T, K, K) systems."""
    if xp.is_torch(H):
        import torch

        return torch.linalg.solve(H, b[..., None])[..., 0]
    return np.linalg.solve(H, b[..., None])[..., 0]


def balanced_softmax(L, free, marginals, log_v=None):
    """The soft labels closest to ``softmax(L)`` whose free rows sum to `marginals`.

    Minimises ``sum_pk y_pk (log y_pk - L_pk)`` over the rows ``y_p`` of the simplex
    (the free rows, mask `free` (T, n, 1)) with column sums ``sum_p y_pk = r_k``
    (`marginals`, (T, K), summing to the number of free rows): the entropic transport
    plan ``y_pk = exp(L_pk + g_k) / sum_j exp(L_pj + g_j)`` (PT-MAP's balanced
    assignment, Hu et al. 2021, here as the bound step of the Laplacian objective).
    The class potentials ``g`` (returned, (T, K)) minimise the convex dual
    ``sum_p logsumexp_k(L_pk + g_k) - sum_k r_k g_k``, whose gradient is the class
    masses minus `marginals` and whose Hessian is ``sum_p diag(y_p) - y_p y_p^T``:
    damped Newton steps (backtracking), warm-started from `log_v`, reach the masses
    within ``BALANCE_TOL`` relative error in a few steps where Sinkhorn scaling needs
    hundreds on steep ``L``.  Each task stops on its own error and halves only its own
    step (only the tasks still running are computed), so a task's result is the one
    it gets alone.  Rows come out exactly on the simplex; rows outside `free` are
    plain softmax rows.
    """
    T, _, K = L.shape
    g = L[:, 0, :] * 0 if log_v is None else log_v * 1
    tiny = float(np.finfo(np.float32).tiny)
    r_all = xp.clip_min(marginals * 1, tiny)
    eye = xp.asarray_like(np.eye(K), L)
    ones = xp.asarray_like(np.ones((K, K)) / K, L)

    def dual(L, g, r, free2):
        Y, lse = _softmax(L + g[:, None, :], lse=True)  # a new array
        return Y, (lse * free2).sum(1) - (r * g).sum(1)

    Y, phi = dual(L, g, r_all, free[..., 0])
    run = np.arange(T)  # the tasks still running
    Lr, fr, r, gr, Yr, phir = L, free, r_all, g, Y, phi
    for _ in range(BALANCE_MAX_ITER):
        Yf = Yr * fr
        mass = Yf.sum(1)
        grad = mass - r
        err = xp.to_numpy(grad * grad / (r * r)).max(1)
        going = err > BALANCE_TOL**2
        if not going.all():  # write the stopped tasks out, keep the running ones
            g, Y = _write_rows(g, Y, gr, Yr, run)
            if not going.any():
                break
            run = run[going]
            keep = xp.as_index_like(np.flatnonzero(going), L)
            Lr, fr, r, gr = L[xp.as_index_like(run, L)], fr[keep], r[keep], gr[keep]
            Yr, Yf, phir, mass, grad = (
                Yr[keep],
                Yf[keep],
                phir[keep],
                mass[keep],
                grad[keep],
            )
        # Hessian diag(mass) - sum_p y_p y_p^T over the free rows, with a small ridge
        # (classes of ~zero mass) and a multiple of 1 1^T: the dual is flat along
        # g + c 1 (the gradient sums to zero), so the step keeps sum(step) = 0
        d = mass + 1e-6 * r.sum(1)[:, None]
        H = eye * d[:, :, None] - Yf.swapaxes(1, 2) @ Yr
        H = H + ones * r.sum(1)[:, None, None] / K
        step = -_solve_small(H, grad)
        step = xp.clip_min(step, -20.0)  # at most 20 in log units either way
        step = -xp.clip_min(-step, -20.0)
        slope = (grad * step).sum(1)
        t = xp.full((run.size,), 1.0, L)
        Yn, phin = dual(Lr, gr + step, r, fr[..., 0])
        bad = np.flatnonzero(xp.to_numpy(phin > phir + 1e-4 * slope))
        for _ in range(30):  # backtracking: halve the step of the tasks it overshoots
            if not bad.size:
                break
            b = xp.as_index_like(bad, L)
            t[b] *= 0.5
            Yb, pb = dual(Lr[b], gr[b] + t[b][:, None] * step[b], r[b], fr[b][..., 0])
            Yn[b], phin[b] = Yb, pb
            still = xp.to_numpy(pb > phir[b] + 1e-4 * t[b] * slope[b])
            bad = bad[still]
        gr = gr + t[:, None] * step
        Yr, phir = Yn, phin
    else:  # BALANCE_MAX_ITER steps: the running tasks keep their last step
        g, Y = _write_rows(g, Y, gr, Yr, run)
    return Y, g


def _write_rows(g, Y, gr, Yr, run):
    """`g`, `Y` with the rows of the tasks `run` set to `gr`, `Yr`; when `run` holds
    every task, `gr` and `Yr` themselves."""
    if run.size == g.shape[0]:
        return gr, Yr
    idx = xp.as_index_like(run, g)
    g[idx], Y[idx] = gr, Yr
    return g, Y


class _Balance:
    """The class-marginal constraint of :func:`laplacian_solve`: its targets and the
    class potentials carried from one bound step to the next (warm start)."""

    def __init__(self, marginals, fixed3):
        self.r, self.g = marginals, None
        self.free = xp.asarray_like(~xp.to_numpy(fixed3), marginals)

    def project(self, L):
        Y, self.g = balanced_softmax(L, self.free, self.r, self.g)
        return Y

    def subset(self, keep):
        self.r, self.free = self.r[keep], self.free[keep]
        self.g = None if self.g is None else self.g[keep]


def cut_fraction(W, Y):
    """(T,) numpy: the fraction of the graph's edge weight between points whose hard
    labels (arg-max of the soft labels `Y`, (T, n, K)) differ: ``<H, W (1 - H)> /
    sum(W)`` for the one-hot labels ``H`` (``= 1 - <H, W H> / sum(W)``).  `W` as for
    :func:`graph_product`.

    The cut weight is summed directly (non-negative terms only): a labelling that cuts
    no edge gets exactly 0, and two labellings cutting the same edges the same value;
    ``1 - <H, W H> / sum(W)`` left a rounding residue of either sign (+-1e-16 in
    float64), so that ``balance="auto"`` with ``balance_tol=0`` chose between two
    labellings of equal cut by rounding."""
    H = xp.one_hot(xp.to_numpy(xp.argmax(Y, axis=2)), Y.shape[2], like=Y)
    cut = xp.to_numpy(_task_dot(H, graph_product(W, 1 - H)))
    if sparse.issparse(W):
        total = np.array([W.sum()])
    elif xp.is_torch(W) and W.is_sparse:
        total = np.array([float(W.values().sum())])
    else:
        total = xp.to_numpy(_sum_tasks(W))
    return cut / np.maximum(total, np.finfo(np.float64).tiny)


# The working batch shrinks to the running tasks once at most COMPACT_FRAC of it still
# runs (and it holds at least COMPACT_MIN tasks).
COMPACT_FRAC, COMPACT_MIN = 0.75, 4


def laplacian_solve(
    Z,
    Y_fixed,
    fixed,
    M,
    W,
    *,
    lam,
    prototype="kmeans",
    update=True,
    temperature=1.0,
    bandwidth=None,
    max_iter=20,
    tol=1e-6,
    safeguard=True,
    gram=None,
    coef=None,
    row_scale=None,
    marginals=None,
    features=None,
    symmetric_graph=False,
):
    """Alternate bound steps on ``Y`` and prototype steps on ``M`` (see module docstring).

    Parameters
    ----------
    Z : (T, n, d) features (already preprocessed; see `row_scale`)
    Y_fixed : (T, n, K) one-hot rows for the labelled points (other rows ignored)
    fixed : (T, n) bool, True for labelled points
    M : (T, K, d) initial prototypes, or None when `coef` is given
    W : graph for :func:`graph_product`, or None (``lam`` unused)
    lam : float >= 0
    prototype : {"kmeans", "kmodes"}
    update : bool
        Update the prototypes after each bound step (False: LaplacianShot's fixed
        prototypes).
    temperature : float > 0, or (T,) array
        Divides the prototype term.
    bandwidth : (T,) kernel bandwidths for "kmodes".
    max_iter : int >= 1
    tol : float >= 0
        A task stops when ``|E_t - E_{t-1}| <= tol * |E_{t-1}|``; stopped tasks are left
        untouched, so each task's result is the one it would get alone.
    safeguard : bool
        Halve steps that would increase ``E`` (valid for symmetric ``W`` only).
    gram : (T, n, n) Gram matrix of the features when already computed (used when
        n <= d).
    coef : (T, n, K) or None
        Initial prototypes as weights over the rows, ``M = coef^T Z`` (e.g. one-hot
        support rows divided by the class sizes for class means); needs n <= d.
    row_scale : (T, n) or None
        The features are ``Z * row_scale[..., None]`` (e.g. the inverse row norms of
        centred data, whose Gram matrix `gram` already includes the scaling): saves
        forming the scaled (T, n, d) array when n <= d.
    marginals : (T, K) or None
        Class masses the free rows must sum to (e.g. ``n_free / K`` each: balanced
        classes); every bound step is then the constrained minimiser of
        :func:`balanced_softmax`.  The halved steps stay feasible (the constraint set is
        convex), so the objective is still non-increasing.
    features : callable or None
        ``C -> C^T Z`` for per-row weights ``C`` (T, n, K): forms the final prototypes
        when the features are not stored; `Z` is then None, and `gram` and `coef` must
        be given.
    symmetric_graph : bool
        ``W`` is exactly symmetric (as built with ``symmetric=True``): its products
        need no transpose.

    Returns
    -------
    Y : (T, n, K), M : (T, K, d), n_iter : (T,) int ndarray, objective : (T, max_iter + 1)
    float64 ndarray (``E`` before the first step, then after each iteration; NaN after
    a task stopped), converged : (T,) bool ndarray
    """
    if Z is None and (gram is None or coef is None or features is None):
        raise ValueError("Z=None needs gram, coef and features.")
    like = Y_fixed if Z is None else Z  # kind, dtype and device of the features
    T = like.shape[0]
    fixed = xp.asarray_like(fixed, like) > 0.5
    fixed3 = fixed[:, :, None]
    temp = xp.asarray_like(np.asarray(temperature), like) if np.ndim(temperature) else None
    sparse_W = W is not None and (sparse.issparse(W) or getattr(W, "is_sparse", 0))
    # small tasks with dense graphs: soft labels, unaries and weights held label-major
    n_pts, n_feat = (gram.shape[1], gram.shape[1]) if Z is None else Z.shape[1:]
    lm = n_pts <= n_feat and not sparse_W
    if lm:
        Y_fixed = label_major(Y_fixed)
        coef = None if coef is None else label_major(coef)
    protos = _Prototypes(Z, M, prototype, bandwidth, gram, coef, row_scale, features)
    bal = None
    if marginals is not None:
        bal = _Balance(xp.asarray_like(marginals, like), fixed3)

    def unary():
        A = protos.term()
        if lm:  # explicit first prototypes give a point-major term
            A = label_major(A)
        if temp is None:
            A /= temperature
        else:
            A /= temp[:, None, None]
        return A

    freef = xp.where(fixed, like[:, :, 0] * 0, like[:, :, 0] * 0 + 1)
    A = unary()
    Y = _bound_step(A, None, Y_fixed, fixed3, bal)
    sym = symmetric_graph
    LWY = lam * graph_product(W, Y, sym) if lam else None
    R = _energy_rest(Y, LWY, freef)  # E = R + <Y, A>
    E = R + _task_dot(Y, A)
    history = np.full((T, max_iter + 1), np.nan)
    history[:, 0] = xp.to_numpy(E)
    n_iter = np.zeros(T, dtype=np.int64)
    converged = np.zeros(T, dtype=bool)
    eps = 16 * float(np.finfo(xp.to_numpy(like[:1, :1, :1]).dtype).eps)
    # Tasks stop at different iterations.  The working arrays hold the tasks `work`
    # (indices into the batch); once half of them have stopped, the stopped ones are
    # written out and the arrays shrink to the running ones (dense graphs only), so
    # late iterations cost only what the slow tasks need.
    work = np.arange(T)
    active = np.ones(T, dtype=bool)  # over the working tasks
    Y_out = None
    compactable = W is None or not (sparse.issparse(W) or getattr(W, "is_sparse", 0))
    for it in range(1, max_iter + 1):
        all_active = bool(active.all())
        act = None
        if not all_active:
            act = xp.as_index_like(active, like) > 0 if xp.is_torch(like) else active
        Yn = _bound_step(A, LWY, Y_fixed, fixed3, bal)
        LWYn = lam * graph_product(W, Yn, sym) if lam else None
        Rn = _energy_rest(Yn, LWYn, freef)
        if safeguard and lam:
            En = Rn + _task_dot(Yn, A)
            for _ in range(30):
                E0, E1 = xp.to_numpy(E), xp.to_numpy(En)
                worse = active & (E1 > E0 + eps * np.abs(E0))
                if not worse.any():
                    break
                # halve the step of the tasks whose energy went up (only those: the
                # others keep exactly the step they would take alone)
                b = xp.as_index_like(np.flatnonzero(worse), like)
                Yb, LWYb = Yn[b], LWYn[b]
                Yb -= Y[b]
                Yb *= 0.5
                Yb += Y[b]
                LWYb -= LWY[b]
                LWYb *= 0.5
                LWYb += LWY[b]
                Yn[b], LWYn[b] = Yb, LWYb
                Rb = _energy_rest(Yb, LWYb, freef[b])
                Rn[b] = Rb
                En[b] = Rb + _task_dot(Yb, A[b])
        if all_active:  # no working task has stopped yet
            Y, LWY, R = Yn, LWYn, Rn
        else:
            a3 = act[:, None, None]
            Y = xp.where(a3, Yn, Y)
            LWY = None if LWY is None else xp.where(a3, LWYn, LWY)
            R = xp.where(act, Rn, R)
        if update:
            protos.update(Y, None if all_active else act[:, None, None])
            A = unary()
        E_new = R + _task_dot(Y, A)
        E_np, En_np = xp.to_numpy(E).astype(np.float64), xp.to_numpy(E_new)
        history[work[active], it] = En_np[active]
        n_iter[work[active]] = it
        done = np.abs(En_np - E_np) <= tol * np.abs(E_np)
        converged[work[active & done]] = True
        active &= ~done
        E = E_new if all_active else xp.where(act, E_new, E)
        if not active.any():
            break
        if (
            compactable
            and work.size >= COMPACT_MIN
            and active.sum() <= COMPACT_FRAC * work.size
        ):
            if Y_out is None:
                Y_out = xp.empty(tuple(Y_fixed.shape), like=Y)
            stop = xp.as_index_like(np.flatnonzero(~active), like)
            Y_out[xp.as_index_like(work[~active], like)] = Y[stop]
            protos.store(stop, work[~active])
            keep = xp.as_index_like(np.flatnonzero(active), like)
            Y, A, E, R = take_tasks(Y, keep), take_tasks(A, keep), E[keep], R[keep]
            LWY = None if LWY is None else take_tasks(LWY, keep)
            Y_fixed, fixed, fixed3, freef = (
                take_tasks(Y_fixed, keep),
                fixed[keep],
                fixed3[keep],
                freef[keep],
            )
            W = None if W is None else W[keep]
            temp = None if temp is None else temp[keep]
            protos.subset(keep)
            if bal is not None:
                bal.subset(keep)
            work = work[active]
            active = np.ones(work.size, dtype=bool)
    if Y_out is None:
        Y = Y.contiguous() if xp.is_torch(Y) else np.ascontiguousarray(Y)
        return Y, protos.prototypes(), n_iter, history, converged
    Y_out[xp.as_index_like(work, like)] = Y
    protos.store(xp.as_index_like(np.arange(work.size), like), work)
    return Y_out, protos.prototypes(), n_iter, history, converged


class _Prototypes:
    """Prototypes during :func:`laplacian_solve`, explicit or through the Gram matrix.

    Every prototype step gives ``M = C^T Z`` for per-point weights ``C`` (T, n, K)
    (``Y`` or ``Y * kernel``, normalised per column).  When tasks have fewer points than
    features (few-shot episodes), ``|z - m|^2`` is computed from ``G = Z Z^T`` as
    ``G_pp - 2 (G C)_pk + (C^T G C)_kk`` -- O(n^2 K) per step instead of O(n K d) --
    and ``M`` is formed once at the end.  Large problems (n > d) keep ``M`` explicit.
    With a row scale ``s`` the features are ``Z * s``: ``M = (C * s)^T Z``.
    """

    def __init__(
        self, Z, M, kind, bandwidth, gram=None, coef=None, row_scale=None,
        features=None,
    ):  # fmt: skip
        self.kind, self.bandwidth = kind, bandwidth
        self.combine = features  # C -> C^T Z when Z is not stored (Z None)
        if Z is None:  # the Gram path with weights, as laplacian_solve checks
            n = d = gram.shape[1]
        else:
            n, d = Z.shape[1], Z.shape[2]
        self.gram = n <= d
        if coef is not None and not self.gram:
            raise ValueError("coef needs n_points <= n_features (the Gram path).")
        if row_scale is not None and not self.gram:
            Z, row_scale = Z * row_scale[:, :, None], None
        self.Z, self.s, self.M, self.C = Z, row_scale, M, coef
        like = gram if Z is None else Z
        self.n_tasks, self.out, self.s_all = like.shape[0], None, row_scale
        self.rows = xp.as_index_like(np.arange(like.shape[0]), like)
        if self.gram:
            if gram is None:
                Zs = Z if row_scale is None else Z * row_scale[:, :, None]
                gram = Zs @ Zs.swapaxes(1, 2)
            self.G = gram
            self.zz = xp.diagonal(self.G)
        else:
            self.zz = (Z * Z).sum(-1)

    def sqdist(self):
        if self.C is None or not self.gram:
            D = (self.features() if self.gram else self.Z) @ self.M.swapaxes(1, 2)
            if self.s is not None:
                D *= self.s[:, :, None]
            mm = (self.M * self.M).sum(-1)
        else:  # G C, label-major with C (G is symmetric)
            if is_label_major(self.C):
                D = _product_label_major(self.G, self.C, symmetric=True)
            else:
                D = bmm(self.G, self.C)
            mm = _sum_points(self.C * D) if xp.is_torch(D) else _colwise_dot(self.C, D)
        D *= -2
        D += self.zz[:, :, None]
        D += mm[:, None, :]
        return xp.clip_min(D, 0)

    def term(self):
        return _term_from_sqdist(self.sqdist(), self.kind, self.bandwidth)

    def update(self, Y, active=None):
        """The prototype step (:func:`prototype_weights`) for the `active` tasks
        ((T, 1, 1) mask; None: all)."""
        C, keep = prototype_weights(
            Y, self.term() if self.kind == "kmodes" else None, self.kind
        )
        all_kept = bool(keep.all())
        if not self.gram:
            M_new = C.swapaxes(1, 2) @ self.Z
            if not all_kept:
                M_new = xp.where(keep[:, :, None], M_new, self.M)
            self.M = M_new if active is None else xp.where(active, M_new, self.M)
            return
        if self.C is None:  # first step from explicit prototypes: every task active
            if not all_kept:  # an empty cluster keeps its explicit prototype: rare,
                M_new = C.swapaxes(1, 2) @ self.Z  # so leave the Gram path
                self.M = xp.where(keep[:, :, None], M_new, self.M)
                self.gram = False
                if self.s is not None:
                    self.Z, self.s = self.Z * self.s[:, :, None], None
                self.zz = (self.Z * self.Z).sum(-1)
                return
            self.M = None
            self.C = C
            return
        if not all_kept:
            C = xp.where(keep[:, None, :], C, self.C)
        self.C = C if active is None else xp.where(active, C, self.C)

    def store(self, tasks, rows):
        """Set aside the state of the working tasks `tasks` (index array) as the
        results of the batch's tasks `rows` (before :meth:`subset` drops them)."""
        if self.out is None:
            self.out = xp.empty((self.n_tasks,) + tuple(self.state().shape[1:]),
                                like=self.zz)  # fmt: skip
        self.out[xp.as_index_like(rows, self.zz)] = self.state()[tasks]

    def state(self):
        return self.C if self.gram and self.C is not None else self.M

    def subset(self, keep):
        """Keep only the tasks `keep` (an index array); the full-batch features stay
        (only the final prototypes need them), indexed through ``self.rows``."""
        if self.gram:
            self.rows = self.rows[keep]
        else:  # the explicit path works on the features every step
            self.Z = self.Z[keep]
        self.zz = self.zz[keep]
        if self.s is not None:
            self.s = self.s[keep]
        if self.bandwidth is not None:
            self.bandwidth = self.bandwidth[keep]
        if self.gram:
            self.G = self.G[keep]
        if self.C is not None:
            self.C = take_tasks(self.C, keep)
        if self.M is not None:
            self.M = self.M[keep]

    def features(self):
        """The working tasks' rows of ``Z`` (a copy once tasks have been dropped)."""
        return self.Z if self.rows.shape[0] == self.Z.shape[0] else self.Z[self.rows]

    def prototypes(self):
        """(T, K, d) prototypes: of every task of the batch once :meth:`store` has
        been called for all of them, else of the working tasks."""
        state = self.state() if self.out is None else self.out
        if not (self.gram and self.C is not None):
            return state
        s = self.s if self.out is None else self.s_all
        C = state if s is None else state * s[:, :, None]
        if self.combine is not None:  # every task of the batch (see laplacian_solve)
            if self.out is None and self.rows.shape[0] != self.n_tasks:
                raise RuntimeError("prototypes of a subset of unstored features.")
            return self.combine(C)
        Z = self.features() if self.out is None else self.Z
        return bmm(C.swapaxes(1, 2), Z)
