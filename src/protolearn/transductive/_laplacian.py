"""Laplacian-regularised transductive few-shot classification (LaplacianShot and its
K-means / K-modes generalisation), one episode (estimator) or many at once (function)."""

import functools
import inspect
import queue
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
from joblib import effective_n_jobs
from sklearn import get_config
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Bunch
from sklearn.utils.multiclass import check_classification_targets
from threadpoolctl import ThreadpoolController

from .._core import _graph, _prototypes
from .._core._distances import common_centre, l2_normalize, map_row_chunks
from ..base import BasePrototypeClassifier
from ..utils import _array_api as xp
from ..utils._sklearn_compat import (
    Interval,
    StrOptions,
    _fit_context,
    validate_parameter_constraints,
)
from ..utils._validation import validate_fit_data

_PARAMS = {
    "lam": [Interval(Real, 0, None, closed="left")],
    "n_neighbors": [Interval(Integral, 1, None, closed="left")],
    "affinity": [StrOptions({"binary", "heat"})],
    "symmetric": ["boolean"],
    "graph": [StrOptions({"query", "all"})],
    "prototype": [StrOptions({"kmeans", "kmodes"})],
    "update_prototypes": ["boolean"],
    "temperature": [Interval(Real, 0, None, closed="neither")],
    "preprocessing": [StrOptions({"cl2n", "l2n"}), None],
    "center": ["array-like", None],
    "rectify": ["boolean"],
    "rectify_scale": [Interval(Real, 0, None, closed="left")],
    "balance": [StrOptions({"none", "equal", "auto"})],
    "balance_tol": [Interval(Real, 0, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
}


def _labelled_targets(labels):
    """The support labels, with an object array (the one that can hold both class
    names and the integer -1 of the queries) given the dtype of its values when they
    are all numbers or all strings: scikit-learn calls an object array of numbers
    "unknown" targets."""
    if labels.dtype != object or labels.size == 0:
        return labels
    values = labels.tolist()
    if all(isinstance(v, str) for v in values) or all(
        isinstance(v, (Integral, Real)) and not isinstance(v, bool) for v in values
    ):
        return np.asarray(values)
    kinds = sorted({type(v).__name__ for v in values})
    raise ValueError(
        f"The labelled rows of y mix label types ({', '.join(kinds)}); class labels "
        "must be all strings or all numbers."
    )


def _check_center(center, n_features, dtype):
    """`center` as a finite (n_features,) numpy array of `dtype`, or a ValueError."""
    c = np.asarray(xp.to_numpy(center) if xp.is_torch(center) else center, dtype=dtype)
    c = c.ravel()
    if c.shape != (n_features,):
        raise ValueError(
            f"center must have shape (n_features,)=({n_features},); got "
            f"{np.shape(center)}."
        )
    if not np.all(np.isfinite(c)):
        raise ValueError("center contains NaN or infinity.")
    return c


def _centre(support, query, preprocessing, center, out=None):
    """Support and query rows stacked (T, n, d) and centred as `preprocessing` asks
    ("cl2n": on `center`, None meaning each task's mean), not yet L2-normalised.
    `out`: None, or an array of at least T tasks of that shape to write into."""
    T, ns, d = support.shape
    n = ns + query.shape[1]
    X = xp.empty((T, n, d), like=support) if out is None else out[:T]
    if preprocessing != "cl2n":
        X[:, :ns], X[:, ns:] = support, query
        return X
    if center is None:
        c = _task_means(support, query)
    else:  # (d,), or (T, d): one per task
        c = xp.asarray_like(center, support)
    c = c[None, None, :] if c.ndim == 1 else c[:, None, :]
    # stacked and centred in one pass
    if xp.is_torch(X):
        import torch

        torch.sub(support, c, out=X[:, :ns])
        torch.sub(query, c, out=X[:, ns:])
    else:
        np.subtract(support, c, out=X[:, :ns])
        np.subtract(query, c, out=X[:, ns:])
    return X


def _task_means(support, query):
    """(T, d) mean of each task's support and query rows."""
    return (support.sum(1) + query.sum(1)) / (support.shape[1] + query.shape[1])


class _RowBlocks:
    """The stacked rows ``[support; query]`` of a chunk of tasks, centred as
    :func:`_centre` does, formed a block of tasks at a time and never stored.

    The Gram path needs the rows twice only: for their Gram matrix, and at the end for
    the prototypes (weighted sums of the rows).  Each block's rows are formed into one
    small buffer that stays in the core's cache through its product, so the (T, n, d)
    array of the chunk (~4.8x its (T, n, n) arrays for CLINC150 episodes) is neither
    written to memory nor read back, twice; every task's products are the ones a
    whole chunk gets.
    """

    def __init__(self, support, query, preprocessing, center):
        self.support, self.query, self.preprocessing = support, query, preprocessing
        T, ns, d = support.shape
        self.n, self.d = ns + query.shape[1], d
        if preprocessing == "cl2n" and center is None:  # each task's own mean
            center = _task_means(support, query)
        self.center = center
        itemsize = support.element_size() if xp.is_torch(support) else support.itemsize
        self.step = max(1, ROW_BLOCK_BYTES // (self.n * d * itemsize))
        self.buffer = xp.empty((min(self.step, T), self.n, d), like=support)

    def _blocks(self):
        T = self.support.shape[0]
        for a in range(0, T, self.step):
            b = min(a + self.step, T)
            c = self.center
            if c is not None and c.ndim == 2:  # per-task centres
                c = c[a:b]
            yield a, b, _centre(
                self.support[a:b], self.query[a:b], self.preprocessing, c,
                out=self.buffer,
            )  # fmt: skip

    def gram(self):
        """(T, n, n) Gram matrix of the (centred, not normalised) rows."""
        G = xp.empty((self.support.shape[0], self.n, self.n), like=self.support)
        for a, b, X in self._blocks():
            _graph.bmm(X, X.swapaxes(1, 2), out=G[a:b])
        return G

    def weighted_sums(self, C):
        """``C^T Z`` (T, K, d) for per-row weights `C` (T, n, K)."""
        M = xp.empty((C.shape[0], C.shape[2], self.d), like=C)
        for a, b, X in self._blocks():
            _graph.bmm(C[a:b].swapaxes(1, 2), X, out=M[a:b])
        return M


# Blocks of `_RowBlocks` hold about this many bytes of rows: within a core's L2 cache.
ROW_BLOCK_BYTES = 2**20


def _transduce(Z, onehot, p, **kw):
    """:func:`_transduce_rows`, on rows centred on their task's mean where the model
    depends on distances only (no preprocessing, no rectification: every term is a
    distance, a kernel of one or a kNN graph of them), with the prototypes moved back.
    The expanded distances of rows far from the origin lose their digits in float32
    (raw columns around 1e4: 0.995 -> 0.975 query accuracy); CL2N rows are centred
    already."""
    shift = None
    if p["preprocessing"] is None and not (
        p["rectify"] and Z.shape[1] > onehot.shape[1]
    ):
        shift = Z.mean(1)[:, None, :]
        Z = Z - shift
    out, bandwidth = _transduce_rows(Z, onehot, p, **kw)
    if shift is not None:
        out = (out[0], out[1] + shift, *out[2:])
    return out, bandwidth


def _transduce_rows(
    Z, onehot, p, *, sparse_graph, normalize=False, check_finite=None, gram=None,
    features=None,
):  # fmt: skip
    """The shared pipeline: points (T, n, d) whose first ``n_s`` rows are the supports,
    with one-hot labels (T, n_s, K) -> the outputs of ``laplacian_solve``.

    `normalize`: the rows of `Z` still have to be L2-normalised.  For small tasks
    (n <= d, dense graphs) the normalised rows are never formed: one Gram matrix of the
    centred rows, rescaled, serves the kNN graph and every prototype step, and the
    prototypes are carried as weights over the rows (class means: the one-hot support
    rows over the class sizes; rectified prototypes: weights of the supports and of the
    shifted queries, :func:`~protolearn._core._prototypes.rectify_prototype_weights`)
    until the end.

    `check_finite`: None, or a function that raises when the input rows are not all
    finite.  It is called when the Gram diagonal (the squared row norms) is not finite
    -- as it is whenever a row holds NaN or infinity, at no extra pass over the data;
    it can also be finite rows overflowing, which the exact check lets through -- and
    always when there is no Gram matrix.

    `gram`, `features`: the rows' Gram matrix (T, n, n), already computed, and a
    function ``C -> C^T Z`` (:meth:`_RowBlocks.weighted_sums`); `Z` is then None (the
    rows are not stored) and the Gram path is taken.
    """
    if Z is None:
        T, n = gram.shape[:2]
        d = n
    else:
        T, n, d = Z.shape
    ns, K = onehot.shape[1], onehot.shape[2]
    nq = n - ns
    G, scale = gram, None
    gram = not sparse_graph and n <= d
    rectify = p["rectify"] and nq > 0
    Y_fixed = xp.concat([onehot, xp.full((T, nq, K), 0.0, onehot)], axis=1)
    fixed = np.zeros((T, n), dtype=bool)
    fixed[:, :ns] = True
    if gram:
        if G is None:
            with np.errstate(invalid="ignore", over="ignore"):  # checked just below
                G = _graph.bmm(Z, Z.swapaxes(1, 2))
        if check_finite is not None and not _graph.all_finite(xp.diagonal(G)):
            check_finite()
        if normalize:
            norms = xp.sqrt(xp.clip_min(xp.diagonal(G), 0))
            norms[norms == 0] = 1
            scale = 1 / norms
            G *= scale[:, :, None]
            G *= scale[:, None, :]
    else:
        if check_finite is not None:
            check_finite()
        if normalize:
            Z = _graph.batched_l2_normalize(Z)
    M = coef = None
    if rectify and gram:  # rectified prototypes as weights over the rows too
        coef = _prototypes.rectify_prototype_weights(
            G, onehot, scale=p["rectify_scale"]
        )
    elif rectify:
        Zs = Z[:, :ns]
        M = _prototypes.batched_class_means(Zs, onehot)
        M = _prototypes.rectify_prototypes(
            Zs, onehot, Z[:, ns:], M, scale=p["rectify_scale"]
        )
    elif gram:  # class means as weights over the rows
        coef = Y_fixed / onehot.sum(1)[:, None, :]
    else:
        M = _prototypes.batched_class_means(Z[:, :ns], onehot)
    nodes = np.arange(ns, n) if p["graph"] == "query" else np.arange(n)
    k = min(p["n_neighbors"], nodes.size - 1)
    W, bandwidth = None, None
    need_graph = p["lam"] > 0 or p["prototype"] == "kmodes" or p["balance"] == "auto"
    if nq and k >= 1 and need_graph:
        kw = dict(kind=p["affinity"], symmetric=p["symmetric"])
        if sparse_graph:
            W, h = _graph.knn_affinity(Z[0][xp.as_index_like(nodes, Z)], k, **kw)
            bandwidth = xp.full((1,), h, Z)
        else:  # basic slices keep the task matrices contiguous (fast matmul)
            part = slice(ns, n) if nodes.size < n else slice(0, n)
            Gg = None if G is None else G[:, part, part]
            if p["affinity"] == "binary" and p["prototype"] == "kmeans":
                kw["bandwidth"] = 1.0  # unused: skips the kNN distances
            Zg = None if Z is None else Z[:, part]
            W, bandwidth = _graph.batched_knn_affinity(Zg, k, gram=Gg, **kw)
        # a dense (T, nq, nq) graph stays as it is: graph_product reads it as the
        # graph over the last rows (the queries), at (nq / n)^2 of the cost
        if sparse_graph and nodes.size < n:
            W = _graph.embed_graph(W, nodes, n)
    if p["prototype"] == "kmodes" and bandwidth is None:
        bandwidth = xp.full((T,), 1.0, onehot)

    def solve(marginals=None):
        return _graph.laplacian_solve(
            Z,
            Y_fixed,
            fixed,
            M,
            W if p["lam"] > 0 else None,
            lam=p["lam"],
            prototype=p["prototype"],
            update=p["update_prototypes"] and nq > 0,
            temperature=p["temperature"],
            bandwidth=bandwidth,
            max_iter=p["max_iter"],
            tol=p["tol"],
            safeguard=p["symmetric"],
            symmetric_graph=p["symmetric"],
            gram=G,
            coef=coef,
            row_scale=scale,
            marginals=marginals,
            features=features,
        )

    if p["balance"] == "none" or nq == 0 or (p["balance"] == "auto" and W is None):
        return (*solve(), np.zeros(T, dtype=bool)), bandwidth
    equal = solve(xp.full((T, K), nq / K, onehot))
    if p["balance"] == "equal":
        return (*equal, np.ones(T, dtype=bool)), bandwidth
    free = solve()
    cut = _graph.cut_fraction
    # "at most balance_tol more", up to the rounding of the fractions: those of a
    # binary graph are multiples of 1 / (2 sum(W)), so a difference of exactly
    # balance_tol is common (e.g. 0.03 = 24 / 800 at 80 points, 5 neighbours) and
    # keeps the balanced solution rather than being decided by the last bit
    slack = 16 * float(np.finfo(xp.to_numpy(equal[0][:1, :1, :1]).dtype).eps)
    use = cut(W, equal[0]) - cut(W, free[0]) <= p["balance_tol"] + slack
    picked = tuple(_pick(use, a, b) for a, b in zip(equal, free))
    return (*picked, use), bandwidth


def _pick(use, a, b):
    """Per task (leading axis): `a` where `use`, else `b` (numpy or torch)."""
    if not xp.is_torch(a):
        return np.where(use.reshape((-1,) + (1,) * (np.ndim(a) - 1)), a, b)
    mask = xp.as_index_like(use, a) > 0
    return xp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)


def _check_params(params):
    unknown = set(params) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unexpected parameters: {sorted(unknown)}.")
    p = {**_DEFAULTS, **params}
    validate_parameter_constraints(_PARAMS, p, caller_name="laplacian_fewshot_episodes")
    return p


def laplacian_fewshot_episodes(
    support, support_labels, query, *, n_jobs=None, **params
):
    """Solve many few-shot episodes at once, as one (n_tasks, n_points, d) computation.

    Each task is solved exactly as :class:`LaplacianFewShotClassifier` solves one
    episode (same model, same stopping rule per task), but all tasks move together:
    batched matrix products over a leading task axis, with dense per-task kNN graphs,
    taken in chunks of tasks so that memory stays bounded (``TASK_CHUNK_MIB`` on the
    CPU, scikit-learn's ``working_memory`` on a GPU).  A task of ``n`` points holds a
    few (n, n) matrices; a task too large for them (a single task's (n, n) array
    above that budget: ~1,000 points in float32 on the CPU) is solved alone with a
    sparse kNN graph instead, as :class:`LaplacianFewShotClassifier` solves it
    (memory ``O(n * n_neighbors)``).
    numpy arrays run on the CPU; torch tensors run on their device (GPU when they are
    on one), and the results come back as tensors there.

    Read more in the :ref:`User Guide <transductive>`.

    Parameters
    ----------
    support : (n_tasks, n_support, d) numpy array or torch tensor
        Support features of each task.
    support_labels : (n_tasks, n_support) array of ints in ``0..n_classes-1``
        Every class ``0..max`` must appear in every task (``n_classes = max + 1``).
    query : (n_tasks, n_query, d), same kind as `support`
        Query features of each task (``n_query`` may be 0).
    **params
        The hyperparameters of :class:`LaplacianFewShotClassifier`, with the same
        names, meaning and defaults: `lam`, `n_neighbors`, `affinity`, `symmetric`,
        `graph`, `prototype`, `update_prototypes`, `temperature`, `preprocessing`,
        `center` (None: each task's own mean; or a (d,) vector, e.g. the mean of base
        features), `rectify`, `rectify_scale`, `balance`, `balance_tol`, `max_iter`,
        `tol`.
    n_jobs : int or None, default=None
        Threads solving chunks of tasks concurrently (numpy and torch release the GIL
        in their matrix products and elementwise loops); None means 1, -1 all CPUs
        (joblib's convention).  The chunks are then ``THREAD_CHUNK_FACTOR`` times
        larger, of equal size and a multiple of `n_jobs` in number, and BLAS runs one
        thread per worker.  Results do not depend on it: every task's result is the
        one it gets alone.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` with

        - ``labels`` (n_tasks, n_query) int64: predicted class index of each query;
        - ``label_distributions`` (n_tasks, n_query, n_classes): soft assignments;
        - ``prototypes`` (n_tasks, n_classes, d): refined prototypes (preprocessed
          space);
        - ``n_iter`` (n_tasks,) and ``converged`` (n_tasks,) numpy arrays;
        - ``objective`` (n_tasks, max_iter + 1) float64 numpy array: ``E`` before the
          first step and after each iteration, NaN after the task stopped;
        - ``balanced`` (n_tasks,) bool numpy array: whether a task's solution is the
          class-balanced one (see `balance`).

        Arrays other than ``n_iter``, ``converged`` and ``objective`` are of the input's
        kind, dtype (float32 stays float32) and device (tensors that require grad are
        accepted; the results do not carry gradients).

    See Also
    --------
    LaplacianFewShotClassifier : the same model, one episode, scikit-learn API.

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.transductive import laplacian_fewshot_episodes
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.normal(size=(3, 8))
    >>> def draw(n):  # (4 tasks, n per class * 3 classes, 8)
    ...     y = np.tile(np.repeat(np.arange(3), n), (4, 1))
    ...     return centers[y] + 0.3 * rng.normal(size=(4, 3 * n, 8)), y
    >>> S, s_lab = draw(1)
    >>> Q, q_lab = draw(10)
    >>> out = laplacian_fewshot_episodes(S, s_lab, Q)
    >>> out.labels.shape, float((out.labels == q_lab).mean())
    ((4, 30), 1.0)
    """
    p = _check_params(params)
    if n_jobs is not None and (not isinstance(n_jobs, Integral) or n_jobs == 0):
        raise ValueError(f"n_jobs must be None or a nonzero integer; got {n_jobs!r}.")
    n_jobs = effective_n_jobs(n_jobs)
    if xp.is_torch(support) != xp.is_torch(query):
        raise TypeError("support and query must both be numpy arrays or torch tensors.")
    if not xp.is_torch(support):
        support = np.asarray(support)
        query = np.asarray(query)
        dt = xp.float_dtype(support)
        support, query = support.astype(dt, copy=False), query.astype(dt, copy=False)
    else:  # the solver is not differentiable: autograd inputs are detached
        dt = xp.float_dtype(support)
        support, query = support.detach().to(dt), query.detach().to(dt)
    if support.ndim != 3 or query.ndim != 3:
        raise ValueError(
            "support and query must be 3-D (n_tasks, n_points, n_features); got shapes "
            f"{tuple(support.shape)} and {tuple(query.shape)}."
        )
    T, ns, d = support.shape
    if query.shape[0] != T or query.shape[2] != d:
        raise ValueError(
            f"query shape {tuple(query.shape)} does not match support shape "
            f"{tuple(support.shape)} (same n_tasks and n_features needed)."
        )
    if p["center"] is not None and p["preprocessing"] == "cl2n":
        # checked in float64; cast to the features' dtype (and device) when used
        p["center"] = _check_center(p["center"], d, np.float64)
    labels = np.asarray(xp.to_numpy(support_labels))
    if labels.shape != (T, ns) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"support_labels must be integers of shape (n_tasks, n_support)={(T, ns)}; "
            f"got {labels.dtype} of shape {labels.shape}."
        )
    if ns == 0 or labels.min() < 0:
        raise ValueError("support_labels must be class indices >= 0 (and non-empty).")
    K = int(labels.max()) + 1
    present = np.zeros((T, K), dtype=bool)
    present[np.repeat(np.arange(T), ns), labels.ravel()] = True
    if not present.all():
        t, c = np.argwhere(~present)[0]
        raise ValueError(
            f"task {t} has no support sample of class {c}: every class 0..{K - 1} must "
            "appear in every task."
        )
    n = ns + query.shape[1]
    itemsize = support.element_size() if xp.is_torch(support) else dt.itemsize
    on_gpu = xp.is_torch(support) and support.device.type != "cpu"
    budget = (get_config()["working_memory"] if on_gpu else TASK_CHUNK_MIB) * 2**20
    per_task = n * max(n, K) * itemsize
    # a task whose dense (n, n) arrays alone exceed the budget is solved on its own
    # with a sparse kNN graph (as the estimator solves it), not densely; decided
    # before the thread factor, so that results do not depend on n_jobs
    sparse = per_task > budget
    if n_jobs > 1 and not on_gpu:
        budget *= THREAD_CHUNK_FACTOR
    step = 1 if sparse else max(1, int(budget // per_task))
    if n_jobs > 1:  # chunks of equal size, as many per thread
        n_chunks = -(-T // step)
        n_chunks = min(T, -(-n_chunks // n_jobs) * n_jobs)
        step = -(-T // n_chunks)

    starts = range(0, T, step)
    n_workers = min(n_jobs, len(starts))
    # where the stacked rows are stored (see _rows_in_blocks), one (step, n, d) buffer
    # of them per worker, reused by its chunks: chunks that each allocate and free
    # theirs make the allocator hand the memory back to the system and fault it in
    # again, chunk after chunk
    buffers = queue.SimpleQueue()
    if len(starts) > 1 and not (sparse or _rows_in_blocks(support, query, p, sparse)):
        for _ in range(n_workers):
            buffers.put(xp.empty((step, n, d), like=support))

    def solve(a):
        buf = None if buffers.empty() else buffers.get()
        try:
            return _solve_tasks(
                support[a : a + step], labels[a : a + step], query[a : a + step], K,
                p, sparse=sparse, out=buf,
            )  # fmt: skip
        finally:
            if buf is not None:
                buffers.put(buf)

    if len(starts) == 1:
        Yq, M, n_iter, hist, conv, bal = solve(0)
    else:  # every chunk writes its rows of the outputs (in its own thread)
        out = (
            xp.empty((T, n - ns, K), like=support),
            xp.empty((T, K, d), like=support),
            np.empty(T, dtype=np.int64),
            np.empty((T, p["max_iter"] + 1)),
            np.empty(T, dtype=bool),
            np.empty(T, dtype=bool),
        )

        def solve_into(a):
            for o, r in zip(out, solve(a)):
                o[a : a + r.shape[0]] = r

        if n_jobs > 1:
            # one BLAS thread per worker: BLAS threads of concurrent calls would
            # compete for the same cores (no faster than n_jobs=1 on 2 cores without)
            with (
                _blas_controller().limit(limits=1, user_api="blas"),
                ThreadPoolExecutor(max_workers=n_workers) as pool,
            ):
                list(pool.map(solve_into, starts))
        else:
            for a in starts:
                solve_into(a)
        Yq, M, n_iter, hist, conv, bal = out
    return Bunch(
        labels=xp.argmax(Yq, axis=2),
        label_distributions=Yq,
        prototypes=M,
        n_iter=n_iter,
        converged=conv,
        objective=hist,
        balanced=bal,
    )


# Tasks are solved in chunks whose (n_tasks, n, n) arrays take about this much memory
# on the CPU (scikit-learn's working_memory on a GPU): memory stays bounded for any
# number of tasks, and chunks that fit in the cache run ~12% faster than one batch of
# 1,000 CLINC150 episodes.  Every task's result is the one it gets alone.
TASK_CHUNK_MIB = 4
# With n_jobs > 1 the CPU chunks are this many times larger: a thread holds the GIL for
# the Python steps of every iteration of its chunk, so fewer, larger chunks overlap
# better (measured on 2 cores, 1,000 CLINC150 episodes: 8 MiB chunks 5-10% faster than
# 4 MiB ones, 12 MiB ones slower again).
THREAD_CHUNK_FACTOR = 2


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, found once: a fresh
    ``threadpool_limits`` scans the process's libraries on every call (~1-3 ms)."""
    return ThreadpoolController()


def _check_finite(support, query):
    for name, A in (("support", support), ("query", query)):
        if not _graph.all_finite(A):
            raise ValueError(f"{name} contains NaN or infinity.")


def _rows_in_blocks(support, query, p, sparse):
    """Whether a chunk's stacked rows are formed block by block (:class:`_RowBlocks`)
    rather than stored: dense normalised tasks of fewer points than features, on the
    CPU (on a GPU one batched product is faster than many small ones)."""
    n, d = support.shape[1] + query.shape[1], support.shape[2]
    on_gpu = xp.is_torch(support) and support.device.type != "cpu"
    return not sparse and not on_gpu and n <= d and p["preprocessing"] is not None


def _solve_tasks(support, labels, query, K, p, sparse=False, out=None):
    """One chunk of tasks, densely; or (`sparse`, one task) with a sparse kNN graph.
    `out`: None, or a buffer for the stacked rows (see :func:`_centre`)."""
    ns = support.shape[1]
    if _rows_in_blocks(support, query, p, sparse):
        rows = _RowBlocks(support, query, p["preprocessing"], p["center"])
        with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf: checked later
            G = rows.gram()
        (Y, M, n_iter, hist, conv, bal), _ = _transduce_rows(
            None,
            xp.one_hot(labels, K, like=G),
            p,
            sparse_graph=False,
            normalize=True,
            check_finite=lambda: _check_finite(support, query),
            gram=G,
            features=rows.weighted_sums,
        )
        return Y[:, ns:], M, n_iter, hist, conv, bal
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf: checked later
        X = _centre(support, query, p["preprocessing"], p["center"], out=out)
    onehot = xp.one_hot(labels, K, like=X)
    if sparse:
        _check_finite(support, query)
        if p["preprocessing"] is not None:
            X = _graph.batched_l2_normalize(X)
    (Y, M, n_iter, hist, conv, bal), _ = _transduce(
        X,
        onehot,
        p,
        sparse_graph=sparse,
        normalize=p["preprocessing"] is not None and not sparse,
        check_finite=lambda: _check_finite(support, query),
    )
    return Y[:, ns:], M, n_iter, hist, conv, bal


class LaplacianFewShotClassifier(BasePrototypeClassifier):
    """Transductive few-shot classifier with Laplacian-regularised prototypes.

    Labelled (support) and unlabelled (query) rows are solved together, following
    scikit-learn's semi-supervised convention: ``fit(X, y)`` with ``y == -1`` for the
    query rows (as :class:`~sklearn.semi_supervised.LabelSpreading`).  Every query gets a
    soft label ``y_q`` minimising

    .. math::

        E(Y, M) = \\sum_{p,k} y_{pk} f(x_p, m_k) / T + \\sum_{q} y_q^\\top \\log y_q
                  - \\frac{\\lambda}{2} \\sum_{p,q} w_{pq}\\, y_p^\\top y_q

    with support rows fixed to their labels, ``f`` the squared distance to prototype
    ``m_k`` ("kmeans") or minus a Gaussian kernel ("kmodes"), and ``W`` a kNN affinity
    graph (optionally with the queries' class sizes held equal, `balance`).  The
    bound optimizer of LaplacianShot (Ziko et al., 2020) updates all queries in parallel,
    ``y_q <- softmax(-f(x_q, M) / T + lam (W Y)_q)``, alternated with
    prototype updates (Ziko et al., 2021); the objective never increases (steps that
    would raise it are halved).  ``lam=0`` is
    K-means constrained by the supports (a strong baseline).

    ``predict`` is inductive: the nearest refined prototype (in the preprocessed
    space), so ``predict(X_train)`` may differ from ``transduction_``.  With no query
    rows the model reduces to class-mean prototypes.

    Read more in the :ref:`User Guide <transductive>`.

    Parameters
    ----------
    lam : float >= 0, default=0.7
        Weight of the Laplacian term, which gives neighbours in the kNN graph the same
        label. 0 is K-means constrained by the supports; LaplacianShot tunes it in
        [0.1, 1.5].
    n_neighbors : int >= 1, default=3
        Neighbours of each point in the kNN graph, the point itself excluded (the
        official ``knn=3`` includes the point itself, i.e. 2 neighbours here).  Clipped
        to the number of graph points minus one.
    affinity : {"binary", "heat"}, default="binary"
        Edge weights: 1, or ``exp(-d^2 / (2 h^2))`` with ``h^2`` the mean squared kNN
        distance.
    symmetric : bool, default=True
        Use ``(W + W^T) / 2``; False keeps the directed graph of the official code (no
        monotonicity guarantee then, so no step halving).
    graph : {"query", "all"}, default="all"
        Points the kNN graph is built over: the queries only (LaplacianShot), or the
        supports and queries together, so that queries next to a support are pulled
        towards its label.
    prototype : {"kmeans", "kmodes"}, default="kmeans"
        Prototype term: squared euclidean distance, or the K-modes kernel term with a
        bandwidth from the kNN distances (SLK).
    update_prototypes : bool, default=True
        Re-estimate the prototypes from the soft assignments after each bound step
        (False: LaplacianShot's fixed prototypes).
    temperature : float > 0, default=0.1
        Divides the prototype term (1 in LaplacianShot). Lower values make the soft
        labels follow the nearest prototype more sharply. On CL2N features squared
        distances lie in [0, 4], so at 1 ``softmax(-f)`` is nearly flat; 0.1 is
        PT-MAP's scale, ``exp(-10 f)``.
    preprocessing : {"cl2n", "l2n"} or None, default="cl2n"
        Feature transform before everything: centring then L2 normalisation ("cl2n",
        SimpleShot), L2 only, or none.
    center : array-like of shape (n_features,), default=None
        Centre for "cl2n"; None: the mean of all rows passed to ``fit``. Pass the mean
        of base-class features when there are some (as SimpleShot does): the episode's
        own mean leans towards the dominant classes of an imbalanced query set.
    rectify : bool, default=False
        Rectify the initial prototypes with confidently pseudo-labelled,
        shift-corrected queries (BD-CSPN, as LaplacianShot does). It matters with fixed
        prototypes (``update_prototypes=False``); with prototype updates it changes
        little.
    rectify_scale : float >= 0, default=10.0
        Cosine scale of the rectification weights (10 in BD-CSPN; easyfsl uses 1).
    balance : {"none", "equal", "auto"}, default="none"
        Class sizes among the queries. "none": free (LaplacianShot). "equal": every
        class receives the same total soft mass over the queries, ``n_query /
        n_classes``; each bound step is then the entropic transport plan onto those
        class sizes (PT-MAP's balanced assignment), and the objective is still
        non-increasing. Right when the queries are balanced, badly wrong when they are
        not. "auto": solve both and keep an episode's balanced solution only if its
        labelling cuts at most ``balance_tol`` more of the kNN graph's edge weight than
        the free one (a balanced labelling of imbalanced queries has to split
        clusters). It costs a second solve per episode; ``balanced_`` says which
        solution was kept.
    balance_tol : float >= 0, default=0.01
        For ``balance="auto"``: the largest increase of the fraction of the graph's
        edge weight cut by the labelling accepted for the balanced solution. Larger
        values favour balanced query sets.
    max_iter : int >= 1, default=50
        Most iterations (each: one bound step and one prototype step). Episodes usually
        converge at ``tol`` within 10.
    tol : float >= 0, default=1e-4
        Stop when the relative change of the objective is at most `tol` (SLK's outer
        tolerance; LaplacianShot uses 1e-6 for its bound steps).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    transduction_ : ndarray of shape (n_samples,)
        Label of every training row (given labels for supports, inferred for queries).
    label_distributions_ : ndarray of shape (n_samples, n_classes)
        Soft assignments (one-hot for supports).
    prototypes_ : ndarray of shape (n_classes, n_features)
        Refined prototypes, in the preprocessed feature space.
    center_ : ndarray of shape (n_features,) or None
        Centre used by "cl2n".
    bandwidth_ : float or None
        Kernel bandwidth used by "kmodes".
    n_iter_ : int
    objective_ : ndarray of shape (``n_iter_ + 1``,)
        Objective before the first step and after each iteration (non-increasing).
    balanced_ : bool
        Whether the solution kept is the class-balanced one (always False for
        ``balance="none"``, True for "equal").
    n_features_in_ : int

    See Also
    --------
    laplacian_fewshot_episodes : many episodes at once.
    LaplacianKMeans : the same optimizer without supervision (clustering).
    sklearn.semi_supervised.LabelSpreading : graph-based transduction.

    References
    ----------
    .. [1] Ziko, Dolz, Granger, Ben Ayed. "Laplacian Regularized Few-Shot Learning."
       ICML, 2020.
    .. [2] Ziko, Boudiaf, Dolz, Granger, Ben Ayed. "Transductive Few-Shot Learning:
       Clustering is All You Need?" arXiv:2106.09516, 2021.
    .. [3] Liu, Song, Qin. "Prototype Rectification for Few-Shot Learning." ECCV, 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.transductive import LaplacianFewShotClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> y_semi = np.full_like(y, -1)
    >>> y_semi[[0, 50, 100]] = [0, 1, 2]  # one labelled flower per class
    >>> clf = LaplacianFewShotClassifier(preprocessing=None).fit(X, y_semi)
    >>> float((clf.transduction_ == y).mean()) > 0.85
    True
    """

    _parameter_constraints = dict(_PARAMS)

    def __init__(
        self,
        *,
        lam=0.7,
        n_neighbors=3,
        affinity="binary",
        symmetric=True,
        graph="all",
        prototype="kmeans",
        update_prototypes=True,
        temperature=0.1,
        preprocessing="cl2n",
        center=None,
        rectify=False,
        rectify_scale=10.0,
        balance="none",
        balance_tol=0.01,
        max_iter=50,
        tol=1e-4,
    ):
        self.lam = lam
        self.n_neighbors = n_neighbors
        self.affinity = affinity
        self.symmetric = symmetric
        self.graph = graph
        self.prototype = prototype
        self.update_prototypes = update_prototypes
        self.temperature = temperature
        self.preprocessing = preprocessing
        self.center = center
        self.rectify = rectify
        self.rectify_scale = rectify_scale
        self.balance = balance
        self.balance_tol = balance_tol
        self.max_iter = max_iter
        self.tol = tol

    def _params(self):
        return {k: getattr(self, k) for k in _DEFAULTS}

    # appended to the shared error on None labels (utils._validation)
    _missing_label_hint = (
        " Mark query (unlabelled) rows with the integer -1 (scikit-learn's "
        "semi-supervised convention)."
    )

    @staticmethod
    def _unlabeled_mask(y):
        if y.dtype.kind in "iuf":
            return y == -1
        if y.dtype.kind == "O":
            return np.array([v == -1 for v in y], dtype=bool)
        if y.dtype.kind in "US" and (y == y.dtype.type("-1")).any():
            # np.r_[names, [-1, ...]] gives strings: "-1" would silently be a class
            raise ValueError(
                "y has a string dtype and contains the label '-1'. To mark query "
                "(unlabelled) rows with string class labels, use an object array with "
                "the integer -1 for them: y = y.astype(object); y[query] = -1."
            )
        return np.zeros(y.shape, dtype=bool)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Solve the transductive problem over support and query rows.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels of the support rows; ``-1`` for the query (unlabelled) rows.  With
            string class labels, pass an object array with the integer ``-1`` for
            the queries (a string array containing ``"-1"`` raises a ValueError).

        Returns
        -------
        self : object
        """
        X, y = validate_fit_data(self, X, y, reset=True)
        query = self._unlabeled_mask(y)
        if query.all():
            raise ValueError(
                "y has no labelled rows (all are -1); at least one support sample per "
                "class is needed."
            )
        labelled = _labelled_targets(y[~query])
        check_classification_targets(labelled)
        classes, y_idx = np.unique(labelled, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                "LaplacianFewShotClassifier needs labelled samples of at least 2 "
                f"classes; got 1 class ({classes[0]!r})."
            )
        self.classes_ = classes
        if self.center is not None:
            center = _check_center(self.center, X.shape[1], X.dtype)
        elif self.preprocessing == "cl2n":
            center = X.mean(0)
        else:
            center = None
        self.center_ = center if self.preprocessing == "cl2n" else None
        Z = self._transform(X)
        sup, qry = np.flatnonzero(~query), np.flatnonzero(query)
        onehot = xp.one_hot(y_idx, classes.size, like=Z)[None]
        order = xp.as_index_like(np.r_[sup, qry], Z)
        (Y, M, n_iter, hist, conv, bal), h = _transduce(
            Z[order][None], onehot, self._params(), sparse_graph=True
        )
        dist = np.empty((X.shape[0], classes.size), dtype=Z.dtype)
        dist[sup], dist[qry] = Y[0, : sup.size], Y[0, sup.size :]
        self.label_distributions_ = dist
        self.transduction_ = classes[dist.argmax(1)]
        self.prototypes_ = M[0]
        self.bandwidth_ = None if h is None else float(h[0])
        self.n_iter_ = int(n_iter[0])  # 1 with no queries: one (idle) iteration
        self.objective_ = hist[0, : self.n_iter_ + 1]
        self.balanced_ = bool(bal[0])
        if qry.size and not conv[0]:
            warnings.warn(
                f"LaplacianFewShotClassifier did not converge in max_iter="
                f"{self.max_iter} iterations (relative objective change above "
                f"tol={self.tol}); raise max_iter.",
                ConvergenceWarning,
            )
        return self

    def _transform(self, X):
        if self.preprocessing is None:
            return X
        Z = X if self.center_ is None else X - xp.asarray_like(self.center_, X)
        return l2_normalize(Z)

    def _class_scores(self, X):
        M = xp.asarray_like(self.prototypes_, X)
        c = common_centre(M)  # f depends on z - m only (see common_centre)
        M = M - c
        h = None if self.bandwidth_ is None else xp.full((1,), self.bandwidth_, X)

        def scores(Xc, rows):  # row chunks: a few (rows, d) temporaries each
            Z = self._transform(Xc) - c
            f = _graph.prototype_term(Z[None], M[None], self.prototype, h)[0]
            return -f / self.temperature

        return map_row_chunks(scores, X, (4 * X.shape[1] + 3 * M.shape[0]) * 8)

    def solve_episodes(self, support, support_labels, query, *, n_jobs=None):
        """:func:`laplacian_fewshot_episodes` with this estimator's hyperparameters.

        Needs no fitting (nothing is stored); see that function for the arguments
        (`n_jobs` included) and the returned Bunch.
        """
        return laplacian_fewshot_episodes(
            support, support_labels, query, n_jobs=n_jobs, **self._params()
        )


# The batched function shares the estimator's defaults: one list, read off its signature.
_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(LaplacianFewShotClassifier).parameters.items()
}
