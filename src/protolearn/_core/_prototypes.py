"""Prototype estimation: class means and (spherical) k-means prototypes per class.

numpy or torch in, same kind out.  k-means++ seeding uses scikit-learn's tested
:func:`sklearn.cluster.kmeans_plusplus` (on a CPU copy of the data, which is cheap at
per-class sizes); the Lloyd iterations run on the input's array kind and device.
"""

import warnings

import numpy as np
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ..utils import _array_api as xp
from ._distances import l2_normalize, nearest


def class_means(X, y, n_classes):
    """Mean of the rows of ``X`` for each class index ``0..n_classes-1`` in ``y``.

    Computed as ``X[y == c].mean(0)`` for each class, the same arithmetic as
    :class:`sklearn.neighbors.NearestCentroid`, so the results agree bit for bit.
    Integer ``X`` gives float64 means.
    """
    X = _as_float(X)
    y = xp.as_index_like(y, X)
    out = xp.empty((n_classes, X.shape[1]), like=X)
    for c in range(n_classes):
        members = X[y == c]
        if members.shape[0] == 0:
            raise ValueError(f"class index {c} has no samples.")
        out[c] = members.mean(0)
    return out


def kmeans(
    X,
    n_clusters,
    *,
    metric="euclidean",
    max_iter=100,
    tol=1e-4,
    random_state=None,
    init=None,
):
    """Lloyd's k-means (``metric="euclidean"``) or spherical k-means (``"cosine"``).

    Spherical k-means works on L2-normalised rows, assigns by cosine similarity and
    re-normalises the centres after each mean update.  Seeding is k-means++
    (:func:`sklearn.cluster.kmeans_plusplus`, drawing from `random_state`) unless
    `init` (an (n_clusters, d) array) is given.  As in scikit-learn, a cluster left
    empty takes the point farthest from its centre, which leaves its own cluster (the
    farthest points go to the empty clusters in order; a cluster so emptied keeps its
    centre for the next assignment); and fewer distinct clusters
    than `n_clusters` in the result (fewer distinct points than `n_clusters`) warns
    ``ConvergenceWarning``, the extra centres duplicating others.

    Parameters
    ----------
    X : (n, d) array or tensor; integers are cast to float64
    n_clusters : int <= n
    metric : "euclidean" or "cosine"
    max_iter : int, most Lloyd iterations (assignment + mean update)
    tol : float, stop once the squared Frobenius shift of the centres is at most
        ``tol`` times the mean per-feature variance of the (normalised) rows, as
        scikit-learn.  Reaching `max_iter` does not warn: the caller compares
        ``n_iter`` with it.
    random_state : int, RandomState instance or None
    init : (n_clusters, d) array, optional

    Returns
    -------
    centers : (n_clusters, d) array, labels : (n,) int array, inertia : float (sum
    of squared distances, or of cosine distances ``1 - cos``), n_iter : int
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine'; got {metric!r}.")
    X = _as_float(X)
    n = X.shape[0]
    if n < n_clusters:
        raise ValueError(f"n_samples={n} should be >= n_clusters={n_clusters}.")
    Xw = l2_normalize(X) if metric == "cosine" else X
    dist_metric = "sqeuclidean" if metric == "euclidean" else "cosine"
    if init is None:
        rng = check_random_state(random_state)
        Xn = xp.to_numpy(Xw)
        # one float64 copy: on float32 data scikit-learn would upcast X block by
        # block for every candidate centre; the seeds are the same rows (the upcast
        # computes in float64 too)
        idx = kmeans_plusplus(
            Xn.astype(np.float64, copy=False), n_clusters, random_state=rng
        )[1]
        centers = Xn[idx]
        centers = xp.asarray_like(centers, X)
    else:
        centers = xp.asarray_like(init, X)
        if metric == "cosine":
            centers = l2_normalize(centers)
    # scikit-learn's convention: tol is relative to the mean per-feature variance.
    Xn_var = xp.to_numpy(Xw).astype(np.float64).var(axis=0).mean()
    abs_tol = tol * Xn_var
    labels = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        labels, dmin = nearest(Xw, centers, dist_metric)
        new = _update_centers(Xw, labels, n_clusters, dmin, centers)
        if metric == "cosine":
            new = l2_normalize(new)
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= abs_tol:
            break
    labels, dmin = nearest(Xw, centers, dist_metric)
    inertia = float(dmin.sum())
    distinct = np.unique(xp.to_numpy(labels)).size
    if distinct < n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({distinct}) found smaller than "
            f"n_clusters ({n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return centers, labels, inertia, n_iter


def component_shares(n_components, counts):
    """Components per class: `n_components` spread evenly over the classes, the
    remainder to the larger classes (`counts` (C,), samples per class) first."""
    C = counts.size
    share = np.full(C, n_components // C, dtype=np.intp)
    order = np.argsort(-counts, kind="stable")
    share[order[: n_components % C]] += 1
    return share


def class_balanced_components(X, y, n_classes, n_components, random_state):
    """`n_components` (K, d) starting components for RBF / CBC: per-class k-means
    centres (k-means++ seeded) in :func:`component_shares`, topped up with random
    rows of ``X`` when a class has fewer samples than its share.

    ``X`` (n, d) numpy or torch, ``y`` (n,) numpy class indices, `random_state` a
    ``RandomState``.  Returns the components (kind of ``X``) and the class index each
    came from (numpy (K,)).
    """
    counts = np.bincount(y, minlength=n_classes)
    share = np.minimum(component_shares(n_components, counts), counts)
    blocks, origin = [], []
    if share.sum():
        sub = np.flatnonzero(share > 0)
        rows = np.flatnonzero(np.isin(y, sub))
        P, lab, _ = class_prototypes(
            X[xp.as_index_like(rows, X)],
            np.searchsorted(sub, y[rows]),
            sub.size,
            share[sub],
            random_state=random_state,
        )
        blocks.append(P)
        origin.append(sub[lab])
    missing = n_components - int(share.sum())
    if missing > 0:
        pick = random_state.choice(X.shape[0], missing, replace=missing > X.shape[0])
        blocks.append(X[xp.as_index_like(pick, X)])
        origin.append(y[pick])
    return xp.concat(blocks), np.concatenate(origin)


def online_kmeans_update(prototypes, counts, X, assign):
    """One online k-means step (MacQueen, 1967) for a batch: every prototype moves to
    the running mean of the samples assigned to it so far,
    ``p <- p + (sum_b - n_b p) / (n + n_b)``.

    Parameters
    ----------
    prototypes : (P, d) numpy array, updated in place
    counts : (P,) int array, samples assigned to each prototype before the batch
    X : (n, d) numpy array, the batch
    assign : (n,) int array, the prototype each batch row is assigned to

    Returns
    -------
    prototypes : (P, d) array, counts : (P,) int array (including the batch)
    """
    add = np.bincount(assign, minlength=prototypes.shape[0])
    new_counts = counts + add
    sums = np.zeros_like(prototypes)
    np.add.at(sums, assign, X)
    hit = add > 0
    step = (sums[hit] - add[hit, None] * prototypes[hit]) / new_counts[hit, None]
    prototypes[hit] += step.astype(prototypes.dtype)
    return prototypes, new_counts


def _as_float(X):
    """`X` itself when floating point, else cast to float64 (as the estimators do)."""
    X = X if xp.is_torch(X) else np.asarray(X)  # lists and other array-likes
    ns = xp.get_namespace(X)
    return X if ns.isdtype(X.dtype, "real floating") else ns.astype(X, ns.float64)


def _update_centers(X, labels, n_clusters, dmin, old_centers):
    labels_np = xp.to_numpy(labels).copy()
    counts = np.bincount(labels_np, minlength=n_clusters)
    centers = xp.empty(tuple(old_centers.shape), like=X)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        # As scikit-learn: the points farthest from their centres move to the empty
        # clusters, leaving the clusters they were in.
        far = np.argsort(-xp.to_numpy(dmin), kind="stable")[: empty.size]
        labels_np[far] = empty
    for k in range(n_clusters):
        members = np.flatnonzero(labels_np == k)
        if members.size:
            centers[k] = X[xp.as_index_like(members, X)].mean(0)
        else:  # its only point moved to an empty cluster: keep the centre
            centers[k] = old_centers[k]
    return centers


def class_prototypes(
    X,
    y,
    n_classes,
    n_prototypes,
    *,
    metric="euclidean",
    random_state=None,
    max_iter=100,
):
    """Prototypes for each class: its mean (one per class) or k-means centres.

    Parameters
    ----------
    X : (n, d) array
    y : (n,) int array of class indices ``0..n_classes-1``
    n_prototypes : sequence of int, one entry per class
    metric : "euclidean" or "mahalanobis" (plain k-means / means) or "cosine"
        (spherical: the rows are L2-normalised first, then the normalised mean, which
        is spherical k-means with one centre, or spherical k-means).

    Returns
    -------
    prototypes : (sum(n_prototypes), d) array, prototype_labels : (P,) int ndarray,
    n_iter : int, the most k-means iterations any class took (1 for plain means)
    """
    rng = check_random_state(random_state)
    y_np = xp.to_numpy(y)
    counts = np.bincount(y_np, minlength=n_classes)
    km_metric = "cosine" if metric == "cosine" else "euclidean"
    blocks, labels, n_iter = [], [], 1
    for c in range(n_classes):
        k = int(n_prototypes[c])
        if counts[c] < k:
            raise ValueError(
                f"class index {c} has {counts[c]} samples, fewer than the "
                f"{k} prototypes requested for it."
            )
        Xc = X[xp.as_index_like(np.flatnonzero(y_np == c), X)]
        if k == 1 and metric == "cosine":
            blocks.append(l2_normalize(l2_normalize(Xc).mean(0)[None, :]))
        elif k == 1:
            blocks.append(Xc.mean(0)[None, :])
        else:
            centers, _, _, it = kmeans(
                Xc, k, metric=km_metric, random_state=rng, max_iter=max_iter
            )
            n_iter = max(n_iter, it)
            blocks.append(centers)
        labels.append(np.full(k, c, dtype=np.intp))
    return xp.concat(blocks), np.concatenate(labels), n_iter


def batched_class_means(Z, onehot):
    """Class means of many tasks at once: ``Z`` (T, n, d), ``onehot`` (T, n, K) ->
    (T, K, d).  Every class must have a member in every task."""
    counts = onehot.sum(1)
    if bool((counts <= 0).any()):
        raise ValueError("every class needs at least one labelled sample in each task.")
    return (onehot.swapaxes(1, 2) @ Z) / counts[:, :, None]


def rectify_prototypes(support, support_onehot, query, prototypes, *, scale=10.0):
    """Prototype rectification of BD-CSPN (Liu, Song, Qin, ECCV 2020), many tasks at once.

    The query set is shifted by ``mean(support) - mean(query)`` (the intra-domain bias),
    each shifted query is pseudo-labelled with its most cosine-similar prototype, and each
    prototype becomes the weighted mean of its support samples and pseudo-labelled
    queries, with weights ``exp(scale * cos(x, m_k))`` normalised over the class
    (LaplacianShot's rectification; the paper uses ``scale=10``).

    Parameters
    ----------
    support : (T, n_s, d), support_onehot : (T, n_s, K), query : (T, n_q, d),
    prototypes : (T, K, d) (the support means), scale : float >= 0

    Returns
    -------
    prototypes : (T, K, d)
    """
    T, nq, d = query.shape
    shifted = query + (support.mean(1) - query.mean(1))[:, None, :]
    from ._batched import batched_l2_normalize

    K = prototypes.shape[1]
    P = batched_l2_normalize(prototypes)

    def cos(A):
        return batched_l2_normalize(A) @ P.swapaxes(1, 2)

    cs, cq = cos(support), cos(shifted)
    q_onehot = xp.one_hot(xp.argmax(cq, axis=2), K, like=cq)
    ws, wq = _rectification_weights(cs, support_onehot, cq, q_onehot, scale)
    norm = ws.sum(1) + wq.sum(1)
    return (ws.swapaxes(1, 2) @ support + wq.swapaxes(1, 2) @ shifted) / norm[
        :, :, None
    ]


def _rectification_weights(cs, support_onehot, cq, q_onehot, scale):
    """Unnormalised weights ``exp(scale * cos)`` of the members of each class.

    Computed as ``exp(scale * (cos - top))``, ``top`` the largest member cosine of the
    class: the same weights once normalised over the class, no overflow, and a weight
    of 1 for the top member at any `scale` (shifting by 1 instead underflows every
    member to 0, and the prototype to 0/0, once ``scale * (1 - cos)`` passes ~100 in
    float32, ~700 in float64).  Non-members get 0.
    """
    # cosines lie in [-1, 1]: non-members pushed below any member by 3
    top = xp.amax(
        xp.concat(
            [
                cs * support_onehot - 3 * (1 - support_onehot),
                cq * q_onehot - 3 * (1 - q_onehot),
            ],
            axis=1,
        ),
        axis=1,
    )[:, None, :]
    ws = support_onehot * xp.exp(-scale * xp.clip_min(top - cs, 0))
    wq = q_onehot * xp.exp(-scale * xp.clip_min(top - cq, 0))
    return ws, wq


def rectify_prototype_weights(gram, support_onehot, *, scale=10.0):
    """:func:`rectify_prototypes` through the Gram matrix of the rows, many tasks at once.

    The rectified prototypes are weighted means of support rows and shifted query rows,
    and the shift ``mean(support) - mean(query)`` is itself a combination of the rows,
    so they are ``M = C^T Z`` for weights ``C`` over the rows ``Z`` (first ``n_s``
    supports, then the queries); every cosine they need comes from ``G = Z Z^T``.
    O(n^2 K) per task instead of O(n K d): no normalised or shifted (T, n, d) rows are
    formed.  Same formula, same results up to rounding.

    Parameters
    ----------
    gram : (T, n, n) Gram matrix ``Z Z^T`` of the support rows then the query rows
    support_onehot : (T, n_s, K), with ``n_s < n``; every class present in every task
    scale : float >= 0

    Returns
    -------
    C : (T, n, K), the rectified prototypes being ``C^T Z``
    """
    T, n, _ = gram.shape
    ns, K = support_onehot.shape[1], support_onehot.shape[2]
    nq = n - ns
    Gs = gram[:, :, :ns]  # (T, n, n_s): every row against the supports
    GM = Gs @ (support_onehot / support_onehot.sum(1)[:, None, :])  # z_i . m_k
    mm = (GM[:, :ns] * support_onehot).sum(1) / support_onehot.sum(1)  # |m_k|^2
    # the shift delta = u^T Z, u = 1/n_s on the supports and -1/n_q on the queries
    Gu = Gs.sum(2) / ns - gram[:, :, ns:].sum(2) / nq  # z_i . delta
    uGu = Gu[:, :ns].sum(1) / ns - Gu[:, ns:].sum(1) / nq  # |delta|^2
    uGM = GM[:, :ns].sum(1) / ns - GM[:, ns:].sum(1) / nq  # delta . m_k
    zz = xp.diagonal(gram)

    def inverse_norm(sq):  # as l2_normalize: zero vectors stay zero
        r = xp.sqrt(xp.clip_min(sq, 0))
        r[r == 0] = 1
        return 1 / r

    inv_m = inverse_norm(mm)[:, None, :]
    cs = GM[:, :ns] * inverse_norm(zz[:, :ns])[:, :, None] * inv_m
    # shifted queries z_q + delta: dots and squared norms from the same Gram entries
    qq = zz[:, ns:] + 2 * Gu[:, ns:] + uGu[:, None]
    cq = (GM[:, ns:] + uGM[:, None, :]) * inverse_norm(qq)[:, :, None] * inv_m
    q_onehot = xp.one_hot(xp.argmax(cq, axis=2), K, like=cq)
    ws, wq = _rectification_weights(cs, support_onehot, cq, q_onehot, scale)
    wq_sum = wq.sum(1)
    norm = ws.sum(1) + wq_sum
    C = xp.concat([ws, wq], axis=1)
    C[:, :ns] += wq_sum[:, None, :] / ns  # each query's share of the shift
    C[:, ns:] -= wq_sum[:, None, :] / nq
    C /= norm[:, None, :]
    return C


def cluster_top_variances(X, labels, n_clusters, *, random_state=None):
    """Largest eigenvalue of each cluster's covariance matrix, (n_clusters,) float64.

    ``lambda_max`` of cluster ``k`` is the variance of its points along their main axis.
    In deterministic annealing (Rose, 1998), soft K-means assignments
    ``softmax(-|x - m|^2 / T)`` keep a cluster's centre from merging with another one
    only while ``T < 2 lambda_max``.  Computed on a CPU float64 copy: from the smaller of
    the two Gram matrices of the centred points when it is at most 512 x 512, else by
    Lanczos iterations (:func:`scipy.sparse.linalg.eigsh` on ``P^T P`` applied as an
    operator, start vector from `random_state`).  Clusters with fewer than two points
    get NaN.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    Xn = xp.to_numpy(X)
    labels = np.asarray(xp.to_numpy(labels))
    rng = check_random_state(random_state)
    out = np.full(n_clusters, np.nan)
    for k in range(n_clusters):
        P = Xn[labels == k].astype(np.float64)
        nk = P.shape[0]
        if nk < 2:
            continue
        P -= P.mean(0)
        if min(P.shape) <= 512:
            G = P @ P.T if nk <= P.shape[1] else P.T @ P
            out[k] = np.linalg.eigvalsh(G)[-1] / nk
            continue
        d = P.shape[1]
        op = LinearOperator((d, d), matvec=lambda v, P=P: P.T @ (P @ v), dtype=P.dtype)
        top = eigsh(op, k=1, which="LA", v0=rng.standard_normal(d), tol=1e-8)[0]
        out[k] = float(top[0]) / nk
    return out
