"""Transductive few-shot classification and clustering with Laplacian-regularised
prototypes (LaplacianShot, Ziko et al., ICML 2020; Ziko et al., 2021)."""

from ._clustering import LaplacianKMeans
from ._laplacian import LaplacianFewShotClassifier, laplacian_fewshot_episodes

__all__ = [
    "LaplacianFewShotClassifier",
    "LaplacianKMeans",
    "laplacian_fewshot_episodes",
]
