"""The stacked, centred rows ``[support; query]`` of few-shot episodes.

:func:`centre_episode_rows` stacks each task's support and query rows into one
(T, n, d) array, centred as CL2N asks (on a given centre, or each task's own mean).
:class:`StreamedEpisodeRows` gives what the solver needs of those rows -- their Gram
matrix and weighted sums of them -- forming them a block of tasks at a time in a small
buffer, so that the (T, n, d) array of a chunk of episodes is never stored.

numpy or torch (any device) in, the same kind out.
"""

import numpy as np

from ..utils._array_api import asarray_like, empty, is_torch
from ._batched import bmm

# Blocks of `StreamedEpisodeRows` hold about this many bytes of rows: within a core's
# L2 cache.
ROW_BLOCK_BYTES = 2**20


def task_means(support, query):
    """(T, d) mean of each task's support and query rows."""
    return (support.sum(1) + query.sum(1)) / (support.shape[1] + query.shape[1])


def centre_episode_rows(support, query, preprocessing, center, out=None):
    """Support and query rows stacked (T, n, d) and centred as `preprocessing` asks
    ("cl2n": on `center`, None meaning each task's mean), not yet L2-normalised.
    `out`: None, or an array of at least T tasks of that shape to write into."""
    T, ns, d = support.shape
    n = ns + query.shape[1]
    X = empty((T, n, d), like=support) if out is None else out[:T]
    if preprocessing != "cl2n":
        X[:, :ns], X[:, ns:] = support, query
        return X
    if center is None:
        c = task_means(support, query)
    else:  # (d,), or (T, d): one per task
        c = asarray_like(center, support)
    c = c[None, None, :] if c.ndim == 1 else c[:, None, :]
    # stacked and centred in one pass (the array API has no `out=`)
    if is_torch(X):
        import torch

        torch.sub(support, c, out=X[:, :ns])
        torch.sub(query, c, out=X[:, ns:])
    else:
        np.subtract(support, c, out=X[:, :ns])
        np.subtract(query, c, out=X[:, ns:])
    return X


def streams_rows(support, query, hyperparams, sparse):
    """Whether a chunk's stacked rows are streamed (:class:`StreamedEpisodeRows`)
    rather than stored: dense normalised tasks of fewer points than features, on the
    CPU (on a GPU one batched product is faster than many small ones)."""
    n, d = support.shape[1] + query.shape[1], support.shape[2]
    on_gpu = is_torch(support) and support.device.type != "cpu"
    return (
        not sparse
        and not on_gpu
        and n <= d
        and hyperparams["preprocessing"] is not None
    )


class StreamedEpisodeRows:
    """The stacked rows ``[support; query]`` of a chunk of tasks, centred as
    :func:`centre_episode_rows` does, formed a block of tasks at a time and never
    stored.

    The Gram path of the solver needs the rows twice only: for their Gram matrix, and
    at the end for the prototypes (weighted sums of the rows).  Each block's rows are
    formed into one small buffer that stays in the core's cache through its product,
    so the (T, n, d) array of the chunk (several times its (T, n, n) arrays for
    sentence-embedding episodes) is neither written to memory nor read back, twice;
    every task's products are the ones a whole chunk gets.
    """

    def __init__(self, support, query, preprocessing, center):
        self.support, self.query, self.preprocessing = support, query, preprocessing
        T, ns, d = support.shape
        self.n, self.d = ns + query.shape[1], d
        if preprocessing == "cl2n" and center is None:  # each task's own mean
            center = task_means(support, query)
        self.center = center
        self.step = max(1, ROW_BLOCK_BYTES // (self.n * d * support.dtype.itemsize))
        self.buffer = empty((min(self.step, T), self.n, d), like=support)

    def _blocks(self):
        T = self.support.shape[0]
        for a in range(0, T, self.step):
            b = min(a + self.step, T)
            c = self.center
            if c is not None and c.ndim == 2:  # per-task centres
                c = c[a:b]
            yield a, b, centre_episode_rows(
                self.support[a:b], self.query[a:b], self.preprocessing, c,
                out=self.buffer,
            )  # fmt: skip

    def gram(self):
        """(T, n, n) Gram matrix of the (centred, not normalised) rows."""
        G = empty((self.support.shape[0], self.n, self.n), like=self.support)
        for a, b, X in self._blocks():
            bmm(X, X.swapaxes(1, 2), out=G[a:b])
        return G

    def weighted_sums(self, C):
        """``C^T Z`` (T, K, d) for per-row weights `C` (T, n, K)."""
        M = empty((C.shape[0], C.shape[2], self.d), like=C)
        for a, b, X in self._blocks():
            bmm(C[a:b].swapaxes(1, 2), X, out=M[a:b])
        return M
