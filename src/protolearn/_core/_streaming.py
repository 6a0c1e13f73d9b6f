"""Running sufficient statistics for ``partial_fit``: per-group Gaussians and per-class
von Mises-Fisher mixtures (incremental EM, :func:`update_vmf_mixtures`).

A batch is summarised per group (class) by its count, mean and scatter about the mean
``S2 = sum_i r_i r_i^T``, and, when Ledoit-Wolf shrinkage needs them
(``fourth=True``), the third and fourth cross-moments ``T3 = sum_i (r_i∘r_i) r_i^T``
and ``M4 = sum_i (r_i∘r_i)(r_i∘r_i)^T`` (``r_i`` the residuals about the group mean,
``∘`` the elementwise product).  Two summaries merge exactly by pairwise updates
(Chan, Golub & LeVeque, 1979, for the scatter; Pébay, 2008, for the higher moments;
see :func:`merge_stats`): every moment stays centred on its own group's mean, so no
large raw moment is ever subtracted from another and rows far from the origin lose
no digits.  The statistics of a stream equal those of all its rows at once (up to
rounding) without keeping any row.  :func:`gaussian_parameters_from_stats` then
regularises them with the per-type covariance estimators of
:func:`protolearn._core._covariance.estimate_gaussian_parameters` (which read the
statistics through :class:`_MomentStats`; Ledoit-Wolf is given the moments ``S2`` and
``M4`` instead of the residuals).

Everything is float64.  Memory: ``n_groups * d^2`` floats for the scatters, three
times that with the higher moments.
"""

import numpy as np

from . import _covariance, _mixture


def batch_stats(X, y, n_groups, *, fourth=False):
    """Per-group statistics of one batch ``X`` (n, d) with group indices ``y`` (n,).

    Returns
    -------
    stats : dict with ``n`` (G,), ``mean`` (G, d), ``scatter`` (G, d, d) and, with
        ``fourth=True``, ``t3`` (G, d, d) ``sum (r∘r) r^T`` and ``m4`` (G, d, d)
        ``sum (r∘r)(r∘r)^T``, ``r`` the residuals about the group mean (zeros for
        groups absent from the batch).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    d = X.shape[1]
    n = np.bincount(y, minlength=n_groups).astype(np.float64)
    mean = np.zeros((n_groups, d))
    np.add.at(mean, y, X)
    mean /= np.maximum(n, 1)[:, None]
    out = dict(n=n, mean=mean, scatter=np.zeros((n_groups, d, d)))
    if fourth:
        out.update(t3=np.zeros((n_groups, d, d)), m4=np.zeros((n_groups, d, d)))
    for g in np.flatnonzero(n):
        R = X[y == g] - mean[g]
        out["scatter"][g] = R.T @ R
        if fourth:
            Q = R * R
            out["t3"][g] = Q.T @ R
            out["m4"][g] = Q.T @ Q
    return out


def merge_stats(a, b):
    """Statistics of the union of two summaries (pairwise update).

    With ``n = n_a + n_b`` and ``delta = mean_b - mean_a``, a's residuals shift by
    ``c = -(n_b / n) delta`` and b's by ``c = (n_a / n) delta``; the moments of
    ``r + c`` follow from those of ``r`` (whose sum is zero), with ``D = diag(S2)``
    and ``cc = c∘c``:

    - ``S2' = S2 + n c c^T``
    - ``T3'[j, k] = T3[j, k] + D_j c_k + 2 c_j S2[j, k] + n c_j^2 c_k``
    - ``M4' = M4 + 2 T3 diag(c) + 2 diag(c) T3^T + D cc^T + cc D^T + 4 S2∘(c c^T)
      + n cc cc^T``

    and the union's moments are the sums of the two shifted summaries'.
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
    fourth = "m4" in a
    for k in ("scatter", "t3", "m4") if fourth else ("scatter",):
        out[k] = np.zeros_like(a[k])
    for s, c in parts:
        S2, m = s["scatter"], s["n"][:, None, None]
        ccT = c[:, :, None] * c[:, None, :]
        out["scatter"] += S2 + m * ccT
        if not fourth:
            continue
        D = np.diagonal(S2, axis1=1, axis2=2)
        cc = c * c
        T3c = s["t3"] * c[:, None, :]
        out["t3"] += (
            s["t3"]
            + D[:, :, None] * c[:, None, :]
            + 2 * c[:, :, None] * S2
            + m * cc[:, :, None] * c[:, None, :]
        )
        Dcc = D[:, :, None] * cc[:, None, :]
        out["m4"] += (
            s["m4"]
            + 2 * (T3c + T3c.transpose(0, 2, 1))
            + Dcc
            + Dcc.transpose(0, 2, 1)
            + 4 * S2 * ccT
            + m * cc[:, :, None] * cc[:, None, :]
        )
    return out


def _moments(fourth, n_rows, n_k, shrinkage):
    """``moments=`` for :func:`_covariance.standardized_shrinkage`: the fourth moments of
    the residual rows rescaled as ``estimate_gaussian_parameters`` rescales the rows
    (``_as_samples``: by ``sqrt(n_rows / n_k)``, so their scatter over ``n_rows`` is the
    covariance), or None where the rule does not need them."""
    if shrinkage not in _covariance.LEDOIT_WOLF_RULES:
        return None
    if fourth is None:
        raise ValueError(
            f"shrinkage={shrinkage!r} needs the fourth moments, which this stream did "
            "not keep (shrinkage was changed between partial_fit calls?); start a new "
            "stream (a fresh estimator) or use fit."
        )
    return n_rows, fourth * (n_rows / n_k) ** 2


class _MomentStats:
    """What the covariance estimators of :mod:`protolearn._core._covariance` read
    (:class:`~protolearn._core._covariance._ResidualStats` lists it), from merged
    statistics instead of residual rows."""

    def __init__(self, stats):
        self.n, self.scatter, self.m4 = stats["n"], stats["scatter"], stats.get("m4")
        self.nk = self.n + 10 * np.finfo(np.float64).eps
        self.n_features = self.scatter.shape[1]

    def pooled(self, shrinkage):
        m4, nk, n_rows = self.m4, self.nk, float(self.n.sum())
        fourth = None if m4 is None else m4.sum(0)
        return _covariance.standardized_shrinkage(
            self.scatter.sum(0) / nk.sum(),
            n_rows,
            shrinkage,
            moments=_moments(fourth, n_rows, nk.sum(), shrinkage),
        )

    def component(self, k, shrinkage):
        m4, nk = self.m4, self.nk
        return _covariance.standardized_shrinkage(
            self.scatter[k] / nk[k],
            nk[k],
            shrinkage,
            moments=_moments(
                None if m4 is None else m4[k], self.n[k], nk[k], shrinkage
            ),
        )

    def variances(self, k):
        return np.diag(self.scatter[k] / self.nk[k]).copy()

    def mean_variances(self):
        return np.einsum("gii->g", self.scatter) / self.nk / self.n_features


def gaussian_parameters_from_stats(
    stats, covariance_type, *, shrinkage=None, pooling=0.0, reg_covar=0.0
):
    """``(nk, means, covariances, intensities)`` from merged statistics: what
    :func:`protolearn._core._covariance.estimate_gaussian_parameters` returns for the
    one-hot responsibilities of all rows seen (the same regularisation, in the same
    order, by the same per-type estimators)."""
    moments = _MomentStats(stats)
    cov, intensities = _covariance.estimate_gaussian_covariances(
        moments,
        covariance_type,
        shrinkage=shrinkage,
        pooling=pooling,
        reg_covar=reg_covar,
    )
    return moments.nk, stats["mean"], cov, intensities


def update_group_stats(stats, groups, X, labels, *, fourth=False):
    """Merge a batch into per-group statistics whose groups may grow.

    ``stats`` (or None) summarise the sorted labels ``groups``; the batch ``X`` has
    labels ``labels``.  ``fourth``: keep the third and fourth cross-moments (for
    Ledoit-Wolf); a stream keeps them if its first batch did.  Returns
    ``(groups, stats)`` over the sorted union of labels.
    """
    if stats is not None:
        fourth = "m4" in stats
    new = np.unique(labels) if groups is None else np.union1d(groups, labels)
    batch = batch_stats(X, np.searchsorted(new, labels), new.size, fourth=fourth)
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


def update_vmf_mixtures(
    state,
    X,
    y,
    *,
    kappa=None,
    top_k=None,
    balance=False,
    epsilon=0.05,
    sinkhorn_iter=3,
):
    """One step of incremental EM (Neal & Hinton, 1998) for per-class vMF mixtures.

    The batch's responsibilities under the current parameters (the E-step of
    :func:`~._mixture.fit_vmf_mixtures`, Sinkhorn-balanced with `balance` as PALM
    assigns) are added to running sufficient statistics (per component: the resultant
    ``sum r x``, ``sum r`` and ``sum r^2``; per class: the count); the M-step then
    uses the totals, so each mean is the normalised resultant of every row seen so
    far, weighted by the responsibilities it got when it arrived.

    Parameters
    ----------
    state : dict with ``means`` (C, K, d) unit-norm, ``weights`` (C, K) summing to
        one per class, ``kappa`` (C, K), and the statistics ``resultant`` (C, K, d),
        ``mass`` (C, K), ``mass_sq`` (C, K), ``counts`` (C,) float64; updated in place.
    X : (n, d) numpy array, L2-normalised rows.
    y : (n,) int array of class indices into the state's classes.
    kappa : float or None
        Fixed concentration (None: estimated from the totals, as in fit).

    Returns
    -------
    state : the same dict.
    """
    C, K, d = state["means"].shape
    top_k = K if top_k is None else min(int(top_k), K)
    options = dict(
        top_k=top_k, balance=balance, epsilon=epsilon, sinkhorn_iter=sinkhorn_iter
    )
    counts = np.bincount(y, minlength=C)
    M, kap = state["means"], state["kappa"]
    present = np.flatnonzero(counts)
    for grp in _mixture._buckets(counts[present], int(counts.max())):
        b = _mixture._Bucket(X, y, present[grp])
        idx, R, _ = _mixture._bucket_e_step(
            b, M, state["weights"], _mixture.vmf_log_normalizer(d, kap[b.classes]), kap,
            X.dtype, options,
        )  # fmt: skip
        M_b, _, res_sq, mass, mass_sq = _mixture._m_step(b, idx, R, M[b.classes])
        state["resultant"][b.classes] += M_b * np.sqrt(res_sq)[..., None]
        state["mass"][b.classes] += mass
        state["mass_sq"][b.classes] += mass_sq
        state["counts"][b.classes] += b.counts
    res = state["resultant"]
    norms = np.linalg.norm(res, axis=-1)
    alive = (state["mass"] > 0) & (norms > 0)
    state["means"] = np.where(
        alive[..., None], res / np.where(norms > 0, norms, 1)[..., None], M
    ).astype(M.dtype)
    seen = state["counts"] > 0
    state["weights"][seen] = state["mass"][seen] / state["counts"][seen, None]
    if kappa is None:
        new = _mixture.estimate_concentration(
            norms**2, state["mass"], state["mass_sq"], d
        )
        state["kappa"] = np.where(state["mass"] > 0, new, kap)
    return state


def stream_vmf_mixtures(
    state,
    classes,
    X,
    labels,
    n_components,
    *,
    init="k-means++",
    max_iter=100,
    tol=1e-3,
    random_state=None,
    **options,
):
    """Per-class vMF mixtures of a stream, after one more batch.

    Classes first seen in the batch are fitted on their rows by
    :func:`~._mixture.fit_vmf_mixtures` (which needs `n_components` rows of each);
    then the whole batch updates every class by :func:`update_vmf_mixtures` (incremental EM).

    Parameters
    ----------
    state : dict or None
        The statistics of :func:`update_vmf_mixtures` over the sorted labels
        `classes`; None (and `classes` None) for the first batch.
    classes : ndarray or None
    X : (n, d) numpy array, L2-normalised rows.
    labels : (n,) array of class labels.
    n_components : int, components per class.
    init, max_iter, tol, random_state : as :func:`~._mixture.fit_vmf_mixtures`, for
        new classes.
    **options : ``kappa``, ``top_k``, ``balance``, ``epsilon``, ``sinkhorn_iter``, as
        :func:`~._mixture.fit_vmf_mixtures`.

    Returns
    -------
    state : dict, classes : ndarray
        Over the sorted union of `classes` and `labels`.
    """
    K = n_components
    new = np.unique(labels) if classes is None else np.union1d(classes, labels)
    C, d = new.size, X.shape[1]
    grown = {
        "means": np.zeros((C, K, d), dtype=X.dtype),
        "weights": np.full((C, K), 1.0 / K),
        "kappa": np.full((C, K), float(d)),
        "resultant": np.zeros((C, K, d)),
        "mass": np.zeros((C, K)),
        "mass_sq": np.zeros((C, K)),
        "counts": np.zeros(C),
    }
    if state is not None:
        pos = np.searchsorted(new, classes)
        for k, v in state.items():
            grown[k][pos] = v
    state = grown
    y = np.searchsorted(new, labels)
    fresh = np.setdiff1d(np.arange(C), np.flatnonzero(state["counts"] > 0))
    if fresh.size:  # classes first seen here: fitted on their rows, as in fit
        rows = np.isin(y, fresh)
        sub = np.searchsorted(fresh, y[rows])
        cnt = np.bincount(sub, minlength=fresh.size)
        if cnt.min() < K:
            raise ValueError(
                f"A class's first batch needs at least n_prototypes={K} samples; "
                f"class(es) {new[fresh[cnt < K]].tolist()} have fewer. Lower "
                "n_prototypes or pass larger batches."
            )
        res = _mixture.fit_vmf_mixtures(
            X[rows], sub, fresh.size, K, init=init, max_iter=max_iter, tol=tol,
            random_state=random_state, **options,
        )  # fmt: skip
        state["means"][fresh] = res.means.reshape(fresh.size, K, d)
        share = res.weights.reshape(fresh.size, K)
        state["weights"][fresh] = share / share.sum(1, keepdims=True)
        state["kappa"][fresh] = res.concentrations.reshape(fresh.size, K)
    update_vmf_mixtures(state, X, y, **options)
    return state, new
