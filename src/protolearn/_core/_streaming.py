"""Running sufficient statistics of per-group Gaussians, for ``partial_fit``.

A batch is summarised per group (class) by its count, mean, scatter about the mean
``sum_i r_i r_i^T`` and the two higher moments that Ledoit-Wolf's intensity needs
(``sum_i |r_i|^2 r_i`` and ``sum_i |r_i|^4``).  Two summaries merge exactly by the
pairwise update of Chan, Golub & LeVeque (1979), generalised to those moments, so the
statistics of a stream equal those of all its rows at once (up to rounding) without
keeping any row.  :func:`gaussian_parameters_from_stats` then regularises them in the
order of :func:`protolearn._core._gaussian.estimate_gaussian_parameters` (shrinkage,
pooling, ``reg_covar``), calling the same shrinkage functions.

Everything is float64.  Memory: ``n_groups * d^2`` floats for the scatters.
"""

import numpy as np

from . import _gaussian


def batch_stats(X, y, n_groups):
    """Per-group statistics of one batch ``X`` (n, d) with group indices ``y`` (n,).

    Returns
    -------
    stats : dict with ``n`` (G,), ``mean`` (G, d), ``scatter`` (G, d, d), ``r3``
        (G, d) ``sum |r|^2 r`` and ``r4`` (G,) ``sum |r|^4``, ``r`` the residuals about
        the group mean (zeros for groups absent from the batch).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    d = X.shape[1]
    n = np.bincount(y, minlength=n_groups).astype(np.float64)
    mean = np.zeros((n_groups, d))
    np.add.at(mean, y, X)
    mean /= np.maximum(n, 1)[:, None]
    scatter = np.zeros((n_groups, d, d))
    r3 = np.zeros((n_groups, d))
    r4 = np.zeros(n_groups)
    for g in np.flatnonzero(n):
        R = X[y == g] - mean[g]
        sq = np.einsum("ij,ij->i", R, R)
        scatter[g] = R.T @ R
        r3[g] = sq @ R
        r4[g] = sq @ sq
    return dict(n=n, mean=mean, scatter=scatter, r3=r3, r4=r4)


def merge_stats(a, b):
    """Statistics of the union of two summaries (Chan et al.'s pairwise update).

    With ``n = n_a + n_b`` and ``delta = mean_b - mean_a``, a's residuals shift by
    ``c_a = -(n_b / n) delta`` and b's by ``c_b = (n_a / n) delta``; the moments of
    ``r + c`` follow from those of ``r`` (whose sum is zero).
    """
    if a is None:
        return {k: v.copy() for k, v in b.items()}
    n = a["n"] + b["n"]
    safe = np.maximum(n, 1)
    delta = b["mean"] - a["mean"]
    out = dict(n=n, mean=a["mean"] + delta * (b["n"] / safe)[:, None])
    parts = [
        (a, -(b["n"] / safe)[:, None] * delta),
        (b, (a["n"] / safe)[:, None] * delta),
    ]
    scatter = np.zeros_like(a["scatter"])
    r3 = np.zeros_like(a["r3"])
    r4 = np.zeros_like(a["r4"])
    for s, c in parts:
        cc = np.einsum("gi,gi->g", c, c)
        Sc = np.einsum("gij,gj->gi", s["scatter"], c)
        cSc = np.einsum("gi,gi->g", c, Sc)
        tr = np.einsum("gii->g", s["scatter"])
        scatter += s["scatter"] + s["n"][:, None, None] * c[:, :, None] * c[:, None, :]
        r3 += s["r3"] + tr[:, None] * c + 2 * Sc + (s["n"] * cc)[:, None] * c
        r4 += (
            s["r4"]
            + 4 * np.einsum("gi,gi->g", s["r3"], c)
            + 4 * cSc
            + 2 * cc * tr
            + s["n"] * cc * cc
        )
    out.update(scatter=scatter, r3=r3, r4=r4)
    return out


def ledoit_wolf_from_moments(scatter, r4, n):
    """Ledoit-Wolf intensity of residual rows from their scatter ``R^T R`` (d, d),
    ``sum |r|^4`` and count: :func:`sklearn.covariance.ledoit_wolf_shrinkage` with
    ``assume_centered=True``, term by term (``beta_`` is ``sum |r|^4``)."""
    d = scatter.shape[0]
    if d == 1:
        return 0.0
    if n < 2:
        return 1.0
    emp_cov_trace = np.diag(scatter) / n
    mu = emp_cov_trace.sum() / d
    delta_ = np.sum(scatter**2) / n**2
    beta = 1.0 / (d * n) * (r4 / n - delta_)
    delta = (delta_ - 2.0 * mu * emp_cov_trace.sum() + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def _intensity(shrinkage, scatter, r4, n, n_samples):
    """As ``_gaussian._intensity`` but from moments (``n`` residual rows)."""
    if shrinkage is None:
        return 0.0
    if isinstance(shrinkage, str):
        d = scatter.shape[0]
        if d == 1 or n < 2:
            return 0.0 if d == 1 else 1.0
        if shrinkage == "oas":
            return _gaussian.oas_shrinkage(scatter / n, n_samples)
        return ledoit_wolf_from_moments(scatter, r4, n)
    return float(shrinkage)


def gaussian_parameters_from_stats(
    stats, covariance_type, *, shrinkage=None, pooling=0.0, reg_covar=0.0
):
    """``(nk, means, covariances, intensities)`` from merged statistics: what
    :func:`protolearn._core._gaussian.estimate_gaussian_parameters` returns for the
    one-hot responsibilities of all rows seen."""
    eps = 10 * np.finfo(np.float64).eps
    n, means = stats["n"], stats["mean"]
    nk = n + eps
    scatter, r4 = stats["scatter"], stats["r4"]
    d = means.shape[1]
    N = float(n.sum())
    pooled = pooled_diag = None
    intensity0 = 0.0
    if covariance_type == "tied" or pooling > 0:
        S = scatter.sum(0)
        pooled = S / nk.sum()
        intensity0 = _intensity(shrinkage, S, r4.sum(), N, N)
        pooled = _gaussian.shrink_covariance(pooled, intensity0)
        pooled_diag = np.diag(pooled).copy()
    if covariance_type == "tied":
        cov = pooled.copy()
        cov.flat[:: d + 1] += reg_covar
        return nk, means, cov, np.array([intensity0])
    if covariance_type == "spherical":
        var = np.einsum("gii->g", scatter) / nk / d
        if pooling > 0:
            var = (1 - pooling) * var + pooling * pooled_diag.mean()
        return nk, means, var + reg_covar, np.array([intensity0])
    K = n.size
    intensities = np.array(
        [_intensity(shrinkage, scatter[k], r4[k], n[k], nk[k]) for k in range(K)]
    )
    if covariance_type == "diag":
        var = np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None]
        cov = (1 - intensities[:, None]) * var + intensities[:, None] * var.mean(
            1, keepdims=True
        )
        if pooling > 0:
            cov = (1 - pooling) * cov + pooling * pooled_diag[None, :]
        return nk, means, cov + reg_covar, intensities
    cov = np.empty((K, d, d))
    for k in range(K):
        S = _gaussian.shrink_covariance(scatter[k] / nk[k], intensities[k])
        if pooling > 0:
            S = (1 - pooling) * S + pooling * pooled
        S.flat[:: d + 1] += reg_covar
        cov[k] = S
    return nk, means, cov, intensities


def update_group_stats(stats, groups, X, labels):
    """Merge a batch into per-group statistics whose groups may grow.

    ``stats`` (or None) summarise the sorted labels ``groups``; the batch ``X`` has
    labels ``labels``.  Returns ``(groups, stats)`` over the sorted union of labels.
    """
    new = np.unique(labels) if groups is None else np.union1d(groups, labels)
    batch = batch_stats(X, np.searchsorted(new, labels), new.size)
    if stats is None:
        return new, batch
    prev = {k: np.zeros_like(v) for k, v in batch.items()}
    pos = np.searchsorted(new, groups)
    for k, v in stats.items():
        prev[k][pos] = v
    return new, merge_stats(prev, batch)


def pool_groups(stats):
    """One-group statistics of all the rows of every group."""
    one = None
    for g in np.flatnonzero(stats["n"]):
        one = merge_stats(one, {k: v[g : g + 1] for k, v in stats.items()})
    return one


def reservoir_update(reservoir, n_seen, X, capacity, random_state):
    """A uniform sample of at most `capacity` rows of a stream (Vitter's algorithm R):
    every row seen so far is kept with probability ``capacity / n_seen``; all rows
    while there are at most `capacity`.  Returns the new reservoir."""
    X = np.asarray(X)
    if reservoir is None:
        reservoir = X[:0].copy()
    free = max(capacity - reservoir.shape[0], 0)
    reservoir = np.concatenate([reservoir, X[:free]])
    rest = X[free:]
    if rest.shape[0]:
        rng = np.random.default_rng(random_state)
        t = n_seen + free + np.arange(rest.shape[0])  # 0-based stream positions
        j = (rng.random(rest.shape[0]) * (t + 1)).astype(np.int64)
        keep = j < capacity
        reservoir = reservoir.copy()
        for row, slot in zip(np.flatnonzero(keep), j[keep]):
            reservoir[slot] = rest[row]
    return reservoir
