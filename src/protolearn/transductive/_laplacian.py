"""API skeleton (filled in by the next commits)."""

from sklearn.base import BaseEstimator, ClassifierMixin


def laplacian_fewshot_episodes(
    support,
    support_labels,
    query,
    *,
    lam=0.7,
    n_neighbors=3,
    affinity="binary",
    symmetric=True,
    graph="query",
    prototype="kmeans",
    update_prototypes=True,
    temperature=1.0,
    preprocessing="cl2n",
    center=None,
    rectify=True,
    rectify_scale=10.0,
    max_iter=20,
    tol=1e-6,
    working_memory=None,
):
    """Solve many few-shot episodes at once, as one (n_tasks, n_points, d) computation.

    Parameters
    ----------
    support : (n_tasks, n_support, d) numpy array or torch tensor
    support_labels : (n_tasks, n_support) ints in ``0..n_classes-1``; every class must
        appear in every task (n_classes = max label + 1).
    query : (n_tasks, n_query, d), same kind as `support`
    **params : the hyperparameters of :class:`LaplacianFewShotClassifier` (same names,
        same meaning, same defaults).

    Returns
    -------
    result : Bunch with ``labels`` (n_tasks, n_query) class indices,
        ``label_distributions`` (n_tasks, n_query, n_classes), ``prototypes``
        (n_tasks, n_classes, d) (in the preprocessed space), ``n_iter`` (n_tasks,) and
        ``objective`` (n_tasks, max_iter + 1), NaN after a task stopped.  Arrays are of
        the input's kind, dtype and device (indices int64).
    """
    raise NotImplementedError


class LaplacianFewShotClassifier(ClassifierMixin, BaseEstimator):
    """Transductive few-shot classifier (skeleton)."""

    def __init__(
        self,
        *,
        lam=0.7,
        n_neighbors=3,
        affinity="binary",
        symmetric=True,
        graph="query",
        prototype="kmeans",
        update_prototypes=True,
        temperature=1.0,
        preprocessing="cl2n",
        center=None,
        rectify=True,
        rectify_scale=10.0,
        max_iter=20,
        tol=1e-6,
    ):
        self.lam = lam
        self.n_neighbors = n_neighbors
        self.affinity = affinity
        self.symmetric = symmetric
        self.graph = graph
        self.prototype = prototype
        self.update_prototypes = update_prototypes
        self.temperature = temperature
        self.preprocessing = preprocessing
        self.center = center
        self.rectify = rectify
        self.rectify_scale = rectify_scale
        self.max_iter = max_iter
        self.tol = tol

    def solve_episodes(self, support, support_labels, query):
        """:func:`laplacian_fewshot_episodes` with this estimator's hyperparameters."""
        raise NotImplementedError
