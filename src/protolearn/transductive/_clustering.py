"""API skeleton (filled in by the next commits)."""

from sklearn.base import BaseEstimator, ClusterMixin


class LaplacianKMeans(ClusterMixin, BaseEstimator):
    """Laplacian K-means / K-modes clustering (skeleton)."""

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
        tol=1e-6,
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
