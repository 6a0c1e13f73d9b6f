"""Laplacian K-means / K-modes clustering: the transductive optimizer with no supports."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._core import _distances, _prototypes
from .._core._annealing import annealing_temperature
from .._core._knn_graph import knn_affinity
from .._core._laplacian_solver import laplacian_solve
from ..base import VersionedStateMixin
from ..utils._array_api import asarray_like
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import labels_out, validate_fit_data, validate_predict_data
from ._preprocessing import CentredUnitRowsMixin


class LaplacianKMeans(
    CentredUnitRowsMixin, ClusterMixin, VersionedStateMixin, BaseEstimator
):
    """Laplacian-regularised K-means / K-modes clustering (scalable Laplacian K-modes).

    Soft assignments ``Y`` and centres ``M`` minimise the objective of
    :class:`LaplacianFewShotClassifier` with no labelled points,

    .. math::

        E(Y, M) = \\sum_{p,k} y_{pk} f(x_p, m_k) / T + \\sum_p y_p^\\top \\log y_p
                  - \\frac{\\lambda}{2} \\sum_{p,q} w_{pq}\\, y_p^\\top y_q,

    by the same optimizer (parallel bound steps on ``Y``, then mean / mean-shift steps on
    ``M``; the objective never increases).  ``W`` is a symmetric sparse kNN graph found
    by a chunked neighbour search, so memory grows as ``n * n_neighbors``, never
    ``n^2``: it scales to 100k points.  Centres start from k-means++-seeded Lloyd
    iterations (:func:`protolearn._core.kmeans`); with ``n_init > 1`` the run with the
    lowest final objective is kept.

    Read more in the :ref:`User Guide <transductive>`.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (>= 1).
    lam : float, default=1.0
        The weight lambda of the Laplacian term (``lam`` is the public name, kept for
        compatibility); must be >= 0.  1.0 as in the official LaplacianShot code;
        ``lam=0`` is soft K-means.
    n_neighbors : int, default=10
        Neighbours per point in the kNN graph (itself excluded; at most
        ``n_samples - 1`` are used).
    affinity : {"binary", "heat"}, default="binary"
        Edge weights: 1, or ``exp(-d^2 / (2 h^2))`` with ``h^2`` the mean squared kNN
        distance.
    prototype : {"kmeans", "kmodes"}, default="kmeans"
        Prototype term: squared euclidean distance, or the K-modes kernel term.
    temperature : "auto" or float, default="auto"
        Divides the prototype term (a float must be > 0).  "auto" is the median, over
        the clusters of the initial k-means solution, of the largest eigenvalue
        ``lambda_max`` of the cluster's covariance: half the critical temperature
        ``2 lambda_max`` above which soft K-means merges clusters (deterministic
        annealing, [3]_), so assignments stay sharp at any number of clusters and
        dimension while the kNN graph still reshapes the boundaries.  Initial clusters
        with no spread above the floating-point resolution of the squared distances
        (duplicated points) are left out of the median; when none is left, ``h^2`` is
        used.  For ``prototype="kmodes"`` the value is divided by ``2 h^2`` (``h``:
        `bandwidth_`): near a mode the kernel term is ``-1 + |x - m|^2 / (2 h^2)``, so
        this is the same sharpness as for K-means, and it does not depend on the units
        of ``X``.
    preprocessing : {"cl2n", "l2n"} or None, default=None
        As in :class:`LaplacianFewShotClassifier` (centring on the data mean).
    n_init : int, default=1
        Runs from different k-means++ seeds (>= 1); the one with the lowest final
        objective is kept.
    max_iter : int, default=100
        Most iterations of a run (>= 1).
    tol : float, default=1e-4
        Relative change of the objective at which a run stops (>= 0).
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means++ initialisation.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
    label_distributions_ : ndarray of shape (n_samples, n_clusters)
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        In the preprocessed space.
    center_ : ndarray of shape (n_features,) or None
    bandwidth_ : float
        ``h``: root mean squared kNN distance.
    temperature_ : float
        The temperature used (see `temperature`).
    n_iter_ : int
    objective_ : ndarray of shape (``n_iter_ + 1``,)
        Objective history of the kept run (non-increasing).
    n_features_in_ : int

    See Also
    --------
    LaplacianFewShotClassifier : the same optimizer with labelled supports.
    sklearn.cluster.KMeans, sklearn.cluster.SpectralClustering

    References
    ----------
    .. [1] Ziko, Granger, Ben Ayed. "Scalable Laplacian K-modes." NeurIPS, 2018.
    .. [2] Ziko, Boudiaf, Dolz, Granger, Ben Ayed. "Transductive Few-Shot Learning:
       Clustering is All You Need?" arXiv:2106.09516, 2021.
    .. [3] Rose. "Deterministic annealing for clustering, compression, classification,
       regression, and related optimization problems." Proc. IEEE 86(11), 1998.

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from sklearn.metrics import adjusted_rand_score
    >>> from protolearn.transductive import LaplacianKMeans
    >>> X, y = make_moons(300, noise=0.05, random_state=0)
    >>> km = LaplacianKMeans(n_clusters=2, lam=3.0, random_state=0).fit(X)
    >>> km.labels_.shape
    (300,)
    """

    _parameter_constraints = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "lam": [Interval(Real, 0, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "affinity": [StrOptions({"binary", "heat"})],
        "prototype": [StrOptions({"kmeans", "kmodes"})],
        "temperature": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "preprocessing": [StrOptions({"cl2n", "l2n"}), None],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        n_clusters=8,
        lam=1.0,
        n_neighbors=10,
        affinity="binary",
        prototype="kmeans",
        temperature="auto",
        preprocessing=None,
        n_init=1,
        max_iter=100,
        tol=1e-4,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.lam = lam
        self.n_neighbors = n_neighbors
        self.affinity = affinity
        self.prototype = prototype
        self.temperature = temperature
        self.preprocessing = preprocessing
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Cluster ``X``.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : object
        """
        X = validate_fit_data(self, X)
        n, K = X.shape[0], self.n_clusters
        if n < max(K, 2):
            raise ValueError(
                f"n_samples={n} should be >= n_clusters={K} (and at least 2)."
            )
        rng = check_random_state(self.random_state)
        self.center_ = X.mean(0) if self.preprocessing == "cl2n" else None
        Z = self._preprocess(X)
        # Without preprocessing the model depends on distances only: solve it on rows
        # centred on their mean (the expanded distances of data far from the origin
        # lose their digits in float32) and move the centres back at the end.
        shift = X.mean(0) if self.preprocessing is None else None
        if shift is not None:
            Z = Z - shift
        W, h = knn_affinity(
            Z, min(self.n_neighbors, n - 1), kind=self.affinity, symmetric=True
        )
        self.bandwidth_ = h
        fixed = np.zeros((1, n), dtype=bool)
        Y0 = np.zeros((1, n, K), dtype=Z.dtype)
        best, T = None, None
        for _ in range(self.n_init):
            M0, labels0, _, _ = _prototypes.kmeans(Z, K, random_state=rng)
            if T is None:  # one temperature for every restart (comparable objectives)
                T = self._temperature(Z, labels0, h, rng)
                self.temperature_ = T
            run = laplacian_solve(
                Z[None], Y0, fixed, M0[None], W if self.lam > 0 else None,
                laplacian_weight=self.lam, prototype=self.prototype, update=True, temperature=T,
                bandwidth=np.array([h], dtype=Z.dtype), max_iter=self.max_iter,
                tol=self.tol,
            )  # fmt: skip
            hist = run[3][0]
            final = hist[~np.isnan(hist)][-1]
            if best is None or final < best[0]:
                best = (final, run)
        _, (Y, M, n_iter, hist, conv) = best
        self.label_distributions_ = Y[0]
        self.labels_ = Y[0].argmax(1).astype(np.intp)
        self.cluster_centers_ = M[0] if shift is None else M[0] + shift
        self.n_iter_ = int(n_iter[0])
        self.objective_ = hist[0, : self.n_iter_ + 1]
        if not conv[0]:
            warnings.warn(
                f"LaplacianKMeans did not converge in max_iter={self.max_iter} "
                f"iterations (tol={self.tol}); raise max_iter.",
                ConvergenceWarning,
            )
        return self

    def _temperature(self, Z, labels, h, rng):
        if self.temperature != "auto":
            return float(self.temperature)
        return annealing_temperature(Z, labels, self.n_clusters, h, self.prototype, rng)

    def score(self, X, y=None):
        """Minus the K-means inertia of ``X`` to the centres (higher is better), as
        :meth:`sklearn.cluster.KMeans.score`, in the preprocessed space.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        Z = self._preprocess(validate_predict_data(self, X))
        _, d2 = _distances.nearest(Z, asarray_like(self.cluster_centers_, Z))
        return -float(d2.sum())

    def fit_predict(self, X, y=None):
        """Cluster ``X`` and return ``labels_`` (transductive: the graph votes).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        labels : ndarray (or int64 tensor on X's device) of shape (n_samples,)
        """
        return labels_out(np.arange(self.n_clusters), self.fit(X).labels_, like=X)

    def predict(self, X):
        """Index of the nearest cluster centre (inductive; may differ from ``labels_``
        on the training rows, where the graph also votes).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray (or int64 tensor on X's device) of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        Z = self._preprocess(X)
        # K-modes' kernel decreases with the distance: the same nearest centre
        idx, _ = _distances.nearest(Z, asarray_like(self.cluster_centers_, Z))
        return labels_out(np.arange(self.n_clusters), idx, like=X)
