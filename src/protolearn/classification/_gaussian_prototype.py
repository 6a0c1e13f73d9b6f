"""Gaussian prototypes with per-class margins and none-of-the-above (NOTA) rejection."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from .._core import (
    _class_gaussians,
    _covariance,
    _distances,
    _margins,
    _streaming,
)
from ..base import BasePrototypeClassifier, starts_stream, unchanged_on_error
from ..utils._array_api import asarray_like
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import (
    check_class_sizes,
    check_finite_output,
    validate_fit_data,
)
from ._nota import (
    NOTA_CONSTRAINTS,
    NotaRejectionMixin,
    split_nota_rows,
    warn_open_classes,
)


class GaussianPrototypeClassifier(NotaRejectionMixin, BasePrototypeClassifier):
    """Gaussian prototypes with adaptive margins and none-of-the-above rejection.

    Each class is a Gaussian (or a mixture of ``n_components_per_class`` Gaussians,
    GPAM's "GMM prototypes") with a full, diagonal, tied or spherical covariance.
    Covariances are shrunk (a fixed intensity, Ledoit-Wolf or OAS) towards a scaled
    identity and, for per-class covariances, pooled towards the tied covariance
    (regularised discriminant analysis), as few-shot covariances are singular.
    Shrinkage acts in standardised units, so the model does not depend on the
    features' scales (except "spherical").  Log-densities are computed through
    Cholesky factors of the precisions, as
    :class:`sklearn.mixture.GaussianMixture` does.  With ``covariance_type="tied"`` and
    no shrinkage the closed-set model is linear discriminant analysis.

    A query is assigned its most probable class ``c``; with ``nota`` set, it is
    rejected (labelled ``nota_label``) when its class-fit score, the log-density
    ``log p(x | c)``, is below that class's margin ``margins_[c]``.  Margins are fitted
    from held-out scores:

    - ``"global"``: one margin shared by every class, fitted like "adaptive";
    - ``"quantile"``: split-conformal per-class margins (no negatives needed): a
      ``calibration_size`` share of each class is held out, the Gaussians are fitted on
      the rest, and each class's margin is the conformal ``alpha`` quantile of the
      calibration scores of the samples predicted as that class, so a new in-scope
      query is accepted with probability at least ``1 - alpha`` (finite-sample
      guarantee, given its predicted class and hence overall);
    - ``"adaptive"``: per-class margins fitted with negatives by cross-fitting (GPAM's
      negative sampling): in each of ``n_splits`` folds some classes are held out
      entirely and play "none of the above" while held-out samples of the others give
      in-class scores; or, when ``y`` contains rows labelled ``nota_label``
      (known-unknown samples), those rows are the negatives.  Each class's margin
      maximises the F1 of the NOTA label (negatives weighted to a ``nota_rate`` share)
      or, with ``target_recall``, rejects the most negatives at that in-class
      acceptance; the per-class offsets from the global margin are shrunk by
      ``margin_shrinkage``.  The Gaussians are then refitted on all known rows.

    Read more in the :ref:`User Guide <open_set>`.

    Parameters
    ----------
    covariance_type : {"tied", "full", "diag", "spherical"}, default="tied"
        "tied": one covariance shared by all classes (LDA); "full": one per class (per
        component); "diag" / "spherical": diagonal / scalar per class.
    shrinkage : {"auto", "ledoit_wolf", "oas"}, float or None, default="auto"
        Shrinkage of each covariance in standardised units, as
        :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis` does for
        ``shrinkage="auto"``: features are divided by their standard deviations, the
        correlation matrix is shrunk towards the identity and scaled back, so the
        model does not depend on the features' scales.  "auto" or "ledoit_wolf":
        Ledoit-Wolf intensity; "oas"; a fixed intensity in [0, 1] (also in standardised
        units, where LDA shrinks a fixed intensity in raw units); or None.  With
        "full", each class's covariance is LDA's per-class estimate; "tied" shrinks
        the pooled within-class covariance once (LDA averages the per-class shrunk
        covariances).  No effect for "diag" and "spherical" (shrinkage leaves
        variances unchanged; use ``pooling``).
    pooling : float, default=0.0
        In [0, 1].  Per-class covariances ("full", "diag", "spherical") become
        ``(1 - pooling) S_c + pooling S_tied`` (Friedman's regularised discriminant
        analysis); 1 is the tied model.  Ignored for "tied".
    reg_covar : float, default=1e-6
        Non-negative; added to the covariance diagonals (as in :class:`~sklearn.mixture.\
GaussianMixture`), in the features' own units: the one term that is not
        scale-free (negligible unless a feature's variance is near ``reg_covar``).
    n_components_per_class : int, default=1
        Gaussian components per class, fitted by EM with the regularisation above in
        every M-step (initialised by per-class k-means).
    priors : array-like of shape (n_classes,) or None, default=None
        Class priors (non-negative weights, normalised to sum to 1); None uses the
        class frequencies.
    relative : bool, default=False
        Score each class by the log-likelihood ratio ``log p(x | c) - log p_0(x)``
        against a background Gaussian ``p_0`` fitted to all known samples (the
        relative Mahalanobis distance of Ren et al., 2021) instead of
        ``log p(x | c)``.  Predictions and probabilities are unchanged; margins and
        :meth:`score_samples` use the ratio, which often separates out-of-scope
        queries better.
    nota : {"global", "quantile", "adaptive"} or None, default=None
        Rejection mode; None is the closed-set classifier.  Rejection acts in
        ``predict`` only: ``predict_proba`` / ``decision_function`` stay over
        ``classes_``, so meta-estimators that combine probabilities (soft voting,
        bagging, one-vs-rest, calibration) are closed-set, and hard
        :class:`~sklearn.ensemble.VotingClassifier` fails on the NOTA label, which
        its label encoding does not know (use ``voting="soft"`` or ``nota=None``
        there).
    nota_label : "auto" or scalar, default="auto"
        Label predicted for rejected queries, and the label of known-unknown rows in
        ``y`` when ``nota`` is set ("global" / "adaptive" fit margins on them,
        "quantile" ignores them).  "auto": -1 for numeric labels,
        "NOTA" for string labels.  It never appears in ``classes_``.  Predictions
        with rejection hold the classes and this label in one array: integer classes
        come back as int64, and boolean classes as int64 0 / 1 (a boolean array
        cannot hold -1; ``0 == False`` and ``1 == True``, so comparisons and
        scikit-learn metrics against boolean ``y`` still work, but do not cast the
        predictions with ``astype(bool)``, which turns -1 into True); an object
        array only where no common dtype holds every label exactly.
    alpha : float, default=0.05
        "quantile": the in-class rejection rate allowed, in (0, 1).
    target_recall : float or None, default=None
        "global" / "adaptive": accept at least this share of held-out in-class
        samples (in (0, 1)), rejecting as many negatives as possible.  None: maximise
        the NOTA F1.
    nota_rate : float or None, default=0.1
        "global" / "adaptive" with the F1 objective: the share of NOTA queries, in
        (0, 1), the F1 is computed at (negatives are reweighted to it); None uses the negatives
        as they come.
    margin_shrinkage : float, default=0.5
        "adaptive": shrink each class's margin offset from the global margin by this
        factor, in [0, 1] (0: free per-class margins; 1: the global margin).
    n_splits : int, default=5
        Cross-fitting folds for "global" / "adaptive" (at least 2).
    calibration_size : float, default=0.3
        "quantile": share of each class held out for calibration, in (0, 1).
    max_iter : int, default=100
        EM iterations when ``n_components_per_class > 1``.
    tol : float, default=1e-3
        EM convergence threshold on the mean log-likelihood.
    random_state : int, RandomState instance or None, default=None
        Seeds k-means++, the calibration split and the cross-fitting folds.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Known classes (never ``nota_label`` when ``nota`` is set).
    priors_ : ndarray of shape (n_classes,)
    means_ : ndarray of shape (n_components, n_features)
        Component means grouped by class (``n_components = n_classes *
        n_components_per_class``).
    weights_ : ndarray of shape (n_components,)
        Mixture weights within each class (ones for one component per class).
    component_labels_ : ndarray of shape (n_components,)
        Class label of each component.
    covariances_ : ndarray
        "full" (n_components, d, d), "tied" (d, d), "diag" (n_components, d),
        "spherical" (n_components,).
    precisions_cholesky_ : ndarray, shape as ``covariances_``
        Cholesky factors of the precisions (scikit-learn's ``GaussianMixture``
        layout).
    shrinkage_ : ndarray
        Shrinkage intensities used (per component for "full"/"diag", else one).
    margins_ : ndarray of shape (n_classes,) or None
        Rejection margin of each class on the log-density scale (None without
        ``nota``).
    nota_label_ : scalar or None
        The resolved NOTA label (None without ``nota``).
    n_iter_ : int
    converged_ : bool
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    sklearn.discriminant_analysis.LinearDiscriminantAnalysis : the tied closed-set case.
    sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis
    sklearn.mixture.GaussianMixture

    References
    ----------
    .. [1] GPAM: "Few-shot Open Relation Extraction with Gaussian Prototype and
       Adaptive Margin", 2024.
    .. [2] Lee, Lee, Lee, Shin. "A Simple Unified Framework for Detecting
       Out-of-Distribution Samples and Adversarial Attacks." NeurIPS, 2018.
    .. [3] Friedman. "Regularized Discriminant Analysis." JASA, 1989.
    .. [4] Ren, Fort, Liu, Roy, Padhy, Lakshminarayanan. "A Simple Fix to Mahalanobis
       Distance for Improving Near-OOD Detection." arXiv:2106.09022, 2021.
    .. [5] Vovk, Gammerman, Shafer. "Algorithmic Learning in a Random World."
       Springer, 2005 (Mondrian conformal prediction).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.classification import GaussianPrototypeClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GaussianPrototypeClassifier(nota="quantile", alpha=0.1, random_state=0)
    >>> clf = clf.fit(X[y < 2], y[y < 2])
    >>> clf.classes_
    array([0, 1])
    >>> pred = clf.predict(X)  # the unseen species 2 is mostly "none of the above"
    >>> float(np.mean(pred[y == 2] == -1)), float(np.mean(pred[y < 2] == y[y < 2]))
    (0.96, 0.98)
    """

    _parameter_constraints = {
        "covariance_type": [StrOptions(set(_covariance.COVARIANCE_TYPES))],
        "shrinkage": [
            None,
            StrOptions(set(_covariance.SHRINKAGE_RULES)),
            Interval(Real, 0, 1, closed="both"),
        ],
        "pooling": [Interval(Real, 0, 1, closed="both")],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
        "n_components_per_class": [Interval(Integral, 1, None, closed="left")],
        "priors": ["array-like", None],
        "relative": ["boolean"],
        **NOTA_CONSTRAINTS,
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        covariance_type="tied",
        shrinkage="auto",
        pooling=0.0,
        reg_covar=1e-6,
        n_components_per_class=1,
        priors=None,
        relative=False,
        nota=None,
        nota_label="auto",
        alpha=0.05,
        target_recall=None,
        nota_rate=0.1,
        margin_shrinkage=0.5,
        n_splits=5,
        calibration_size=0.3,
        max_iter=100,
        tol=1e-3,
        random_state=None,
    ):
        self.covariance_type = covariance_type
        self.shrinkage = shrinkage
        self.pooling = pooling
        self.reg_covar = reg_covar
        self.n_components_per_class = n_components_per_class
        self.priors = priors
        self.relative = relative
        self.nota = nota
        self.nota_label = nota_label
        self.alpha = alpha
        self.target_recall = target_recall
        self.nota_rate = nota_rate
        self.margin_shrinkage = margin_shrinkage
        self.n_splits = n_splits
        self.calibration_size = calibration_size
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _class_log_priors(self, counts, subset=None):
        return _class_gaussians.class_log_priors(counts, self.priors, subset=subset)

    def _fit_model(self, X, y_idx, n_classes, rng, labels=None, where=""):
        """Gaussian (mixture) prototypes on (X, class indices); a dict of parameters.

        ``labels`` (the class label of each index) and ``where`` (the split the rows
        come from) only word the error for classes with too few samples.
        """
        counts = np.bincount(y_idx, minlength=n_classes)
        check_class_sizes(
            np.arange(n_classes) if labels is None else labels,
            counts,
            self.n_components_per_class,
            "n_components_per_class",
            where=where,
            remedy=" or give these classes more samples" if where else "",
        )
        return _class_gaussians.fit_class_model(
            X,
            y_idx,
            n_classes,
            self.n_components_per_class,
            self.covariance_type,
            shrinkage=self.shrinkage,
            pooling=self.pooling,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            tol=self.tol,
            relative=self.relative,
            random_state=rng,
        )

    def _assign(self, X, model, log_priors):
        """(assigned class index, its log-density) of each row, numpy."""
        return _class_gaussians.assign(X, model, self.covariance_type, log_priors)

    # ---------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the Gaussian prototypes and, with ``nota``, the rejection margins.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels.  With ``nota`` "global" or "adaptive", rows labelled
            ``nota_label`` are known-unknown samples used to fit the margins (they
            form no class).

        Returns
        -------
        self : object
        """
        X, y = validate_fit_data(self, X, y, reset=True)
        check_classification_targets(y)
        y = column_or_1d(y)
        nota_label, unknown, classes, y_idx, counts = split_nota_rows(self, y)
        self.classes_ = classes
        log_priors = self._class_log_priors(counts)
        self.priors_ = np.exp(log_priors)
        self._log_priors = log_priors
        self.nota_label_ = nota_label
        rng = check_random_state(self.random_state)
        Xk = X[~unknown]
        margins = None
        if self.nota == "quantile":
            model, margins = self._fit_quantile(Xk, y_idx, counts, log_priors, rng)
        else:
            if self.nota is not None:
                margins = self._fit_cross(Xk, y_idx, X[unknown], rng)
            model = self._fit_model(Xk, y_idx, classes.size, rng, labels=classes)
        self._set_model(model)
        self.margins_ = margins
        self._stream = None  # a later partial_fit cannot continue a fit
        return self

    def partial_fit(self, X, y, classes=None):
        """Update the Gaussians with a batch; new classes may appear at any call.

        Per-class counts, means, scatters (and, for Ledoit-Wolf, the third and
        fourth cross-moments of the centred rows) are merged exactly (pairwise
        updates, see :mod:`protolearn._core._streaming`), and the model is rebuilt
        from them through the same shrinkage functions as :meth:`fit`: after any
        split of the data into batches it equals :meth:`fit` on all rows seen (to
        rounding), for every covariance type, shrinkage, ``pooling`` and
        ``relative``.  Needs ``n_components_per_class=1`` and ``nota=None`` (EM and
        held-out margins need the rows themselves).  Memory:
        ``n_classes * n_features^2`` float64 for the scatters, three times that
        with ``shrinkage="auto"`` or ``"ledoit_wolf"`` (the Ledoit-Wolf intensity
        of the standardised residuals depends on their fourth moments), whatever
        the covariance type (a "tied" or pooled covariance is merged from the
        per-class moments, as the classes' means move).  The moments kept are
        chosen at the first batch: changing ``shrinkage`` to a Ledoit-Wolf rule
        mid-stream raises.  A batch that raises leaves the model as it was.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, default=None
            Accepted for API compatibility; classes are discovered from ``y`` as
            they appear (a class predicts once it has a sample).

        Returns
        -------
        self : object
        """
        with unchanged_on_error(self):
            return self._partial_fit(X, y)

    def _partial_fit(self, X, y):
        if self.nota is not None or self.n_components_per_class != 1:
            raise ValueError(
                "partial_fit needs nota=None and n_components_per_class=1 (margins "
                "and EM need the rows themselves); got "
                f"nota={self.nota!r}, n_components_per_class="
                f"{self.n_components_per_class}. Use fit."
            )
        first = starts_stream(self, "classes_")
        X, y = validate_fit_data(self, X, y, reset=first)
        check_classification_targets(y)
        y = column_or_1d(y)
        old = None if first else self.classes_
        if old is not None and (y.dtype.kind in "biuf") != (old.dtype.kind in "biuf"):
            raise ValueError(
                f"y has labels of dtype {y.dtype} but the classes seen so far are of "
                f"dtype {old.dtype}; numeric and string labels cannot be mixed across "
                "partial_fit calls."
            )
        prev = None if first else self._stream
        classes, stats = _streaming.update_group_stats(
            prev, old, X, y, fourth=self.shrinkage in _covariance.LEDOIT_WOLF_RULES
        )
        self._stream = stats
        self.classes_ = classes
        self._log_priors = self._class_log_priors(stats["n"].astype(np.int64))
        self.priors_ = np.exp(self._log_priors)
        self.nota_label_ = None
        self.margins_ = None
        model = _class_gaussians.class_model_from_stats(
            stats,
            self.covariance_type,
            shrinkage=self.shrinkage,
            pooling=self.pooling,
            reg_covar=self.reg_covar,
            relative=self.relative,
            dtype=X.dtype,
        )
        self._set_model(model)
        return self

    def _set_model(self, model):
        raw = model["raw"]
        self._model = model
        dtype = model["means"].dtype
        self.means_ = model["means"]
        self.weights_ = np.asarray(raw["weights"], dtype=dtype)
        self.component_labels_ = self.classes_[model["component_class"]]
        self.covariances_ = raw["covariances"].astype(dtype)
        self.precisions_cholesky_ = model["precisions_cholesky"]
        self.shrinkage_ = raw["intensities"]
        self.n_iter_ = int(raw["n_iter"])
        self.converged_ = bool(raw["converged"])
        if not self.converged_:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations; raise "
                "max_iter or tol.",
                ConvergenceWarning,
            )

    def _fit_quantile(self, X, y_idx, counts, log_priors, rng):
        """Split-conformal margins: fit on a proper split, calibrate on the rest."""
        calib = _margins.calibration_split(
            y_idx, counts.size, self.calibration_size, rng
        )
        model = self._fit_model(
            X[~calib],
            y_idx[~calib],
            counts.size,
            rng,
            labels=self.classes_,
            where=" in the part of each class not held out for calibration "
            f"(calibration_size={self.calibration_size})",
        )
        a, s = self._assign(X[calib], model, log_priors)
        margins = _margins.grouped_conformal_thresholds(s, a, counts.size, self.alpha)
        warn_open_classes(margins, self.classes_, "alpha", self.alpha)
        return model, margins

    def _fit_cross(self, X, y_idx, X_unknown, rng):
        """Margins from cross-fitted held-out scores (pseudo- or known-unknowns)."""
        counts = np.bincount(y_idx, minlength=self.classes_.size)
        where = (
            " in the training part of every cross-fitting fold "
            f"(n_splits={self.n_splits})"
        )

        def fit(Xt, yt, known):
            model = self._fit_model(
                Xt, yt, known.size, rng, labels=self.classes_[known], where=where
            )
            return model, self._class_log_priors(counts, subset=known)

        return self._cross_fitted_margins(
            X,
            y_idx,
            X_unknown,
            rng,
            fit=fit,
            score=lambda model, Xe, known: self._assign(Xe, *model),
            skip_fold=lambda train, heldout, pseudo, known: (
                heldout.size == 0 and pseudo.size == 0
            ),
        )

    # ------------------------------------------------------------------ predict
    def _class_log_density(self, X):
        return _class_gaussians.class_log_density(X, self._model, self.covariance_type)

    def _class_scores(self, X):
        L = self._class_log_density(X)
        L += asarray_like(self._log_priors, L)[None, :]
        return L

    def _score_row_bytes(self, X):
        # a chunk holds the distances' temporaries (n_components or d wide, see
        # _distances._chunk_size) and a few (rows, n_classes) float64 arrays
        itemsize = X.dtype.itemsize  # numpy and torch dtypes both have it
        wide = max(self.means_.shape[0], X.shape[1])
        return 4 * wide * itemsize + 4 * 8 * self.classes_.size

    def _predicted_index(self, X):
        return _class_gaussians.predicted_class(
            X, self._model, self.covariance_type, self._log_priors
        )

    def _fit_scores(self, X):
        """(predicted class index, log-density of that class minus its margin), chunk
        by chunk: never the full (n, n_classes) log-densities."""
        return _distances.map_row_chunks(
            lambda Xc, _: self._fit_scores_chunk(Xc), X, self._score_row_bytes(X)
        )

    def _fit_scores_chunk(self, X):
        L = check_finite_output(self._class_log_density(X), self, "log-densities")
        return self._margin_fit(L, L + asarray_like(self._log_priors, L)[None, :])
