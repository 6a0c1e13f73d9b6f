"""Covariance estimation with shrinkage and Cholesky factors of precisions.

The pooled (tied) within-class covariance, Ledoit-Wolf / fixed shrinkage towards a scaled
identity, and the Cholesky factor of the precision computed by a triangular solve (as
scikit-learn's ``GaussianMixture`` does), never by inverting a matrix.
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


def shrunk_precision_cholesky(covariance, n_samples, shrinkage):
    """Cholesky factor of the precision of a covariance shrunk towards ``tr/d * I``.

    Parameters
    ----------
    covariance : (d, d) maximum-likelihood covariance.
    n_samples : int, samples it was estimated from (for OAS).
    shrinkage : "auto" (Oracle Approximating Shrinkage), float in [0, 1] or None (0).

    Returns
    -------
    precision_cholesky : (d, d) array like `covariance`, shrinkage : float used.
    """
    s = oas_shrinkage(covariance, n_samples) if shrinkage == "auto" else shrinkage
    s = float(s or 0.0)
    S = shrink_covariance(covariance.copy(), s)
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
