"""Gaussian prototypes with per-class margins and none-of-the-above (NOTA) rejection."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._core import _distances, _gaussian, _margins, _streaming
from ..base import BasePrototypeClassifier, starts_stream, unchanged_on_error
from ..utils import _array_api as xp
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import (
    check_finite_output,
    labels_out,
    resolve_nota_label,
    validate_fit_data,
    validate_predict_data,
)

NOTA_MODES = ("global", "quantile", "adaptive")


def _labels_with_nota(classes, nota_label):
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


class GaussianPrototypeClassifier(BasePrototypeClassifier):
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

    Parameters
    ----------
    covariance_type : {"tied", "full", "diag", "spherical"}, default="tied"
        "tied": one covariance shared by all classes (LDA); "full": one per class (per
        component); "diag" / "spherical": diagonal / scalar per class.
    shrinkage : "auto", "ledoit_wolf", "oas", float in [0, 1] or None, default="auto"
        Shrinkage of each covariance in standardised units, as
        :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis` does for
        ``shrinkage="auto"``: features are divided by their standard deviations, the
        correlation matrix is shrunk towards the identity and scaled back, so the
        model does not depend on the features' scales.  "auto" or "ledoit_wolf":
        Ledoit-Wolf intensity; "oas"; a fixed intensity (also in standardised
        units, where LDA shrinks a fixed intensity in raw units); or None.  With
        "full", each class's covariance is LDA's per-class estimate; "tied" shrinks
        the pooled within-class covariance once (LDA averages the per-class shrunk
        covariances).  No effect for "diag" and "spherical" (shrinkage leaves
        variances unchanged; use ``pooling``).
    pooling : float in [0, 1], default=0.0
        Per-class covariances ("full", "diag", "spherical") become
        ``(1 - pooling) S_c + pooling S_tied`` (Friedman's regularised discriminant
        analysis); 1 is the tied model.  Ignored for "tied".
    reg_covar : float >= 0, default=1e-6
        Added to the covariance diagonals (as in :class:`~sklearn.mixture.\
GaussianMixture`), in the features' own units: the one term that is not
        scale-free (negligible unless a feature's variance is near ``reg_covar``).
    n_components_per_class : int >= 1, default=1
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
        queries better: on CLINC150's out-of-scope split and the open-intent
        protocol (25 / 50 / 75 % of intents known) ``relative=True`` with
        ``nota="global"`` (spherical covariance, ``pooling=0.5``) was within 0.01
        macro F1 of the best mode of each
        (``benchmarks/results/defaults.md``).
    nota : {None, "global", "quantile", "adaptive"}, default=None
        Rejection mode; None is the closed-set classifier.  Rejection acts in
        ``predict`` only: ``predict_proba`` / ``decision_function`` stay over
        ``classes_``, so meta-estimators that combine probabilities (soft voting,
        bagging, one-vs-rest, calibration) are closed-set, and hard
        :class:`~sklearn.ensemble.VotingClassifier` fails on the NOTA label, which
        its label encoding does not know (use ``voting="soft"`` or ``nota=None``
        there).
    nota_label : scalar or "auto", default="auto"
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
    alpha : float in (0, 1), default=0.05
        "quantile": the in-class rejection rate allowed.
    target_recall : float in (0, 1) or None, default=None
        "global" / "adaptive": accept at least this share of held-out in-class
        samples, rejecting as many negatives as possible.  None: maximise the NOTA F1.
    nota_rate : float in (0, 1) or None, default=0.1
        "global" / "adaptive" with the F1 objective: the share of NOTA queries the
        F1 is computed at (negatives are reweighted to it); None uses the negatives
        as they come.
    margin_shrinkage : float in [0, 1], default=0.5
        "adaptive": shrink each class's margin offset from the global margin by this
        factor (0: free per-class margins; 1: the global margin).
    n_splits : int >= 2, default=5
        Cross-fitting folds for "global" / "adaptive".
    calibration_size : float in (0, 1), default=0.3
        "quantile": share of each class held out for calibration.
    max_iter : int >= 1, default=100
        EM iterations when ``n_components_per_class > 1``.
    tol : float >= 0, default=1e-3
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
        "covariance_type": [StrOptions(set(_gaussian.COVARIANCE_TYPES))],
        "shrinkage": [
            None,
            StrOptions(set(_gaussian.SHRINKAGE_RULES)),
            Interval(Real, 0, 1, closed="both"),
        ],
        "pooling": [Interval(Real, 0, 1, closed="both")],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
        "n_components_per_class": [Interval(Integral, 1, None, closed="left")],
        "priors": ["array-like", None],
        "relative": ["boolean"],
        "nota": [None, StrOptions(set(NOTA_MODES))],
        "nota_label": "no_validation",
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "target_recall": [None, Interval(Real, 0, 1, closed="neither")],
        "nota_rate": [None, Interval(Real, 0, 1, closed="neither")],
        "margin_shrinkage": [Interval(Real, 0, 1, closed="both")],
        "n_splits": [Interval(Integral, 2, None, closed="left")],
        "calibration_size": [Interval(Real, 0, 1, closed="neither")],
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
    def _class_log_priors(self, classes, counts, subset=None):
        if self.priors is None:
            p = counts.astype(np.float64)
        else:
            p = np.asarray(self.priors, dtype=np.float64).ravel()
            if p.size != classes.size:
                raise ValueError(
                    f"priors has {p.size} entries but there are {classes.size} classes."
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

    def _fit_model(self, X, y_idx, n_classes, rng, labels=None, where=""):
        """Gaussian (mixture) prototypes on (X, class indices); a dict of parameters.

        ``labels`` (the class label of each index) and ``where`` (the split the rows
        come from) only word the error for classes with too few samples.
        """
        counts = np.bincount(y_idx, minlength=n_classes)
        k = self.n_components_per_class
        if counts.min() < k:
            short = np.flatnonzero(counts < k)
            names = short if labels is None else np.asarray(labels)[short]
            desc = ", ".join(
                f"class {c!r} has {n}" for c, n in zip(names.tolist(), counts[short])
            )
            raise ValueError(
                f"n_components_per_class={k} needs at least {k} samples per class"
                f"{where}; {desc}. Lower n_components_per_class"
                f"{' or give these classes more samples' if where else ''}."
            )
        res = _gaussian.fit_class_mixtures(
            X,
            y_idx,
            n_classes,
            k,
            self.covariance_type,
            shrinkage=self.shrinkage,
            pooling=self.pooling,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=rng,
        )
        dtype = X.dtype
        prec = res["precisions_cholesky"]
        return dict(
            means=res["means"].astype(dtype),
            precisions_cholesky=prec.astype(dtype),
            log_det=_gaussian.log_det_precision_cholesky(
                prec, self.covariance_type, X.shape[1]
            ),
            weights=res["weights"],
            component_class=res["component_class"],
            n_classes=n_classes,
            raw=dict(res),  # a plain dict: skops trusts no Bunch
            background=self._fit_background(X) if self.relative else None,
        )

    def _background_type(self):
        return (
            "full" if self.covariance_type in ("full", "tied") else self.covariance_type
        )

    def _fit_background(self, X):
        """One Gaussian for all known samples (the relative Mahalanobis background)."""
        ct = self._background_type()
        _, mean, cov, _ = _gaussian.estimate_gaussian_parameters(
            X,
            np.ones((X.shape[0], 1)),
            ct,
            shrinkage=self.shrinkage,
            reg_covar=self.reg_covar,
        )
        prec = _gaussian.compute_precision_cholesky(cov, ct)
        return dict(
            mean=mean.astype(X.dtype),
            precisions_cholesky=prec.astype(X.dtype),
            log_det=_gaussian.log_det_precision_cholesky(prec, ct, X.shape[1]),
        )

    def _log_density(self, X, model):
        L = self._component_log_density(X, model)
        bg = model["background"]
        if bg is not None:
            L0 = _gaussian.log_gaussian_density(
                X,
                bg["mean"],
                bg["precisions_cholesky"],
                self._background_type(),
                log_det=bg["log_det"],
            )
            L -= L0
        return L

    def _component_log_density(self, X, model):
        return _gaussian.class_mixture_log_density(
            X,
            model["weights"],
            model["means"],
            model["precisions_cholesky"],
            self.covariance_type,
            model["component_class"],
            model["n_classes"],
            log_det=model["log_det"],
        )

    def _assign(self, X, model, log_priors):
        """(assigned class index, its log-density) of each row, numpy."""
        L = xp.to_numpy(self._log_density(X, model)).astype(np.float64)
        a = np.argmax(L + log_priors[None, :], axis=1)
        return a, L[np.arange(L.shape[0]), a]

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
        nota_label = None
        unknown = np.zeros(y.shape[0], dtype=bool)
        if self.nota is not None:
            nota_label = resolve_nota_label(self.nota_label, y)
            # rows labelled nota_label never form a class; "quantile" needs no
            # negatives and ignores them
            unknown = y == nota_label
        known_rows = np.flatnonzero(~unknown)
        classes, y_idx = np.unique(y[known_rows], return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                "GaussianPrototypeClassifier needs samples of at least 2 classes; got "
                f"{classes.size} class ({classes.tolist()})."
            )
        self.classes_ = classes
        counts = np.bincount(y_idx, minlength=classes.size)
        log_priors = self._class_log_priors(classes, counts)
        self.priors_ = np.exp(log_priors)
        self._log_priors = log_priors
        self.nota_label_ = nota_label
        rng = check_random_state(self.random_state)
        Xk = X[known_rows]
        if self.nota is not None and counts.min() < 2:
            raise ValueError(
                f"nota={self.nota!r} holds out samples of each class to fit margins, "
                "so every class needs at least 2 samples; class(es) "
                f"{classes[counts < 2].tolist()} have 1."
            )
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
            prev, old, X, y, fourth=self.shrinkage in _streaming.LEDOIT_WOLF_RULES
        )
        C = classes.size
        self._stream = stats
        self.classes_ = classes
        counts = stats["n"].astype(np.int64)
        self._log_priors = self._class_log_priors(classes, counts)
        self.priors_ = np.exp(self._log_priors)
        self.nota_label_ = None
        self.margins_ = None
        ct = self.covariance_type
        nk, means, cov, intensities = _streaming.gaussian_parameters_from_stats(
            stats, ct, shrinkage=self.shrinkage, pooling=self.pooling,
            reg_covar=self.reg_covar,
        )  # fmt: skip
        prec = _gaussian.compute_precision_cholesky(cov, ct)
        raw = dict(weights=nk / np.maximum(counts, 1), covariances=cov,
                   intensities=intensities, n_iter=1, converged=True)  # fmt: skip
        model = dict(
            means=means.astype(X.dtype),
            precisions_cholesky=prec.astype(X.dtype),
            log_det=_gaussian.log_det_precision_cholesky(prec, ct, X.shape[1]),
            weights=raw["weights"],
            component_class=np.arange(C),
            n_classes=C,
            raw=raw,
            background=self._stream_background(X.dtype) if self.relative else None,
        )
        self._set_model(model)
        return self

    def _stream_background(self, dtype):
        """The relative background Gaussian from the pooled running statistics."""
        ct = self._background_type()
        one = _streaming.pool_groups(self._stream)
        _, mean, cov, _ = _streaming.gaussian_parameters_from_stats(
            one, ct, shrinkage=self.shrinkage, reg_covar=self.reg_covar
        )
        prec = _gaussian.compute_precision_cholesky(cov, ct)
        return dict(
            mean=mean.astype(dtype),
            precisions_cholesky=prec.astype(dtype),
            log_det=_gaussian.log_det_precision_cholesky(prec, ct, mean.shape[1]),
        )

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
        calib = np.zeros(y_idx.size, dtype=bool)
        for c in range(counts.size):
            rows = np.flatnonzero(y_idx == c)
            n_cal = int(
                np.clip(round(self.calibration_size * rows.size), 1, rows.size - 1)
            )
            calib[rng.choice(rows, size=n_cal, replace=False)] = True
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
        open_ = np.flatnonzero(np.isneginf(margins))
        if open_.size:
            need = int(np.ceil(1 / self.alpha)) - 1
            warnings.warn(
                f"alpha={self.alpha} needs at least {need} calibration samples "
                "predicted as a class to reject anything; class(es) "
                f"{self.classes_[open_][:10].tolist()}{'...' if open_.size > 10 else ''}"
                f" ({open_.size} in all) had fewer and accept every query. Raise "
                "calibration_size or alpha.",
                UserWarning,
            )
        return model, margins

    def _fit_cross(self, X, y_idx, X_unknown, rng):
        """Margins from cross-fitted held-out scores (pseudo- or known-unknowns)."""
        C = self.classes_.size
        has_unknown = X_unknown.shape[0] > 0
        folds, _ = _margins.cross_fit_folds(
            y_idx,
            C,
            self.n_splits,
            hold_out_classes=not has_unknown,
            random_state=rng,
        )
        unknown_fold = rng.permutation(X_unknown.shape[0]) % self.n_splits
        counts_all = np.bincount(y_idx, minlength=C)
        scores, groups, is_unknown = [], [], []
        for k, (train, heldout, pseudo, known) in enumerate(folds):
            if heldout.size == 0 and pseudo.size == 0:
                continue
            remap = np.full(C, -1)
            remap[known] = np.arange(known.size)
            model = self._fit_model(
                X[train],
                remap[y_idx[train]],
                known.size,
                rng,
                labels=self.classes_[known],
                where=" in the training part of every cross-fitting fold "
                f"(n_splits={self.n_splits})",
            )
            log_priors = self._class_log_priors(self.classes_, counts_all, subset=known)
            parts = [(X[heldout], False)]
            if has_unknown:
                parts.append((X_unknown[unknown_fold == k], True))
            else:
                parts.append((X[pseudo], True))
            for Xe, unk in parts:
                if Xe.shape[0] == 0:
                    continue
                a, s = self._assign(Xe, model, log_priors)
                scores.append(s)
                groups.append(known[a])
                is_unknown.append(np.full(s.size, unk))
        return _margins.fit_cross_fitted_margins(
            scores,
            groups,
            is_unknown,
            C,
            nota=self.nota,
            target_recall=self.target_recall,
            nota_rate=self.nota_rate,
            shrinkage=self.margin_shrinkage,
        )

    # ------------------------------------------------------------------ predict
    def _class_log_density(self, X):
        return self._log_density(X, self._model)

    def _class_scores(self, X):
        L = self._class_log_density(X)
        L += xp.asarray_like(self._log_priors, L)[None, :]
        return L

    def _score_row_bytes(self, X):
        # a chunk holds the distances' temporaries (n_components or d wide, see
        # _distances._chunk_size) and a few (rows, n_classes) float64 arrays
        itemsize = X.element_size() if xp.is_torch(X) else X.dtype.itemsize
        wide = max(self.means_.shape[0], X.shape[1])
        return 4 * wide * itemsize + 4 * 8 * self.classes_.size

    def _fit_scores(self, X):
        """(predicted class index, log-density of that class minus its margin), chunk
        by chunk: never the full (n, n_classes) log-densities."""
        return _distances.map_row_chunks(
            lambda Xc, _: self._fit_scores_chunk(Xc), X, self._score_row_bytes(X)
        )

    def _fit_scores_chunk(self, X):
        L = check_finite_output(self._class_log_density(X), self, "log-densities")
        post = L + xp.asarray_like(self._log_priors, L)[None, :]
        a = xp.argmax(post, axis=1)
        idx = a[:, None]
        fit = (L.gather(1, idx) if xp.is_torch(L) else np.take_along_axis(L, idx, 1))[
            :, 0
        ]
        if self.margins_ is not None:
            fit = fit - xp.asarray_like(self.margins_, fit)[a]
        return a, fit

    def predict(self, X):
        """Class labels, or ``nota_label_`` for rejected queries (with ``nota``).

        A query gets its most probable class ``c`` (``classes_[argmax
        decision_function]``) and is rejected when ``log p(x | c) < margins_[c]``,
        i.e. where :meth:`score_samples` is negative.  With rejection, the labels'
        dtype is the one described under ``nota_label`` (boolean classes: int64
        0 / 1 / -1).
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        a, fit = self._fit_scores(X)
        idx = xp.to_numpy(a).copy()
        labels = self.classes_
        if self.margins_ is not None:
            idx[xp.to_numpy(fit) < 0] = labels.size
            labels = _labels_with_nota(labels, self.nota_label_)
        return labels_out(labels, idx, like=X)

    def score_samples(self, X):
        """How well each query fits its predicted class (higher = more in-scope).

        ``log p(x | c) - margins_[c]`` for the predicted class ``c`` (the log-density
        itself without ``nota``): an out-of-distribution score; queries with a negative
        score are the ones :meth:`predict` rejects.

        Returns
        -------
        scores : ndarray (or tensor) of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        return self._fit_scores(X)[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
