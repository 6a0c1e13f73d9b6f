"""What the novelty detectors share: the preprocessing hook and ``partial_fit``."""

from .._core._distances import l2_normalize
from ..base import BaseOutlierDetector, unchanged_on_error


class _EmbeddingDetector(BaseOutlierDetector):
    """A :class:`~protolearn.base.BaseOutlierDetector` on (optionally L2-normalised)
    embeddings that learns from batches.

    Subclasses implement ``_partial_fit(X, y)`` (the update from one batch) and read
    samples through ``_preprocess`` (L2 normalisation when their ``normalize`` is
    true).
    """

    def _preprocess(self, X):
        return l2_normalize(X) if self.normalize else X

    def partial_fit(self, X, y=None):
        """Update the detector with a batch of in-distribution samples.

        How the update relates to :meth:`fit` is in the class's Notes.  A batch that
        raises leaves the model as it was.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Class labels: in every batch or in none (not used by kNN scores).

        Returns
        -------
        self : object
        """
        with unchanged_on_error(self):
            return self._partial_fit(X, y)
