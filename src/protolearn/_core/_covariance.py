"""Covariance estimation with shrinkage and Cholesky factors of precisions.

The pooled (tied) within-class covariance, Ledoit-Wolf / OAS / fixed shrinkage in
standardised units (scale-free, as scikit-learn's LDA), the weighted estimates of
Gaussian (mixture) components for the four covariance types, and the Cholesky factor
of the precision computed by a triangular solve (as scikit-learn's ``GaussianMixture``
does), never by inverting a matrix.  The densities these parameters define are in
:mod:`protolearn._core._gaussian`.
"""

import numpy as np
from scipy import linalg
from sklearn.covariance import ledoit_wolf_shrinkage as _sk_ledoit_wolf_shrinkage

from ..utils import _array_api as xp


def pooled_covariance(X, y, means):
    """Within-class covariance pooled over classes: ``sum_i (x_i - mu_{y_i})(...)^T / n``.

    Maximum-likelihood normalisation (divides by n), as in scikit-learn's LDA.
    """
    R = X - means[xp.as_index_like(y, X)]
    return (R.T @ R) / X.shape[0]


def ledoit_wolf_shrinkage(R):
    """Ledoit-Wolf shrinkage intensity for the centred residuals ``R`` (scikit-learn's)."""
    return float(_sk_ledoit_wolf_shrinkage(xp.to_numpy(R), assume_centered=True))


def ledoit_wolf_shrinkage_from_moments(scatter, fourth, n_rows):
    """Ledoit-Wolf intensity of centred rows ``R`` (n_rows, d) from two of their moments.

    The number :func:`sklearn.covariance.ledoit_wolf_shrinkage` (``assume_centered=True``)
    returns for ``R``, from ``scatter = R^T R`` and the fourth cross-moments
    ``fourth = (R∘R)^T (R∘R)`` (``sum_i (r_i∘r_i)(r_i∘r_i)^T``) alone, so that it can be
    computed from streamed statistics (:mod:`protolearn._core._streaming`).  In
    scikit-learn's notation: ``beta_ = sum(fourth)``, ``delta_ = sum(scatter**2) / n^2``,
    ``mu = tr(scatter) / (n d)``; ``beta = (beta_ / n - delta_) / (d n)``, ``delta =
    (delta_ - 2 mu tr(scatter) / n + d mu^2) / d`` and the intensity is
    ``min(beta, delta) / delta``.
    """
    S = np.asarray(scatter, dtype=np.float64)
    d = S.shape[0]
    if d == 1:
        return 0.0
    n = float(n_rows)
    emp_cov_trace = np.diag(S) / n
    mu = np.sum(emp_cov_trace) / d
    delta_ = np.sum(S**2) / n**2
    beta = 1.0 / (d * n) * (np.sum(fourth) / n - delta_)
    delta = (delta_ - 2.0 * mu * emp_cov_trace.sum() + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def shrink_covariance(S, shrinkage):
    """``(1 - s) S + s * tr(S)/d * I``: shrink towards the scaled identity."""
    if shrinkage == 0:
        return S
    d = S.shape[0]
    mu = float(xp.to_numpy(S).trace()) / d
    out = (1 - shrinkage) * S
    idx = xp.as_index_like(np.arange(d), S)
    out[idx, idx] += shrinkage * mu
    return out


def check_spread(Z, y_idx, what):
    """Raise a ValueError when, within each class, all rows of ``Z`` are identical.

    Their covariance is then zero: no shrinkage towards ``tr(S)/d * I`` (itself zero)
    can make it invertible, and the Mahalanobis distance is undefined.  Rows that
    differ by rounding only (such as multiples of one row after L2 normalisation)
    count as identical: their covariance is rounding noise.  ``y_idx`` holds class
    indices ``0..C-1``, each present (all zeros: one class); `what` names the
    covariance and the samples in the message.
    """
    first = np.unique(y_idx, return_index=True)[1]
    spread = np.abs(Z - Z[first][y_idx]).max()
    if spread <= 16 * np.finfo(Z.dtype).eps * np.abs(Z).max():
        raise ValueError(
            f"{what} is zero, so the Mahalanobis distance is undefined (shrinkage "
            "cannot help); fit on samples that differ."
        )


def precision_cholesky(covariance):
    """Cholesky factor ``L`` of the precision (``P = L L^T``) of a (d, d) covariance.

    Raises a ValueError naming the remedy when the covariance is not positive definite.
    """
    C = xp.to_numpy(covariance).astype(np.float64, copy=False)
    if not np.any(C):
        raise ValueError(
            "The covariance matrix is zero (the samples it is estimated from are "
            "identical), so no shrinkage towards tr(S)/d * I can make it invertible; "
            "fit on samples that differ."
        )
    try:
        cov_chol = linalg.cholesky(C, lower=True)
    except linalg.LinAlgError as exc:
        raise ValueError(
            "The covariance matrix is singular or not positive definite (too few "
            "samples for the number of features?); use shrinkage (e.g. "
            "shrinkage='auto' or a value in (0, 1]) to regularise it."
        ) from exc
    L = linalg.solve_triangular(cov_chol, np.eye(C.shape[0]), lower=True).T
    return xp.asarray_like(L, covariance)


def oas_shrinkage(covariance, n_samples):
    """Oracle Approximating Shrinkage intensity (Chen et al., 2010) from a covariance.

    The same formula as :func:`sklearn.covariance.oas`, written in terms of the
    (maximum-likelihood) covariance and the number of samples only, so it can be updated
    from streamed sufficient statistics.
    """
    S = xp.to_numpy(covariance).astype(np.float64, copy=False)
    d = S.shape[0]
    if d == 1:
        return 0.0
    alpha = np.mean(S**2)
    mu = np.trace(S) / d
    num = alpha + mu**2
    den = (n_samples + 1.0) * (alpha - (mu**2) / d)
    return 1.0 if den == 0 else float(min(num / den, 1.0))


def feature_scales(variances):
    """Per-feature standard deviations used to standardise, ``sqrt(variances)``.

    A feature with zero variance keeps scale 1, as in
    :class:`~sklearn.preprocessing.StandardScaler`.
    """
    v = np.asarray(variances, dtype=np.float64)
    return np.where(v > 0, np.sqrt(np.maximum(v, 0.0)), 1.0)


def standardized_shrinkage(
    covariance, n_samples, shrinkage, residuals=None, *, moments=None
):
    """Shrink a covariance in standardised units, so that the result does not depend on
    the features' scales; returns ``(shrunk covariance, intensity)``.

    As scikit-learn's ``LinearDiscriminantAnalysis(shrinkage="auto")`` does it
    (``discriminant_analysis._cov``): divide each feature by its standard deviation
    ``sigma = sqrt(diag(covariance))`` (:func:`feature_scales`), shrink the resulting
    correlation matrix ``R`` towards ``tr(R)/d * I`` (the identity), and scale back:
    ``sigma_i sigma_j ((1 - s) R_ij + s tr(R)/d [i = j])``.  Multiplying the features by
    a diagonal ``D`` gives ``D C D`` with the same intensity.  The diagonal (the
    variances) is unchanged, up to features of zero variance.

    Parameters
    ----------
    covariance : ndarray (or tensor) of shape (d, d)
        Maximum-likelihood covariance (a scatter divided by ``n_samples``).
    n_samples : float
        Number of samples (effective count for weighted samples) it comes from; used by
        "oas".
    shrinkage : None, float in [0, 1], "auto", "ledoit_wolf" or "oas"
        None: no shrinkage; a float: that intensity; "auto" / "ledoit_wolf": the
        Ledoit-Wolf intensity (:func:`sklearn.covariance.ledoit_wolf_shrinkage`) of the
        standardised residuals; "oas": the Oracle Approximating Shrinkage intensity
        (:func:`oas_shrinkage`) of the correlation matrix, which needs only
        ``covariance`` and ``n_samples`` (so it can be computed from streamed
        sufficient statistics).
    residuals : ndarray of shape (m, d), optional
        Centred rows with ``residuals.T @ residuals / m == covariance``; needed only by
        Ledoit-Wolf, whose intensity depends on fourth moments.
    moments : tuple ``(m, fourth)``, optional
        Instead of `residuals` (streamed statistics): their number ``m`` and their
        fourth cross-moments ``fourth = (R∘R)^T (R∘R)`` (d, d), unstandardised; the
        Ledoit-Wolf intensity is then
        :func:`ledoit_wolf_shrinkage_from_moments` of the standardised rows
        ``R / sigma`` (whose scatter is ``m`` times the correlation matrix and whose
        fourth moments are ``fourth / (sigma^2 sigma^2^T)``), the number the
        residuals would give.

    Returns
    -------
    shrunk : ndarray of shape (d, d), float64 (a tensor in, a tensor out)
    intensity : float
    """
    C = xp.to_numpy(covariance).astype(np.float64, copy=False)
    d = C.shape[0]
    scale = feature_scales(np.diag(C))
    R = C / scale[:, None] / scale[None, :]
    if shrinkage is None:
        s = 0.0
    elif isinstance(shrinkage, str):
        if shrinkage not in SHRINKAGE_RULES:
            raise ValueError(
                f"shrinkage must be None, a float in [0, 1] or one of "
                f"{SHRINKAGE_RULES}; got {shrinkage!r}."
            )
        if d == 1:
            s = 0.0
        elif shrinkage == "oas":
            s = oas_shrinkage(R, n_samples)
        elif moments is not None:
            m, fourth = moments
            if m < 2:
                s = 1.0
            else:
                scale2 = scale**2
                s = ledoit_wolf_shrinkage_from_moments(
                    m * R, np.asarray(fourth) / scale2[:, None] / scale2[None, :], m
                )
        elif residuals is None:
            raise ValueError(
                "Ledoit-Wolf shrinkage needs the residuals (its intensity depends on "
                "fourth moments); use shrinkage='oas' from a covariance alone."
            )
        elif residuals.shape[0] < 2:
            s = 1.0
        else:
            s = ledoit_wolf_shrinkage(xp.to_numpy(residuals) / scale[None, :])
    else:
        s = float(shrinkage)
    if s == 0:
        return xp.asarray_like(C.copy(), covariance), 0.0
    out = shrink_covariance(R, s) * scale[:, None] * scale[None, :]
    return xp.asarray_like(out, covariance), float(s)


def shrunk_precision_cholesky(covariance, n_samples, shrinkage, *, standardize=False):
    """Cholesky factor of the precision of a shrunk covariance.

    Parameters
    ----------
    covariance : (d, d) maximum-likelihood covariance.
    n_samples : int, samples it was estimated from (for OAS).
    shrinkage : "auto" (Oracle Approximating Shrinkage), float in [0, 1] or None (0).
    standardize : bool, default=False
        True: shrink in standardised units (:func:`standardized_shrinkage`,
        scale-free); False: towards ``tr(S)/d * I`` in the covariance's own units (the
        detectors' convention, as pytorch-ood and :class:`sklearn.covariance.OAS`).

    Returns
    -------
    precision_cholesky : (d, d) array like `covariance`, shrinkage : float used.
    """
    if standardize:
        rule = "oas" if shrinkage == "auto" else shrinkage
        S, s = standardized_shrinkage(covariance, n_samples, rule)
        return xp.asarray_like(xp.to_numpy(precision_cholesky(S)), covariance), s
    s = oas_shrinkage(covariance, n_samples) if shrinkage == "auto" else shrinkage
    s = float(s or 0.0)
    S = shrink_covariance(covariance, s)  # a new array: `covariance` is not modified
    return precision_cholesky(S), s


def fit_gaussian(X, shrinkage):
    """Mean, maximum-likelihood covariance and shrunk precision factor of ``X`` (n, d).

    Returns
    -------
    location : (d,), covariance : (d, d), precision_cholesky : (d, d) (of the shrunk
    covariance, see :func:`shrunk_precision_cholesky`), shrinkage : float used.
    """
    location = X.mean(0)
    R = X - location
    covariance = (R.T @ R) / X.shape[0]
    L, s = shrunk_precision_cholesky(covariance, X.shape[0], shrinkage)
    return location, covariance, L, s


# --------------------------------------------------------------------------------------
# Gaussian (mixture) components: covariance estimation for the four covariance types
# and precision Cholesky factors, following scikit-learn's GaussianMixture
# (`_estimate_gaussian_covariances_*`, `_compute_precision_cholesky`) with two additions:
# shrinkage towards a scaled identity (fixed, Ledoit-Wolf or OAS) and pooling towards the
# tied covariance (Friedman's regularised discriminant analysis), both needed when a class
# has fewer samples than features.

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
SHRINKAGE_RULES = ("auto", "ledoit_wolf", "oas")
#: Shrinkage rules whose intensity needs the fourth moments (Ledoit-Wolf).
LEDOIT_WOLF_RULES = ("auto", "ledoit_wolf")


def _weighted_residuals(X, resp_k, mean_k, rows=None):
    """Rows ``sqrt(r_i) (x_i - mu_k)`` over the rows with ``r_i > 0``.

    Their scatter is the component's weighted scatter ``sum_i r_i (x_i - mu_k)(...)^T``;
    for hard assignments (``r_i = 1``) they are the plain residuals.  ``resp_k`` holds
    the responsibilities of the rows ``X[rows]`` (all rows when `rows` is None).
    """
    sel = np.flatnonzero(resp_k > 0)
    idx = sel if rows is None else rows[sel]
    return (X[idx] - mean_k) * np.sqrt(resp_k[sel])[:, None]


def _as_samples(W, n_k):
    """Rescale weighted residuals so that ``rows^T rows / n_rows`` is the covariance
    (what Ledoit-Wolf expects); the identity for hard assignments."""
    if W.shape[0] == 0:
        return W
    return W * np.sqrt(W.shape[0] / max(n_k, np.finfo(np.float64).tiny))


def _shrunk_diagonal(variances, intensity):
    """Diagonal of :func:`standardized_shrinkage`'s result: the variances themselves,
    except that features of zero variance get ``intensity`` times the share of
    non-constant features (as the full covariance's diagonal)."""
    scale2 = feature_scales(variances) ** 2
    r = variances / scale2
    return ((1 - intensity) * r + intensity * r.mean()) * scale2


class _ResponsibilityBlocks:
    """Responsibilities as blocks of rows that share their components.

    Dense responsibilities (n, K) are one block: every row, components ``0..K-1``.
    With ``groups`` (n,), ``resp`` is (n, k) and row i's column j is component
    ``groups[i] * k + j``: each group's rows form a block ``(rows, R, first)`` with
    ``R = resp[rows]`` (n_g, k) over components ``first..first + k - 1``, so that the
    memory is that of the (n, k) array, not of the (n, G k) one it stands for.
    ``n_components`` is ``n_groups k`` (``n_groups``: ``max(groups) + 1`` when None);
    a component without rows has none.
    """

    def __init__(self, resp, groups=None, n_groups=None):
        if groups is None:
            self.width, self.n_components = resp.shape[1], resp.shape[1]
            self.blocks, self._block_of_group = [(None, resp, 0)], {0: 0}
            return
        groups = np.asarray(groups)
        if n_groups is None:
            n_groups = int(groups.max()) + 1 if groups.size else 0
        if (
            groups.shape != (resp.shape[0],)
            or not np.issubdtype(groups.dtype, np.integer)
            or (groups.size and (groups.min() < 0 or groups.max() >= n_groups))
        ):
            raise ValueError(
                f"groups must hold one integer in [0, {n_groups}) per row of resp; "
                f"got shape {groups.shape} for resp of shape {resp.shape}."
            )
        k = self.width = resp.shape[1]
        self.n_components = n_groups * k
        order = np.argsort(groups, kind="stable")
        starts = np.flatnonzero(np.diff(groups[order])) + 1
        self.blocks, self._block_of_group = [], {}
        for rows in np.split(order, starts) if groups.size else []:
            g = int(groups[rows[0]])
            self._block_of_group[g] = len(self.blocks)
            self.blocks.append((rows, resp[rows], g * k))

    def component(self, k):
        """``(rows, r)``: the block's rows (None: all) and component k's column."""
        g, j = divmod(k, self.width)
        b = self._block_of_group.get(g)
        if b is None:
            return np.empty(0, dtype=np.intp), np.empty(0)
        rows, R, _ = self.blocks[b]
        return rows, R[:, j]

    def n_residual_rows(self):
        """Rows with a positive responsibility, over all components."""
        return int(sum(np.count_nonzero(R > 0) for _, R, _ in self.blocks))

    def counts_and_means(self, X):
        """``nk`` (K,) (plus ``10 eps``, as scikit-learn) and means (K, d)."""
        nk = np.zeros(self.n_components)
        means = np.zeros((self.n_components, X.shape[1]))
        for _, R, first in self.blocks:
            cols = slice(first, first + R.shape[1])
            nk[cols] = R.sum(0)
        nk += 10 * np.finfo(np.float64).eps
        for rows, R, first in self.blocks:
            cols = slice(first, first + R.shape[1])
            means[cols] = (R.T @ (X if rows is None else X[rows])) / nk[cols, None]
        return nk, means


class _ResidualStats:
    """What the covariance estimators read of a batch: the weighted residual rows of
    each component (:func:`_weighted_residuals`), computed when asked for (one
    component at a time), so that no more than a chunk of them is held at once.

    The estimators below need, from any source of component statistics (this one,
    or :class:`protolearn._core._streaming._MomentStats` for streamed moments):
    ``nk`` (K,) and ``n_features``; ``pooled(shrinkage)``, the shrunk within-component
    covariance pooled over components and its intensity; ``component(k, shrinkage)``,
    component k's shrunk covariance and intensity (both as
    :func:`standardized_shrinkage` returns them); ``variances(k)``, its (d,)
    variances; and ``mean_variances()``, the (K,) mean variance of each component.
    """

    def __init__(self, X, blocks, nk, means):
        self.X, self.blocks, self.means = X, blocks, means
        self.nk, self.n_rows, self.n_features = nk, X.shape[0], X.shape[1]
        self._last = (None, None)  # the latest component's residuals

    def residuals(self, k):
        if self._last[0] != k:
            rows, r = self.blocks.component(k)
            self._last = (k, _weighted_residuals(self.X, r, self.means[k], rows))
        return self._last[1]

    def _residual_chunks(self, max_rows):
        """The residual rows of components ``0..K-1``, in order, in chunks of
        `max_rows` rows: views of one buffer, overwritten by the next chunk."""
        buf, fill = np.empty((max_rows, self.n_features)), 0
        for k in range(self.nk.size):
            W, start = self.residuals(k), 0
            while start < W.shape[0]:
                take = min(max_rows - fill, W.shape[0] - start)
                buf[fill : fill + take] = W[start : start + take]
                fill, start = fill + take, start + take
                if fill == max_rows:
                    yield buf
                    fill = 0
        if fill:
            yield buf[:fill]

    def pooled(self, shrinkage):
        """The shrunk pooled covariance and its intensity: from all residual rows at
        once when they fit in a chunk (a quarter of ``working_memory``: the rows and
        their copies), else from their scatter and (for Ledoit-Wolf) fourth moments
        summed chunk by chunk (:func:`ledoit_wolf_shrinkage_from_moments`, the same
        intensity to rounding)."""
        from ..utils._sklearn_compat import get_chunk_n_rows

        N, d = self.nk.sum(), self.n_features
        m = self.blocks.n_residual_rows()
        max_rows = get_chunk_n_rows(row_bytes=4 * d * 8)
        if m <= max_rows:
            R = np.concatenate([self.residuals(k) for k in range(self.nk.size)])
            pooled = (R.T @ R) / N
            return standardized_shrinkage(
                pooled, self.n_rows, shrinkage, _as_samples(R, N)
            )
        fourth = shrinkage in LEDOIT_WOLF_RULES
        scatter, m4 = np.zeros((d, d)), np.zeros((d, d)) if fourth else None
        for R in self._residual_chunks(max_rows):
            scatter += R.T @ R
            if fourth:
                R *= R
                m4 += R.T @ R
        moments = (m, m4 * (m / N) ** 2) if fourth else None
        return standardized_shrinkage(
            scatter / N, self.n_rows, shrinkage, moments=moments
        )

    def component(self, k, shrinkage):
        W, n_k = self.residuals(k), self.nk[k]
        return standardized_shrinkage(
            (W.T @ W) / n_k, n_k, shrinkage, _as_samples(W, n_k)
        )

    def variances(self, k):
        W = self.residuals(k)
        return (W * W).sum(0) / self.nk[k]

    def mean_variances(self):
        d = self.n_features
        out = np.empty(self.nk.size)
        for k in range(out.size):
            W = self.residuals(k)
            out[k] = (W * W).sum() / self.nk[k] / d
        return out


def _estimate_gaussian_covariances_full(stats, shrinkage, pooling, reg_covar):
    """(K, d, d) covariances: each component's shrunk, pooled towards the tied one,
    plus `reg_covar` on the diagonal; and each component's shrinkage intensity."""
    K, d = stats.nk.size, stats.n_features
    pooled = stats.pooled(shrinkage)[0] if pooling > 0 else None
    cov, intensities = np.empty((K, d, d)), np.empty(K)
    for k in range(K):
        S, intensities[k] = stats.component(k, shrinkage)
        if pooling > 0:
            S = (1 - pooling) * S + pooling * pooled
        S.flat[:: d + 1] += reg_covar
        cov[k] = S
    return cov, intensities


def _estimate_gaussian_covariances_tied(stats, shrinkage, pooling, reg_covar):
    """(d, d) shrunk pooled covariance plus `reg_covar` on the diagonal, and its
    intensity; `pooling` does not apply."""
    d = stats.n_features
    pooled, intensity = stats.pooled(shrinkage)
    cov = pooled.copy()
    cov.flat[:: d + 1] += reg_covar
    return cov, np.array([intensity])


def _estimate_gaussian_covariances_diag(stats, shrinkage, pooling, reg_covar):
    """(K, d) variances: as the diagonal of the full estimate (shrinkage changes only
    zero-variance features; its intensity is the full covariance's), pooled towards
    the tied diagonal, plus `reg_covar`; and each component's intensity."""
    K, d = stats.nk.size, stats.n_features
    cov, intensities = np.empty((K, d)), np.empty(K)
    for k in range(K):
        v = stats.variances(k)
        if isinstance(shrinkage, str):  # the intensity needs the full covariance
            _, intensities[k] = stats.component(k, shrinkage)
        else:
            intensities[k] = float(shrinkage or 0.0)
        cov[k] = _shrunk_diagonal(v, intensities[k])
    if pooling > 0:
        pooled_diag = np.diag(stats.pooled(shrinkage)[0]).copy()
        cov = (1 - pooling) * cov + pooling * pooled_diag[None, :]
    return cov + reg_covar, intensities


def _estimate_gaussian_covariances_spherical(stats, shrinkage, pooling, reg_covar):
    """(K,) mean variances, pooled towards the tied covariance's mean variance, plus
    `reg_covar`; and the pooled covariance's intensity (0 without pooling)."""
    var, intensity = stats.mean_variances(), 0.0
    if pooling > 0:
        pooled, intensity = stats.pooled(shrinkage)
        var = (1 - pooling) * var + pooling * np.diag(pooled).copy().mean()
    return var + reg_covar, np.array([intensity])


_COVARIANCE_ESTIMATORS = {
    "full": _estimate_gaussian_covariances_full,
    "tied": _estimate_gaussian_covariances_tied,
    "diag": _estimate_gaussian_covariances_diag,
    "spherical": _estimate_gaussian_covariances_spherical,
}


def estimate_gaussian_covariances(
    stats, covariance_type, *, shrinkage=None, pooling=0.0, reg_covar=0.0
):
    """Regularised covariances and shrinkage intensities of `covariance_type` from
    component statistics (see :class:`_ResidualStats`): the per-type estimator's
    ``(covariances, intensities)``."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )
    estimate = _COVARIANCE_ESTIMATORS[covariance_type]
    return estimate(stats, shrinkage, pooling, reg_covar)


def estimate_gaussian_parameters(
    X,
    resp,
    covariance_type="full",
    *,
    groups=None,
    n_groups=None,
    shrinkage=None,
    pooling=0.0,
    reg_covar=0.0,
):
    """Weights, means and regularised covariances of Gaussian components.

    Maximum-likelihood estimates (as scikit-learn's ``GaussianMixture`` M-step) from
    responsibilities ``resp`` (n, K) (one-hot rows give per-class Gaussians), or from
    their blocks (``groups``: each row's responsibilities over its own group's
    components only, (n, k) instead of (n, K)), then regularised in this order:

    1. shrinkage of each estimate in standardised units
       (:func:`standardized_shrinkage`, as scikit-learn's LDA: the correlation matrix is
       shrunk towards the identity, so the result does not depend on the features'
       scales; ``shrinkage``: a float, or "auto"/"ledoit_wolf" or "oas" to compute the
       intensity from the data, separately for each component and for the pooled
       covariance).  Shrinkage leaves variances unchanged, so it has no effect for
       "diag" and "spherical" (use ``pooling``);
    2. pooling (Friedman's regularised discriminant analysis): a component covariance
       becomes ``(1 - pooling) S_k + pooling S_pooled``, where ``S_pooled`` is the
       (shrunk) within-component covariance pooled over all components (what
       ``covariance_type="tied"`` uses); "diag" pools the diagonals and "spherical" the
       mean variances;
    3. ``reg_covar`` added to the diagonal (scikit-learn's ``reg_covar``).

    The regularised covariances come from one function per type,
    ``_estimate_gaussian_covariances_{full,tied,diag,spherical}`` (as in
    scikit-learn's ``mixture._gaussian_mixture``), which also serve the streamed
    statistics of :mod:`protolearn._core._streaming`.  Estimation runs in float64 (the
    returned arrays are float64); callers cast.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    resp : ndarray of shape (n, K), or (n, k) with `groups`
        Non-negative responsibilities; a component's rows are those with ``r > 0``.
    covariance_type : {"full", "tied", "diag", "spherical"}
    groups : ndarray of shape (n,) of non-negative ints, default=None
        None: ``resp`` is dense.  Else ``resp[i, j]`` is row i's responsibility for
        component ``groups[i] * k + j`` and zero for every other component (the
        components of the G = ``max(groups) + 1`` groups are consecutive, k each):
        the estimates are those of the dense (n, G k) responsibilities it stands for
        (to rounding), without forming them.  Memory: the (n, k) array, the (K, d)
        means, the covariances and a chunk of residual rows (``working_memory``).
    n_groups : int, default=None
        G with `groups` (a group may have no rows); ``max(groups) + 1`` when None.
    shrinkage : None, float in [0, 1], "auto", "ledoit_wolf" or "oas"
    pooling : float in [0, 1]
        Ignored for "tied".
    reg_covar : float >= 0

    Returns
    -------
    nk : ndarray of shape (K,)
        Effective sample count of each component.
    means : ndarray of shape (K, d)
    covariances : ndarray
        "full" (K, d, d), "tied" (d, d), "diag" (K, d), "spherical" (K,).
    intensities : ndarray of shape (K,) for "full"/"diag" (each component's own
        shrinkage), or (1,) for "tied"/"spherical" (the pooled covariance's).
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )
    X = np.asarray(X, dtype=np.float64)
    blocks = _ResponsibilityBlocks(np.asarray(resp, dtype=np.float64), groups, n_groups)
    nk, means = blocks.counts_and_means(X)
    cov, intensities = estimate_gaussian_covariances(
        _ResidualStats(X, blocks, nk, means),
        covariance_type,
        shrinkage=shrinkage,
        pooling=pooling,
        reg_covar=reg_covar,
    )
    return nk, means, cov, intensities


def compute_precision_cholesky(covariances, covariance_type):
    """Cholesky factors of the precisions, in scikit-learn's ``GaussianMixture`` layout.

    "full" (K, d, d) and "tied" (d, d): upper-triangular ``U`` with ``P = U U^T``,
    obtained by a triangular solve against the covariance's Cholesky factor (no
    inverse); "diag" (K, d) and "spherical" (K,): ``1 / sqrt(variance)``.  The result
    has the covariances' dtype (the factorisation itself runs in float64).
    """
    cov = np.asarray(covariances)
    if covariance_type == "full":
        out = np.empty_like(cov)
        for k in range(cov.shape[0]):
            out[k] = precision_cholesky(cov[k])
        return out
    if covariance_type == "tied":
        return precision_cholesky(cov)
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )
    if np.any(cov <= 0):
        raise ValueError(
            "Some variances are not positive (a component with identical samples?); "
            "use shrinkage, pooling or a larger reg_covar."
        )
    return (1.0 / np.sqrt(cov.astype(np.float64))).astype(cov.dtype)
