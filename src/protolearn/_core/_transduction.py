"""The transductive pipeline of one chunk of few-shot tasks (or one large problem).

Points (T, n, d) whose first ``n_s`` rows are the labelled supports, with their one-hot
labels, go through

1. normalisation: the rows' Gram matrix, rescaled to L2-normalised rows, for small
   tasks (n <= d, dense graphs); the rows themselves otherwise
   (:func:`_gram_and_scale`);
2. the initial prototypes: class means, or BD-CSPN rectified prototypes, carried as
   weights over the rows on the Gram path (:func:`_initial_prototypes`);
3. the kNN graph over the queries or all points, dense per task or sparse for one
   large task (:func:`_episode_graph`);
4. :func:`~._laplacian_solver.laplacian_solve`, once, or with the queries' class masses
   held equal, or both with the labelling that cuts less of the graph kept
   (:func:`_solve_with_balance`).

`hyperparams` is the dict of :class:`~protolearn.transductive.LaplacianFewShotClassifier`'s
parameters (``"lam"`` is the weight lambda of the Laplacian term).
"""

import numpy as np

from ..utils._array_api import (
    as_index_like,
    clip_min,
    concat,
    diagonal,
    full,
    get_namespace,
    to_numpy,
)
from . import _prototypes
from ._batched import all_finite, batched_l2_normalize, bmm
from ._knn_graph import batched_knn_affinity, cut_fraction, embed_graph, knn_affinity
from ._laplacian_solver import laplacian_solve


def transduce(Z, onehot, hyperparams, **kw):
    """:func:`transduce_rows`, on rows centred on their task's mean where the model
    depends on distances only (no preprocessing, no rectification: every term is a
    distance, a kernel of one or a kNN graph of them), with the prototypes moved back.

    The expanded distances of rows far from the origin lose their digits in float32;
    CL2N rows are centred already.
    """
    shift = None
    if hyperparams["preprocessing"] is None and not (
        hyperparams["rectify"] and Z.shape[1] > onehot.shape[1]
    ):
        shift = Z.mean(1)[:, None, :]
        Z = Z - shift
    out, bandwidth = transduce_rows(Z, onehot, hyperparams, **kw)
    if shift is not None:
        out = (out[0], out[1] + shift, *out[2:])
    return out, bandwidth


def transduce_rows(
    Z, onehot, hyperparams, *, sparse_graph, normalize=False, check_finite=None,
    gram=None, features=None,
):  # fmt: skip
    """Points (T, n, d) whose first ``n_s`` rows are the supports, with one-hot labels
    (T, n_s, K) -> ``((Y, M, n_iter, objective, converged, balanced), bandwidth)``:
    the outputs of :func:`~._laplacian_solver.laplacian_solve`, whether each task's
    solution is the class-balanced one, and the kernel bandwidths.

    `normalize`: the rows of `Z` still have to be L2-normalised.  For small tasks
    (n <= d, dense graphs) the normalised rows are never formed: one Gram matrix of the
    centred rows, rescaled, serves the kNN graph and every prototype step, and the
    prototypes are carried as weights over the rows until the end.

    `check_finite`: None, or a function that raises when the input rows are not all
    finite.  It is called when the Gram diagonal (the squared row norms) is not finite
    -- as it is whenever a row holds NaN or infinity, at no extra pass over the data;
    it can also be finite rows overflowing, which the exact check lets through -- and
    always when there is no Gram matrix.

    `gram`, `features`: the rows' Gram matrix (T, n, n), already computed, and a
    function ``C -> C^T Z``
    (:meth:`~._episode_rows.StreamedEpisodeRows.weighted_sums`); `Z` is then None (the
    rows are not stored) and the Gram path is taken.
    """
    if Z is None:
        T, n = gram.shape[:2]
        d = n
    else:
        T, n, d = Z.shape
    ns, K = onehot.shape[1], onehot.shape[2]
    nq = n - ns
    gram_path = not sparse_graph and n <= d
    Y_fixed = concat([onehot, full((T, nq, K), 0.0, onehot)], axis=1)
    fixed = np.zeros((T, n), dtype=bool)
    fixed[:, :ns] = True
    Z, G, scale = _gram_and_scale(Z, gram, gram_path, normalize, check_finite)
    M, coef = _initial_prototypes(
        Z,
        G,
        onehot,
        Y_fixed,
        hyperparams,
        gram_path,
        rectify=hyperparams["rectify"] and nq > 0,
    )
    W, bandwidth = _episode_graph(Z, G, ns, hyperparams, sparse_graph)
    if hyperparams["prototype"] == "kmodes" and bandwidth is None:
        bandwidth = full((T,), 1.0, onehot)
    laplacian_weight = hyperparams["lam"]

    def solve(marginals=None):
        return laplacian_solve(
            Z,
            Y_fixed,
            fixed,
            M,
            W if laplacian_weight > 0 else None,
            laplacian_weight=laplacian_weight,
            prototype=hyperparams["prototype"],
            update=hyperparams["update_prototypes"] and nq > 0,
            temperature=hyperparams["temperature"],
            bandwidth=bandwidth,
            max_iter=hyperparams["max_iter"],
            tol=hyperparams["tol"],
            safeguard=hyperparams["symmetric"],
            symmetric_graph=hyperparams["symmetric"],
            gram=G,
            coef=coef,
            row_scale=scale,
            marginals=marginals,
            features=features,
        )

    return _solve_with_balance(solve, W, T, nq, onehot, hyperparams), bandwidth


def _gram_and_scale(Z, G, gram_path, normalize, check_finite):
    """``(Z, G, scale)``: on the Gram path the rows' Gram matrix `G` (computed unless
    given), rescaled to that of the L2-normalised rows when `normalize`, with the
    inverse row norms `scale`; otherwise the rows `Z`, normalised when `normalize`."""
    scale = None
    if gram_path:
        if G is None:
            with np.errstate(invalid="ignore", over="ignore"):  # checked just below
                G = bmm(Z, Z.swapaxes(1, 2))
        if check_finite is not None and not all_finite(diagonal(G)):
            check_finite()
        if normalize:
            norms = get_namespace(G).sqrt(clip_min(diagonal(G), 0))
            norms[norms == 0] = 1
            scale = 1 / norms
            G *= scale[:, :, None]
            G *= scale[:, None, :]
        return Z, G, scale
    if check_finite is not None:
        check_finite()
    if normalize:
        Z = batched_l2_normalize(Z)
    return Z, G, scale


def _initial_prototypes(Z, G, onehot, Y_fixed, hyperparams, gram_path, rectify):
    """``(M, coef)``: the initial prototypes, explicit (`M`) or, on the Gram path, as
    weights over the rows (`coef`): class means (the one-hot support rows over the
    class sizes), or rectified prototypes (weights of the supports and of the shifted
    queries, :func:`~._prototypes.rectify_prototype_weights`)."""
    ns = onehot.shape[1]
    if rectify and gram_path:
        coef = _prototypes.rectify_prototype_weights(
            G, onehot, scale=hyperparams["rectify_scale"]
        )
        return None, coef
    if rectify:
        Zs = Z[:, :ns]
        M = _prototypes.batched_class_means(Zs, onehot)
        M = _prototypes.rectify_prototypes(
            Zs, onehot, Z[:, ns:], M, scale=hyperparams["rectify_scale"]
        )
        return M, None
    if gram_path:
        return None, Y_fixed / onehot.sum(1)[:, None, :]
    return _prototypes.batched_class_means(Z[:, :ns], onehot), None


def _episode_graph(Z, G, ns, hyperparams, sparse_graph):
    """``(W, bandwidth)``: the kNN graph over the queries or all points (None when
    nothing needs it) and the heat bandwidths.  A dense (T, nq, nq) graph over the
    queries stays as it is: :func:`~._knn_graph.graph_product` reads it as the graph
    over the last rows, at (nq / n)^2 of the cost."""
    n = (G if Z is None else Z).shape[1]
    nq = n - ns
    nodes = np.arange(ns, n) if hyperparams["graph"] == "query" else np.arange(n)
    k = min(hyperparams["n_neighbors"], nodes.size - 1)
    need_graph = (
        hyperparams["lam"] > 0
        or hyperparams["prototype"] == "kmodes"
        or hyperparams["balance"] == "auto"
    )
    if not (nq and k >= 1 and need_graph):
        return None, None
    kw = dict(kind=hyperparams["affinity"], symmetric=hyperparams["symmetric"])
    if sparse_graph:
        W, h = knn_affinity(Z[0][as_index_like(nodes, Z)], k, **kw)
        if nodes.size < n:
            W = embed_graph(W, nodes, n)
        return W, full((1,), h, Z)
    # basic slices keep the task matrices contiguous (fast matmul)
    part = slice(ns, n) if nodes.size < n else slice(0, n)
    Gg = None if G is None else G[:, part, part]
    if hyperparams["affinity"] == "binary" and hyperparams["prototype"] == "kmeans":
        kw["bandwidth"] = 1.0  # unused: skips the kNN distances
    Zg = None if Z is None else Z[:, part]
    return batched_knn_affinity(Zg, k, gram=Gg, **kw)


def _solve_with_balance(solve, W, T, nq, onehot, hyperparams):
    """``solve()``'s outputs with a (T,) bool "balanced" flag appended: free class
    sizes, equal class masses over the queries, or (``balance="auto"``) per task the
    balanced solution when its labelling cuts at most ``balance_tol`` more of the
    graph's edge weight than the free one."""
    balance, K = hyperparams["balance"], onehot.shape[2]
    if balance == "none" or nq == 0 or (balance == "auto" and W is None):
        return (*solve(), np.zeros(T, dtype=bool))
    equal = solve(full((T, K), nq / K, onehot))
    if balance == "equal":
        return (*equal, np.ones(T, dtype=bool))
    free = solve()
    # "at most balance_tol more", up to the rounding of the fractions: those of a
    # binary graph are multiples of 1 / (2 sum(W)), so a difference of exactly
    # balance_tol is common and keeps the balanced solution rather than being decided
    # by the last bit
    slack = 16 * float(np.finfo(to_numpy(equal[0][:1, :1, :1]).dtype).eps)
    use = (
        cut_fraction(W, equal[0]) - cut_fraction(W, free[0])
        <= hyperparams["balance_tol"] + slack
    )
    return (*(_pick(use, a, b) for a, b in zip(equal, free)), use)


def _pick(use, a, b):
    """Per task (leading axis): `a` where `use`, else `b` (numpy or torch)."""
    mask = as_index_like(use, a) > 0
    return get_namespace(a).where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
