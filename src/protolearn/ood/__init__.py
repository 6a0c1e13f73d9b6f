"""Out-of-distribution (novelty) detectors on embeddings.

Every detector follows scikit-learn's novelty-detection conventions
(:class:`~protolearn.base.BaseOutlierDetector`): ``fit(X, y=None)`` on
in-distribution data, ``score_samples`` (higher = more in-distribution),
``decision_function``, ``predict`` in {-1, +1}.
"""

from ._knn import KNNDetector
from ._mahalanobis import MahalanobisDetector
from ._mixture import PrototypeMixtureDetector

__all__ = ["KNNDetector", "MahalanobisDetector", "PrototypeMixtureDetector"]
