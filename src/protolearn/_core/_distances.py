"""Pairwise distances between samples and prototypes, chunked for bounded memory.

All functions take ``X`` of shape (n, d) and prototypes ``Y`` of shape (m, d), numpy or
torch (same kind for both), and return an (n, m) array of the same kind, dtype and device.
Temporary memory is bounded by scikit-learn's ``working_memory`` setting (MiB) unless a
`working_memory` argument is given.
"""

import contextlib
import contextvars
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..utils import _array_api as xp
from ..utils._sklearn_compat import get_chunk_n_rows

METRICS = ("sqeuclidean", "euclidean", "cosine", "mahalanobis")


def _row_norms_sq(X):
    return (X * X).sum(1)


def common_centre(Y):
    """A point to subtract from both sides before an expanded distance formula.

    The mean of the prototypes ``Y`` (a constant: no gradient flows through it), or
    None when ``Y`` has no rows.  Euclidean and Mahalanobis distances do not change
    under a common translation, but the expansion ``|x|^2 - 2 x.y + |y|^2`` loses
    every digit of the difference when the rows lie far from the origin: float32
    features offset by 1e4 (raw tabular columns) gave chance-level nearest-prototype
    predictions.  Centred on the prototypes, it keeps the precision of ``x - y``.
    """
    if Y.shape[0] == 0:
        return None
    c = Y.mean(0)
    # torch: the centre is a constant of the distances (no gradient through it)
    return c.detach() if xp.is_torch(c) else c


def _shift(c, *arrays):
    return arrays if c is None else tuple(a - c for a in arrays)


def squared_euclidean_distances(X, Y, *, Y_norm_squared=None):
    """Squared euclidean distances ``||x - y||^2`` (one chunk, no chunking).

    Uses the expansion ``|x|^2 - 2 x.y + |y|^2`` (one matrix product) and clips the small
    negative values it can produce to zero.  Without `Y_norm_squared` both sides are
    first centred on the mean of ``Y`` (:func:`common_centre`); a caller passing
    `Y_norm_squared` passes rows it has centred itself.
    """
    if Y_norm_squared is None:
        X, Y = _shift(common_centre(Y), X, Y)
        Y_norm_squared = _row_norms_sq(Y)
    D = X @ Y.T
    D *= -2
    D += _row_norms_sq(X)[:, None]
    D += Y_norm_squared[None, :]
    return xp.clip_min(D, 0)


def l2_normalize(X, out=None):
    """Rows divided by their L2 norm; all-zero rows stay zero (numpy: into `out`
    when given)."""
    norms = xp.sqrt(_row_norms_sq(X))
    # (not in place: autograd needs the square root's output for its gradient)
    norms = xp.where(norms > 0, norms, 1.0)
    if out is not None:
        return np.divide(X, norms[:, None], out=out)
    return X / norms[:, None]


def cosine_distances(X, Y, *, Y_normalized=False):
    """Cosine distances ``1 - cos(x, y)`` (one chunk, no chunking)."""
    if not Y_normalized:
        Y = l2_normalize(Y)
    D = l2_normalize(X) @ Y.T
    D *= -1
    D += 1
    return xp.clip_min(D, 0)


COVARIANCE_TYPES = ("tied", "full", "diag", "spherical")


def _check_precision_cholesky(L, Y, covariance_type):
    m, d = Y.shape
    shape = tuple(L.shape)
    expected = {
        "tied": "(d, r)",
        "full": f"(m, d, d)={(m, d, d)}",
        "diag": f"(m, d)={(m, d)}",
        "spherical": f"(m,)={(m,)}",
    }
    if covariance_type not in expected:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )
    ok = {
        "tied": len(shape) == 2 and shape[0] == d,
        "full": shape == (m, d, d),
        "diag": shape == (m, d),
        "spherical": shape == (m,),
    }[covariance_type]
    if not ok:
        raise ValueError(
            f"precision_cholesky for covariance_type={covariance_type!r} must have shape "
            f"{expected[covariance_type]} for prototypes of shape (m, d)={(m, d)}; got "
            f"{shape}."
        )


def mahalanobis_distances(
    X, Y, precision_cholesky, covariance_type="tied", *, centred=False
):
    """Squared Mahalanobis distances ``(x - y)^T P (x - y)`` (one chunk, no chunking).

    `precision_cholesky` is a factor ``L`` of the precision ``P = L L^T`` (as in
    scikit-learn's ``GaussianMixture.precisions_cholesky_``), so no matrix is ever
    inverted here.  `covariance_type` says its form: "tied" (d, r), shared by all
    prototypes (r < d gives a low-rank metric such as GMLVQ's ``Omega.T``); "full"
    (m, d, d), one factor per prototype; "diag" (m, d), square roots of diagonal
    precisions; "spherical" (m,), square roots of scalar precisions.  Both sides are
    centred on the mean of ``Y`` first (:func:`common_centre`) unless `centred` says
    the caller did.
    """
    _check_precision_cholesky(precision_cholesky, Y, covariance_type)
    L = precision_cholesky
    if not centred:
        X, Y = _shift(common_centre(Y), X, Y)
    if covariance_type == "tied":
        XL, YL = X @ L, Y @ L
        return squared_euclidean_distances(XL, YL, Y_norm_squared=_row_norms_sq(YL))
    if covariance_type == "spherical":
        D = squared_euclidean_distances(X, Y, Y_norm_squared=_row_norms_sq(Y))
        D *= (L * L)[None, :]
        return D
    if covariance_type == "diag":
        P = L * L  # (m, d) precisions
        D = (X * X) @ P.T
        D -= 2 * (X @ (Y * P).T)
        D += ((Y * Y) * P).sum(1)[None, :]
        return xp.clip_min(D, 0)
    D = xp.empty((X.shape[0], Y.shape[0]), like=X)
    for k in range(Y.shape[0]):
        Z = X @ L[k] - Y[k] @ L[k]
        D[:, k] = (Z * Z).sum(1)
    return D


def _chunk_size(n_rows, n_cols, itemsize, working_memory):
    # A chunk holds a few (rows x cols) temporaries: budget 4 of them per row.
    return get_chunk_n_rows(
        row_bytes=4 * max(n_cols, 1) * itemsize,
        max_n_rows=max(n_rows, 1),
        working_memory=working_memory,
    )


def _one_chunk(Xc, Y, metric, precision_cholesky, Y_aux, covariance_type, c):
    if metric == "cosine":
        return cosine_distances(Xc, Y_aux, Y_normalized=True)
    (Xc,) = _shift(c, Xc)  # Y is centred already (see _prepare)
    if metric in ("sqeuclidean", "euclidean"):
        D = squared_euclidean_distances(Xc, Y, Y_norm_squared=Y_aux)
        return xp.sqrt(D) if metric == "euclidean" else D
    return mahalanobis_distances(
        Xc, Y, precision_cholesky, covariance_type, centred=True
    )


def _prepare(X, Y, metric, precision_cholesky):
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but the prototypes have {Y.shape[1]}."
        )
    Y = xp.asarray_like(Y, X)
    if metric == "mahalanobis":
        if precision_cholesky is None:
            raise ValueError("metric='mahalanobis' needs precision_cholesky.")
        precision_cholesky = xp.asarray_like(precision_cholesky, X)
    Y_aux, c = None, None
    if metric == "cosine":
        Y_aux = l2_normalize(Y)
    else:  # translation-invariant: centre both sides once (see common_centre)
        c = common_centre(Y)
        (Y,) = _shift(c, Y)
        if metric in ("sqeuclidean", "euclidean"):
            Y_aux = _row_norms_sq(Y)
    return Y, precision_cholesky, Y_aux, c


def iter_distance_chunks(
    X,
    Y,
    metric="sqeuclidean",
    *,
    precision_cholesky=None,
    covariance_type="tied",
    working_memory=None,
):
    """Yield ``(row_slice, D_chunk)`` over row chunks of ``X``.

    Use this to reduce distances (argmin, top-k) over a large ``X`` without ever holding
    the full (n, m) matrix.  ``metric`` is one of "sqeuclidean", "euclidean", "cosine",
    "mahalanobis" (squared; needs `precision_cholesky` of the given
    `covariance_type`, see :func:`mahalanobis_distances`).
    """
    Y, precision_cholesky, Y_aux, c = _prepare(X, Y, metric, precision_cholesky)
    n = X.shape[0]
    itemsize = X.dtype.itemsize  # numpy and torch dtypes alike
    step = _chunk_size(n, max(Y.shape[0], X.shape[1]), itemsize, working_memory)
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        yield (
            sl,
            _one_chunk(X[sl], Y, metric, precision_cholesky, Y_aux, covariance_type, c),
        )


def pairwise_distances(
    X,
    Y,
    metric="sqeuclidean",
    *,
    precision_cholesky=None,
    covariance_type="tied",
    working_memory=None,
):
    """Distances between rows of ``X`` (n, d) and prototypes ``Y`` (m, d), shape (n, m).

    Computed chunk by chunk (see :func:`iter_distance_chunks`), in ``X``'s dtype, as the
    same array kind (numpy or torch, same device) as ``X``.
    """
    stacked = _Stacked(X.shape[0])
    for sl, D in iter_distance_chunks(
        X,
        Y,
        metric,
        precision_cholesky=precision_cholesky,
        covariance_type=covariance_type,
        working_memory=working_memory,
    ):
        stacked.store(sl, D)
    if stacked.out is None:  # no rows
        return xp.empty((0, Y.shape[0]), like=X)
    return stacked.result()


#: Temporary bytes of one chunk of a threaded :func:`map_row_chunks`: a chunk's
#: (rows x prototypes) scores stay in the core's caches from the matrix product to
#: the argmax / logsumexp after it (measured here, 2 cores, 1,000 prototypes: 4-16
#: MiB chunks beat 1 MiB ones, whose per-chunk overhead shows, and 64 MiB ones).
THREAD_CHUNK_BYTES = 8 * 2**20
#: ... but at least this many rows per chunk (within ``working_memory``): with many
#: prototypes, fewer rows would stream the whole prototype matrix from memory for
#: too little work (10,000 prototypes: 0.65 of the bare product with 32-row chunks,
#: 1.0-1.15 with 512 or 1,024).
MIN_THREAD_CHUNK_ROWS = 512

_in_worker = threading.local()


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, found once (a fresh
    ``threadpool_limits`` scans the process's libraries at every call)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_workspace = threading.local()


@contextlib.contextmanager
def _workspace_scope():
    """Reusable temporaries (:func:`scratch`) for the chunks one thread computes in
    one :func:`map_row_chunks` call; released when the call ends."""
    outer = getattr(_workspace, "arrays", None)
    _workspace.arrays = {}
    try:
        yield
    finally:
        _workspace.arrays = outer


def scratch(key, shape, dtype):
    """An uninitialised numpy array for a chunk's temporary, reused by the next
    chunk the same thread computes in the same :func:`map_row_chunks` call (a
    fresh array of more than a few hundred KiB is new pages from the OS: their
    first writes cost a quarter of the chunk's matrix product here).  Never return
    it, or a view of it, from the chunk function.  Outside a call: ``np.empty``."""
    arrays = getattr(_workspace, "arrays", None)
    dtype = np.dtype(dtype)
    if arrays is None:
        return np.empty(shape, dtype)
    size = math.prod(shape)
    buf = arrays.get((key, dtype))
    if buf is None or buf.size < size:
        buf = arrays[key, dtype] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def chunk_matmul(a, b, key="product"):
    """``a @ b``; for numpy into :func:`scratch` (only inside a chunk function whose
    result is not this product itself)."""
    if xp.is_torch(a):  # torch allocates through its own caching allocator
        return a @ b
    dtype = np.result_type(a, b)
    return np.matmul(a, b, out=scratch(key, (a.shape[0], b.shape[1]), dtype))


def chunk_shift(x, c, key="shifted"):
    """``x - c`` (``x`` itself when ``c`` is None), as :func:`chunk_matmul`."""
    if c is None:
        return x
    if xp.is_torch(x):
        return x - c
    return np.subtract(x, c, out=scratch(key, x.shape, np.result_type(x, c)))


def chunk_affine_rows(x, c=None, *, normalize=False, key="affine"):
    """``[x', 1]`` (rows, d + 1) in :func:`scratch`, numpy, with ``x' = x - c``
    (`c` given), ``x / |x|`` (`normalize`; all-zero rows stay zero) or ``x``: its
    product with ``[[A], [b]]`` is ``x' A + b`` in one pass of the output instead
    of two (the bias rides in the product)."""
    r, d = x.shape
    dtype = np.result_type(x, c) if c is not None else x.dtype
    out = scratch(key, (r, d + 1), dtype)
    body = out[:, :d]
    if c is not None:
        np.subtract(x, c, out=body)
    elif normalize:
        l2_normalize(x, out=body)
    else:
        body[...] = x
    out[:, d] = 1
    return out


def n_threads():
    """CPU threads for row-chunk parallelism: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Stacked:
    """The (n, ...) outputs of :func:`map_row_chunks`, allocated from the first
    chunk's results (their shapes and dtypes); chunks store into disjoint rows."""

    def __init__(self, n):
        self.n, self.out, self.is_tuple = n, None, False
        self._lock = threading.Lock()

    def store(self, sl, R):
        parts = R if isinstance(R, tuple) else (R,)
        if self.out is None:
            with self._lock:
                if self.out is None:
                    self.is_tuple = isinstance(R, tuple)
                    self.out = tuple(
                        xp.empty((self.n, *r.shape[1:]), like=r) for r in parts
                    )
        for o, r in zip(self.out, parts):
            o[sl] = r

    def result(self):
        return self.out if self.is_tuple else self.out[0]


def _threaded(fn, X, slices, T, stacked):
    """``fn(X[sl], sl)`` for every slice on `T` threads, BLAS on one thread each,
    each result stored into `stacked` as soon as it is computed.

    Each thread takes the next slice until none is left (so a thread holds one
    chunk's temporaries at a time) and runs under the caller's scikit-learn
    configuration (thread-local: ``working_memory`` for nested chunking) and a copy
    of its context variables (numpy's ``errstate``)."""
    from sklearn import config_context, get_config

    config = get_config()
    todo, lock, failed = iter(slices), threading.Lock(), threading.Event()

    def work():
        _in_worker.active = True
        try:
            with config_context(**config), _workspace_scope():
                while not failed.is_set():
                    with lock:
                        sl = next(todo, None)
                    if sl is None:
                        return
                    stacked.store(sl, fn(X[sl], sl))
        except BaseException:
            failed.set()
            raise
        finally:
            _in_worker.active = False

    with _blas_controller().limit(limits=1, user_api="blas"):
        with ThreadPoolExecutor(T) as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, work) for _ in range(T)
            ]
            for future in futures:
                future.result()


def map_row_chunks(fn, X, row_bytes, *, working_memory=None):
    """``fn(X[rows], rows)`` over row chunks of ``X``, stacked along the first axis.

    `row_bytes` is the temporary memory ``fn`` needs per row; chunks keep it within
    scikit-learn's ``working_memory`` (or the `working_memory` given).  ``rows`` is the
    chunk's slice, for row-aligned side inputs.  One chunk: ``fn(X, slice(None))``.
    When ``fn`` returns a tuple of arrays, each is stacked and a tuple is returned.

    A numpy ``X`` of several chunks is processed on :func:`n_threads` threads (BLAS
    limited to one thread meanwhile), in chunks of about :data:`THREAD_CHUNK_BYTES`
    of temporaries (at least :data:`MIN_THREAD_CHUNK_ROWS` rows), so that the
    elementwise work after a chunk's matrix product (argmax, exp, logsumexp:
    single-threaded in numpy) runs on every core, next to the product, while the
    chunk is in cache; the threads hold one chunk each, within ``working_memory``
    in all, plus each call's own setup.  `fn` must therefore be thread-safe (pure
    array code).  Each row's result is computed as in one chunk.  Torch tensors,
    calls nested inside a worker, and a ``working_memory`` below ``threads *
    THREAD_CHUNK_BYTES`` run serially.
    """
    from sklearn import get_config

    n = X.shape[0]
    row_bytes = max(int(row_bytes), 1)
    # torch threads its own kernels (and may be on a GPU): numpy chunks only
    T = 1 if xp.is_torch(X) or getattr(_in_worker, "active", False) else n_threads()
    budget = (
        working_memory if working_memory is not None else get_config()["working_memory"]
    )
    if budget * 2**20 < T * THREAD_CHUNK_BYTES:
        # (each thread's call also holds its own setup, e.g. centred prototypes: a
        # budget too small for T full chunks asks for memory over speed)
        T = 1
    step = get_chunk_n_rows(
        row_bytes=row_bytes * T, max_n_rows=max(n, 1), working_memory=working_memory
    )
    if T > 1:
        step = min(step, max(MIN_THREAD_CHUNK_ROWS, THREAD_CHUNK_BYTES // row_bytes))
        if step >= n:  # too small to split: one chunk, serially
            T = 1
    if step >= n:
        return fn(X, slice(None))
    slices = [slice(s, min(s + step, n)) for s in range(0, n, step)]
    stacked = _Stacked(n)
    if T > 1:
        _threaded(fn, X, slices, min(T, len(slices)), stacked)
    else:
        with _workspace_scope():
            for sl in slices:
                stacked.store(sl, fn(X[sl], sl))
    return stacked.result()


def map_distance_chunks(fn, X, Y, metric="sqeuclidean", **kwargs):
    """``fn(D_chunk)`` over the row chunks of the (n, m) distances, stacked: (n, k).

    For a row-wise reduction of the distances (e.g. :func:`min_per_group`) that
    never holds the full (n, m) matrix; `kwargs` go to :func:`iter_distance_chunks`.
    """
    stacked = _Stacked(X.shape[0])
    for sl, D in iter_distance_chunks(X, Y, metric, **kwargs):
        stacked.store(sl, fn(D))
    return None if stacked.out is None else stacked.result()


def nearest(X, Y, metric="sqeuclidean", **kwargs):
    """Index of and distance to the nearest prototype for each row, chunked."""
    idx, dist = [], []
    for _, D in iter_distance_chunks(X, Y, metric, **kwargs):
        i = xp.argmin(D, axis=1)
        idx.append(i)
        dist.append(xp.amin(D, axis=1))
    if not idx:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=X.dtype)
    return xp.concat(idx), xp.concat(dist)


def min_per_group(D, groups, n_groups):
    """Column-wise minimum of ``D`` (n, m) within each group of columns, shape (n, G).

    ``groups`` (m,) gives each column's group index in ``0..n_groups-1``; columns must be
    sorted by group (prototypes stored grouped by class).
    """
    groups = np.asarray(xp.to_numpy(groups))
    counts = np.bincount(groups, minlength=n_groups)
    if np.any(np.diff(groups) < 0):
        raise ValueError("columns must be sorted by group.")
    if np.all(counts == 1):
        return D
    if np.all(counts == counts[0]):
        return xp.amin(D.reshape(D.shape[0], n_groups, int(counts[0])), axis=2)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if not xp.is_torch(D):  # numpy's reduceat has no torch counterpart
        return np.minimum.reduceat(D, starts, axis=1)
    out = xp.empty((D.shape[0], n_groups), like=D)
    for g, (s, c) in enumerate(zip(starts, counts)):
        out[:, g] = D[:, s : s + c].amin(dim=1)
    return out


def paired_distances(X, Y, metric="sqeuclidean", *, precision_cholesky=None):
    """Row-wise distances ``d(X[i], Y[i])`` (same metrics as :func:`pairwise_distances`;
    "mahalanobis" takes a tied (d, r) precision factor)."""
    if X.shape != Y.shape:
        raise ValueError(
            f"X and Y must have the same shape; got {X.shape} and {Y.shape}."
        )
    if metric in ("sqeuclidean", "euclidean"):
        R = X - Y
        D = (R * R).sum(1)
        return xp.sqrt(D) if metric == "euclidean" else D
    if metric == "cosine":
        D = 1 - (l2_normalize(X) * l2_normalize(Y)).sum(1)
        return xp.clip_min(D, 0)
    if metric == "mahalanobis":
        Z = (X - Y) @ xp.asarray_like(precision_cholesky, X)
        return (Z * Z).sum(1)
    raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
