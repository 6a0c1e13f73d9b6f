"""Mixture-of-prototypes novelty detector (PALM's von Mises-Fisher mixture, fitted by EM)."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from .._core import _covariance, _defaults, _distances, _mixture, _neighbors, _streaming
from ..base import starts_stream
from ..utils import _array_api as xp
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import check_class_sizes, validate_optional_labels
from ._base import _EmbeddingDetector

SINKHORN_ITER = 3  # PALM's official code


class PrototypeMixtureDetector(_EmbeddingDetector):
    """Out-of-distribution detector: a von Mises-Fisher mixture of prototypes.

    The shallow, frozen-embedding form of PALM (Lu et al., ICLR 2024).  Samples are
    L2-normalised onto the unit sphere; each class gets ``n_prototypes`` prototypes,
    the means of a von Mises-Fisher (vMF) mixture fitted by EM in which each sample is
    softly assigned to the ``top_k`` closest prototypes of its own class - balanced
    across prototypes by Sinkhorn iterations (``balance=True``, PALM's assignment) or
    the exact posterior (``balance=False``).  Each prototype's concentration is
    learned with it (``temperature="auto"``, the vMF maximum-likelihood approximation
    of Banerjee et al., 2005) or fixed to ``1 / temperature`` as in PALM; with a fixed
    temperature and ``balance=False`` this is truncated EM, whose objective never
    decreases.  Without labels, all samples form one class and ``n_prototypes`` is the
    total.

    The score of a sample (higher = more in-distribution) is, for ``score_type=``:

    - ``"mixture"``: the log-density of the mixture over all prototypes,
      ``log sum_j w_j C_d(kappa_j) exp(kappa_j mu_j . x)``;
    - ``"max_similarity"``: the cosine similarity to the nearest prototype;
    - ``"knn"``: the cosine similarity to the ``top_k``-th nearest prototype (the kNN
      score of Sun et al., 2022, with the prototypes as neighbours);
    - ``"ssd"``: the score PALM's official code reports ("SSD+", Sehwag et al., 2021):
      minus the squared Mahalanobis distance of the normalised sample to the mean of
      the normalised training data, one shrunk covariance for all classes.  It does
      not use the prototypes (on frozen embeddings it equals
      ``MahalanobisDetector(method="agnostic", normalize=True)``); it is offered to
      reproduce PALM's evaluation.

    Read more in the :ref:`User Guide <ood_mixture>`.

    Parameters
    ----------
    n_prototypes : int or {"auto"}, default="auto"
        Prototypes per class; in total when fitted without labels.  "auto" (see
        ``n_prototypes_``): without labels one prototype per 25 samples, at least 6
        and at most 1000 (at most ``n_samples // 2``); with labels
        ``clip(min class count // 10, 1, 6)`` per class (PALM's 6 when every class
        has 60 samples or more, so that each prototype keeps about 10 samples).
        ``benchmarks/results/defaults.md`` compares these rules with the values
        tuned on validation data.
    temperature : {"auto"} or float, default="auto"
        "auto" learns one vMF concentration ``kappa_j`` per prototype in each M-step
        (the maximum-likelihood estimate from that prototype's samples, so it adapts
        to the data's spread and dimension); a float > 0 fixes ``kappa_j = 1 /
        temperature`` for all (PALM trains with 0.1).  Used in the EM posteriors and
        the "mixture" score.
    top_k : int or None, default=5
        Each sample updates only its ``top_k`` closest prototypes of its class (PALM's
        default 5); None keeps all.  Also the neighbour rank of the "knn" score.
    balance : bool, default=True
        Sinkhorn-balanced assignments (PALM); False uses the exact vMF posteriors.
    epsilon : float, default=0.05
        Entropic regularisation (> 0) of the Sinkhorn assignment (PALM's default); 3
        Sinkhorn iterations are run, as in PALM.
    score_type : {"mixture", "max_similarity", "knn", "ssd"}, default="mixture"
        The score (see above).  Named ``score_type`` because ``score`` is a method
        name in scikit-learn.
    init : {"k-means++", "kmeans", "random"}, default="k-means++"
        Initial prototypes per class: k-means++ seeds (cosine distance), spherical
        k-means centres, or random samples.
    max_iter : int, default=100
        EM iterations; a :class:`~sklearn.exceptions.ConvergenceWarning` is raised
        when they run out before convergence.
    tol : float, default=1e-3
        EM stops when the mean per-sample objective changes by less than `tol`.
    shrinkage : {"auto"}, float in [0, 1] or None, default="auto"
        Covariance shrinkage for ``score_type="ssd"`` (OAS for "auto"); unused otherwise.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Share of training samples taken as outliers to set ``offset_`` ("auto": 5%).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation.

    Attributes
    ----------
    prototypes_ : ndarray of shape (n_prototypes_total, n_features)
        Unit-norm vMF means, grouped by class in sorted label order.
    n_prototypes_ : int
        The number used (``n_prototypes`` resolved; per class with labels).
    prototype_labels_ : ndarray of shape (n_prototypes_total,)
        Class of each prototype (all 0 when fitted without labels).
    weights_ : ndarray of shape (n_prototypes_total,)
        Mixing weights (class share times within-class weight), summing to one.
    concentrations_ : ndarray of shape (n_prototypes_total,)
        vMF concentration ``kappa_j`` of each prototype.
    lower_bounds_ : ndarray of shape (``n_iter_ + 1``,)
        Mean per-sample EM objective (the class-conditional log-likelihood restricted
        to the ``top_k`` prototypes each sample is assigned to) at each iteration, then
        at the fitted parameters.  Non-decreasing for a fixed temperature with
        ``balance=False``.
    n_iter_ : int
        EM iterations run.
    converged_ : bool
    offset_ : float
        ``decision_function = score_samples - offset_``.
    location_ : ndarray of shape (n_features,)
        Mean of the normalised training data (``score_type="ssd"`` only).
    precision_cholesky_ : ndarray of shape (n_features, n_features)
        Cholesky factor of its shrunk precision (``score_type="ssd"`` only).
    shrinkage_ : float
        Shrinkage used (``score_type="ssd"`` only).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    MahalanobisDetector : class-conditional, class-agnostic (SSD+) and relative
        Mahalanobis scores.
    KNNDetector : distance to the k-th nearest training sample.

    Notes
    -----
    :meth:`partial_fit` is incremental (online) EM.  A class seen for the first time
    is fitted on its rows of the batch as :meth:`fit` fits it (which needs
    ``n_prototypes`` of them); afterwards each batch's responsibilities under the
    current prototypes (Sinkhorn-balanced with ``balance``, as PALM assigns them) are
    added to running sufficient statistics and the means, weights and concentrations
    are re-estimated from the totals (Neal & Hinton's incremental EM; PALM moves its
    prototypes the same way, by a running average of the assigned embeddings).  It is
    not equal to :meth:`fit`, which iterates EM over all rows (on CLINC150 the
    AUROC of 10 batches is within 0.01 of a full fit, ``tests/test_partial_fit.py``).
    ``offset_`` comes from a uniform sample of at most :attr:`MAX_OFFSET_SAMPLES`
    rows seen.

    References
    ----------
    .. [1] Lu, Wang, Wang, Yu, Lin. "Learning with Mixture of Prototypes for
       Out-of-Distribution Detection." ICLR, 2024 (PALM; github.com/jeff024/PALM).
    .. [2] Banerjee, Dhillon, Ghosh, Sra. "Clustering on the Unit Hypersphere using
       von Mises-Fisher Distributions." JMLR, 2005.
    .. [3] Lucke, Eggert. "Expectation Truncation and the Benefits of Preselection in
       Training Generative Models." JMLR, 2010.
    .. [4] Sun, Ming, Zhu, Li. "Out-of-Distribution Detection with Deep Nearest
       Neighbors." ICML, 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.ood import PrototypeMixtureDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8)) + 3 * np.eye(8)[rng.integers(0, 4, 200)]
    >>> det = PrototypeMixtureDetector(n_prototypes=4, random_state=0).fit(X)
    >>> det.prototypes_.shape
    (4, 8)
    >>> bool(det.score_samples(X).mean() > det.score_samples(-X).mean())
    True
    """

    _parameter_constraints = {
        **_EmbeddingDetector._parameter_constraints,
        "n_prototypes": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "temperature": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "top_k": [None, Interval(Integral, 1, None, closed="left")],
        "balance": ["boolean"],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "score_type": [StrOptions({"mixture", "max_similarity", "knn", "ssd"})],
        "init": [StrOptions({"kmeans", "k-means++", "random"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "shrinkage": [None, StrOptions({"auto"}), Interval(Real, 0, 1, closed="both")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        n_prototypes="auto",
        temperature="auto",
        top_k=5,
        balance=True,
        epsilon=0.05,
        score_type="mixture",
        init="k-means++",
        max_iter=100,
        tol=1e-3,
        shrinkage="auto",
        contamination="auto",
        random_state=None,
    ):
        self.n_prototypes = n_prototypes
        self.temperature = temperature
        self.top_k = top_k
        self.balance = balance
        self.epsilon = epsilon
        self.score_type = score_type
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.shrinkage = shrinkage
        self.contamination = contamination
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the prototype mixture on in-distribution data.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
            In-distribution samples (L2-normalised here).
        y : array-like of shape (n_samples,), default=None
            Class labels: ``n_prototypes`` prototypes per class.  None: one mixture of
            ``n_prototypes`` prototypes for all samples.

        Returns
        -------
        self : object
        """
        X, classes, y_idx = validate_optional_labels(self, X, y, ensure_min_samples=2)
        counts = np.bincount(y_idx, minlength=classes.size)
        n_protos = self.n_prototypes
        if n_protos == "auto":
            n_protos = _defaults.mixture_size(X.shape[0], None if y is None else counts)
        self.n_prototypes_ = int(n_protos)
        check_class_sizes(classes, counts, n_protos, "n_prototypes")
        rng = check_random_state(self.random_state)
        Xn = self._preprocess(X)
        if self.score_type == "ssd":
            _covariance.check_spread(
                Xn,
                np.zeros(Xn.shape[0], dtype=int),
                "The covariance of the training data for score_type='ssd' (all "
                "samples are identical after L2 normalisation)",
            )
        res = _mixture.fit_vmf_mixtures(
            Xn, y_idx, classes.size, n_protos, random_state=rng, **self._em_options()
        )
        self.prototypes_ = res.means
        self.prototype_labels_ = classes[res.component_class]
        self.weights_ = res.weights
        self.concentrations_ = res.concentrations
        self.lower_bounds_ = res.lower_bounds
        self.n_iter_ = int(res.n_iter)
        self.converged_ = bool(res.converged)
        if not self.converged_:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations "
                f"(tol={self.tol}); raise max_iter or tol.",
                ConvergenceWarning,
            )
        if self.score_type == "ssd":
            self.location_, _, self.precision_cholesky_, self.shrinkage_ = (
                _covariance.fit_gaussian(Xn, self.shrinkage)
            )
        self._set_offset(X)
        self._stream = None  # a later partial_fit cannot continue a fit
        return self

    #: Training rows kept (a uniform reservoir sample) to set ``offset_`` in
    #: :meth:`partial_fit`.
    MAX_OFFSET_SAMPLES = 10_000

    def _em_options(self):
        """The EM settings of :func:`~protolearn._core._mixture.fit_vmf_mixtures`."""
        return dict(
            kappa=None if self.temperature == "auto" else 1.0 / self.temperature,
            top_k=self.top_k,
            balance=self.balance,
            epsilon=self.epsilon,
            sinkhorn_iter=SINKHORN_ITER,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
        )

    def _preprocess(self, X):
        return _distances.l2_normalize(X)  # always onto the unit sphere

    def _partial_fit(self, X, y):
        first = starts_stream(self, "prototypes_")
        X, classes, y_idx = validate_optional_labels(self, X, y, reset=first)
        Xn = xp.to_numpy(self._preprocess(X))
        K = self.n_prototypes
        rng = check_random_state(self.random_state)
        st, new = _streaming.stream_vmf_mixtures(
            None if first else self._stream, None if first else self._classes,
            Xn, classes[y_idx], K, random_state=rng, **self._em_options(),
        )  # fmt: skip
        self._stream, self._classes = st, new
        C, d = new.size, Xn.shape[1]
        if first:
            self._offset_rows, self.n_samples_seen_ = None, 0
            self._ssd = None
        self._offset_rows = _streaming.reservoir_update(
            self._offset_rows, self.n_samples_seen_, xp.to_numpy(X),
            self.MAX_OFFSET_SAMPLES, self.n_samples_seen_,
        )  # fmt: skip
        self.n_samples_seen_ += X.shape[0]
        n = st["counts"].sum()
        self.prototypes_ = st["means"].reshape(-1, d)
        self.prototype_labels_ = new[np.repeat(np.arange(C), K)]
        self.weights_ = (st["weights"] * (st["counts"] / n)[:, None]).reshape(-1)
        self.concentrations_ = st["kappa"].reshape(-1)
        self.n_iter_, self.converged_ = 1, True
        self.lower_bounds_ = np.full(2, np.nan)
        if self.score_type == "ssd":
            _, self._ssd = _streaming.update_group_stats(
                self._ssd, None if first else np.zeros(1), Xn, np.zeros(len(Xn))
            )
            m = int(self.n_samples_seen_)
            cov = self._ssd["scatter"][0] / m
            self.location_ = self._ssd["mean"][0].astype(Xn.dtype)
            self.precision_cholesky_, self.shrinkage_ = (
                _covariance.shrunk_precision_cholesky(cov, m, self.shrinkage)
            )
        self._set_offset(self._offset_rows)
        return self

    def _score_samples(self, X):
        if self.score_type == "mixture":
            with np.errstate(divide="ignore"):
                log_w = np.log(self.weights_)
            return _mixture.vmf_mixture_log_density(
                X, self.prototypes_, log_w, self.concentrations_
            )
        if self.score_type == "ssd":
            D = _distances.pairwise_distances(
                self._preprocess(X),
                self.location_[None, :],
                "mahalanobis",
                precision_cholesky=self.precision_cholesky_,
            )
            return -D[:, 0]
        k = 1 if self.score_type == "max_similarity" else self._knn_rank()
        # cosine distance = 1 - cosine similarity
        d = _neighbors.kth_neighbor_distance(X, self.prototypes_, k, metric="cosine")
        return 1 - d

    def _knn_rank(self):
        k = self.prototypes_.shape[0] if self.top_k is None else self.top_k
        return min(k, self.prototypes_.shape[0])
