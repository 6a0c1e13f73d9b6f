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

from ..utils._array_api import (
    as_index_like,
    asarray_like,
    clip_min,
    device,
    get_namespace,
    is_torch,
    to_numpy,
)
from ..utils._sklearn_compat import get_chunk_n_rows
from . import _distances
from ._distances import common_centre, l2_normalize


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
        L = asarray_like(precision_cholesky, W)
        WM = (W @ L) @ L.T  # rows are M w_i
        return 2 * WM, (WM * W).sum(1)
    raise ValueError(f"No certified radius for metric={metric!r}.")


def _centre_for(W, metric):
    """The common centre of the linear forms (see :func:`common_centre`): the
    differences ``s_i - s_j`` are translation-invariant except for the cosine rule."""
    return None if metric == "cosine" else common_centre(W)


def nearest_prototype_index(
    X, prototypes, metric="euclidean", *, precision_cholesky=None, working_memory=None
):
    """Index of the nearest prototype of each row, as ``argmax(A x - c)``, chunked.

    Equivalent to the argmin of the distances (squared euclidean, cosine or tied
    Mahalanobis) but needs one matrix product per chunk and no norms of ``x``.
    """
    xp = get_namespace(X)
    W = asarray_like(prototypes, X)
    m = _centre_for(W, metric)
    A, c = linear_form(W if m is None else W - m, metric,
                       precision_cholesky=precision_cholesky)  # fmt: skip
    if X.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    itemsize = X.dtype.itemsize  # numpy and torch dtypes alike

    def winner(Xc, _):
        S = _distances.chunk_matmul(_distances.chunk_shift(Xc, m), A.T)
        S -= c[None, :]
        return xp.argmax(S, axis=1)

    # per row: the centred copy of the chunk (d) and the scores S (P, twice)
    row_bytes = (2 * max(W.shape[0], 1) + X.shape[1]) * itemsize
    return _distances.map_row_chunks(
        winner, X, row_bytes, working_memory=working_memory
    )


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
    xp = get_namespace(X)
    W = asarray_like(prototypes, X)
    m = _centre_for(W, metric)
    A, c = linear_form(W if m is None else W - m, metric,
                       precision_cholesky=precision_cholesky)  # fmt: skip
    labels = np.asarray(to_numpy(prototype_labels))
    classes = np.unique(labels)
    # Pairwise norms |a_i - a_j| from the Gram matrix of A.
    G = A @ A.T
    g = G.diagonal()
    N = xp.sqrt(clip_min(g[:, None] + g[None, :] - 2 * G, 0))
    n = X.shape[0]
    out = xp.empty((n,), dtype=X.dtype, device=device(X))
    if n == 0:
        return out
    if classes.size < 2:
        out[:] = float("inf")
        return out
    itemsize = X.dtype.itemsize  # numpy and torch dtypes alike
    P = W.shape[0]
    max_per_class = int(np.bincount(np.searchsorted(classes, labels)).max())
    step = get_chunk_n_rows(
        row_bytes=(3 * max_per_class * P + 2 * P + X.shape[1]) * itemsize,
        max_n_rows=n,
        working_memory=working_memory,
    )
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        S = (X[sl] if m is None else X[sl] - m) @ A.T - c[None, :]
        winner = to_numpy(xp.argmax(S, axis=1))
        pred = labels[winner]
        for cls in np.unique(pred):
            rows = np.flatnonzero(pred == cls)
            own = np.flatnonzero(labels == cls)
            other = np.flatnonzero(labels != cls)
            r_idx = as_index_like(rows, X)
            o_idx = as_index_like(own, X)
            t_idx = as_index_like(other, X)
            Sr = S[r_idx]
            Si = xp.take(Sr, o_idx, axis=1)  # (m, p_c)
            Sj = xp.take(Sr, t_idx, axis=1)  # (m, P - p_c)
            Nij = xp.take(xp.take(N, o_idx, axis=0), t_idx, axis=1)  # (p_c, P - p_c)
            R = (Si[:, :, None] - Sj[:, None, :]) / Nij[None, :, :]
            r = xp.min(xp.max(R, axis=1), axis=1)
            out[as_index_like(rows + start, X)] = clip_min(r, 0)
    return out


def median_half_gap(X, y, *, max_rows=500, random_state):
    """Median over (at most `max_rows`, drawn from `random_state`) rows of half the
    euclidean distance from the row to the nearest row of ``X`` of another class
    (1.0 when no row has one).

    The largest radius any classifier that is correct on ``X`` could certify at
    those rows: the robust loss's default target.  ``X`` (n, d) a torch tensor (the
    training path; torch's median is the lower one of an even count), ``y`` (n,)
    numpy labels, `random_state` a ``RandomState``.
    """
    n = y.shape[0]
    rows = random_state.choice(n, min(n, max_rows), replace=False)
    D = _distances.pairwise_distances(X[as_index_like(rows, X)], X, "sqeuclidean")
    same = as_index_like((y[rows][:, None] == y[None, :]), X).bool()
    D = D.masked_fill(same, float("inf"))
    half = D.amin(1).sqrt() / 2
    half = half[half.isfinite()]
    return float(half.median()) if half.numel() else 1.0


# ---------------------------------------------------------------------------------
# RBF / CBC: the certificate of Saralajew, Rana, Villmann & Shaker (2024), Theorem 1.
#
# With effective reasoning (see _reasoning.effective_reasoning) the class probability
# is p_c(x) = sum_k r+_ck d_k + r-_ck (1 - d_k).  If the distance inside the detection
# d_k = exp(-dist_k / sigma) is a metric, a perturbation of norm eps changes each dist_k
# by at most eps, so every detection stays within [d_k / t, d_k t], t = exp(eps / sigma).
# Then p_y >= P_y / t + N_y - t Q_y and p_c <= t P_c + N_c - Q_c / t, with
# P = D r+^T, Q = D r-^T, N = sum_k r-; class c can only beat y once
#     t^2 (P_c + Q_y) + t (N_c - N_y) - (Q_c + P_y) >= 0,
# i.e. t >= t*_c, the positive root.  Hence no perturbation with
#     ||delta|| < sigma * min_{c != y} log t*_c
# changes the prediction y.  (Positive reasoning only -- an RBF network with
# normalised non-negative class weights -- gives t* = sqrt(P_y / P_c).)  For the
# squared distance ("gaussian" detection) the same argument bounds the change of
# |x - w_k|^2 by Delta = sigma log t*; since | |x+delta-w|^2 - |x-w|^2 | <= 2 r eps +
# eps^2 with r = max_k |x - w_k|, the L2 radius is sqrt(r^2 + Delta) - r.
# ---------------------------------------------------------------------------------


def _overtake_quadratic(P, Q, N, target):
    """``(a, b, c, own)`` of ``a t^2 + b t - c`` for every class against `target`
    (see the comment above): ``a = P_c + Q_y``, ``b = N_c - N_y``, ``c = Q_c + P_y``
    (n, C), and the (n, C) mask of the target class itself."""
    xp = get_namespace(P)
    y = as_index_like(target, P)
    Py = xp.take_along_axis(P, y[:, None], axis=1)
    Qy = xp.take_along_axis(Q, y[:, None], axis=1)
    Ny = xp.take(N, y)[:, None]
    classes = xp.arange(P.shape[1], device=device(P))
    own = y[:, None] == classes[None, :]
    return P + Qy, N[None, :] - Ny, Q + Py, own


def reasoning_log_margin(D, positive, negative, target, *, smooth=0.0, log_scale=None):
    """``min_{c != target} log t*_c`` (n,): the certified log-detection margin.

    Parameters
    ----------
    D : (n, K) detections in (0, 1]
    positive, negative : (C, K) reasoning (any normalisation; `negative` None for
        positive reasoning only)
    target : (n,) int class indices (the prediction for a certificate, the true
        label for the robust loss); negative where ``target`` is not the argmax.
    smooth : float >= 0
        Added under the square root (a smaller, still sound value; keeps gradients
        finite during training).
    log_scale : (n,) array or None
        When given, ``D`` holds the detections divided by ``exp(log_scale)`` row by
        row (e.g. scaled by the row's largest detection) and the root is computed in
        log space: far from every component the unscaled detections underflow to 0,
        and the quadratic (whose ``a``, ``c`` are linear in the detections but ``b`` is
        not) would give ``t* = inf``.  Not differentiable where ``b = 0``; the
        training loss uses the unscaled path.

    Returns
    -------
    log_t : (n,) array of the same kind as D; +inf when no class can overtake.
    """
    from ._reasoning import effective_reasoning

    if negative is None:
        negative = positive * 0
    pos, neg = effective_reasoning(positive, negative)
    P = D @ pos.T
    Q = D @ neg.T
    N = neg.sum(1)
    if log_scale is not None:
        return _scaled_log_margin(P, Q, N, target, log_scale, smooth)
    xp = get_namespace(D)
    a, b, c, own = _overtake_quadratic(P, Q, N, target)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = xp.sqrt(b * b + 4 * a * c + smooth)
        # The positive root in the form without cancellation: 2c / (b + s) for
        # b >= 0, (s - b) / (2a) for b < 0.
        if is_torch(D):  # differentiable (the robust loss): clamped, no inf
            t = xp.where(
                b >= 0,
                2 * c / (b + s).clamp(min=1e-30),
                (s - b) / (2 * a).clamp(min=1e-30),
            )
            log_t = t.clamp(min=1e-30).log()
        else:  # exact: a = 0 with b < 0 means no class can overtake (inf)
            t_pos = 2 * c / np.where(b + s > 0, b + s, np.inf)
            t_neg = np.where(a > 0, (s - b) / np.where(a > 0, 2 * a, 1), np.inf)
            log_t = np.log(np.maximum(np.where(b >= 0, t_pos, t_neg), 1e-300))
    return xp.min(xp.where(own, float("inf"), log_t), axis=1)


def _scaled_log_margin(P, Q, N, target, log_scale, smooth):
    """The log of the positive root of ``a t^2 + b t - c`` with ``a = e^m a'``,
    ``c = e^m c'`` (``a'``, ``c'`` from the scaled detections, ``m = log_scale``),
    in log space: with ``s = sqrt(b^2 + 4 a c)``, ``log t = log 2 + log c -
    log(|b| + s)`` for ``b >= 0`` and ``log(|b| + s) - log 2 - log a`` for ``b < 0``
    (both sums of non-negative terms: no cancellation, no underflow)."""
    xp = get_namespace(P)
    a, b, c, own = _overtake_quadratic(P, Q, N, target)
    m = xp.asarray(log_scale)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a, log_c, log_b = xp.log(a) + m, xp.log(c) + m, xp.log(xp.abs(b))
        q = xp.logaddexp(2 * log_b, np.log(4.0) + log_a + log_c)
        if smooth:
            q = xp.logaddexp(
                q,
                xp.log(
                    xp.full(q.shape, float(smooth), dtype=q.dtype, device=device(q))
                ),
            )
        log_sum = xp.logaddexp(log_b, q / 2)  # log(|b| + s)
        log_t = xp.where(
            b >= 0, np.log(2.0) + log_c - log_sum, log_sum - np.log(2.0) - log_a
        )
        # a = c = b = 0 (degenerate reasoning: the two classes tie everywhere): nan
        floor = float(np.log(1e-300))
        log_t = xp.where(xp.isnan(log_t), floor, xp.maximum(log_t, floor))
    return xp.min(xp.where(own, float("inf"), log_t), axis=1)


def log_margin_to_radius(log_t, sigma, detection, max_distance=None):
    """Input-space L2 radius from a log-detection margin (signed: negative stays
    negative).  ``max_distance`` (n,): ``max_k |x - w_k|``, needed for "gaussian"."""
    delta = sigma * log_t
    if detection == "exponential":
        return delta
    xp = get_namespace(delta)
    r = max_distance
    eps = xp.sqrt(r * r + xp.abs(delta)) - r
    return xp.sign(delta) * eps


def reasoning_radius(
    X,
    components,
    sigma,
    positive,
    negative=None,
    *,
    detection="exponential",
    target=None,
):
    """Certified L2 radius of the RBF / CBC decision at each row of ``X``.

    No perturbation with a smaller L2 norm changes the predicted class (Saralajew et
    al., 2024, Theorem 1; see the comment above).  With `target` (class indices), the
    signed radius of that class instead: negative where another class scores higher.

    Parameters
    ----------
    X : (n, d) array (numpy or torch)
    components : (K, d)
    sigma : float > 0, the detection temperature
    positive, negative : (C, K) reasoning (`negative` None: RBF class weights)
    detection : "exponential" (euclidean distance) or "gaussian" (squared)
    target : (n,) int array or None (the argmax of the class probabilities)

    Returns
    -------
    radius : (n,) array of the same kind as X.
    """
    from ._reasoning import component_distances, log_class_probabilities

    W = asarray_like(components, X)
    pos = asarray_like(positive, X)
    neg = None if negative is None else asarray_like(negative, X)

    def radius(Xc, rows):
        xp = get_namespace(Xc)
        tgt = None if target is None else target[rows]
        dist = component_distances(Xc, W, detection)
        log_d = -dist / sigma
        # Each row is scaled by its largest detection and the root solved in log
        # space, which stays sound where the detections underflow far from every
        # component.
        m = xp.max(log_d, axis=1)
        D = xp.exp(log_d - m[:, None])
        if tgt is None:  # predict's class (log-space class probabilities)
            tgt = xp.argmax(log_class_probabilities(dist, sigma, pos, neg), axis=1)
        log_t = reasoning_log_margin(D, pos, neg, tgt, log_scale=m)
        r = None
        if detection == "gaussian":
            r = xp.sqrt(xp.max(dist, axis=1))
        out = log_margin_to_radius(log_t, sigma, detection, r)
        return get_namespace(Xc).asarray(out, dtype=Xc.dtype)

    # row chunks: the margin takes ~16 (rows, C) and the detections ~6 (rows, K)
    # temporaries (float64 at worst)
    C, K = pos.shape
    return _distances.map_row_chunks(radius, X, (16 * C + 6 * K + X.shape[1]) * 8)
