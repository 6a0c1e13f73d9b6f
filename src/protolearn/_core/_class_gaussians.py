"""Class-conditional Gaussian models: one Gaussian (or mixture) per class.

The model of :class:`~protolearn.classification.GaussianPrototypeClassifier`, as a
dict of plain arrays:

``means``, ``precisions_cholesky``, ``log_det``
    The components (grouped by class), in the data's dtype.
``weights``, ``component_class``, ``n_classes``
    Mixture weights within each class and each component's class.
``raw``
    What the estimation returned (covariances, shrinkage intensities, EM counts).
``background``
    None, or the background Gaussian of all known rows (``mean``,
    ``precisions_cholesky``, ``log_det``): class scores are then the log-likelihood
    ratio against it (the relative Mahalanobis score of Ren et al., 2021).

It is fitted from rows (:func:`fit_class_model`, EM for several components per class)
or from streamed per-class moments (:func:`class_model_from_stats`), and scored by
:func:`class_log_density`.
"""

import numpy as np

from ..utils._array_api import to_numpy
from . import _covariance, _gaussian, _streaming


def class_log_priors(counts, priors=None, subset=None):
    """Log class priors: ``priors`` (non-negative weights, normalised) or, when None,
    the class frequencies ``counts``; `subset` keeps some classes (renormalised)."""
    if priors is None:
        p = counts.astype(np.float64)
    else:
        p = np.asarray(priors, dtype=np.float64).ravel()
        if p.size != counts.size:
            raise ValueError(
                f"priors has {p.size} entries but there are {counts.size} classes."
            )
        if np.any(p < 0) or not np.isfinite(p).all():
            raise ValueError("priors must be non-negative and finite.")
    if subset is not None:
        p = p[subset]
    s = p.sum()
    if s <= 0:
        raise ValueError("priors must not all be zero.")
    with np.errstate(divide="ignore"):
        return np.log(p / s)


def background_type(covariance_type):
    """Covariance type of the background Gaussian ("full" for "full" and "tied")."""
    return "full" if covariance_type in ("full", "tied") else covariance_type


def _packed(mean, prec, covariance_type, dtype):
    return dict(
        mean=mean.astype(dtype),
        precisions_cholesky=prec.astype(dtype),
        log_det=_gaussian.log_det_precision_cholesky(
            prec, covariance_type, mean.shape[-1]
        ),
    )


def fit_background(X, covariance_type, *, shrinkage, reg_covar):
    """One Gaussian for all rows of ``X`` (the relative Mahalanobis background)."""
    ct = background_type(covariance_type)
    _, mean, cov, _ = _covariance.estimate_gaussian_parameters(
        X, np.ones((X.shape[0], 1)), ct, shrinkage=shrinkage, reg_covar=reg_covar
    )
    return _packed(mean, _covariance.compute_precision_cholesky(cov, ct), ct, X.dtype)


def fit_class_model(
    X,
    y,
    n_classes,
    n_components,
    covariance_type,
    *,
    shrinkage,
    pooling,
    reg_covar,
    max_iter,
    tol,
    relative,
    random_state,
):
    """The model (see the module docstring) of rows ``X`` with class indices ``y``:
    ``n_components`` Gaussians per class
    (:func:`protolearn._core._gaussian.fit_class_mixtures`)."""
    res = _gaussian.fit_class_mixtures(
        X,
        y,
        n_classes,
        n_components,
        covariance_type,
        shrinkage=shrinkage,
        pooling=pooling,
        reg_covar=reg_covar,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
    )
    dtype = X.dtype
    prec = res["precisions_cholesky"]
    background = None
    if relative:
        background = fit_background(
            X, covariance_type, shrinkage=shrinkage, reg_covar=reg_covar
        )
    return _with_argmax_form(
        dict(
            means=res["means"].astype(dtype),
            precisions_cholesky=prec.astype(dtype),
            log_det=_gaussian.log_det_precision_cholesky(
                prec, covariance_type, X.shape[1]
            ),
            weights=res["weights"],
            component_class=res["component_class"],
            n_classes=n_classes,
            raw=dict(res),  # a plain dict: skops trusts no Bunch
            background=background,
        ),
        covariance_type,
    )


def class_model_from_stats(
    stats, covariance_type, *, shrinkage, pooling, reg_covar, relative, dtype
):
    """The one-Gaussian-per-class model from streamed per-class moments
    (:func:`protolearn._core._streaming.update_group_stats`)."""
    ct = covariance_type
    counts = stats["n"].astype(np.int64)
    nk, means, cov, intensities = _streaming.gaussian_parameters_from_stats(
        stats, ct, shrinkage=shrinkage, pooling=pooling, reg_covar=reg_covar
    )
    prec = _covariance.compute_precision_cholesky(cov, ct)
    raw = dict(
        weights=nk / np.maximum(counts, 1),
        covariances=cov,
        intensities=intensities,
        n_iter=1,
        converged=True,
    )
    background = None
    if relative:
        bt = background_type(ct)
        _, mean, bcov, _ = _streaming.gaussian_parameters_from_stats(
            _streaming.pool_groups(stats), bt, shrinkage=shrinkage, reg_covar=reg_covar
        )
        background = _packed(
            mean, _covariance.compute_precision_cholesky(bcov, bt), bt, dtype
        )
    return _with_argmax_form(
        dict(
            means=means.astype(dtype),
            precisions_cholesky=prec.astype(dtype),
            log_det=_gaussian.log_det_precision_cholesky(prec, ct, means.shape[1]),
            weights=raw["weights"],
            component_class=np.arange(counts.size),
            n_classes=counts.size,
            raw=raw,
            background=background,
        ),
        ct,
    )


def _with_argmax_form(model, covariance_type):
    """`model` with the linear scores of its argmax (tied covariance; see
    :func:`~protolearn._core._gaussian.tied_argmax_form`), computed once at fit."""
    if covariance_type == "tied":
        form = _gaussian.tied_argmax_form(
            model["weights"],
            model["means"],
            model["precisions_cholesky"],
            model["component_class"],
            model["n_classes"],
        )
        if form is not None:
            model["argmax_form"] = form
    return model


def class_log_density(X, model, covariance_type):
    """(n, n_classes) class log-densities ``log p(x | c)`` (minus the background's
    log-density for a relative model), numpy or torch like ``X``."""
    L = _gaussian.class_mixture_log_density(
        X,
        model["weights"],
        model["means"],
        model["precisions_cholesky"],
        covariance_type,
        model["component_class"],
        model["n_classes"],
        log_det=model["log_det"],
    )
    bg = model["background"]
    if bg is not None:
        L -= _gaussian.log_gaussian_density(
            X,
            bg["mean"],
            bg["precisions_cholesky"],
            background_type(covariance_type),
            log_det=bg["log_det"],
        )
    return L


def assign(X, model, covariance_type, log_priors):
    """(most probable class index, its log-density) of each row, numpy float64."""
    L = to_numpy(class_log_density(X, model, covariance_type)).astype(np.float64)
    a = np.argmax(L + log_priors[None, :], axis=1)
    return a, L[np.arange(L.shape[0]), a]


def predicted_class(X, model, covariance_type, log_priors):
    """Index of each row's most probable class (argmax of :func:`class_log_density`
    plus `log_priors`), numpy or torch like ``X``: without the log-densities
    themselves (see :func:`~protolearn._core._gaussian.class_mixture_argmax`; a
    relative model's background density is the same for every class)."""
    return _gaussian.class_mixture_argmax(
        X,
        model["weights"],
        model["means"],
        model["precisions_cholesky"],
        covariance_type,
        model["component_class"],
        model["n_classes"],
        log_priors,
        log_det=model["log_det"],
        form=model.get("argmax_form"),
    )
