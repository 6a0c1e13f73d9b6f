"""Mahalanobis novelty detectors: class-conditional, class-agnostic (SSD+) and relative."""

import numpy as np

from .._core import _covariance, _distances, _prototypes, _streaming
from ..base import starts_stream
from ..utils import _array_api as xp
from ..utils._sklearn_compat import Interval, Real, StrOptions, _fit_context
from ..utils._validation import validate_optional_labels
from ._base import _EmbeddingDetector


class MahalanobisDetector(_EmbeddingDetector):
    """Out-of-distribution detector from Gaussian class models with a shared covariance.

    ``method=`` chooses the score (higher = more in-distribution):

    - ``"class"`` (Lee et al., 2018): minus the smallest squared Mahalanobis distance
      to a class mean, ``-min_c (x - mu_c)^T S^-1 (x - mu_c)``, with ``S`` the
      within-class covariance pooled over classes (tied);
    - ``"agnostic"`` (SSD+, Sehwag et al., 2021; the score PALM reports): minus the
      squared Mahalanobis distance to the mean of all training data under its own
      covariance ``S_0``, ignoring labels;
    - ``"relative"`` (Ren et al., 2021): the class distance minus the class-agnostic
      one, ``-min_c [d_c(x) - d_0(x)]``, which cancels directions that are far for
      every class.  Needs labels of at least two classes.

    Without labels, ``"class"`` treats all samples as one class (and equals
    ``"agnostic"``).  Covariances are shrunk towards a scaled identity (OAS by default)
    so that the precision exists for embeddings whose covariance is singular.

    Read more in the :ref:`User Guide <ood_baselines>`.

    Parameters
    ----------
    method : {"class", "agnostic", "relative"}, default="class"
        The score (see above).
    shrinkage : {"auto"}, float in [0, 1] or None, default="auto"
        Shrinkage of each covariance towards ``tr(S)/d * I``: "auto" is the Oracle
        Approximating Shrinkage intensity; None or 0 shrinks nothing, which fails for
        singular covariances.
    normalize : bool, default=False
        L2-normalise samples first (as SSD+ and PALM do).
    contamination : "auto" or float in (0, 0.5], default="auto"
        Share of training samples taken as outliers to set ``offset_`` ("auto": 5%).

    Attributes
    ----------
    class_labels_ : ndarray of shape (n_classes,)
        Labels seen in fit (``[0]`` when fitted without labels), the rows of ``means_``.
        Not ``classes_``: scikit-learn reads that as the labels ``predict`` returns
        (+1 / -1 here), e.g. in :class:`~sklearn.inspection.DecisionBoundaryDisplay`.
    means_ : ndarray of shape (n_classes, n_features)
        Class means ("class", "relative").
    covariance_ : ndarray of shape (n_features, n_features)
        Pooled within-class covariance before shrinkage ("class", "relative").
    precision_cholesky_ : ndarray of shape (n_features, n_features)
        Cholesky factor of its shrunk precision ("class", "relative").
    location_ : ndarray of shape (n_features,)
        Mean of all training data ("agnostic", "relative").
    background_covariance_ : ndarray of shape (n_features, n_features)
        Covariance of all training data before shrinkage ("agnostic", "relative").
    background_precision_cholesky_ : ndarray of shape (n_features, n_features)
        ("agnostic", "relative").
    shrinkage_ : float
        Shrinkage of the first covariance fitted (pooled, or background for
        "agnostic").
    offset_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    PrototypeMixtureDetector : several vMF prototypes per class.
    sklearn.covariance.EllipticEnvelope : a robust single-Gaussian outlier detector.

    Notes
    -----
    :meth:`partial_fit` merges counts, means and scatters exactly (Chan et al.'s
    pairwise update, :mod:`protolearn._core._streaming`), so the means, covariances
    and precisions equal those of :meth:`fit` on all rows seen (to rounding).
    ``offset_`` is then the contamination percentile of the scores of a uniform
    sample of at most :attr:`MAX_OFFSET_SAMPLES` rows seen (all of them, and so
    :meth:`fit`'s offset, until that many).  Classes may appear at any call.

    References
    ----------
    .. [1] Lee, Lee, Lee, Shin. "A Simple Unified Framework for Detecting
       Out-of-Distribution Samples and Adversarial Attacks." NeurIPS, 2018.
    .. [2] Sehwag, Chiang, Mittal. "SSD: A Unified Framework for Self-Supervised
       Outlier Detection." ICLR, 2021.
    .. [3] Ren, Fort, Liu, Roy, Padhy, Lakshminarayanan. "A Simple Fix to Mahalanobis
       Distance for Improving Near-OOD Detection." arXiv:2106.09022, 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.ood import MahalanobisDetector
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300)
    >>> X = rng.normal(size=(300, 5)) + 4 * np.eye(5)[y]
    >>> det = MahalanobisDetector(method="relative").fit(X, y)
    >>> det.predict([[0.0, 0.0, 0.0, 0.0, 40.0]])
    array([-1])
    """

    _parameter_constraints = {
        **_EmbeddingDetector._parameter_constraints,
        "method": [StrOptions({"class", "agnostic", "relative"})],
        "shrinkage": [None, StrOptions({"auto"}), Interval(Real, 0, 1, closed="both")],
        "normalize": ["boolean"],
    }

    def __init__(
        self, *, method="class", shrinkage="auto", normalize=False, contamination="auto"
    ):
        self.method = method
        self.shrinkage = shrinkage
        self.normalize = normalize
        self.contamination = contamination

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the class means and covariances on in-distribution data.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Class labels (needed by ``method="relative"``).

        Returns
        -------
        self : object
        """
        X, classes, y_idx = validate_optional_labels(self, X, y, ensure_min_samples=2)
        if self.method == "relative" and classes.size < 2:
            raise ValueError(
                "method='relative' needs labels of at least 2 classes (with one class "
                f"its score is 0 everywhere); got {classes.size} class."
            )
        self.class_labels_ = classes
        Z = self._preprocess(X)
        n = Z.shape[0]
        after = " after L2 normalisation" if self.normalize else ""
        shrink = []
        if self.method in ("class", "relative"):
            _covariance.check_spread(
                Z,
                y_idx,
                "The pooled within-class covariance (the samples of each class are "
                f"identical{after})"
                if classes.size > 1
                else f"The covariance of the training data (all samples are "
                f"identical{after})",
            )
            self.means_ = _prototypes.class_means(Z, y_idx, classes.size)
            self.covariance_ = _covariance.pooled_covariance(Z, y_idx, self.means_)
            self.precision_cholesky_, s = _covariance.shrunk_precision_cholesky(
                self.covariance_, n, self.shrinkage
            )
            shrink.append(s)
        if self.method in ("agnostic", "relative"):
            _covariance.check_spread(
                Z,
                np.zeros_like(y_idx),
                f"The covariance of the training data (all samples are identical{after})",
            )
            (
                self.location_,
                self.background_covariance_,
                self.background_precision_cholesky_,
                s,
            ) = _covariance.fit_gaussian(Z, self.shrinkage)
            shrink.append(s)
        self.shrinkage_ = shrink[0]
        self._set_offset(X)
        self._stream = None  # a later partial_fit cannot continue a fit
        return self

    #: Training rows kept (a uniform reservoir sample) to set ``offset_`` in
    #: :meth:`partial_fit`; up to this many rows seen, ``offset_`` equals fit's.
    MAX_OFFSET_SAMPLES = 10_000

    def _partial_fit(self, X, y):
        first = starts_stream(self, "class_labels_")
        X, classes, y_idx = validate_optional_labels(self, X, y, reset=first)
        labels = classes[y_idx]
        Z = xp.to_numpy(self._preprocess(X))
        if first:
            self._stream, self.class_labels_ = None, None
            self._offset_rows, self.n_samples_seen_ = None, 0
        self.class_labels_, self._stream = _streaming.update_group_stats(
            self._stream, self.class_labels_, Z, labels
        )
        self._offset_rows = _streaming.reservoir_update(
            self._offset_rows, self.n_samples_seen_, xp.to_numpy(X),
            self.MAX_OFFSET_SAMPLES, self.n_samples_seen_,
        )  # fmt: skip
        self.n_samples_seen_ += X.shape[0]
        st, n, dtype = self._stream, self.n_samples_seen_, Z.dtype
        if self.method == "relative" and self.class_labels_.size < 2:
            raise ValueError(
                "method='relative' needs labels of at least 2 classes; got "
                f"{self.class_labels_.size} so far."
            )
        shrink = []
        if self.method in ("class", "relative"):
            self.means_ = st["mean"].astype(dtype)
            self.covariance_ = (st["scatter"].sum(0) / n).astype(dtype)
            self.precision_cholesky_, s = _covariance.shrunk_precision_cholesky(
                self.covariance_, n, self.shrinkage
            )
            shrink.append(s)
        if self.method in ("agnostic", "relative"):
            one = _streaming.pool_groups(st)
            self.location_ = one["mean"][0].astype(dtype)
            self.background_covariance_ = (one["scatter"][0] / n).astype(dtype)
            self.background_precision_cholesky_, s = (
                _covariance.shrunk_precision_cholesky(
                    self.background_covariance_, n, self.shrinkage
                )
            )
            shrink.append(s)
        self.shrinkage_ = shrink[0]
        self._set_offset(self._offset_rows)
        return self

    def _class_distance(self, Z):
        _, dmin = _distances.nearest(
            Z, self.means_, "mahalanobis", precision_cholesky=self.precision_cholesky_
        )
        return dmin

    def _background_distance(self, Z):
        D = _distances.pairwise_distances(
            Z,
            self.location_[None, :],
            "mahalanobis",
            precision_cholesky=self.background_precision_cholesky_,
        )
        return D[:, 0]

    def _score_samples(self, X):
        Z = self._preprocess(X)
        if self.method == "class":
            return -self._class_distance(Z)
        if self.method == "agnostic":
            return -self._background_distance(Z)
        return self._background_distance(Z) - self._class_distance(Z)
