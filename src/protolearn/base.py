"""Shared estimator skeletons.

`BasePrototypeClassifier` turns per-class scores (``_class_scores``, higher = more
likely) into ``decision_function`` / ``predict`` / ``predict_proba`` with the scikit-learn
conventions; `NearestPrototypeMixin` adds what every nearest-prototype rule has:
distances to labelled prototypes, certified radii and explanations.
`BaseOutlierDetector` turns a novelty score (``_score_samples``, higher = more normal)
into ``score_samples`` / ``decision_function`` / ``predict`` with the conventions of
scikit-learn's ``IsolationForest``.
"""

import contextlib
import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, OutlierMixin
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from . import __version__
from ._core import _distances, _robustness
from .utils import _array_api as xp
from .utils._array_api import get_namespace
from .utils._sklearn_compat import Interval, StrOptions
from .utils._validation import (
    bunch_like,
    check_finite_output,
    labels_out,
    validate_predict_data,
)
from .utils.persistence import check_saved_version


@contextlib.contextmanager
def unchanged_on_error(estimator):
    """Leave `estimator` as it was when the block raises: a ``partial_fit`` batch
    that fails does not half-update the model."""
    state = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(state)
        raise


def starts_stream(estimator, fitted_attr):
    """True when this ``partial_fit`` call starts a stream (no running statistics
    yet); warns when it replaces a model fitted by ``fit`` (which has `fitted_attr`
    but keeps no running statistics)."""
    first = getattr(estimator, "_stream", None) is None
    if first and hasattr(estimator, fitted_attr):
        warnings.warn(
            "partial_fit on a model fitted by fit starts a new stream from this "
            "batch: fit keeps no running statistics.",
            UserWarning,
        )
    return first


class VersionedStateMixin:
    """Stores the protolearn version with every saved estimator and refuses to load
    one saved by an incompatible version (:mod:`protolearn.utils.persistence`).

    Every public protolearn estimator inherits it (left of ``BaseEstimator``), so that
    pickle, joblib and skops all record the version in ``__getstate__`` and check it
    in ``__setstate__``.  A subclass that overrides these calls ``super()``: its
    ``__setstate__`` first, before rebuilding anything from the state.
    """

    def __getstate__(self):
        state = super().__getstate__()
        return {**state, "_protolearn_version": __version__}

    def __setstate__(self, state):
        state = dict(state)
        check_saved_version(state.pop("_protolearn_version", None), type(self).__name__)
        super().__setstate__(state)


class BasePrototypeClassifier(ClassifierMixin, VersionedStateMixin, BaseEstimator):
    """Classifier whose per-class scores come from the hook ``_class_scores(X)``.

    Subclasses implement ``_class_scores`` (an (n, n_classes) array, numpy or torch like
    ``X``, higher = more likely) and may override ``_proba_logits``.
    """

    def _class_scores(self, X):  # pragma: no cover - abstract hook
        raise NotImplementedError

    def _proba_logits(self, scores):
        """Hook: the logits whose softmax is ``predict_proba`` (the scores here)."""
        return scores

    def _proba_from_scores(self, scores):
        return xp.softmax(self._proba_logits(scores), axis=1)

    def _validated_scores(self, X):
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        return X, check_finite_output(self._class_scores(X), self)

    def _score_row_bytes(self, X):
        """Hook: temporary bytes per query row of ``_class_scores`` (chunk sizing)."""
        return 4 * 8 * max(len(self.classes_), X.shape[1])

    def _map_scores(self, fn, X):
        """``fn(_class_scores(chunk))`` over row chunks of ``X`` (``working_memory``):
        a path returning one value per row never holds the (n, n_classes) scores."""
        return _distances.map_row_chunks(
            lambda Xc, _: fn(self._class_scores(Xc)), X, self._score_row_bytes(X)
        )

    def decision_function(self, X):
        """Per-class scores (higher = more likely).

        Returns
        -------
        scores : ndarray (or tensor) of shape (n_samples, n_classes), or (n_samples,)
            for two classes (score of ``classes_[1]`` minus that of ``classes_[0]``).
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        if len(self.classes_) != 2:
            return check_finite_output(self._class_scores(X), self)
        return self._map_scores(
            lambda S: S[:, 1] - S[:, 0] if S.shape[1] == 2 else S, X
        )

    def predict(self, X):
        """Class labels, ``classes_[argmax(decision_function(X))]``."""
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        idx = self._map_scores(lambda S: xp.argmax(S, axis=1), X)
        return labels_out(self.classes_, idx, like=X)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_``."""
        _, scores = self._validated_scores(X)
        return self._proba_from_scores(scores)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba` (a log-softmax: finite where a
        probability rounds to 0)."""
        _, scores = self._validated_scores(X)
        return xp.log_softmax(self._proba_logits(scores), axis=1)


class NearestPrototypeMixin:
    """Distances to labelled prototypes, class scores, certified radii, explanations.

    Expects fitted ``prototypes_`` (P, d), ``prototype_labels_`` (P,) in the user's label
    space, ``classes_``, and a ``_distance_spec()`` returning ``(metric, precision_cholesky)``
    for :mod:`protolearn._core._distances`.  Prototypes must be stored grouped by class.
    """

    def _distance_spec(self):
        return "sqeuclidean", None

    def _preprocess(self, X):
        """Hook: map inputs into the space the prototypes live in (identity here)."""
        return X

    def _prototype_class_index(self):
        return np.searchsorted(self.classes_, self.prototype_labels_)

    def _prototype_distances(self, X):
        metric, prec = self._distance_spec()
        return _distances.pairwise_distances(
            self._preprocess(X),
            self.prototypes_,
            metric,
            precision_cholesky=prec,
        )

    def predict(self, X):
        """Class of the nearest prototype.

        Computed chunk by chunk as the argmax of the linear prototype scores
        ``A x - c`` (see :mod:`protolearn._core._robustness`): one matrix product per
        chunk, the same comparison the certified radius is computed from.
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        metric, prec = self._distance_spec()
        winner = _robustness.nearest_prototype_index(
            self._preprocess(X),
            self.prototypes_,
            metric,
            precision_cholesky=prec,
        )
        proto_cls = self._prototype_class_index()
        return labels_out(self.classes_, proto_cls[xp.to_numpy(winner)], like=X)

    def _class_scores(self, X):
        # chunk by chunk: never the full (n, n_prototypes) distance matrix
        metric, prec = self._distance_spec()
        groups, n_classes = self._prototype_class_index(), len(self.classes_)
        return _distances.map_distance_chunks(
            lambda D: -_distances.min_per_group(D, groups, n_classes),
            self._preprocess(X),
            self.prototypes_,
            metric,
            precision_cholesky=prec,
        )

    def certified_radius(self, X):
        """Certified L2 robustness radius of each prediction, in the input space.

        No perturbation ``delta`` with ``||delta||_2`` below the returned radius changes
        the predicted class.  The radius is the distance from ``x`` to the nearest
        decision hyperplane between its winning prototype(s) and a prototype of another
        class (Saralajew et al., 2019): exact with one prototype per class, a sound lower
        bound with several.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        radius : ndarray (or tensor on X's device) of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        metric, prec = self._distance_spec()
        return _robustness.nearest_prototype_radius(
            self._preprocess(X),
            self.prototypes_,
            self._prototype_class_index(),
            metric=metric,
            precision_cholesky=prec,
        )

    def explain(self, X, n_exemplars=3, n_prototypes=3):
        """Why each sample got its label: nearest prototypes and training exemplars.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        n_exemplars : int, default=3
            Training exemplars to return per sample: the stored exemplars of the
            sample's nearest prototype (its ``exemplars_per_prototype`` training samples
            nearest to it), ranked by their distance to the sample.
        n_prototypes : int, default=3
            Nearest prototypes to return per sample.

        Returns
        -------
        explanation : :class:`~sklearn.utils.Bunch` of numpy arrays (tensors on X's
            device for a tensor ``X``; string labels stay numpy) with
            ``prototype_index`` (n_samples, n_prototypes) indices into ``prototypes_``,
            nearest first; ``prototype_label``; ``prototype_distance``;
            ``exemplar_index`` (n_samples, n_exemplars) row indices into the training
            data (-1 where fewer exemplars exist); ``exemplar_distance`` (inf there);
            ``exemplar_label``.
        """
        check_is_fitted(self)
        like = X
        if not (isinstance(n_exemplars, (int, np.integer)) and n_exemplars >= 0):
            raise ValueError(f"n_exemplars must be an int >= 0; got {n_exemplars!r}.")
        if not (isinstance(n_prototypes, (int, np.integer)) and n_prototypes >= 1):
            raise ValueError(f"n_prototypes must be an int >= 1; got {n_prototypes!r}.")
        X = xp.to_numpy(validate_predict_data(self, X))
        D = xp.to_numpy(self._prototype_distances(X))
        k = min(n_prototypes, D.shape[1])
        order = np.argsort(D, axis=1, kind="stable")[:, :k]
        proto_dist = np.take_along_axis(D, order, axis=1)
        stored = self.exemplar_indices_.shape[1]
        if n_exemplars > stored:
            raise ValueError(
                f"n_exemplars={n_exemplars} but only {stored} exemplars per prototype "
                "were stored at fit time; raise exemplars_per_prototype."
            )
        metric, prec = self._distance_spec()
        ex_idx = np.full((X.shape[0], n_exemplars), -1, dtype=np.intp)
        ex_dist = np.full((X.shape[0], n_exemplars), np.inf, dtype=D.dtype)
        Xt = self._preprocess(X)
        for p in np.unique(order[:, 0]):
            rows = np.flatnonzero(order[:, 0] == p)
            valid = self.exemplar_indices_[p] >= 0
            if n_exemplars == 0 or not valid.any():
                continue
            E = self.exemplars_[p][valid]
            De = _distances.pairwise_distances(
                Xt[rows], E, metric, precision_cholesky=prec
            )
            m = min(n_exemplars, E.shape[0])
            top = np.argsort(De, axis=1, kind="stable")[:, :m]
            ex_idx[rows, :m] = self.exemplar_indices_[p][valid][top]
            ex_dist[rows, :m] = np.take_along_axis(De, top, axis=1)
        nearest_label = self.prototype_labels_[order[:, 0]]
        explanation = Bunch(
            prototype_index=order,
            prototype_label=self.prototype_labels_[order],
            prototype_distance=proto_dist,
            exemplar_index=ex_idx,
            exemplar_distance=ex_dist,
            exemplar_label=np.repeat(nearest_label[:, None], n_exemplars, axis=1),
        )
        return bunch_like(explanation, like)


class BaseOutlierDetector(OutlierMixin, VersionedStateMixin, BaseEstimator):
    """Novelty detector whose score comes from the hook ``_score_samples(X)``.

    The conventions of :class:`sklearn.ensemble.IsolationForest`:

    - ``score_samples(X)``: higher = more normal (in-distribution);
    - ``decision_function(X) = score_samples(X) - offset_`` (negative = outlier);
    - ``predict(X)``: ``+1`` for inliers, ``-1`` for outliers (ints);
    - ``contamination``: "auto" or the share of training samples in (0, 0.5] to call
      outliers; ``offset_`` is that percentile of the training scores.  "auto" uses
      :attr:`AUTO_CONTAMINATION` (5%: the threshold that keeps 95% of the training
      data, the operating point of the FPR95 metric).

    Subclasses implement ``_score_samples`` (an (n,) array, numpy or torch like ``X``,
    on ``X``'s device) and call ``self._set_offset(X)`` at the end of ``fit``; one whose
    training rows score themselves (a training row is its own nearest neighbour)
    overrides ``_training_scores`` to leave them out.  They add
    their own entries to ``_parameter_constraints`` (``{**BaseOutlierDetector.
    _parameter_constraints, ...}``).
    """

    AUTO_CONTAMINATION = 0.05

    _parameter_constraints = {
        "contamination": [
            StrOptions({"auto"}),
            Interval(Real, 0, 0.5, closed="right"),
        ],
    }

    def _score_samples(self, X):  # pragma: no cover - abstract hook
        raise NotImplementedError

    def _training_scores(self, X):
        """Scores of the training rows ``X`` that set ``offset_`` (by default, the
        same as :meth:`score_samples`)."""
        return self._score_samples(X)

    def _set_offset(self, X, max_samples=None):
        """``offset_`` from the scores of the (validated) training data ``X``.

        With `max_samples`, at most that many evenly spaced rows of ``X`` are scored
        (for detectors whose training scores cost O(n^2), such as kNN).
        """
        c = self.contamination
        c = self.AUTO_CONTAMINATION if c == "auto" else c
        if max_samples is not None and X.shape[0] > max_samples:
            X = X[np.linspace(0, X.shape[0] - 1, max_samples).astype(np.intp)]
        scores = xp.to_numpy(self._training_scores(X)).astype(np.float64)
        self.offset_ = float(np.percentile(scores, 100.0 * c))

    def score_samples(self, X):
        """Normality score of each sample (higher = more in-distribution).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray (or tensor on X's device) of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        return check_finite_output(self._score_samples(X), self)

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        decision : ndarray (or tensor on X's device) of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """``+1`` for inliers, ``-1`` for outliers (``decision_function < 0``).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        is_inlier : ndarray of int (or int64 tensor on X's device) of shape (n_samples,)
        """
        decision = self.decision_function(X)
        return get_namespace(decision).where(decision < 0, -1, 1)  # int64

    def fit_predict(self, X, y=None, **kwargs):
        """Fit on ``X`` (with labels ``y`` when given) and return ``predict(X)``.

        Unlike :meth:`sklearn.base.OutlierMixin.fit_predict`, which ignores `y`, the
        labels are passed on to :meth:`fit`.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Class labels, as in :meth:`fit`.
        **kwargs : dict
            Passed to :meth:`fit`.

        Returns
        -------
        is_inlier : ndarray of int (or int64 tensor on X's device) of shape (n_samples,)
            ``+1`` for inliers, ``-1`` for outliers.
        """
        return self.fit(X, y, **kwargs).predict(X)
