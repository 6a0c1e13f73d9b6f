"""Prototype classifiers: nearest prototype, Gaussian prototypes (NOTA), RBF / CBC, GLVQ."""

from ._nearest_prototype import NearestPrototypeClassifier

__all__ = ["NearestPrototypeClassifier"]

from ._gaussian_prototype import GaussianPrototypeClassifier  # noqa: E402

__all__ += ["GaussianPrototypeClassifier"]

from ._glvq import GLVQClassifier, GMLVQClassifier  # noqa: E402

__all__ += ["GLVQClassifier", "GMLVQClassifier"]

from ._cbc import CBCClassifier, RBFClassifier  # noqa: E402
from ._plotting import plot_reasoning  # noqa: E402

__all__ += ["CBCClassifier", "RBFClassifier", "plot_reasoning"]
