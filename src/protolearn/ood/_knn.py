"""k-nearest-neighbour novelty detector (Sun et al., ICML 2022)."""

from numbers import Integral

from .._core import _defaults, _distances, _neighbors
from ..utils import _array_api as xp
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import validate_fit_data
from ._base import _EmbeddingDetector


class KNNDetector(_EmbeddingDetector):
    """Out-of-distribution detector: distance to the k-th nearest training sample.

    The score of a sample is minus the euclidean distance from it to its
    ``n_neighbors``-th nearest in-distribution training sample, after L2
    normalisation (Sun et al., 2022).  Labels are not used.  Scoring is brute force,
    chunked so that memory stays bounded by scikit-learn's ``working_memory``.

    A training sample scored by :meth:`score_samples` counts itself among its
    neighbours (distance 0), as for any other stored point.  ``offset_`` instead comes
    from leave-one-out scores (each training sample's distance to its ``n_neighbors``-th
    nearest *other* training sample, as :class:`~sklearn.neighbors.LocalOutlierFactor`
    does with ``novelty=True``), of at most ``MAX_OFFSET_SAMPLES`` evenly spaced
    training samples (scoring all n would cost O(n^2)).  So `contamination` is the
    share of *new* in-distribution samples flagged (in-sample scores would flag every
    new sample at ``n_neighbors=1``, each training sample being 0 from itself);
    ``predict`` on the training samples themselves flags fewer than `contamination`.

    Read more in the :ref:`User Guide <ood_baselines>`.

    Parameters
    ----------
    n_neighbors : int or {"auto"}, default="auto"
        Rank ``k`` of the neighbour whose distance is the score (must be below the
        number of training samples).  "auto": ``clip(round(n_samples / 1000), 5,
        100)`` (at most ``n_samples - 1``), scaling ``k`` with the training set as
        Sun et al. do (50 for CIFAR-10's 50,000 images, about 0.1%); the floor of 5
        keeps small training sets from a one-neighbour score.
    normalize : bool, default=True
        L2-normalise samples first (the paper's setting).
    contamination : "auto" or float in (0, 0.5], default="auto"
        Share of training samples taken as outliers to set ``offset_`` ("auto": 5%).

    Attributes
    ----------
    fit_X_ : ndarray of shape (n_samples, n_features)
        The (normalised) training samples.
    n_neighbors_ : int
        The rank used (``n_neighbors`` resolved).
    offset_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    sklearn.neighbors.LocalOutlierFactor : density-ratio score from neighbours.
    PrototypeMixtureDetector : the same question answered by a few prototypes.

    Notes
    -----
    :meth:`partial_fit` appends the batch to the reference set: the same model as
    :meth:`fit` on all rows seen, in order.  ``offset_`` is recomputed over the whole
    reference set as in :meth:`fit`, and so is ``n_neighbors_`` (with
    ``n_neighbors="auto"`` it grows with the rows seen).

    References
    ----------
    .. [1] Sun, Ming, Zhu, Li. "Out-of-Distribution Detection with Deep Nearest
       Neighbors." ICML, 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.ood import KNNDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)) + [5, 0, 0, 0]
    >>> det = KNNDetector(n_neighbors=10).fit(X)
    >>> det.predict([[5.0, 0.0, 0.0, 0.0], [-5.0, 0.0, 0.0, 0.0]])
    array([ 1, -1])
    """

    MAX_OFFSET_SAMPLES = 10_000

    _parameter_constraints = {
        **_EmbeddingDetector._parameter_constraints,
        "n_neighbors": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "normalize": ["boolean"],
    }

    def __init__(self, *, n_neighbors="auto", normalize=True, contamination="auto"):
        self.n_neighbors = n_neighbors
        self.normalize = normalize
        self.contamination = contamination

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Store the (normalised) in-distribution samples.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : None
            Ignored (kNN scores do not use labels).

        Returns
        -------
        self : object
        """
        X = validate_fit_data(self, X, ensure_min_samples=2)
        self.n_neighbors_ = self._resolve_n_neighbors(
            X.shape[0], "training samples", "lower n_neighbors"
        )
        self.fit_X_ = self._preprocess(X)
        self._set_offset(X, max_samples=self.MAX_OFFSET_SAMPLES)
        return self

    def _resolve_n_neighbors(self, n, what, remedy):
        """``n_neighbors_`` for a reference set of `n` rows ("auto": the data-adaptive
        rank of :func:`protolearn._core._defaults.knn_rank`)."""
        if self.n_neighbors == "auto":
            return _defaults.knn_rank(n)
        if self.n_neighbors >= n:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} must be below the {n} {what} "
                f"(offset_ scores each one against the others); {remedy}."
            )
        return int(self.n_neighbors)

    def _partial_fit(self, X, y):
        first = not hasattr(self, "fit_X_")
        X = validate_fit_data(self, X, reset=first, ensure_min_samples=1)
        Z = self._preprocess(X)
        ref = Z if first else xp.concat([self.fit_X_, xp.asarray_like(Z, self.fit_X_)])
        self.n_neighbors_ = self._resolve_n_neighbors(
            ref.shape[0],
            "reference samples seen so far",
            "pass a larger first batch or lower n_neighbors",
        )
        self.fit_X_ = ref
        self._set_offset(ref, max_samples=self.MAX_OFFSET_SAMPLES)
        return self

    def _kth_distance(self, X, k):
        # row chunks: the normalised copy of X is made chunk by chunk, not whole
        def chunk(Xc, rows):
            return _neighbors.kth_neighbor_distance(
                self._preprocess(Xc), self.fit_X_, k, metric="euclidean"
            )

        itemsize = X.dtype.itemsize
        row_bytes = (X.shape[1] + 4 * self.fit_X_.shape[0]) * itemsize
        return _distances.map_row_chunks(chunk, X, row_bytes)

    def _score_samples(self, X):
        return -self._kth_distance(X, self.n_neighbors_)

    def _training_scores(self, X):
        # leave-one-out: the (k+1)-th nearest stored row, the row itself being the
        # first (distance 0; an exact duplicate is at 0 too, so the multiset of the
        # other rows' distances is the same whichever of the two is dropped)
        return -self._kth_distance(X, self.n_neighbors_ + 1)
