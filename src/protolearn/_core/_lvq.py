"""The GLVQ cost: relative distance difference and its activation (numpy or torch).

For a sample with distances ``D`` (n, P) to labelled prototypes, ``d+`` is the distance
to the nearest prototype of the sample's class and ``d-`` to the nearest prototype of
any other class; GLVQ (Sato & Yamada, 1996) minimises ``f(mu)`` with

    mu = (d+ - d-) / (d+ + d-)  in [-1, 1]

(negative iff the sample is classified correctly), ``f`` the identity or the sigmoid
``1 / (1 + exp(-beta mu))``.  Every function takes numpy arrays or torch tensors and
returns the same kind; the torch path is differentiable (autograd through ``min``).
"""

import numpy as np

from ..utils._array_api import (
    as_index_like,
    asarray_like,
    get_namespace,
    is_torch,
    to_numpy,
)


def nearest_correct_and_wrong(D, y, prototype_classes):
    """``(d+, d-)``: per row, the smallest entry of ``D`` (n, P) among the prototypes
    of the row's class ``y`` (n,) and among the others (``prototype_classes`` (P,)).

    A row whose class has no prototype gets ``d+ = inf`` (and ``d- = inf`` when every
    prototype is of its class).
    """
    xp = get_namespace(D)
    pc = as_index_like(prototype_classes, D)
    yy = as_index_like(y, D)
    same = pc[None, :] == yy[:, None]
    d_plus = xp.min(xp.where(same, D, float("inf")), axis=1)
    d_minus = xp.min(xp.where(same, float("inf"), D), axis=1)
    return d_plus, d_minus


def relative_difference(d_plus, d_minus):
    """``(d+ - d-) / (d+ + d-)``; 0 where both distances are 0."""
    denom = d_plus + d_minus
    tiny = get_namespace(denom).finfo(denom.dtype).tiny
    # torch's clamp is the gradient training has used (maximum's differs at a tie)
    denom = denom.clamp(min=tiny) if is_torch(denom) else np.maximum(denom, tiny)
    return (d_plus - d_minus) / denom


def glvq_mu(D, y, prototype_classes):
    """The GLVQ relative distance difference ``mu`` (n,) of each row of ``D``."""
    return relative_difference(*nearest_correct_and_wrong(D, y, prototype_classes))


def glvq_activation(mu, activation="sigmoid", beta=1.0):
    """``f(mu)``: "identity" or "sigmoid" ``1 / (1 + exp(-beta mu))``."""
    if activation == "identity":
        return mu
    if activation == "sigmoid":
        if is_torch(mu):  # the array API has no sigmoid: torch's, or scipy's
            return (beta * mu).sigmoid()
        from scipy.special import expit

        return expit(beta * mu)
    raise ValueError(f"activation must be 'sigmoid' or 'identity'; got {activation!r}.")


def omega_log_det(omega):
    """``log det(Omega Omega^T)`` of an (r, d) matrix with r <= d (numpy or torch).

    GMLVQ's regulariser (Schneider et al., 2010) subtracts ``mu / 2`` times this: it
    is largest when the eigenvalues of the relevance matrix are equal, so the penalty
    keeps ``Lambda`` from collapsing onto a few directions.
    """
    G = omega @ omega.T
    if is_torch(G):  # differentiable for the regulariser; numpy gives -inf at det <= 0
        return G.logdet()
    sign, logdet = np.linalg.slogdet(G)
    return logdet if sign > 0 else -np.inf


def initial_omega(X, n_components=None):
    """GMLVQ's starting ``Omega`` (r, d) for the data ``X`` (n, d), at unit Frobenius
    norm: the identity for ``r = d`` (``n_components`` None), else the top-r principal
    directions of ``X`` as rows (a deterministic start).  Same array kind as ``X``.
    """
    d = X.shape[1]
    r = d if n_components is None else n_components
    if r > d:
        raise ValueError(f"n_components={r} must be <= n_features={d}.")
    if r == d:
        omega = np.eye(d)
    else:
        Xn = to_numpy(X).astype(np.float64)
        C = np.cov(Xn, rowvar=False).reshape(d, d)
        _, vecs = np.linalg.eigh(C)
        omega = vecs[:, ::-1][:, :r].T.copy()
    return asarray_like(omega / np.sqrt((omega**2).sum()), X)
