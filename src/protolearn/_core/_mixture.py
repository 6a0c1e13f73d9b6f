"""von Mises-Fisher mixtures on the unit sphere, fitted by (truncated) EM.

A mixture of von Mises-Fisher (vMF) components with unit means ``mu_j``, weights
``w_j`` and concentrations ``kappa_j`` has the log-density

    log p(x) = logsumexp_j (log w_j + log C_d(kappa_j) + kappa_j mu_j . x),   |x| = 1,

with ``C_d`` the vMF normalising constant.  The fit follows PALM (Lu et al., ICLR 2024)
made batch: each sample is softly assigned to the ``top_k`` closest prototypes of its own
class (optionally balanced across prototypes by a few Sinkhorn iterations, as in PALM's
official code), and each prototype becomes the normalised weighted mean of its samples -
the exact EM M-step for the means (PALM's exponential moving average is the stochastic
version of this update).  Concentrations are either held fixed (PALM's temperature,
``kappa = 1 / temperature``) or re-estimated per component in each M-step with the
approximation of Banerjee et al. (2005), ``kappa = r (d - r^2) / (1 - r^2)`` for mean
resultant length ``r``, computed from a small-sample-bias-corrected ``r^2``.

With a fixed concentration and without balancing this is truncated EM (Lucke & Eggert,
2010): the objective

    L = sum_i log sum_{j in top_k(i)} w_j C_d(kappa_j) exp(kappa_j mu_j . x_i)

(the full log-likelihood when ``top_k`` covers every component, a lower bound of it
otherwise) never decreases from one iteration to the next.  Sinkhorn balancing and the
approximate concentration update trade that guarantee for assignments that use every
prototype and for concentrations fitted to the data.

Classes are fitted together, in buckets of classes padded to a common size, so one
batched matrix product serves many classes.
"""

import numpy as np
from scipy import sparse, special
from sklearn.utils import Bunch, check_random_state

from ..utils import _array_api as xp
from ..utils._sklearn_compat import get_chunk_n_rows
from ._distances import chunk_affine_rows, chunk_matmul, l2_normalize, map_row_chunks
from ._prototypes import kmeans

# ----------------------------------------------------------------------- density


def _log_bessel_iv_uniform(nu, x):
    """``log I_nu(x)`` by Debye's uniform asymptotic expansion (nu large, any x > 0).

    Abramowitz & Stegun 9.7.7 with the first two correction terms; relative error of
    ``I_nu`` below 1e-6 for ``nu >= 20``.
    """
    z = x / nu
    s = np.sqrt(1.0 + z * z)
    t = 1.0 / s
    eta = s + np.log(z / (1.0 + s))
    u1 = (3.0 * t - 5.0 * t**3) / 24.0
    u2 = (81.0 * t**2 - 462.0 * t**4 + 385.0 * t**6) / 1152.0
    return (
        -0.5 * np.log(2.0 * np.pi * nu)
        + nu * eta
        - 0.5 * np.log(s)
        + np.log1p(u1 / nu + u2 / nu**2)
    )


def log_bessel_iv(nu, x):
    """``log I_nu(x)`` for ``x > 0`` (scalar or array), finite where ``I_nu`` under/overflows.

    Uses :func:`scipy.special.ive` (``I_nu(x) e^{-x}``) where it is a normal float and
    the uniform asymptotic expansion elsewhere (large ``nu`` relative to ``x``).
    """
    x = np.asarray(x, dtype=np.float64)
    if np.any(x <= 0):
        raise ValueError(f"x must be > 0; got {x.min()}.")
    v = special.ive(float(nu), x)
    ok = np.isfinite(v) & (v > 1e-290)
    with np.errstate(divide="ignore"):
        direct = np.log(np.where(ok, v, 1.0)) + x
    out = np.where(ok, direct, _log_bessel_iv_uniform(max(float(nu), 1e-12), x))
    return float(out) if out.ndim == 0 else out


def vmf_log_normalizer(n_features, kappa):
    """``log C_d(kappa)`` of the von Mises-Fisher density on the sphere in ``R^d``.

    ``C_d(kappa) = kappa^{d/2-1} / ((2 pi)^{d/2} I_{d/2-1}(kappa))``, so that
    ``C_d(kappa) exp(kappa mu.x)`` integrates to one over the unit sphere.  `kappa` may
    be a scalar or an array (one value per component).
    """
    d = int(n_features)
    kappa = np.asarray(kappa, dtype=np.float64)
    if np.any(kappa <= 0):
        raise ValueError(f"kappa must be > 0; got {kappa.min()}.")
    nu = d / 2.0 - 1.0
    out = nu * np.log(kappa) - (d / 2.0) * np.log(2 * np.pi) - log_bessel_iv(nu, kappa)
    return float(out) if np.ndim(out) == 0 else out


def estimate_concentration(resultant_sq, mass, mass_sq, n_features):
    """vMF concentration from weighted sufficient statistics (Banerjee et al., 2005).

    ``r^2`` is estimated without the small-sample bias of the resultant: for weights
    ``a_i`` and unit vectors ``x_i``, ``|sum a_i x_i|^2 = sum a_i^2 + sum_{i != k}
    a_i a_k x_i.x_k``, so ``r^2 = (|R|^2 - sum a_i^2) / ((sum a_i)^2 - sum a_i^2)``
    (the plain ``|R|^2 / (sum a_i)^2`` overstates the concentration of small
    components).  Then ``kappa = r (d - r^2) / (1 - r^2)``, clipped to
    ``r`` in [1e-3, 1 - 1e-4].

    Parameters
    ----------
    resultant_sq, mass, mass_sq : arrays of the same shape
        ``|sum_i a_i x_i|^2``, ``sum_i a_i`` and ``sum_i a_i^2`` per component.
    n_features : int

    Returns
    -------
    kappa : array of the same shape.
    """
    d = float(n_features)
    den = mass * mass - mass_sq
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(den > 0, (resultant_sq - mass_sq) / den, 0.0)
    r = np.sqrt(np.clip(r2, 1e-6, (1 - 1e-4) ** 2))
    return r * (d - r * r) / (1 - r * r)


def _at_least_single(X):
    """``X`` in float32 when it is float16 / bfloat16 (numpy or torch), else as is."""
    ns = xp.get_namespace(X)
    if ns.isdtype(X.dtype, "real floating") and X.dtype.itemsize < 4:
        return ns.astype(X, ns.float32)
    return X


def vmf_mixture_log_density(
    X, means, log_weights, kappa, *, log_normalizer=None, working_memory=None
):
    """Log-density of a vMF mixture at the L2-normalised rows of ``X``, chunked.

    Parameters
    ----------
    X : (n, d) array or tensor; rows are L2-normalised here (float16 / bfloat16 are
        computed in float32: ``kappa * mu`` and ``log C_d(kappa)`` overflow or lose all
        precision in half precision).
    means : (m, d) unit-norm component means.
    log_weights : (m,) log mixing weights (``-inf`` for an empty component).
    kappa : float or (m,) array, concentrations.
    log_normalizer : float or (m,) array, default=None
        ``log C_d(kappa)``; computed when None.
    working_memory : int, default=None
        MiB for temporaries (scikit-learn's ``working_memory`` when None).

    Returns
    -------
    log_density : (n,) array or tensor like ``X`` (float32 for half-precision ``X``).
    """
    X = _at_least_single(X)
    m = means.shape[0]
    if log_normalizer is None:
        log_normalizer = vmf_log_normalizer(X.shape[1], kappa)
    kappa = np.broadcast_to(np.asarray(kappa, dtype=np.float64), (m,))
    offset = np.asarray(log_weights, dtype=np.float64) + log_normalizer
    # fold kappa into the means: kappa_j mu_j . x = (kappa_j mu_j) . x
    M = xp.asarray_like(np.asarray(means) * kappa[:, None], X)
    c = xp.asarray_like(np.array(np.broadcast_to(offset, (m,))), X)
    itemsize = X.dtype.itemsize  # numpy and torch dtypes alike
    if not xp.is_torch(X):  # the offsets ride in the product (a row of ones' weights)
        MA = np.vstack([M.T, c[None, :]])

    def chunk(Xc, _):
        if xp.is_torch(Xc):
            logits = l2_normalize(Xc) @ M.T
            logits += c[None, :]
        else:
            logits = chunk_matmul(chunk_affine_rows(Xc, normalize=True), MA)
        return xp.logsumexp(logits, axis=1, overwrite_input=True)

    # a chunk holds its (rows, m) logits and its normalised (rows, d) copy of X,
    # as budgeted by _row_chunks
    row_bytes = 4 * max(m, X.shape[1], 1) * itemsize
    if X.shape[0] == 0:
        return xp.empty((0,), like=X)
    return map_row_chunks(chunk, X, row_bytes, working_memory=working_memory)


# ------------------------------------------------------------------ assignments


def sinkhorn(scores, epsilon, n_iter=3, row_mask=None):
    """Balanced soft assignments of rows to columns (Cuturi, 2013; SwAV; PALM).

    For each leading batch index, ``Q = exp(scores / epsilon)`` is scaled alternately so
    that every column (prototype) gets the same total mass and every row (sample) mass
    one; after ``n_iter`` rounds the rows sum to one, as in PALM's official code.  The
    first round runs on ``log Q`` (log-sum-exp normalisations), so no row or column
    underflows to zero however small `epsilon` is; after it every column holds an
    entry of at least ``1 / (n K)`` and every row one of at least ``1 / K``, and the
    remaining rounds divide by sums bounded away from zero.

    Parameters
    ----------
    scores : (..., n, K) array (similarities).
    epsilon : float > 0, entropic regularisation (smaller = harder assignments).
    n_iter : int, rounds of column then row normalisation.
    row_mask : (..., n) bool array, default=None
        Rows that take part (padding rows are False and get all-zero assignments).

    Returns
    -------
    Q : (..., n, K) array, each valid row summing to one.
    """
    L = scores / epsilon
    if row_mask is not None:
        L = np.where(row_mask[..., None], L, -np.inf).astype(L.dtype, copy=False)
    if n_iter < 1:
        L -= _finite_or_zero(L.max(axis=(-2, -1), keepdims=True))
        return np.exp(L, out=L)
    L -= _finite_or_zero(xp.logsumexp(L, -2, keepdims=True))  # columns: mass 1 each
    L -= _finite_or_zero(xp.logsumexp(L, -1, keepdims=True))  # rows: mass 1 each
    Q = np.exp(L, out=L)
    tiny = np.finfo(Q.dtype).tiny
    for _ in range(n_iter - 1):
        Q /= np.maximum(Q.sum(axis=-2, keepdims=True), tiny)
        Q /= np.maximum(Q.sum(axis=-1, keepdims=True), tiny)
    return Q


def _finite_or_zero(a):
    """``a`` with its non-finite entries (all-padding rows, ``-inf``) set to zero."""
    return np.where(np.isfinite(a), a, 0).astype(a.dtype, copy=False)


# ------------------------------------------------------------------------- fit


def _buckets(counts, max_rows, max_waste=1.5):
    """Group class indices so that padding each group to its largest class wastes little.

    Classes are sorted by size (largest first); a bucket closes when padding would
    exceed ``max_waste`` times its real rows or ``max_rows`` padded rows.
    """
    order = np.argsort(-counts, kind="stable")
    buckets, current, n_max, real = [], [], 0, 0
    for c in order:
        n_c = int(counts[c])
        if current:
            padded = (len(current) + 1) * n_max
            if padded > max_waste * (real + n_c) or padded > max_rows:
                buckets.append(current)
                current, real = [], 0
        if not current:
            n_max = n_c
        current.append(int(c))
        real += n_c
    if current:
        buckets.append(current)
    return buckets


class _Bucket:
    """A group of classes padded to a common size: ``Xp`` (B, n_max, d), ``valid``."""

    def __init__(self, X, y, classes):
        self.classes = np.asarray(classes)
        members = [np.flatnonzero(y == c) for c in classes]
        self.counts = np.array([m.size for m in members])
        n_max = int(self.counts.max())
        self.valid = np.arange(n_max)[None, :] < self.counts[:, None]
        idx = np.zeros((len(classes), n_max), dtype=np.intp)
        for b, m in enumerate(members):
            idx[b, : m.size] = m
        self.Xp = X[idx] * self.valid[..., None]


def _seed_bucket(bucket, n_components, rng, plusplus):
    """k-means++ seeds (D^2 sampling, cosine distance) or random distinct samples,
    drawn for every class of a bucket at once: (B, K, d)."""
    B, n_max, d = bucket.Xp.shape
    rows = np.arange(B)
    seeds = np.empty((B, n_components), dtype=np.intp)
    # first seed: uniform over each class's valid rows
    seeds[:, 0] = (rng.random_sample(B) * bucket.counts).astype(np.intp)
    if not plusplus:
        for b in range(B):
            seeds[b] = rng.choice(bucket.counts[b], n_components, replace=False)
        return bucket.Xp[rows[:, None], seeds]
    closest = np.full((B, n_max), np.inf, dtype=bucket.Xp.dtype)
    for j in range(1, n_components):
        c = bucket.Xp[rows, seeds[:, j - 1]]  # (B, d)
        dist = 1.0 - np.einsum("bnd,bd->bn", bucket.Xp, c)
        np.minimum(closest, np.maximum(dist, 0), out=closest)
        w = np.where(bucket.valid, closest, 0).astype(np.float64)
        w[rows[:, None], seeds[:, :j]] = 0  # never pick a seed twice
        cum = np.cumsum(w, axis=1)
        total = cum[:, -1]
        u = (1.0 - rng.random_sample(B)) * total  # in (0, total]
        pick = (cum < u[:, None]).sum(axis=1)
        # degenerate classes (all remaining distances 0): first unused valid row
        dead = total <= 0
        for b in np.flatnonzero(dead):
            unused = np.setdiff1d(np.arange(bucket.counts[b]), seeds[b, :j])
            pick[b] = unused[0]
        seeds[:, j] = pick
    return bucket.Xp[rows[:, None], seeds]


def _init_means(X, y, buckets, n_classes, n_components, init, rng, max_iter):
    """(n_classes, K, d) unit-norm initial means per class."""
    d = X.shape[1]
    out = np.empty((n_classes, n_components, d), dtype=X.dtype)
    if n_components == 1:
        for b in buckets:
            out[b.classes, 0] = b.Xp.sum(axis=1)
    elif init == "kmeans":
        for c in range(n_classes):
            out[c], *_ = kmeans(
                X[y == c],
                n_components,
                metric="cosine",
                random_state=rng,
                max_iter=max_iter,
            )
    else:
        for b in buckets:
            out[b.classes] = _seed_bucket(b, n_components, rng, init == "k-means++")
    out = l2_normalize(out.reshape(-1, d)).reshape(out.shape)
    # A zero resultant (a class of antipodal pairs, n_components=1) or a zero seed
    # row has no direction: start from the class's first nonzero sample instead (any
    # unit vector maximises the likelihood there), so every mean is a unit vector.
    for c, j in zip(*np.nonzero(~np.any(out != 0, axis=-1))):
        rows = X[y == c]
        nonzero = np.flatnonzero(np.any(rows != 0, axis=1))
        out[c, j] = rows[nonzero[0]] if nonzero.size else np.eye(1, d, dtype=X.dtype)
    return out


def _similarities(bucket, M):
    """Cosine similarities (B, n_max, K) of each class's rows to its own means."""
    B, n_max, _ = bucket.Xp.shape
    S = np.empty((B, n_max, M.shape[1]), dtype=bucket.Xp.dtype)
    for b in range(B):
        np.matmul(bucket.Xp[b], M[b].T, out=S[b])
    return S


def _top_k(scores, k):
    """Indices (..., k) of the ``k`` largest entries along the last axis, and those."""
    if k >= scores.shape[-1]:
        idx = np.broadcast_to(np.arange(scores.shape[-1]), scores.shape)
        return idx, scores
    idx = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    return idx, np.take_along_axis(scores, idx, axis=-1)


def _e_step(bucket, M, log_coef, kappa, top_k, balance, epsilon, sinkhorn_iter):
    """Sparse responsibilities and the summed (truncated) log-likelihood.

    ``log_coef`` (B, K) is ``log w_j + log C_d(kappa_j)`` and ``kappa`` (B, K).  Returns
    ``idx`` (B, n_max, k) the components each sample is assigned to, ``R`` (B, n_max,
    k) its responsibilities (rows sum to one; padding rows zero) and the objective
    summed over the bucket's samples: the log-likelihood of each sample restricted to
    the components it is assigned to (a lower bound of the full log-likelihood; equal
    to it when ``top_k`` covers all components).
    """
    S = _similarities(bucket, M)
    if balance:
        # PALM: Sinkhorn-balanced assignments, pruned to the top_k of each sample
        Q = sinkhorn(S, epsilon, sinkhorn_iter, row_mask=bucket.valid)
        idx, R = _top_k(Q, top_k)
        R = R / np.maximum(R.sum(axis=-1, keepdims=True), np.finfo(R.dtype).tiny)
        top = np.take_along_axis(S, idx, axis=-1)
        top *= np.take_along_axis(np.broadcast_to(kappa[:, None], S.shape), idx, -1)
        top += np.take_along_axis(np.broadcast_to(log_coef[:, None], S.shape), idx, -1)
    else:
        # truncated EM: the exact posterior restricted to the top_k components
        S *= kappa[:, None, :]
        S += log_coef[:, None, :]
        idx, top = _top_k(S, top_k)
    lse = xp.logsumexp(top, axis=-1)
    loglik = float(lse[bucket.valid].sum(dtype=np.float64))
    if not balance:
        R = np.exp(top - lse[..., None])
    R = R * bucket.valid[..., None]
    return idx, R, loglik


def _m_step(bucket, idx, R, M):
    """Sufficient statistics and new unit-norm means of a bucket's components.

    Each mean is the normalised responsibility-weighted sum of its class's samples (the
    exact M-step for the means of a vMF mixture); a component that got no mass keeps
    its mean.  Returns the means (B, K, d), the within-class weights (B, K), and per
    component ``|resultant|^2``, ``sum r`` and ``sum r^2`` (for the concentrations).
    """
    B, n_max, k = R.shape
    K = M.shape[1]
    cols = (idx + (np.arange(B) * K)[:, None, None]).ravel()
    rows = np.repeat(np.arange(B * n_max), k)
    r = R.ravel()
    W = sparse.csr_matrix((r, (rows, cols)), shape=(B * n_max, B * K), dtype=R.dtype)
    resultant = np.asarray(W.T @ bucket.Xp.reshape(B * n_max, -1)).reshape(B, K, -1)
    mass = np.bincount(cols, weights=r, minlength=B * K).reshape(B, K)
    mass_sq = np.bincount(cols, weights=r * r, minlength=B * K).reshape(B, K)
    norms = np.linalg.norm(resultant.astype(np.float64), axis=-1)
    alive = (mass > 0) & (norms > 0)
    M_new = np.where(
        alive[..., None], resultant / np.where(norms > 0, norms, 1)[..., None], M
    )
    pi = mass / bucket.counts[:, None]
    return M_new.astype(M.dtype, copy=False), pi, norms**2, mass, mass_sq


class _ClassVMFMixtures:
    """E-step and M-step of :func:`fit_vmf_mixtures` (for
    :func:`~protolearn._core._em.expectation_maximization`).

    The parameters are (n_classes, K) arrays: ``means`` (with a trailing d), within-class
    ``weights``, concentrations ``kappa`` and their ``log_c``.  Responsibilities are one
    ``(idx, R)`` pair per bucket (see :func:`_e_step`).
    """

    def __init__(self, X, buckets, means, kappa, learn_kappa, options):
        self.dtype, self.n_features = X.dtype, X.shape[1]
        self.buckets = buckets
        self.means = means
        C, K = kappa.shape
        self.weights = np.full((C, K), 1.0 / K)
        self.kappa = kappa
        self.log_c = np.broadcast_to(
            vmf_log_normalizer(self.n_features, kappa[0, 0]), kappa.shape
        ).copy()
        self.learn_kappa = learn_kappa
        self.options = options  # top_k, balance, epsilon, sinkhorn_iter

    def e_step(self):
        resp, total = [], 0.0
        for b in self.buckets:
            idx, R, loglik = _bucket_e_step(
                b, self.means, self.weights, self.log_c[b.classes], self.kappa,
                self.dtype, self.options,
            )  # fmt: skip
            resp.append((idx, R))
            total += loglik
        return resp, total

    def m_step(self, resp):
        for b, (idx, R) in zip(self.buckets, resp):
            cls = b.classes
            self.means[cls], self.weights[cls], res_sq, mass, mass_sq = _m_step(
                b, idx, R, self.means[cls]
            )
            if self.learn_kappa:
                new = estimate_concentration(res_sq, mass, mass_sq, self.n_features)
                self.kappa[cls] = np.where(mass > 0, new, self.kappa[cls])
        if self.learn_kappa:
            self.log_c = vmf_log_normalizer(self.n_features, self.kappa)


def _bucket_e_step(bucket, means, weights, log_c, kappa, dtype, options):
    """:func:`_e_step` on one bucket, from (C, K) parameters and the bucket's
    ``log C_d(kappa)``; computed in `dtype` (the samples')."""
    cls = bucket.classes
    with np.errstate(divide="ignore"):
        log_coef = np.log(weights[cls]) + log_c
    return _e_step(
        bucket, means[cls], log_coef.astype(dtype), kappa[cls].astype(dtype), **options
    )


def fit_vmf_mixtures(
    X,
    y,
    n_classes,
    n_components,
    *,
    kappa=None,
    top_k=None,
    balance=False,
    epsilon=0.05,
    sinkhorn_iter=3,
    init="k-means++",
    max_iter=100,
    tol=1e-3,
    random_state=None,
    max_bucket_rows=None,
):
    """Fit one vMF mixture of ``n_components`` components per class by EM.

    Parameters
    ----------
    X : (n, d) numpy array or torch tensor (any device; copied to the CPU); rows are
        L2-normalised here, in float32 for float16/float32 input, else float64.
    y : (n,) int array or tensor of class indices ``0..n_classes-1`` (all zeros: one
        mixture).
    n_components : int, components (prototypes) per class.
    kappa : float or None, default=None
        Fixed concentration shared by all components (``1 / temperature``); None
        estimates one per component in every M-step (starting from ``d``).
    top_k : int or None, keep each sample's ``top_k`` most likely components of its
        class (None: all).
    balance : bool, Sinkhorn-balanced assignments (PALM) instead of posteriors.
    epsilon, sinkhorn_iter : Sinkhorn regularisation and rounds.
    init : {"kmeans", "k-means++", "random"}, initial means per class: spherical
        k-means centres (:func:`~protolearn._core.kmeans`), k-means++ seeds (D^2
        sampling with the cosine distance, all classes of a bucket at once), or random
        samples.
    max_iter : int, EM iterations.
    tol : float, stop when the mean per-sample objective changes by less.
    max_bucket_rows : int, default=None
        Most padded rows per batched product (bounds the (rows, K) temporaries;
        derived from scikit-learn's ``working_memory`` when None).

    Runs :func:`~protolearn._core._em.expectation_maximization` from the initial
    means (an E-step first, as scikit-learn's ``GaussianMixture``).

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` with ``means`` (n_classes * K, d) grouped
        by class, ``weights`` (n_classes * K,) summing to one (class share times
        within-class weight), ``concentrations`` (n_classes * K,),
        ``component_class`` (n_classes * K,), ``n_iter``, ``converged``,
        ``lower_bounds`` (mean per-sample objective before each M-step, then at the
        returned parameters).
    """
    from ._em import expectation_maximization

    X = xp.to_numpy(X)  # (the fitted parameters are numpy arrays)
    X = l2_normalize(X.astype(xp.float_dtype(X), copy=False))
    y = xp.to_numpy(y)
    n, d = X.shape
    counts = np.bincount(y, minlength=n_classes)
    if np.any(counts < n_components):
        bad = np.flatnonzero(counts < n_components)
        raise ValueError(
            f"class indices {bad.tolist()} have fewer samples ({counts[bad].tolist()}) "
            f"than the {n_components} prototypes requested per class."
        )
    rng = check_random_state(random_state)
    top_k = n_components if top_k is None else min(int(top_k), n_components)
    learn_kappa = kappa is None
    kap = np.full((n_classes, n_components), float(d if learn_kappa else kappa))
    if max_bucket_rows is None:
        max_bucket_rows = get_chunk_n_rows(
            row_bytes=(d + 4 * n_components) * X.dtype.itemsize,
            max_n_rows=max(n, 1),
        )
    buckets = [
        _Bucket(X, y, cls)
        for cls in _buckets(counts, max(max_bucket_rows, int(counts.max())))
    ]
    M = _init_means(X, y, buckets, n_classes, n_components, init, rng, max_iter)
    options = dict(
        top_k=top_k, balance=balance, epsilon=epsilon, sinkhorn_iter=sinkhorn_iter
    )
    model = _ClassVMFMixtures(X, buckets, M, kap, learn_kappa, options)
    em = expectation_maximization(model, max_iter=max_iter, tol=tol, n_samples=n)
    weights = model.weights * (counts / n)[:, None]
    return Bunch(
        means=model.means.reshape(-1, d),
        weights=weights.reshape(-1),
        concentrations=model.kappa.reshape(-1),
        component_class=np.repeat(np.arange(n_classes), n_components),
        n_iter=em.n_iter,
        converged=em.converged,
        lower_bounds=em.lower_bounds,
    )
