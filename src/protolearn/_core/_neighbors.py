"""Distance of each sample to its k-th nearest neighbour in a reference set, chunked.

The k-th nearest-neighbour distance is the out-of-distribution score of Sun et al.
(ICML 2022); on L2-normalised features its euclidean form is a monotone function of the
cosine similarity.  Rows of ``X`` are processed in chunks bounded by scikit-learn's
``working_memory``, so scoring never holds the full (n, m) distance matrix.
"""

import numpy as np

from ..utils._array_api import empty, is_torch
from ._distances import iter_distance_chunks


def kth_neighbor_distance(X, Y, k, metric="euclidean", *, working_memory=None):
    """Distance from each row of ``X`` to its ``k``-th nearest row of ``Y``.

    Parameters
    ----------
    X : (n, d) array or tensor.
    Y : (m, d) reference rows (converted to ``X``'s kind and device).
    k : int in [1, m].
    metric : {"euclidean", "sqeuclidean", "cosine"}, default="euclidean"
    working_memory : int, default=None
        MiB for temporaries (scikit-learn's ``working_memory`` when None).

    Returns
    -------
    distance : (n,) array or tensor like ``X``.
    """
    m = Y.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}] (the reference rows); got {k}.")
    out = empty((X.shape[0],), like=X)
    for sl, D in iter_distance_chunks(X, Y, metric, working_memory=working_memory):
        if is_torch(D):  # the array API has no partial sort (kthvalue / partition)
            out[sl] = D.kthvalue(k, dim=1).values
        else:
            out[sl] = np.partition(D, k - 1, axis=1)[:, k - 1]
    return out
