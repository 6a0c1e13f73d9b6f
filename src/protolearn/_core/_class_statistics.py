"""Running per-class means and pooled within-class covariance, merged with a batch.

The statistics a nearest-class-mean rule needs for ``partial_fit``: per class a count
and a mean, and for the Mahalanobis metric one pooled within-class covariance.  A batch
merges into them exactly, so any split of the data into batches gives the statistics of
all rows at once (up to rounding).  numpy arrays, in the data's floating dtype.
"""

import numpy as np

from ._prototypes import class_means


def batch_class_means(X, y, n_classes, counts):
    """Means of the rows of ``X`` (n, d) per class index in ``y`` (n,); zeros for
    the classes whose ``counts`` (n_classes,) in the batch are 0."""
    present = np.flatnonzero(counts)
    means = np.zeros((n_classes, X.shape[1]), dtype=X.dtype)
    means[present] = class_means(X, np.searchsorted(present, y), present.size)
    return means


def merge_class_means(means, counts, batch_means, batch_counts):
    """Running class means after a batch: ``m + (m_b - m) n_b / (n + n_b)``.

    Parameters
    ----------
    means, batch_means : (C, d) arrays, the means so far and the batch's (zeros where
        the count is 0)
    counts, batch_counts : (C,) int arrays

    Returns
    -------
    means : (C, d) array, counts : (C,) int64 array
    """
    total = counts + batch_counts
    w = np.divide(batch_counts, total, out=np.zeros(total.size), where=total > 0)
    return means + (batch_means - means) * w[:, None].astype(means.dtype), total


def merge_pooled_covariance(
    covariance, n_seen, residuals, means, counts, batch_means, batch_counts
):
    """Pooled within-class covariance after a batch (Chan et al.'s parallel update).

    The scatter so far, ``covariance * n_seen``, gains the batch's scatter about its
    own class means (``residuals.T @ residuals``) and, for every class seen both
    before and in the batch, ``n n_b / (n + n_b)`` times the outer product of the
    shift between the two means.

    Parameters
    ----------
    covariance : (d, d) array, the pooled covariance of the `n_seen` rows so far
    n_seen : int
    residuals : (n_b, d) array, each batch row minus its class's batch mean
    means, counts, batch_means, batch_counts : as in :func:`merge_class_means`
        (before the merge)

    Returns
    -------
    covariance : (d, d) array over ``n_seen + n_b`` rows
    """
    dtype = residuals.dtype
    scatter = covariance * n_seen + residuals.T @ residuals
    total = counts + batch_counts
    both = (batch_counts > 0) & (counts > 0)
    diff = (batch_means - means)[both]
    f = counts[both] * batch_counts[both] / total[both]
    scatter += (diff * f[:, None].astype(dtype)).T @ diff
    return scatter / (n_seen + residuals.shape[0])
