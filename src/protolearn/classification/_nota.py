"""None-of-the-above (NOTA) rejection shared by the shallow and deep Gaussian heads.

A NOTA classifier assigns each query its best class ``a`` and rejects it when its
class-fit score is below ``margins_[a]`` (margins fitted by :mod:`protolearn._core.
_margins`).  This module holds the estimator side: the label bookkeeping in ``fit``
(rows labelled ``nota_label`` are known-unknowns, never a class) and ``predict`` /
``score_samples`` from a ``_fit_scores(X)`` hook.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._core import _margins
from ..utils._array_api import asarray_like, get_namespace, to_numpy
from ..utils._sklearn_compat import Interval, StrOptions
from ..utils._validation import labels_out, resolve_nota_label, validate_predict_data

NOTA_MODES = ("global", "quantile", "adaptive")

# The rejection parameters every NOTA classifier shares.
NOTA_CONSTRAINTS = {
    "nota": [None, StrOptions(set(NOTA_MODES))],
    "nota_label": "no_validation",
    "target_recall": [None, Interval(Real, 0, 1, closed="neither")],
    "nota_rate": [None, Interval(Real, 0, 1, closed="neither")],
    "margin_shrinkage": [Interval(Real, 0, 1, closed="both")],
    "n_splits": [Interval(Integral, 2, None, closed="left")],
    "calibration_size": [Interval(Real, 0, 1, closed="neither")],
}


def labels_with_nota(classes, nota_label):
    """``classes`` followed by ``nota_label``, in a dtype holding both exactly.

    Integer and boolean classes with an integer ``nota_label`` give int64 (a bool array
    cannot hold -1, and numpy would promote uint64 and int64 to float64, rounding labels
    beyond 2**53); any other combination takes numpy's common dtype, or object where
    that dtype would change a label (e.g. integers beyond 2**53 with a float label).
    """
    nota = np.asarray([nota_label])
    if classes.dtype.kind in "biu" and nota.dtype.kind in "iu":
        if classes.dtype.kind != "u" or classes.max() <= np.iinfo(np.int64).max:
            return np.concatenate([classes.astype(np.int64), nota.astype(np.int64)])
    out = np.concatenate([classes, nota])
    if not (np.all(out[:-1].astype(classes.dtype) == classes) and out[-1] == nota[0]):
        out = np.concatenate([classes.astype(object), nota.astype(object)])
    return out


def split_nota_rows(estimator, y):
    """Known classes and known-unknown rows of validated labels ``y``.

    With ``estimator.nota`` set, rows labelled the resolved ``nota_label`` are
    known-unknowns (they never form a class).  Raises for fewer than two classes,
    and, with ``nota``, for a class of one sample (margins hold samples out).

    Returns
    -------
    nota_label : scalar or None
    unknown : ndarray of bool, shape (n_samples,)
    classes : ndarray of shape (n_classes,)
    y_idx : ndarray of shape (n_known,)
        Class index of each known row (the rows ``~unknown``, in order).
    counts : ndarray of shape (n_classes,)
    """
    nota_label = None
    unknown = np.zeros(y.shape[0], dtype=bool)
    if estimator.nota is not None:
        nota_label = resolve_nota_label(estimator.nota_label, y)
        unknown = y == nota_label
    classes, y_idx = np.unique(y[~unknown], return_inverse=True)
    if classes.size < 2:
        raise ValueError(
            f"{type(estimator).__name__} needs samples of at least 2 classes; got "
            f"{classes.size} class ({classes.tolist()})."
        )
    counts = np.bincount(y_idx, minlength=classes.size)
    if estimator.nota is not None and counts.min() < 2:
        raise ValueError(
            f"nota={estimator.nota!r} holds out samples of each class to fit margins, "
            "so every class needs at least 2 samples; class(es) "
            f"{classes[counts < 2].tolist()} have 1."
        )
    return nota_label, unknown, classes, y_idx, counts


def warn_open_classes(margins, classes, param, alpha):
    """Warn about the classes whose conformal margin is ``-inf`` (too few
    calibration samples to reject anything at rejection rate ``alpha``)."""
    open_ = np.flatnonzero(np.isneginf(margins))
    if open_.size:
        need = int(np.ceil(1 / alpha)) - 1
        warnings.warn(
            f"{param}={alpha} needs at least {need} calibration samples "
            "predicted as a class to reject anything; class(es) "
            f"{classes[open_][:10].tolist()}{'...' if open_.size > 10 else ''}"
            f" ({open_.size} in all) had fewer and accept every query. Raise "
            f"calibration_size or {param}.",
            UserWarning,
        )


class NotaRejectionMixin:
    """``predict`` and ``score_samples`` of a classifier with rejection margins.

    The classifier implements ``_fit_scores(X) -> (class index, fit score)`` (numpy
    or torch like ``X``), the fit score being the class-fit score minus the class's
    margin (:meth:`_margin_fit`), and sets ``margins_`` and ``nota_label_`` in fit.
    """

    def _margin_fit(self, scores, posterior):
        """(``argmax`` of ``posterior``, that class's ``scores`` minus its margin)."""
        xp = get_namespace(scores)
        a = xp.argmax(posterior, axis=1)
        fit = xp.take_along_axis(scores, a[:, None], axis=1)[:, 0]
        return a, self._minus_margin(a, fit)

    def _minus_margin(self, a, fit):
        """``fit`` minus the margin of each row's class ``a`` (without ``nota``:
        ``fit``)."""
        if self.margins_ is None:
            return fit
        return fit - asarray_like(self.margins_, fit)[a]

    def _cross_fitted_margins(self, X, y_idx, X_unknown, rng, **callables):
        """:func:`protolearn._core._margins.cross_fitted_margins` with this
        classifier's rejection parameters (``callables``: its fit, score and
        skip_fold)."""
        return _margins.cross_fitted_margins(
            X,
            y_idx,
            X_unknown,
            self.classes_.size,
            n_splits=self.n_splits,
            nota=self.nota,
            target_recall=self.target_recall,
            nota_rate=self.nota_rate,
            shrinkage=self.margin_shrinkage,
            random_state=rng,
            **callables,
        )

    def predict(self, X):
        """Class labels, or ``nota_label_`` for rejected queries (with ``nota``).

        A query gets its most probable class ``c`` (``classes_[argmax
        decision_function]``) and is rejected when its class-fit score is below
        ``margins_[c]``, i.e. where :meth:`score_samples` is negative.  With
        rejection, the labels' dtype is the one described under ``nota_label``
        (boolean classes: int64 0 / 1 / -1).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray (or tensor on X's device) of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        labels = self.classes_
        if self.margins_ is None:
            return labels_out(labels, to_numpy(self._predicted_index(X)), like=X)
        a, fit = self._fit_scores(X)
        idx = to_numpy(a).copy()
        idx[to_numpy(fit) < 0] = labels.size
        labels = labels_with_nota(labels, self.nota_label_)
        return labels_out(labels, idx, like=X)

    def _predicted_index(self, X):
        """Hook: the most probable class index of each row (without rejection); a
        classifier may compute it without the class-fit scores."""
        return self._fit_scores(X)[0]

    def score_samples(self, X):
        """How well each query fits its predicted class (higher = more in-scope).

        The class-fit score of the predicted class ``c`` minus ``margins_[c]`` (the
        score itself without ``nota``): an out-of-distribution score; queries with a
        negative score are the ones :meth:`predict` rejects.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray (or tensor on X's device) of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        return self._fit_scores(X)[1]
