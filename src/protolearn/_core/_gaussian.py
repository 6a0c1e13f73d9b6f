"""Gaussian (mixture) log-densities and per-class Gaussian mixtures fitted by EM.

Log-densities through the precision Cholesky factors, in scikit-learn's
``GaussianMixture`` layout (``_compute_log_det_cholesky``,
``_estimate_log_gaussian_prob``); per-class mixture log-densities; and
:func:`fit_class_mixtures`, whose M-step is the covariance estimation of
:mod:`protolearn._core._covariance`.
"""

import math

import numpy as np
from sklearn.utils import Bunch

from ..utils import _array_api as xp
from ._covariance import compute_precision_cholesky, estimate_gaussian_parameters


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
    k = _components_per_class(component_class, n_classes)
    # numpy's tied fast path works in place on its chunks; tensors (autograd,
    # devices) take the general path
    if _is_tied_fast_path(X, covariance_type, component_class, n_classes):
        return _tied_class_log_density(
            X, weights, means, precisions_cholesky, n_classes, log_det
        )
    L = log_gaussian_density(X, means, precisions_cholesky, covariance_type, log_det)
    if component_class.size == n_classes:
        return L
    L += xp.asarray_like(np.log(np.asarray(weights, dtype=np.float64)), L)[None, :]
    if k is not None:
        # the same number of components in every class: one reduction, no loop
        L3 = L.reshape(X.shape[0], n_classes, k)
        if xp.is_torch(L3):
            return L3.logsumexp(dim=2)
        # over the middle axis of a (rows, components, classes) copy: numpy reduces
        # it slice by slice, contiguous along the classes (scipy's logsumexp, and
        # reductions along a short last axis, took 4x the distances' time here;
        # strided slices of L3 swept the whole array once per component and op)
        return xp.logsumexp(
            np.ascontiguousarray(L3.transpose(0, 2, 1)), axis=1, overwrite_input=True
        )
    out = xp.empty((X.shape[0], n_classes), like=L)
    for c in range(n_classes):
        cols = xp.as_index_like(np.flatnonzero(component_class == c), L)
        out[:, c] = xp.logsumexp(xp.take(L, cols, axis=1), axis=1)
    return out


class _ClassGaussianMixtures:
    """E-step and M-step of :func:`fit_class_mixtures` (for :func:`expectation_maximization`).

    The parameters (``weights``, ``means``, ``covariances``, ``precisions_cholesky``,
    ``intensities``) are attributes.  Responsibilities are (n, k) arrays: column j of
    row i is the row's responsibility for component j of its own class (component
    ``y[i] * k + j``, the components grouped by class, k per class); every other
    component's is zero and is not stored, so that memory is O(n k), not O(n K).
    """

    def __init__(self, X, y, n_classes, component_class, covariance_type, options):
        self.X, self.y, self.n_classes = X, y, n_classes
        self.counts = np.bincount(y, minlength=n_classes)
        self.component_class = component_class
        self.covariance_type = covariance_type
        self.options = options  # shrinkage, pooling, reg_covar

    def m_step(self, resp):
        ct = self.covariance_type
        nk, self.means, self.covariances, self.intensities = (
            estimate_gaussian_parameters(
                self.X, resp, ct, groups=self.y, n_groups=self.n_classes, **self.options
            )
        )
        self.weights = nk / self.counts[self.component_class]
        self.precisions_cholesky = compute_precision_cholesky(self.covariances, ct)

    def e_step(self):
        """Responsibilities of each sample over its own class's components only."""
        X, ct, prec = self.X, self.covariance_type, self.precisions_cholesky
        log_det = log_det_precision_cholesky(prec, ct, X.shape[1])
        k = self.component_class.size // self.n_classes
        resp = np.zeros((X.shape[0], k))
        total = 0.0
        for c in range(self.n_classes):
            rows = np.flatnonzero(self.y == c)
            cols = np.flatnonzero(self.component_class == c)
            ld = log_det if ct == "tied" else log_det[cols]
            L = (
                log_gaussian_density(
                    X[rows], self.means[cols], _component_slice(prec, ct, cols), ct, ld
                )
                + np.log(self.weights[cols])[None, :]
            )
            norm = xp.logsumexp(L, axis=1)
            total += norm.sum()
            resp[rows] = np.exp(L - norm[:, None])
        return resp, total


def _initial_responsibilities(X, y, n_classes, n_components, random_state, max_iter):
    """One-hot responsibilities in the (n, k) layout of :class:`_ClassGaussianMixtures`:
    each sample to its class's nearest k-means centre (per-class k-means, k-means++
    seeding); its class itself for one component.  Returns ``(resp, component_class)``."""
    from ._prototypes import class_prototypes

    n = X.shape[0]
    if n_components == 1:
        return np.ones((n, 1)), np.arange(n_classes)
    per_class = np.full(n_classes, n_components, dtype=np.intp)
    protos, component_class, _ = class_prototypes(
        X, y, n_classes, per_class, random_state=random_state, max_iter=max_iter
    )
    resp = np.zeros((n, n_components))
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)
        cols = np.flatnonzero(component_class == c)
        D = ((X[rows, None, :] - protos[None, cols, :]) ** 2).sum(-1)
        resp[rows, D.argmin(1)] = 1.0
    return resp, component_class


def _class_major_order(K, n_classes):
    """Column order (component j, class c) <- ``c * k + j`` of components grouped by
    class: a (rows, K) product in this order reshapes to (rows, k, C)."""
    return np.arange(K).reshape(n_classes, K // n_classes).T.ravel()


def _per_class_logsumexp(G, n_classes):
    """(rows, C) logsumexp over each class's components of scores ``G`` (rows, K)
    in :func:`_class_major_order`, computed in `G` itself (``G`` when k = 1)."""
    k = G.shape[1] // n_classes
    if k == 1:
        return G
    return xp.logsumexp(G.reshape(len(G), k, n_classes), axis=1, overwrite_input=True)


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
    order = _class_major_order(K, n_classes)
    A, b = np.ascontiguousarray(YL[order].T), b[order].astype(X.dtype)

    def chunk(Xc, _):
        Z = (Xc - c) @ U
        G = Z @ A
        G += b[None, :]
        out = _per_class_logsumexp(G, n_classes)
        out -= 0.5 * (Z * Z).sum(1)[:, None]
        return out

    if n == 0:
        return np.empty((0, n_classes), dtype=X.dtype)
    from ._distances import map_row_chunks

    # per row: the centred copy and its image (d each), the (K,) scores and their
    # reduction's temporaries
    row_bytes = (2 * d + 3 * K) * X.dtype.itemsize
    return map_row_chunks(chunk, X, row_bytes)


def _components_per_class(component_class, n_classes):
    """k when every class has k components, grouped by class (`component_class`
    sorted); None otherwise."""
    per_class = np.bincount(component_class, minlength=n_classes)
    if np.all(per_class == per_class[0]) and np.all(np.diff(component_class) >= 0):
        return int(per_class[0])
    return None


def _is_tied_fast_path(X, covariance_type, component_class, n_classes):
    """Whether the numpy tied-covariance paths apply: the same number of components
    in every class, grouped by class."""
    return (
        covariance_type == "tied"
        and not xp.is_torch(X)
        and _components_per_class(component_class, n_classes) is not None
    )


def tied_argmax_form(weights, means, precisions_cholesky, component_class, n_classes):
    """The linear scores behind :func:`class_mixture_argmax` for a tied covariance:
    ``dict(centre, A, b)`` with ``A`` (d, K) and ``b`` (K,) in float64, columns
    ordered (component j, class c); None when the components are not tied or not
    the same number per class.

    ``log N(x; mu_k, S) = y_k . U^T x - |y_k|^2 / 2 + const - |U^T x|^2 / 2`` with
    ``y_k = U^T mu_k`` (both sides centred on the means' mean): the last term is
    the same for every class and leaves the argmax alone, and ``U y_k`` is folded
    into ``A``, so a query takes one (d, K) product and no (d, d) one.
    """
    from ._distances import common_centre

    component_class = np.asarray(component_class)
    if precisions_cholesky.ndim != 2 or not _is_tied_fast_path(
        means, "tied", component_class, n_classes
    ):
        return None
    K = means.shape[0]
    U = np.asarray(precisions_cholesky, dtype=np.float64)
    c = common_centre(np.asarray(means))
    YL = (np.asarray(means, dtype=np.float64) - c) @ U
    with np.errstate(divide="ignore"):
        b = np.log(np.asarray(weights, dtype=np.float64)) - 0.5 * (YL**2).sum(1)
    order = _class_major_order(K, n_classes)
    return dict(centre=c, A=np.ascontiguousarray((YL @ U.T)[order].T), b=b[order])


def class_mixture_argmax(
    X,
    weights,
    means,
    precisions_cholesky,
    covariance_type,
    component_class,
    n_classes,
    log_priors,
    log_det=None,
    form=None,
):
    """Index of each row's most probable class, ``argmax_c log p(x | c) +
    log_priors[c]`` (:func:`class_mixture_log_density`), numpy or torch like ``X``.

    A numpy ``X`` with a tied covariance takes the linear scores of
    :func:`tied_argmax_form` (`form`, computed when None): the same classes as the
    argmax of the densities, up to float rounding of near ties.
    """
    from ._distances import chunk_affine_rows, chunk_matmul, map_row_chunks

    component_class = np.asarray(component_class)
    log_priors = np.asarray(log_priors, dtype=np.float64)
    folded = covariance_type == "tied" and not xp.is_torch(X)
    if folded and form is None:
        form = tied_argmax_form(
            weights, means, precisions_cholesky, component_class, n_classes
        )
    if not folded or form is None:

        def general(Xc, _):
            L = class_mixture_log_density(
                Xc, weights, means, precisions_cholesky, covariance_type,
                component_class, n_classes, log_det=log_det,
            )  # fmt: skip
            L += xp.asarray_like(log_priors, L)[None, :]
            return xp.get_namespace(L).argmax(L, axis=1)

        row_bytes = 4 * max(means.shape[0], X.shape[1]) * X.dtype.itemsize
        return map_row_chunks(general, X, row_bytes)
    n, d = X.shape
    K = means.shape[0]
    # the class priors and the components' constants ride in the product, as a last
    # row of A against a column of ones (logsumexp_j (g_j + p) = logsumexp_j g_j + p)
    b = form["b"] + log_priors[np.arange(K) % n_classes]
    A = np.vstack([form["A"], b[None, :]]).astype(X.dtype)
    c = form["centre"].astype(X.dtype)

    def chunk(Xc, _):
        G = chunk_matmul(chunk_affine_rows(Xc, c), A)
        return _argmax_of_class_logsumexp(G, n_classes)

    if n == 0:
        return np.empty(0, dtype=np.intp)
    # per row: the centred copy (d + 1) and the (K,) scores
    return map_row_chunks(chunk, X, (d + 1 + 2 * K) * X.dtype.itemsize)


def _argmax_of_class_logsumexp(G, n_classes):
    """``argmax_c`` of the per-class logsumexp of scores ``G`` (rows, K) in
    :func:`_class_major_order`, numpy: ``_per_class_logsumexp(G).argmax(1)`` (up to
    the last-ulp rounding of near ties), with the logsumexp computed only where it
    can matter.

    A class's logsumexp over its k components lies in ``[max, max + log k]``, so a
    class whose ``max + log k`` falls below the best class maximum of its row (by more
    than a rounding margin) cannot win; a row keeps one to a few candidates, and the
    (rows, K) scores take one reduction (the per-class maxima) instead of the
    logsumexp's five passes.
    """
    k = G.shape[1] // n_classes
    if k == 1:
        return G.argmax(1)
    G3 = G.reshape(len(G), k, n_classes)
    M = G3.max(axis=1)  # (rows, C)
    best = M.max(axis=1)
    # float32 rounding of a logsumexp is a few ulps of its magnitude (python floats:
    # the bound stays in G's dtype)
    eps = 64 * float(np.finfo(G.dtype).eps)
    with np.errstate(invalid="ignore"):
        bound = best - (math.log(k) + eps + eps * np.abs(best))
    flat = np.flatnonzero(M >= bound[:, None])  # (all classes of a -inf row)
    rows, cls = np.divmod(flat, n_classes)
    # the candidates' components, C-contiguous (k, candidates): the reduction over
    # the leading axis runs along the candidates, in the full path's component order
    at = (rows * G.shape[1] + cls)[None, :] + (np.arange(k) * n_classes)[:, None]
    S = xp.logsumexp(G.reshape(-1)[at], axis=0, overwrite_input=True)
    M.fill(-np.inf)
    M.reshape(-1)[flat] = S
    return M.argmax(1)


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
    (k-means++ seeding) and run by :func:`~protolearn._core._em.expectation_maximization`
    from those hard assignments.  With ``n_components == 1`` this is one M-step:
    per-class Gaussians.  Responsibilities are held per class, (n, k) for k =
    `n_components` (``estimate_gaussian_parameters(groups=y)``), never (n, K): the
    memory is O(n k + K d) plus the covariances and a chunk of residual rows
    (``working_memory``).

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` with ``weights`` (K,) (summing to one
        within each class), ``means`` (K, d), ``covariances``, ``precisions_cholesky``
        (float64), ``component_class`` (K,), ``intensities``, ``n_iter``,
        ``converged``, ``lower_bounds`` (mean class-conditional log-likelihood per
        sample after each iteration; empty for one component) and ``lower_bound``
        (the last of them; NaN for one component).
    """
    from ._em import expectation_maximization

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    resp, component_class = _initial_responsibilities(
        X, y, n_classes, n_components, random_state, max_iter
    )
    options = dict(shrinkage=shrinkage, pooling=pooling, reg_covar=reg_covar)
    model = _ClassGaussianMixtures(
        X, y, n_classes, component_class, covariance_type, options
    )
    if n_components == 1:
        model.m_step(resp)
        em = Bunch(n_iter=1, converged=True, lower_bounds=np.array([]))
    else:
        em = expectation_maximization(
            model, max_iter=max_iter, tol=tol, n_samples=X.shape[0], resp=resp
        )
    return Bunch(
        weights=model.weights,
        means=model.means,
        covariances=model.covariances,
        precisions_cholesky=model.precisions_cholesky,
        component_class=np.asarray(component_class, dtype=np.intp),
        intensities=model.intensities,
        n_iter=em.n_iter,
        converged=em.converged,
        lower_bounds=em.lower_bounds,
        lower_bound=em.lower_bounds[-1] if em.lower_bounds.size else np.nan,
    )
