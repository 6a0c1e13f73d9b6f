"""Covariance estimation with shrinkage and Cholesky factors of precisions.

The pooled (tied) within-class covariance, Ledoit-Wolf / OAS / fixed shrinkage in
standardised units (scale-free, as scikit-learn's LDA), and the Cholesky factor of
the precision computed by a triangular solve (as scikit-learn's ``GaussianMixture``
does), never by inverting a matrix.
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
# Gaussian (mixture) prototypes: covariance estimation for the four covariance types,
# precision Cholesky factors and log-densities, following scikit-learn's GaussianMixture
# (`_estimate_gaussian_covariances_*`, `_compute_precision_cholesky`,
# `_compute_log_det_cholesky`, `_estimate_log_gaussian_prob`) with two additions:
# shrinkage towards a scaled identity (fixed, Ledoit-Wolf or OAS) and pooling towards the
# tied covariance (Friedman's regularised discriminant analysis), both needed when a class
# has fewer samples than features.

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
SHRINKAGE_RULES = ("auto", "ledoit_wolf", "oas")


def _weighted_residuals(X, resp_k, mean_k):
    """Rows ``sqrt(r_i) (x_i - mu_k)`` over the rows with ``r_i > 0``.

    Their scatter is the component's weighted scatter ``sum_i r_i (x_i - mu_k)(...)^T``;
    for hard assignments (``r_i = 1``) they are the plain residuals.
    """
    rows = np.flatnonzero(resp_k > 0)
    return (X[rows] - mean_k) * np.sqrt(resp_k[rows])[:, None]


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


def estimate_gaussian_parameters(
    X,
    resp,
    covariance_type="full",
    *,
    shrinkage=None,
    pooling=0.0,
    reg_covar=0.0,
):
    """Weights, means and regularised covariances of Gaussian components.

    Maximum-likelihood estimates (as scikit-learn's ``GaussianMixture`` M-step) from
    responsibilities ``resp`` (n, K) (one-hot rows give per-class Gaussians), then
    regularised in this order:

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

    Estimation runs in float64 (the returned arrays are float64); callers cast.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    resp : ndarray of shape (n, K)
        Non-negative responsibilities; a component's rows are those with ``r > 0``.
    covariance_type : {"full", "tied", "diag", "spherical"}
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
    resp = np.asarray(resp, dtype=np.float64)
    n, d = X.shape
    K = resp.shape[1]
    nk = resp.sum(0) + 10 * np.finfo(np.float64).eps
    means = (resp.T @ X) / nk[:, None]
    need_pooled = covariance_type == "tied" or pooling > 0
    residuals = [_weighted_residuals(X, resp[:, k], means[k]) for k in range(K)]
    pooled = pooled_diag = None
    intensity0 = 0.0
    if need_pooled:
        R = np.concatenate(residuals)
        pooled = (R.T @ R) / nk.sum()
        pooled, intensity0 = standardized_shrinkage(
            pooled, n, shrinkage, _as_samples(R, nk.sum())
        )
        pooled_diag = np.diag(pooled).copy()
    if covariance_type == "tied":
        cov = pooled.copy()
        cov.flat[:: d + 1] += reg_covar
        return nk, means, cov, np.array([intensity0])
    if covariance_type == "spherical":
        var = np.array([(W * W).sum() / n_k / d for W, n_k in zip(residuals, nk)])
        if pooling > 0:
            var = (1 - pooling) * var + pooling * pooled_diag.mean()
        return nk, means, var + reg_covar, np.array([intensity0])
    intensities = np.empty(K)
    if covariance_type == "diag":
        cov = np.empty((K, d))
        for k, W in enumerate(residuals):
            v = (W * W).sum(0) / nk[k]
            if isinstance(shrinkage, str):  # the intensity needs the full covariance
                _, intensities[k] = standardized_shrinkage(
                    (W.T @ W) / nk[k], nk[k], shrinkage, _as_samples(W, nk[k])
                )
            else:
                intensities[k] = float(shrinkage or 0.0)
            cov[k] = _shrunk_diagonal(v, intensities[k])
        if pooling > 0:
            cov = (1 - pooling) * cov + pooling * pooled_diag[None, :]
        return nk, means, cov + reg_covar, intensities
    cov = np.empty((K, d, d))
    for k, W in enumerate(residuals):
        S, intensities[k] = standardized_shrinkage(
            (W.T @ W) / nk[k], nk[k], shrinkage, _as_samples(W, nk[k])
        )
        if pooling > 0:
            S = (1 - pooling) * S + pooling * pooled
        S.flat[:: d + 1] += reg_covar
        cov[k] = S
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


def log_det_precision_cholesky(precisions_cholesky, covariance_type, n_features):
    """``log det(U)`` of each component's precision factor, i.e. ``-0.5 log det(Sigma)``.

    Returns an ndarray of shape (K,) (a scalar for "tied").
    """
    U = np.asarray(precisions_cholesky)
    if covariance_type == "full":
        return np.log(np.diagonal(U, axis1=1, axis2=2)).sum(1)
    if covariance_type == "tied":
        return np.log(np.diag(U)).sum()
    if covariance_type == "diag":
        return np.log(U).sum(1)
    return n_features * np.log(U)


def log_gaussian_density(X, means, precisions_cholesky, covariance_type, log_det=None):
    """Log-densities ``log N(x; mu_k, Sigma_k)`` of every row of ``X``, shape (n, K).

    The quadratic form is the squared Mahalanobis distance of
    :func:`protolearn._core._distances.pairwise_distances` (chunked, through the
    precision Cholesky factor, no inverse); numpy or torch in, same kind, dtype and
    device out.  `log_det` (from :func:`log_det_precision_cholesky`) may be passed to
    avoid recomputing it.
    """
    from ._distances import pairwise_distances

    d = X.shape[1]
    if log_det is None:
        log_det = log_det_precision_cholesky(
            xp.to_numpy(precisions_cholesky), covariance_type, d
        )
    D = pairwise_distances(
        X,
        means,
        "mahalanobis",
        precision_cholesky=precisions_cholesky,
        covariance_type=covariance_type,
    )
    const = np.zeros(means.shape[0]) + (
        np.asarray(log_det, dtype=np.float64) - 0.5 * d * np.log(2 * np.pi)
    )
    D *= -0.5
    D += xp.asarray_like(const, D)[None, :]
    return D


def exp_floor(dtype):
    """The least exponent worth computing in a logsumexp shifted by its maximum.

    ``exp`` of less is subnormal, which x86 CPUs compute tens of times slower
    (13 vs 3 ns per float32 in the Gaussian classifier's predict), and is lost
    anyway: a sum that holds the maximum's ``exp(0) = 1`` cannot resolve it, so
    flooring the shifted terms here leaves the logsumexp of a row with a finite
    maximum as it was (to the last bit, unless a partial sum of terms below
    ``1e-30`` lands on a rounding tie; none of the estimators' fingerprints moved).
    """
    return float(np.log(np.finfo(dtype).tiny)) + 1.0


def _component_slice(params, covariance_type, cols):
    if covariance_type == "tied":
        return params
    return params[cols]


def class_mixture_log_density(
    X,
    weights,
    means,
    precisions_cholesky,
    covariance_type,
    component_class,
    n_classes,
    log_det=None,
):
    """Per-class mixture log-densities ``log sum_{k in c} w_k N(x; mu_k, Sigma_k)``.

    Components are grouped by class (``component_class`` sorted); ``weights`` sum to
    one within each class.  With one component per class this is
    :func:`log_gaussian_density`.  numpy or torch in, same kind out, shape (n, C).
    """
    component_class = np.asarray(component_class)
    per_class = np.bincount(component_class, minlength=n_classes)
    if (
        covariance_type == "tied"
        and not xp.is_torch(X)
        and np.all(per_class == per_class[0])
        and np.all(np.diff(component_class) >= 0)
    ):
        return _tied_class_log_density(
            X, weights, means, precisions_cholesky, n_classes, log_det
        )
    L = log_gaussian_density(X, means, precisions_cholesky, covariance_type, log_det)
    if component_class.size == n_classes:
        return L
    L += xp.asarray_like(np.log(np.asarray(weights, dtype=np.float64)), L)[None, :]
    if np.all(per_class == per_class[0]) and np.all(np.diff(component_class) >= 0):
        # the same number of components in every class: one reduction, no loop
        L3 = L.reshape(X.shape[0], n_classes, int(per_class[0]))
        if xp.is_torch(L3):
            return L3.logsumexp(dim=2)
        # over the middle axis of a (rows, components, classes) copy: numpy reduces
        # it slice by slice, contiguous along the classes (scipy's logsumexp, and
        # reductions along a short last axis, took 4x the distances' time here;
        # strided slices of L3 swept the whole array once per component and op)
        return _logsumexp_middle(np.ascontiguousarray(L3.transpose(0, 2, 1)))
    out = xp.empty((X.shape[0], n_classes), like=L)
    for c in range(n_classes):
        cols = xp.as_index_like(np.flatnonzero(component_class == c), L)
        out[:, c] = xp.logsumexp(xp.take(L, cols, axis=1), axis=1)
    return out


def _logsumexp_middle(E):
    """``log sum_j exp(E[:, j, :])`` of a (rows, k, classes) array, overwriting it.

    Reduced over the middle axis, slice by slice, contiguous along the classes
    (scipy's logsumexp, and numpy's reductions along a short last axis, took 4x the
    distances' time here); subnormal terms floored (:func:`exp_floor`).
    """
    top = E.max(axis=1)
    bad = ~np.isfinite(top)
    fix = None
    if bad.any():  # no finite maximum: the sum of the unshifted, unfloored terms
        fix = np.exp(E.transpose(0, 2, 1)[bad]).sum(axis=1)
        top[bad] = 0
    E -= top[:, None, :]
    np.maximum(E, exp_floor(E.dtype), out=E)
    np.exp(E, out=E)
    acc = E.sum(axis=1)
    if fix is not None:
        acc[bad] = fix
    np.log(acc, out=acc)
    acc += top
    return acc


def _tied_class_log_density(X, weights, means, precisions_cholesky, n_classes, log_det):
    """:func:`class_mixture_log_density` for a tied covariance, numpy, the same
    number of components in every class (grouped by class).

    ``log N(x; mu_k, S) = -|U^T (x - mu_k)|^2 / 2 + log det U - d/2 log 2 pi``
    expands to ``y_k . u - |y_k|^2 / 2 + b_k - |u|^2 / 2`` with ``u = U^T x`` and
    ``y_k = U^T mu_k`` (both sides centred on the means' mean first, see
    :func:`~protolearn._core._distances.common_centre`): one matrix product, a
    per-component constant, and a per-row term ``-|u|^2 / 2`` that is the same for
    every component, so it is added after the per-class logsumexp, on (n, C)
    instead of (n, K).  The components' columns are ordered (component j, class
    c) so that the product's output is already (rows, k, C) for the reduction.
    Equal to the general path up to float rounding.
    """
    from ._distances import common_centre

    n, d = X.shape
    K = means.shape[0]
    k = K // n_classes
    U = xp.asarray_like(precisions_cholesky, X)
    M = xp.asarray_like(means, X)
    c = common_centre(M)
    YL = (M - c) @ U
    if log_det is None:
        log_det = log_det_precision_cholesky(np.asarray(U), "tied", d)
    with np.errstate(divide="ignore"):
        b = (
            np.log(np.asarray(weights, dtype=np.float64))
            + float(np.asarray(log_det, dtype=np.float64))
            - 0.5 * d * np.log(2 * np.pi)
        )
    b = b - 0.5 * (YL.astype(np.float64) ** 2).sum(1)
    order = np.arange(K).reshape(n_classes, k).T.ravel()  # (j, c) <- c * k + j
    A, b = np.ascontiguousarray(YL[order].T), b[order].astype(X.dtype)

    def chunk(Xc, _):
        Z = (Xc - c) @ U
        G = Z @ A
        G += b[None, :]
        out = G if k == 1 else _logsumexp_middle(G.reshape(len(Z), k, n_classes))
        out -= 0.5 * (Z * Z).sum(1)[:, None]
        return out

    if n == 0:
        return np.empty((0, n_classes), dtype=X.dtype)
    from ._distances import map_row_chunks

    # per row: the centred copy and its image (d each), the (K,) scores and their
    # reduction's temporaries
    row_bytes = (2 * d + 3 * K) * X.dtype.itemsize
    return map_row_chunks(chunk, X, row_bytes)


def fit_class_mixtures(
    X,
    y,
    n_classes,
    n_components,
    covariance_type="full",
    *,
    shrinkage=None,
    pooling=0.0,
    reg_covar=1e-6,
    max_iter=100,
    tol=1e-3,
    random_state=None,
):
    """Gaussian mixture prototypes per class, by EM with shrinkage in every M-step.

    One mixture of `n_components` Gaussians per class (GPAM's "GMM prototypes"),
    fitted jointly: the E-step spreads a sample only over its own class's components,
    the M-step is :func:`estimate_gaussian_parameters` (so shrinkage, pooling and a
    "tied" covariance shared by every component of every class act inside EM, which
    ``sklearn.mixture.GaussianMixture`` cannot do).  Initialised by per-class k-means
    (k-means++ seeding).  With ``n_components == 1`` this is one M-step: per-class
    Gaussians.

    Returns
    -------
    result : dict with ``weights`` (K,) (summing to one within each class),
        ``means`` (K, d), ``covariances``, ``precisions_cholesky`` (float64),
        ``component_class`` (K,), ``intensities``, ``n_iter``, ``converged``,
        ``lower_bound`` (mean class-conditional log-likelihood per sample).
    """
    from ._prototypes import class_prototypes

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n = X.shape[0]
    counts = np.bincount(y, minlength=n_classes)
    per_class = np.full(n_classes, n_components, dtype=np.intp)
    kwargs = dict(shrinkage=shrinkage, pooling=pooling, reg_covar=reg_covar)
    if n_components == 1:
        resp = np.zeros((n, n_classes))
        resp[np.arange(n), y] = 1.0
        component_class = np.arange(n_classes)
    else:
        protos, component_class, _ = class_prototypes(
            X, y, n_classes, per_class, random_state=random_state, max_iter=max_iter
        )
        resp = np.zeros((n, protos.shape[0]))
        for c in range(n_classes):
            rows = np.flatnonzero(y == c)
            cols = np.flatnonzero(component_class == c)
            D = ((X[rows, None, :] - protos[None, cols, :]) ** 2).sum(-1)
            resp[rows, cols[D.argmin(1)]] = 1.0
    n_iter, converged, lower_bound = 0, True, np.nan
    for n_iter in range(1, (max_iter if n_components > 1 else 1) + 1):  # noqa: B007
        nk, means, cov, intensities = estimate_gaussian_parameters(
            X, resp, covariance_type, **kwargs
        )
        weights = nk / counts[component_class]
        prec = compute_precision_cholesky(cov, covariance_type)
        if n_components == 1:
            break
        # E-step, one class at a time over its own components.
        log_det = log_det_precision_cholesky(prec, covariance_type, X.shape[1])
        new_resp = np.zeros_like(resp)
        total = 0.0
        for c in range(n_classes):
            rows = np.flatnonzero(y == c)
            cols = np.flatnonzero(component_class == c)
            ld = log_det if covariance_type == "tied" else log_det[cols]
            L = (
                log_gaussian_density(
                    X[rows],
                    means[cols],
                    _component_slice(prec, covariance_type, cols),
                    covariance_type,
                    ld,
                )
                + np.log(weights[cols])[None, :]
            )
            norm = _logsumexp_rows(L)
            total += norm.sum()
            new_resp[np.ix_(rows, cols)] = np.exp(L - norm[:, None])
        resp = new_resp
        prev, lower_bound = lower_bound, total / n
        if n_iter > 1 and abs(lower_bound - prev) < tol:
            break
    else:
        converged = False
    return dict(
        weights=weights,
        means=means,
        covariances=cov,
        precisions_cholesky=prec,
        component_class=np.asarray(component_class, dtype=np.intp),
        intensities=intensities,
        n_iter=n_iter,
        converged=converged,
        lower_bound=lower_bound,
    )


def _logsumexp_rows(L):
    m = L.max(1)
    return m + np.log(np.exp(L - m[:, None]).sum(1))
