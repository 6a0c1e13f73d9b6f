"""Deep prototype heads: a learned projection + a prototype layer, trained with skorch.

Each estimator wraps a skorch ``NeuralNet`` (in ``net_``) built by
:mod:`protolearn.nn`'s engine and keeps the scikit-learn contract itself.
"""

from ._cbc import DeepCBCClassifier
from ._gaussian import DeepGaussianPrototypeClassifier, class_odds
from ._mixture import DeepPrototypeMixtureDetector

__all__ = [
    "DeepCBCClassifier",
    "DeepGaussianPrototypeClassifier",
    "DeepPrototypeMixtureDetector",
    "class_odds",
]
