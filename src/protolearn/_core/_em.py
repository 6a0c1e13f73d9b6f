"""The expectation-maximisation loop shared by the mixture fits.

A mixture family supplies a small model object with two methods (as scikit-learn's
``mixture._base.BaseMixture`` supplies ``_e_step`` / ``_m_step`` to its ``fit``):

- ``m_step(resp)``: re-estimate the parameters (held by the model) from the
  responsibilities ``resp`` (whatever the family's E-step returns);
- ``e_step()``: the responsibilities under the current parameters and the summed
  log-likelihood they were computed with, ``(resp, total)``.

:func:`expectation_maximization` alternates them, records the mean per-sample bound
``total / n_samples`` of every E-step and stops when it settles.  Used by
:func:`protolearn._core._gaussian.fit_class_mixtures` (Gaussian mixtures per class)
and :func:`protolearn._core._mixture.fit_vmf_mixtures` (von Mises-Fisher mixtures).
"""

import numpy as np
from sklearn.utils import Bunch


def expectation_maximization(model, *, max_iter, tol, n_samples, resp=None):
    """Run EM on `model` until the bound changes by less than `tol` or `max_iter`.

    Each iteration is an M-step then an E-step.  The start decides the stopping test:

    - from responsibilities (`resp` given, e.g. hard k-means assignments): the test
      compares the two latest bounds, and the model keeps the parameters the last
      bound was computed at;
    - from the model's parameters (`resp` None): an E-step comes first, and the loop
      is scikit-learn's ``GaussianMixture.fit`` (E-step, M-step, test the bound of
      that E-step) followed by its final E-step: the test compares the two bounds
      before the latest M-step, and the last bound is that of the parameters kept.

    Parameters
    ----------
    model : object with ``m_step(resp)`` and ``e_step() -> (resp, total)``
    max_iter : int
        Most M-steps.
    tol : float
        Stop when the mean per-sample bound changes by less.
    n_samples : int
        Divides the summed log-likelihood of each E-step.
    resp : object, default=None
        Initial responsibilities; None starts with an E-step.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` with ``n_iter`` (M-steps run),
        ``converged`` and ``lower_bounds`` (the mean per-sample bound of every
        E-step, in order; the last one is that of the returned parameters).
    """
    bounds = []
    if resp is None:
        resp, total = model.e_step()
        bounds.append(total / n_samples)
    lag = len(bounds)  # the test looks `lag` E-steps back
    converged, n_iter = False, 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        model.m_step(resp)
        resp, total = model.e_step()
        bounds.append(total / n_samples)
        if len(bounds) > lag + 1 and abs(bounds[-1 - lag] - bounds[-2 - lag]) < tol:
            converged = True
            break
    return Bunch(n_iter=n_iter, converged=converged, lower_bounds=np.asarray(bounds))
