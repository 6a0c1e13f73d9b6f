"""Certified L2 robustness radii of nearest-prototype rules.

For squared euclidean, cosine and (tied) Mahalanobis distances the comparison of a
sample's distances to two prototypes i and j is *linear* in the sample:

    d_j(x) - d_i(x) = (a_i - a_j) . x - (c_i - c_j)

(euclidean: a_i = 2 w_i, c_i = |w_i|^2;  Mahalanobis with M = L L^T: a_i = 2 M w_i,
c_i = w_i^T M w_i;  cosine: a_i = w_i / |w_i|, c_i = 0, since the cosine rule only depends
on the direction of x).  The smallest L2 perturbation that makes j beat i is therefore the
distance from x to that hyperplane, ``(s_i - s_j) / |a_i - a_j|`` with ``s = A x - c``.

With one prototype per class the decision region of the winner is the convex polytope cut
by these hyperplanes, so the minimum over wrong prototypes j is the *exact* radius
(Saralajew et al., 2019, "Fast adversarial robustness certification of nearest prototype
classifiers").  With several prototypes per class, the region where a wrong prototype j
wins lies inside every half-space "j beats i" for the predicted class's prototypes i, so
``min_j max_i (s_i - s_j) / |a_i - a_j|`` is a sound lower bound (and exact whenever the
nearest point of that region lies on one of those faces).
"""

import numpy as np

from ..utils import _array_api as xp
from ..utils._sklearn_compat import get_chunk_n_rows
from ._distances import l2_normalize


def linear_form(prototypes, metric, *, precision_cholesky=None):
    """The ``(A, c)`` of the linear comparison of prototype distances (see module doc).

    `precision_cholesky` (for "mahalanobis") is a (d, r) factor ``L`` with
    ``M = L L^T``; it may be rectangular (e.g. ``Omega.T`` of GMLVQ).
    """
    W = prototypes
    if metric in ("sqeuclidean", "euclidean"):
        return 2 * W, (W * W).sum(1)
    if metric == "cosine":
        Wn = l2_normalize(W)
        return Wn, (Wn * 0).sum(1)
    if metric == "mahalanobis":
        if precision_cholesky is None or precision_cholesky.ndim != 2:
            raise ValueError(
                "The certified radius for metric='mahalanobis' needs one shared (tied) "
                "precision Cholesky factor of shape (d, r)."
            )
        L = xp.asarray_like(precision_cholesky, W)
        WM = (W @ L) @ L.T  # rows are M w_i
        return 2 * WM, (WM * W).sum(1)
    raise ValueError(f"No certified radius for metric={metric!r}.")


def nearest_prototype_index(
    X, prototypes, metric="euclidean", *, precision_cholesky=None, working_memory=None
):
    """Index of the nearest prototype of each row, as ``argmax(A x - c)``, chunked.

    Equivalent to the argmin of the distances (squared euclidean, cosine or tied
    Mahalanobis) but needs one matrix product per chunk and no norms of ``x``.
    """
    W = xp.asarray_like(prototypes, X)
    A, c = linear_form(W, metric, precision_cholesky=precision_cholesky)
    n = X.shape[0]
    itemsize = X.element_size() if xp.is_torch(X) else X.dtype.itemsize
    step = get_chunk_n_rows(
        row_bytes=2 * max(W.shape[0], 1) * itemsize,
        max_n_rows=max(n, 1),
        working_memory=working_memory,
    )
    out = []
    for start in range(0, n, step):
        S = X[start : start + step] @ A.T
        S -= c[None, :]
        out.append(xp.argmax(S, axis=1))
    return xp.concat(out) if out else np.empty(0, dtype=np.intp)


def nearest_prototype_radius(
    X,
    prototypes,
    prototype_labels,
    *,
    metric="euclidean",
    precision_cholesky=None,
    working_memory=None,
):
    """Certified L2 radius of the nearest-prototype rule at each row of ``X``.

    Parameters
    ----------
    X : (n, d) array (numpy or torch)
    prototypes : (P, d) array
    prototype_labels : (P,) int array, the class of each prototype
    metric : "euclidean", "sqeuclidean", "cosine" or "mahalanobis"
    precision_cholesky : (d, r) array, for "mahalanobis"

    Returns
    -------
    radius : (n,) array of the same kind as X; no perturbation with a smaller L2 norm
        changes the predicted class.  Exact with one prototype per class.
    """
    W = xp.asarray_like(prototypes, X)
    A, c = linear_form(W, metric, precision_cholesky=precision_cholesky)
    labels = np.asarray(xp.to_numpy(prototype_labels))
    classes = np.unique(labels)
    # Pairwise norms |a_i - a_j| from the Gram matrix of A.
    G = A @ A.T
    g = G.diagonal() if not xp.is_torch(G) else G.diagonal()
    N = xp.sqrt(xp.clip_min(g[:, None] + g[None, :] - 2 * G, 0))
    n = X.shape[0]
    out = xp.empty((n,), like=X)
    if n == 0:
        return out
    if classes.size < 2:
        out[:] = float("inf")
        return out
    itemsize = X.element_size() if xp.is_torch(X) else X.dtype.itemsize
    P = W.shape[0]
    max_per_class = int(np.bincount(np.searchsorted(classes, labels)).max())
    step = get_chunk_n_rows(
        row_bytes=3 * max_per_class * P * itemsize + 2 * P * itemsize,
        max_n_rows=n,
        working_memory=working_memory,
    )
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        S = X[sl] @ A.T - c[None, :]
        winner = xp.to_numpy(xp.argmax(S, axis=1))
        pred = labels[winner]
        for cls in np.unique(pred):
            rows = np.flatnonzero(pred == cls)
            own = np.flatnonzero(labels == cls)
            other = np.flatnonzero(labels != cls)
            r_idx = xp.as_index_like(rows, X)
            o_idx = xp.as_index_like(own, X)
            t_idx = xp.as_index_like(other, X)
            Sr = S[r_idx]
            Si = xp.take(Sr, o_idx, axis=1)  # (m, p_c)
            Sj = xp.take(Sr, t_idx, axis=1)  # (m, P - p_c)
            Nij = xp.take(xp.take(N, o_idx, axis=0), t_idx, axis=1)  # (p_c, P - p_c)
            R = (Si[:, :, None] - Sj[:, None, :]) / Nij[None, :, :]
            r = xp.amin(xp.amax(R, axis=1), axis=1)
            out[xp.as_index_like(rows + start, X)] = xp.clip_min(r, 0)
    return out
