"""Pure functions shared by every estimator: each piece of math lives here once.

Every function accepts numpy arrays or torch tensors and returns the same kind, on the same
device, in the input's floating dtype (float32 stays float32).
"""

from ._covariance import (
    fit_gaussian,
    ledoit_wolf_shrinkage,
    pooled_covariance,
    precision_cholesky,
    shrink_covariance,
    shrunk_precision_cholesky,
)
from ._distances import (
    common_centre,
    cosine_distances,
    iter_distance_chunks,
    l2_normalize,
    mahalanobis_distances,
    nearest,
    pairwise_distances,
    squared_euclidean_distances,
)
from ._knn_graph import batched_knn_affinity, graph_product, kneighbors, knn_affinity
from ._laplacian_solver import laplacian_solve
from ._mixture import fit_vmf_mixtures, vmf_log_normalizer, vmf_mixture_log_density
from ._neighbors import kth_neighbor_distance
from ._prototypes import class_means, class_prototypes, kmeans
from ._reasoning import (
    class_probabilities,
    decode_original_reasoning,
    decode_rbf_weights,
    decode_stable_reasoning,
    detection_probabilities,
    log_class_probabilities,
)
from ._robustness import (
    linear_form,
    nearest_prototype_index,
    nearest_prototype_radius,
    reasoning_radius,
)

__all__ = [
    "batched_knn_affinity",
    "graph_product",
    "kneighbors",
    "knn_affinity",
    "laplacian_solve",
    "class_means",
    "class_probabilities",
    "class_prototypes",
    "common_centre",
    "cosine_distances",
    "decode_original_reasoning",
    "decode_rbf_weights",
    "decode_stable_reasoning",
    "detection_probabilities",
    "fit_gaussian",
    "fit_vmf_mixtures",
    "iter_distance_chunks",
    "kmeans",
    "kth_neighbor_distance",
    "l2_normalize",
    "ledoit_wolf_shrinkage",
    "linear_form",
    "log_class_probabilities",
    "mahalanobis_distances",
    "nearest",
    "nearest_prototype_index",
    "nearest_prototype_radius",
    "pairwise_distances",
    "pooled_covariance",
    "precision_cholesky",
    "reasoning_radius",
    "shrink_covariance",
    "shrunk_precision_cholesky",
    "squared_euclidean_distances",
    "vmf_log_normalizer",
    "vmf_mixture_log_density",
]
