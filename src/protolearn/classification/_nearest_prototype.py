"""Nearest-prototype classification (nearest class mean / several prototypes per class)."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets

from .._core import _class_statistics, _covariance, _distances, _prototypes
from ..base import BasePrototypeClassifier, NearestPrototypeMixin, unchanged_on_error
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import check_class_sizes, validate_fit_data


class NearestPrototypeClassifier(NearestPrototypeMixin, BasePrototypeClassifier):
    """Nearest-prototype classifier: each class is one or several prototypes.

    With one prototype per class and ``metric="euclidean"`` this is the nearest class
    mean (it predicts exactly what :class:`sklearn.neighbors.NearestCentroid` predicts);
    with several, the prototypes are per-class k-means centres (spherical k-means for
    ``metric="cosine"``).  ``metric="mahalanobis"`` uses one pooled within-class
    covariance, shrunk in standardised units (so it does not depend on the features'
    scales).  :meth:`partial_fit` updates the
    prototypes from a stream in which new classes may appear (the "nearest class mean"
    baseline of continual learning, Mensink et al., 2013; Rebuffi et al., 2017).

    "euclidean" and "cosine" distances are in the features' own units, so a feature
    with a large range dominates them: standardise tabular data first
    (``make_pipeline(StandardScaler(), NearestPrototypeClassifier())``), or use
    ``metric="mahalanobis"``.

    Read more in the :ref:`User Guide <nearest_prototype>`.

    Parameters
    ----------
    n_prototypes : int or dict, default=1
        Prototypes per class; a dict maps class labels to counts (absent classes get 1).
    metric : {"euclidean", "cosine", "mahalanobis"}, default="euclidean"
        Distance between samples and prototypes.  "cosine" L2-normalises samples and
        prototypes (spherical prototypes).
    shrinkage : "auto", float or None, default="auto"
        Shrinkage in [0, 1] of the pooled covariance for ``metric="mahalanobis"``, in
        standardised units (its correlation matrix towards the identity, as
        scikit-learn's LDA, so it does not depend on the features' scales; "auto":
        Oracle Approximating Shrinkage, computable from streamed statistics; None
        or 0: none).  Ignored by the other metrics.
    temperature : float, default=1.0
        Positive; ``predict_proba`` is the softmax of ``-distance / temperature`` over classes
        (distance to the class's nearest prototype; squared for euclidean and
        Mahalanobis).
    exemplars_per_prototype : int, default=10
        Training samples (>= 0) kept per prototype (those nearest to it) for :meth:`explain`.
    max_iter : int, default=100
        k-means iterations when ``n_prototypes > 1``.
    random_state : int, RandomState instance or None, default=None
        Seeds k-means++.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_prototypes_total, n_features)
        Grouped by class, in the order of ``classes_`` (L2-normalised for "cosine").
    prototype_labels_ : ndarray of shape (n_prototypes_total,)
        Class label of each prototype.
    prototype_counts_ : ndarray of shape (n_prototypes_total,)
        Training samples assigned to each prototype (drives :meth:`partial_fit`).
    class_means_ : ndarray of shape (n_classes, n_features)
        Class means (of the L2-normalised samples for "cosine").
    class_count_ : ndarray of shape (n_classes,)
    covariance_ : ndarray of shape (n_features, n_features)
        Pooled within-class covariance before shrinkage ("mahalanobis" only).
    shrinkage_ : float
        Shrinkage used ("mahalanobis" only).
    precision_cholesky_ : ndarray of shape (n_features, n_features)
        Cholesky factor of the shrunk precision ("mahalanobis" only).
    exemplar_indices_ : ndarray of shape (n_prototypes_total, exemplars_per_prototype)
        Row indices (into the data seen by fit / partial_fit, in order) of each
        prototype's nearest training samples, -1 where fewer exist.
    exemplars_ : ndarray of shape (n_prototypes_total, exemplars_per_prototype, n_features)
        Those samples (L2-normalised for "cosine"; zeros where the index is -1).
    n_iter_ : int
        Most k-means iterations taken by any class (1 when prototypes are means).
    n_samples_seen_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    sklearn.neighbors.NearestCentroid : the nearest class mean with euclidean distance.

    References
    ----------
    .. [1] Mensink, Verbeek, Perronnin, Csurka. "Distance-based image classification:
       generalizing to new classes at near-zero cost." IEEE TPAMI, 2013.
    .. [2] Saralajew, Holdijk, Villmann. "Fast adversarial robustness certification of
       nearest prototype classifiers for arbitrary seminorms." NeurIPS, 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.classification import NearestPrototypeClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NearestPrototypeClassifier(n_prototypes=2, random_state=0).fit(X, y)
    >>> clf.prototypes_.shape
    (6, 4)
    >>> float(clf.score(X, y)) > 0.9
    True
    """

    _parameter_constraints = {
        "n_prototypes": [Interval(Integral, 1, None, closed="left"), dict],
        "metric": [StrOptions({"euclidean", "cosine", "mahalanobis"})],
        "shrinkage": [
            None,
            StrOptions({"auto"}),
            Interval(Real, 0, 1, closed="both"),
        ],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "exemplars_per_prototype": [Interval(Integral, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        n_prototypes=1,
        metric="euclidean",
        shrinkage="auto",
        temperature=1.0,
        exemplars_per_prototype=10,
        max_iter=100,
        random_state=None,
    ):
        self.n_prototypes = n_prototypes
        self.metric = metric
        self.shrinkage = shrinkage
        self.temperature = temperature
        self.exemplars_per_prototype = exemplars_per_prototype
        self.max_iter = max_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _distance_spec(self):
        if self.metric == "euclidean":
            return "sqeuclidean", None
        if self.metric == "cosine":
            return "cosine", None
        return "mahalanobis", self.precision_cholesky_

    def _prototypes_per_class(self, classes):
        spec = self.n_prototypes
        if not isinstance(spec, dict):
            return np.full(len(classes), spec, dtype=np.intp)
        unknown = [k for k in spec if k not in set(classes.tolist())]
        if unknown:
            raise ValueError(
                f"n_prototypes names labels that are not in y: {unknown}; "
                f"the classes are {classes.tolist()}."
            )
        counts = np.array([spec.get(c, 1) for c in classes.tolist()])
        if np.any(counts < 1) or not all(
            isinstance(v, (Integral, np.integer)) for v in spec.values()
        ):
            raise ValueError(f"n_prototypes values must be ints >= 1; got {spec}.")
        return counts.astype(np.intp)

    def _estimation_space(self, X):
        """Samples as the prototypes are estimated from them (on the unit sphere for
        cosine).  Prediction keeps the base's identity ``_preprocess``: the cosine
        distance is scale-free, and the certified radius is in the input space."""
        return _distances.l2_normalize(X) if self.metric == "cosine" else X

    # ---------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the prototypes.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        X, y = validate_fit_data(self, X, y, reset=True)
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                "NearestPrototypeClassifier needs samples of at least 2 classes; "
                f"got 1 class ({classes[0]!r})."
            )
        self.classes_ = classes
        n_per_class = self._prototypes_per_class(classes)
        counts = np.bincount(y_idx, minlength=classes.size)
        check_class_sizes(classes, counts, n_per_class, "n_prototypes", skip_empty=True)
        rng = check_random_state(self.random_state)
        self._rng = rng  # partial_fit after fit seeds new classes' k-means with it
        Xw = self._estimation_space(X)
        self.class_means_ = _prototypes.class_means(Xw, y_idx, classes.size)
        self.class_count_ = counts.astype(np.int64)
        self.n_samples_seen_ = int(X.shape[0])
        protos, proto_cls, self.n_iter_ = _prototypes.class_prototypes(
            Xw,
            y_idx,
            classes.size,
            n_per_class,
            metric=self.metric,
            random_state=rng,
            max_iter=self.max_iter,
        )
        self.prototypes_ = protos
        self.prototype_labels_ = classes[proto_cls]
        if self.metric == "mahalanobis":
            self.covariance_ = _covariance.pooled_covariance(
                X, y_idx, self.class_means_
            )
            self._set_precision()
        assign = self._assign_within_class(Xw, y_idx)
        self.prototype_counts_ = np.bincount(assign, minlength=protos.shape[0])
        self._set_exemplars(Xw, assign, np.arange(X.shape[0]), fresh=True)
        return self

    def _set_precision(self):
        if not np.trace(self.covariance_) > 0:
            raise ValueError(
                "metric='mahalanobis' needs within-class spread, but the pooled "
                "within-class covariance is zero (every class's samples are identical, "
                "e.g. one sample per class), which no shrinkage can regularise. Use "
                "metric='euclidean' or give more (distinct) samples per class."
            )
        # scale-free: shrinks the correlation matrix ("auto": OAS, from the streamed
        # covariance and count alone, so partial_fit equals fit)
        self.precision_cholesky_, self.shrinkage_ = (
            _covariance.shrunk_precision_cholesky(
                self.covariance_, self.n_samples_seen_, self.shrinkage, standardize=True
            )
        )

    def _assign_within_class(self, Xw, y_idx):
        """Index of each sample's nearest prototype among its own class's."""
        proto_cls = self._prototype_class_index()
        assign = np.empty(Xw.shape[0], dtype=np.intp)
        metric, prec = self._distance_spec()
        for c in np.unique(y_idx):
            rows = np.flatnonzero(y_idx == c)
            cols = np.flatnonzero(proto_cls == c)
            if cols.size == 1:
                assign[rows] = cols[0]
                continue
            i, _ = _distances.nearest(
                Xw[rows], self.prototypes_[cols], metric, precision_cholesky=prec
            )
            assign[rows] = cols[i]
        return assign

    def _set_exemplars(self, Xw, assign, row_ids, fresh):
        """Keep each prototype's nearest samples among the stored ones and ``Xw``."""
        m = self.exemplars_per_prototype
        P, d = self.prototypes_.shape
        cand, owner, ids = Xw, assign, row_ids
        if not fresh:  # previously stored exemplars compete with the new batch
            keep = self.exemplar_indices_ >= 0
            cand = np.concatenate([self.exemplars_[keep], Xw])
            owner = np.concatenate([np.nonzero(keep)[0], assign])
            ids = np.concatenate([self.exemplar_indices_[keep], row_ids])
        metric, prec = self._distance_spec()
        dist = _distances.paired_distances(
            cand, self.prototypes_[owner], metric, precision_cholesky=prec
        )
        order = np.lexsort((dist, owner))  # by prototype, nearest first
        owner_sorted = owner[order]
        starts = np.searchsorted(owner_sorted, np.arange(P))
        rank = np.arange(order.size) - starts[owner_sorted]
        top = rank < m
        idx = np.full((P, m), -1, dtype=np.intp)
        ex = np.zeros((P, m, d), dtype=self.prototypes_.dtype)
        idx[owner_sorted[top], rank[top]] = ids[order[top]]
        ex[owner_sorted[top], rank[top]] = cand[order[top]]
        self.exemplar_indices_ = idx
        self.exemplars_ = ex

    # -------------------------------------------------------------- partial_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Update the model with a batch; new classes may appear at any call.

        One prototype per class: exact running class means, so any split of the data
        into batches gives the same prototypes as :meth:`fit`.  Several: a new class is
        seeded by k-means on its first batch (which must hold at least ``n_prototypes``
        of its samples); afterwards each sample moves its nearest prototype of its own
        class by a running mean (online k-means, MacQueen 1967).  With
        ``metric="mahalanobis"`` the pooled covariance is merged exactly from per-class
        sufficient statistics (Chan et al.'s parallel update).  A batch that raises
        (bad input, a class too small for its prototypes, labels of another type
        than the classes seen so far) leaves the model as it was.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, default=None
            Accepted for API compatibility with other incremental estimators; classes
            are discovered from ``y`` as they appear, so it may be omitted.

        Returns
        -------
        self : object
        """
        # A batch that raises leaves the model as it was (no half-merged classes).
        with unchanged_on_error(self):
            return self._partial_fit(X, y)

    def _partial_fit(self, X, y):
        first = not hasattr(self, "prototypes_")
        X, y = validate_fit_data(self, X, y, reset=first)
        check_classification_targets(y)
        if not first and (y.dtype.kind in "biuf") != (
            self.classes_.dtype.kind in "biuf"
        ):
            raise ValueError(
                f"y has labels of dtype {y.dtype} but the classes seen so far are of "
                f"dtype {self.classes_.dtype} ({self.classes_[:5].tolist()}...); "
                "numeric and string labels cannot be mixed across partial_fit calls."
            )
        if first:
            d = X.shape[1]
            self.classes_ = np.unique(y)[:0]
            self.class_means_ = np.empty((0, d), dtype=X.dtype)
            self.class_count_ = np.empty(0, dtype=np.int64)
            self.n_samples_seen_ = 0
            self.n_iter_ = 1
            self.prototypes_ = np.empty((0, d), dtype=X.dtype)
            self.prototype_labels_ = self.classes_.copy()
            self.prototype_counts_ = np.empty(0, dtype=np.int64)
            m = self.exemplars_per_prototype
            self.exemplar_indices_ = np.empty((0, m), dtype=np.intp)
            self.exemplars_ = np.empty((0, m, d), dtype=X.dtype)
            if self.metric == "mahalanobis":
                self.covariance_ = np.zeros((d, d), dtype=X.dtype)
            self._rng = check_random_state(self.random_state)
        X = X.astype(self.prototypes_.dtype, copy=False)
        Xw = self._estimation_space(X)
        classes = np.union1d(self.classes_, y)
        new_mask = ~np.isin(classes, self.classes_)
        n_per_class = self._prototypes_per_class(classes)
        y_idx = np.searchsorted(classes, y)
        batch_counts = np.bincount(y_idx, minlength=classes.size)
        check_class_sizes(
            classes[new_mask],
            batch_counts[new_mask],
            n_per_class[new_mask],
            "n_prototypes",
            where=" in their first batch",
            skip_empty=True,
        )
        self._merge_class_statistics(X, Xw, y_idx, classes, batch_counts)
        row_ids = self.n_samples_seen_ + np.arange(X.shape[0])
        self.n_samples_seen_ += int(X.shape[0])
        if self.metric == "mahalanobis":
            self._set_precision()
        self._merge_prototypes(Xw, y_idx, classes, new_mask, n_per_class, row_ids)
        return self

    def _merge_class_statistics(self, X, Xw, y_idx, classes, batch_counts):
        """Exact merge of per-class means/counts (and pooled scatter) with a batch."""
        pos = np.searchsorted(classes, self.classes_)
        old_means = np.zeros((classes.size, X.shape[1]), dtype=X.dtype)
        old_means[pos] = self.class_means_
        old_counts = np.zeros(classes.size, dtype=np.int64)
        old_counts[pos] = self.class_count_
        batch_means = _class_statistics.batch_class_means(
            Xw, y_idx, classes.size, batch_counts
        )
        if self.metric == "mahalanobis":
            self.covariance_ = _class_statistics.merge_pooled_covariance(
                self.covariance_,
                self.n_samples_seen_,
                X - batch_means[y_idx],
                old_means,
                old_counts,
                batch_means,
                batch_counts,
            )
        self.classes_ = classes
        self.class_means_, self.class_count_ = _class_statistics.merge_class_means(
            old_means, old_counts, batch_means, batch_counts
        )

    def _merge_prototypes(self, Xw, y_idx, classes, new_mask, n_per_class, row_ids):
        """Seed prototypes of new classes, move existing ones, refresh exemplars."""
        old_cls = np.searchsorted(classes, self.prototype_labels_)
        blocks, counts, proto_cls, ex_idx, ex = [], [], [], [], []
        m, d = self.exemplars_per_prototype, Xw.shape[1]
        km_metric = "cosine" if self.metric == "cosine" else "euclidean"
        for c in range(classes.size):
            k = int(n_per_class[c])
            if new_mask[c] and k > 1:
                P, *_ = _prototypes.kmeans(
                    Xw[y_idx == c],
                    k,
                    metric=km_metric,
                    random_state=self._rng,
                    max_iter=self.max_iter,
                )
                cnt = np.zeros(k, dtype=np.int64)
                ei, ee = (
                    np.full((k, m), -1, dtype=np.intp),
                    np.zeros((k, m, d), Xw.dtype),
                )
            elif new_mask[c]:
                P = self.class_means_[c : c + 1].copy()
                cnt = np.zeros(1, dtype=np.int64)
                ei, ee = (
                    np.full((1, m), -1, dtype=np.intp),
                    np.zeros((1, m, d), Xw.dtype),
                )
            else:
                own = old_cls == c
                P, cnt = self.prototypes_[own].copy(), self.prototype_counts_[own]
                ei, ee = self.exemplar_indices_[own], self.exemplars_[own]
            blocks.append(P)
            counts.append(cnt)
            proto_cls.append(np.full(P.shape[0], c))
            ex_idx.append(ei)
            ex.append(ee)
        proto_cls = np.concatenate(proto_cls)
        self.prototypes_ = np.concatenate(blocks)
        self.prototype_labels_ = classes[proto_cls]
        assign = self._assign_within_class(Xw, y_idx)
        self.prototypes_, new_counts = _prototypes.online_kmeans_update(
            self.prototypes_, np.concatenate(counts), Xw, assign
        )
        # One prototype per class: the exact running class mean.
        single = n_per_class[proto_cls] == 1
        self.prototypes_[single] = self.class_means_[proto_cls[single]]
        if self.metric == "cosine":
            self.prototypes_ = _distances.l2_normalize(self.prototypes_)
        self.prototype_counts_ = new_counts
        self.exemplar_indices_ = np.concatenate(ex_idx)
        self.exemplars_ = np.concatenate(ex)
        self._set_exemplars(Xw, assign, row_ids, fresh=False)

    def _proba_logits(self, scores):
        return scores / self.temperature
