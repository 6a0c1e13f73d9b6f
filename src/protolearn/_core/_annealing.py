"""The temperature of Laplacian K-means / K-modes, from deterministic annealing.

Soft K-means at temperature ``T`` keeps two clusters apart only below the critical
temperature ``2 lambda_max`` of the cluster's covariance (its largest eigenvalue):
above it the centres merge (Rose, 1998).  :func:`annealing_temperature` returns half
of it for the typical (median) cluster of an initial k-means solution, so that
assignments stay sharp at any number of clusters and in any dimension while the kNN
graph still reshapes the boundaries.
"""

import numpy as np

from ._prototypes import cluster_top_variances


def annealing_temperature(Z, labels, n_clusters, bandwidth, prototype, random_state):
    """Half the critical temperature of the median initial cluster (numpy `Z`).

    Parameters
    ----------
    Z : (n, d) numpy array, the (preprocessed) points.
    labels : (n,) initial cluster of each point.
    n_clusters : int
    bandwidth : float, the kernel bandwidth ``h`` (root mean squared kNN distance).
    prototype : {"kmeans", "kmodes"}
    random_state : RandomState, for the eigenvalue estimates.

    Returns
    -------
    temperature : float > 0.  Clusters with no spread above the floating-point
        resolution of the squared distances (duplicated points) are left out of the
        median; when none is left, ``h^2``.  For "kmodes" the value is divided by
        ``2 h^2``: near a mode the kernel term is ``-1 + |x - m|^2 / (2 h^2)``, so this
        is the K-means sharpness in the kernel's units.
    """
    top = cluster_top_variances(Z, labels, n_clusters, random_state=random_state)
    # Spreads within the rounding error of the solver's squared distances
    # (|z|^2 - 2 z.m + |m|^2: eps |z|^2) are no spread (clusters of duplicated
    # points); dividing by them would blow that error up into the objective.
    mean_sq = float(np.einsum("ij,ij->", Z, Z, dtype=np.float64)) / Z.shape[0]
    floor = 10 * float(np.finfo(Z.dtype).eps) * mean_sq
    top = top[np.isfinite(top) & (top > floor)]
    h = bandwidth
    T = float(np.median(top)) if top.size else max(float(h * h), floor)
    if prototype == "kmodes":
        T /= 2 * h * h
    return max(T, float(np.finfo(np.float32).tiny))
