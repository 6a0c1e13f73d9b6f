"""The transductive estimators' input map: centred, then on the unit sphere."""

from .._core._distances import l2_normalize
from ..utils._array_api import asarray_like


class CentredUnitRowsMixin:
    """``_preprocess``: with ``preprocessing`` set, subtract the fitted ``center_``
    (when there is one) and L2-normalise the rows; otherwise the identity."""

    def _preprocess(self, X):
        if self.preprocessing is None:
            return X
        Z = X if self.center_ is None else X - asarray_like(self.center_, X)
        return l2_normalize(Z)
