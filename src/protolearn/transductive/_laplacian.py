"""Laplacian-regularised transductive few-shot classification (LaplacianShot and its
K-means / K-modes generalisation), one episode (estimator) or many at once (function).

The math lives in :mod:`protolearn._core`: the pipeline in ``_transduction``, the
batched episodes in ``_episode_batches``, the solver in ``_laplacian_solver``.
"""

import inspect
import warnings
from numbers import Integral, Real

import numpy as np
from joblib import effective_n_jobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets

from .._core._distances import common_centre, map_row_chunks
from .._core._episode_batches import solve_episode_batches
from .._core._prototype_step import prototype_term
from .._core._transduction import transduce
from ..base import BasePrototypeClassifier
from ..utils._array_api import (
    as_index_like,
    asarray_like,
    float_dtype,
    full,
    get_namespace,
    is_torch,
    one_hot,
    to_numpy,
)
from ..utils._sklearn_compat import (
    Interval,
    StrOptions,
    _fit_context,
    validate_parameter_constraints,
)
from ..utils._validation import validate_fit_data
from ._preprocessing import CentredUnitRowsMixin

_PARAMS = {
    "lam": [Interval(Real, 0, None, closed="left")],
    "n_neighbors": [Interval(Integral, 1, None, closed="left")],
    "affinity": [StrOptions({"binary", "heat"})],
    "symmetric": ["boolean"],
    "graph": [StrOptions({"query", "all"})],
    "prototype": [StrOptions({"kmeans", "kmodes"})],
    "update_prototypes": ["boolean"],
    "temperature": [Interval(Real, 0, None, closed="neither")],
    "preprocessing": [StrOptions({"cl2n", "l2n"}), None],
    "center": ["array-like", None],
    "rectify": ["boolean"],
    "rectify_scale": [Interval(Real, 0, None, closed="left")],
    "balance": [StrOptions({"none", "equal", "auto"})],
    "balance_tol": [Interval(Real, 0, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
}


def _labelled_targets(labels):
    """The support labels, with an object array (the one that can hold both class
    names and the integer -1 of the queries) given the dtype of its values when they
    are all numbers or all strings: scikit-learn calls an object array of numbers
    "unknown" targets."""
    if labels.dtype != object or labels.size == 0:
        return labels
    values = labels.tolist()
    if all(isinstance(v, str) for v in values) or all(
        isinstance(v, (Integral, Real)) and not isinstance(v, bool) for v in values
    ):
        return np.asarray(values)
    kinds = sorted({type(v).__name__ for v in values})
    raise ValueError(
        f"The labelled rows of y mix label types ({', '.join(kinds)}); class labels "
        "must be all strings or all numbers."
    )


def _check_center(center, n_features, dtype):
    """`center` as a finite (n_features,) numpy array of `dtype`, or a ValueError."""
    # a tensor is moved to the CPU first; array-likes go straight to `dtype`
    c = np.asarray(to_numpy(center) if is_torch(center) else center, dtype=dtype)
    c = c.ravel()
    if c.shape != (n_features,):
        raise ValueError(
            f"center must have shape (n_features,)=({n_features},); got "
            f"{np.shape(center)}."
        )
    if not np.all(np.isfinite(c)):
        raise ValueError("center contains NaN or infinity.")
    return c


def _check_params(params):
    unknown = set(params) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unexpected parameters: {sorted(unknown)}.")
    hyperparams = {**_DEFAULTS, **params}
    validate_parameter_constraints(
        _PARAMS, hyperparams, caller_name="laplacian_fewshot_episodes"
    )
    return hyperparams


def laplacian_fewshot_episodes(
    support, support_labels, query, *, n_jobs=None, **params
):
    """Solve many few-shot episodes at once, as one (n_tasks, n_points, d) computation.

    Each task is solved exactly as :class:`LaplacianFewShotClassifier` solves one
    episode (same model, same stopping rule per task), but all tasks move together:
    batched matrix products over a leading task axis, with dense per-task kNN graphs,
    taken in chunks of tasks so that memory stays bounded (a few MiB on the CPU,
    scikit-learn's ``working_memory`` on a GPU).  A task of ``n`` points holds a
    few (n, n) matrices; a task too large for them (a single task's (n, n) array
    above that budget: ~1,000 points in float32 on the CPU) is solved alone with a
    sparse kNN graph instead, as :class:`LaplacianFewShotClassifier` solves it
    (memory ``O(n * n_neighbors)``).
    numpy arrays run on the CPU; torch tensors run on their device (GPU when they are
    on one), and the results come back as tensors there.

    Read more in the :ref:`User Guide <transductive>`.

    Parameters
    ----------
    support : {ndarray, torch.Tensor} of shape (n_tasks, n_support, n_features)
        Support features of each task.
    support_labels : array-like of int of shape (n_tasks, n_support)
        Class indices in ``0..n_classes-1``.  Every class ``0..max`` must appear in
        every task (``n_classes = max + 1``).
    query : {ndarray, torch.Tensor} of shape (n_tasks, n_query, n_features)
        Query features of each task, of the same kind as `support` (``n_query`` may be
        0).
    **params
        The hyperparameters of :class:`LaplacianFewShotClassifier`, with the same
        names, meaning and defaults: `lam`, `n_neighbors`, `affinity`, `symmetric`,
        `graph`, `prototype`, `update_prototypes`, `temperature`, `preprocessing`,
        `center` (None: each task's own mean; or a (d,) vector, e.g. the mean of base
        features), `rectify`, `rectify_scale`, `balance`, `balance_tol`, `max_iter`,
        `tol`.
    n_jobs : int, default=None
        Threads solving chunks of tasks concurrently (numpy and torch release the GIL
        in their matrix products and elementwise loops); None means 1, -1 all CPUs
        (joblib's convention).  The chunks are then larger, of equal size and a
        multiple of `n_jobs` in number, and BLAS runs one thread per worker.  Results
        do not depend on it: every task's result is the one it gets alone.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` with

        - ``labels`` (n_tasks, n_query) int64: predicted class index of each query;
        - ``label_distributions`` (n_tasks, n_query, n_classes): soft assignments;
        - ``prototypes`` (n_tasks, n_classes, d): refined prototypes (preprocessed
          space);
        - ``n_iter`` (n_tasks,) and ``converged`` (n_tasks,) numpy arrays;
        - ``objective`` (n_tasks, max_iter + 1) float64 numpy array: ``E`` before the
          first step and after each iteration, NaN after the task stopped;
        - ``balanced`` (n_tasks,) bool numpy array: whether a task's solution is the
          class-balanced one (see `balance`).

        Arrays other than ``n_iter``, ``converged`` and ``objective`` are of the input's
        kind, dtype (float32 stays float32) and device (tensors that require grad are
        accepted; the results do not carry gradients).

    See Also
    --------
    LaplacianFewShotClassifier : the same model, one episode, scikit-learn API.

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.transductive import laplacian_fewshot_episodes
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.normal(size=(3, 8))
    >>> def draw(n):  # (4 tasks, n per class * 3 classes, 8)
    ...     y = np.tile(np.repeat(np.arange(3), n), (4, 1))
    ...     return centers[y] + 0.3 * rng.normal(size=(4, 3 * n, 8)), y
    >>> S, s_lab = draw(1)
    >>> Q, q_lab = draw(10)
    >>> out = laplacian_fewshot_episodes(S, s_lab, Q)
    >>> out.labels.shape, float((out.labels == q_lab).mean())
    ((4, 30), 1.0)
    """
    hyperparams = _check_params(params)
    if n_jobs is not None and (not isinstance(n_jobs, Integral) or n_jobs == 0):
        raise ValueError(f"n_jobs must be None or a nonzero integer; got {n_jobs!r}.")
    support, labels, query, n_classes = _check_episodes(
        support, support_labels, query, hyperparams
    )
    return solve_episode_batches(
        support, labels, query, n_classes, hyperparams, effective_n_jobs(n_jobs)
    )


def _check_episodes(support, support_labels, query, hyperparams):
    """``(support, labels, query, n_classes)``: the features as float arrays of one
    kind (detached from autograd), the labels as a numpy integer array, all checked;
    `hyperparams`' centre is checked against the features (in place)."""
    if is_torch(support) != is_torch(query):
        raise TypeError("support and query must both be numpy arrays or torch tensors.")
    if not is_torch(support):  # array-likes become numpy; tensors stay tensors
        support, query = np.asarray(support), np.asarray(query)
    else:  # the solver is not differentiable: autograd inputs are detached
        support, query = support.detach(), query.detach()
    xp = get_namespace(support)
    dt = float_dtype(support)
    support, query = (
        xp.astype(support, dt, copy=False),
        xp.astype(query, dt, copy=False),
    )
    if support.ndim != 3 or query.ndim != 3:
        raise ValueError(
            "support and query must be 3-D (n_tasks, n_points, n_features); got shapes "
            f"{tuple(support.shape)} and {tuple(query.shape)}."
        )
    T, ns, d = support.shape
    if query.shape[0] != T or query.shape[2] != d:
        raise ValueError(
            f"query shape {tuple(query.shape)} does not match support shape "
            f"{tuple(support.shape)} (same n_tasks and n_features needed)."
        )
    if hyperparams["center"] is not None and hyperparams["preprocessing"] == "cl2n":
        # checked in float64; cast to the features' dtype (and device) when used
        hyperparams["center"] = _check_center(hyperparams["center"], d, np.float64)
    labels = np.asarray(to_numpy(support_labels))
    if labels.shape != (T, ns) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"support_labels must be integers of shape (n_tasks, n_support)={(T, ns)}; "
            f"got {labels.dtype} of shape {labels.shape}."
        )
    if ns == 0 or labels.min() < 0:
        raise ValueError("support_labels must be class indices >= 0 (and non-empty).")
    K = int(labels.max()) + 1
    present = np.zeros((T, K), dtype=bool)
    present[np.repeat(np.arange(T), ns), labels.ravel()] = True
    if not present.all():
        t, c = np.argwhere(~present)[0]
        raise ValueError(
            f"task {t} has no support sample of class {c}: every class 0..{K - 1} must "
            "appear in every task."
        )
    return support, labels, query, K


class LaplacianFewShotClassifier(CentredUnitRowsMixin, BasePrototypeClassifier):
    """Transductive few-shot classifier with Laplacian-regularised prototypes.

    Labelled (support) and unlabelled (query) rows are solved together, following
    scikit-learn's semi-supervised convention: ``fit(X, y)`` with ``y == -1`` for the
    query rows (as :class:`~sklearn.semi_supervised.LabelSpreading`).  Every query gets a
    soft label ``y_q`` minimising

    .. math::

        E(Y, M) = \\sum_{p,k} y_{pk} f(x_p, m_k) / T + \\sum_{q} y_q^\\top \\log y_q
                  - \\frac{\\lambda}{2} \\sum_{p,q} w_{pq}\\, y_p^\\top y_q

    with support rows fixed to their labels, ``f`` the squared distance to prototype
    ``m_k`` ("kmeans") or minus a Gaussian kernel ("kmodes"), and ``W`` a kNN affinity
    graph (optionally with the queries' class sizes held equal, `balance`).  The
    bound optimizer of LaplacianShot (Ziko et al., 2020) updates all queries in parallel,
    ``y_q <- softmax(-f(x_q, M) / T + lambda (W Y)_q)``, alternated with
    prototype updates (Ziko et al., 2021); the objective never increases (steps that
    would raise it are halved).  ``lam=0`` is
    K-means constrained by the supports (a strong baseline).

    ``predict`` is inductive: the nearest refined prototype (in the preprocessed
    space), so ``predict(X_train)`` may differ from ``transduction_``.  With no query
    rows the model reduces to class-mean prototypes.

    Read more in the :ref:`User Guide <transductive>`.

    Parameters
    ----------
    lam : float, default=0.7
        The weight lambda of the Laplacian term (``lam`` is the public name, kept for
        compatibility), which gives neighbours in the kNN graph the same label; must
        be >= 0.  0 is K-means constrained by the supports; LaplacianShot uses values
        in [0.1, 1.5].
    n_neighbors : int, default=3
        Neighbours of each point in the kNN graph, the point itself excluded (the
        official ``knn=3`` includes the point itself, i.e. 2 neighbours here).  Clipped
        to the number of graph points minus one.
    affinity : {"binary", "heat"}, default="binary"
        Edge weights: 1, or ``exp(-d^2 / (2 h^2))`` with ``h^2`` the mean squared kNN
        distance.
    symmetric : bool, default=True
        Use ``(W + W^T) / 2``; False keeps the directed graph of the official code (no
        monotonicity guarantee then, so no step halving).
    graph : {"query", "all"}, default="all"
        Points the kNN graph is built over: the queries only (LaplacianShot), or the
        supports and queries together, so that queries next to a support are pulled
        towards its label.
    prototype : {"kmeans", "kmodes"}, default="kmeans"
        Prototype term: squared euclidean distance, or the K-modes kernel term with a
        bandwidth from the kNN distances (SLK).
    update_prototypes : bool, default=True
        Re-estimate the prototypes from the soft assignments after each bound step
        (False: LaplacianShot's fixed prototypes).
    temperature : float, default=0.1
        Divides the prototype term (1 in LaplacianShot); must be > 0.  Lower values
        make the soft labels follow the nearest prototype more sharply.  On CL2N
        features squared distances lie in [0, 4], so at 1 ``softmax(-f)`` is nearly
        flat; 0.1 is PT-MAP's scale, ``exp(-10 f)``.
    preprocessing : {"cl2n", "l2n"} or None, default="cl2n"
        Feature transform before everything: centring then L2 normalisation ("cl2n",
        SimpleShot), L2 only, or none.
    center : array-like of shape (n_features,), default=None
        Centre for "cl2n"; None: the mean of all rows passed to ``fit``.  Pass the mean
        of base-class features when there are some (as SimpleShot does): the episode's
        own mean leans towards the dominant classes of an imbalanced query set.
    rectify : bool, default=False
        Rectify the initial prototypes with confidently pseudo-labelled,
        shift-corrected queries (BD-CSPN, as LaplacianShot does).  It matters with
        fixed prototypes (``update_prototypes=False``).
    rectify_scale : float, default=10.0
        Cosine scale (>= 0) of the rectification weights (10 in BD-CSPN; easyfsl uses
        1).
    balance : {"none", "equal", "auto"}, default="none"
        Class sizes among the queries.  "none": free (LaplacianShot).  "equal": every
        class receives the same total soft mass over the queries, ``n_query /
        n_classes``; each bound step is then the entropic transport plan onto those
        class sizes (PT-MAP's balanced assignment), and the objective is still
        non-increasing.  Right when the queries are balanced, badly wrong when they
        are not.  "auto": solve both and keep an episode's balanced solution only if
        its labelling cuts at most ``balance_tol`` more of the kNN graph's edge weight
        than the free one (a balanced labelling of imbalanced queries has to split
        clusters).  It costs a second solve per episode; ``balanced_`` says which
        solution was kept.
    balance_tol : float, default=0.01
        For ``balance="auto"``: the largest increase (>= 0) of the fraction of the
        graph's edge weight cut by the labelling accepted for the balanced solution.
        Larger values favour balanced query sets.
    max_iter : int, default=50
        Most iterations (each: one bound step and one prototype step); must be >= 1.
    tol : float, default=1e-4
        Stop when the relative change of the objective is at most `tol` (SLK's outer
        tolerance; LaplacianShot uses 1e-6 for its bound steps).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    transduction_ : ndarray of shape (n_samples,)
        Label of every training row (given labels for supports, inferred for queries).
    label_distributions_ : ndarray of shape (n_samples, n_classes)
        Soft assignments (one-hot for supports).
    prototypes_ : ndarray of shape (n_classes, n_features)
        Refined prototypes, in the preprocessed feature space.
    center_ : ndarray of shape (n_features,) or None
        Centre used by "cl2n".
    bandwidth_ : float or None
        Kernel bandwidth used by "kmodes".
    n_iter_ : int
    objective_ : ndarray of shape (``n_iter_ + 1``,)
        Objective before the first step and after each iteration (non-increasing).
    balanced_ : bool
        Whether the solution kept is the class-balanced one (always False for
        ``balance="none"``, True for "equal").
    n_features_in_ : int

    See Also
    --------
    laplacian_fewshot_episodes : many episodes at once.
    LaplacianKMeans : the same optimizer without supervision (clustering).
    sklearn.semi_supervised.LabelSpreading : graph-based transduction.

    References
    ----------
    .. [1] Ziko, Dolz, Granger, Ben Ayed. "Laplacian Regularized Few-Shot Learning."
       ICML, 2020.
    .. [2] Ziko, Boudiaf, Dolz, Granger, Ben Ayed. "Transductive Few-Shot Learning:
       Clustering is All You Need?" arXiv:2106.09516, 2021.
    .. [3] Liu, Song, Qin. "Prototype Rectification for Few-Shot Learning." ECCV, 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.transductive import LaplacianFewShotClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> y_semi = np.full_like(y, -1)
    >>> y_semi[[0, 50, 100]] = [0, 1, 2]  # one labelled flower per class
    >>> clf = LaplacianFewShotClassifier(preprocessing=None).fit(X, y_semi)
    >>> float((clf.transduction_ == y).mean()) > 0.85
    True
    """

    _parameter_constraints = dict(_PARAMS)

    def __init__(
        self,
        *,
        lam=0.7,
        n_neighbors=3,
        affinity="binary",
        symmetric=True,
        graph="all",
        prototype="kmeans",
        update_prototypes=True,
        temperature=0.1,
        preprocessing="cl2n",
        center=None,
        rectify=False,
        rectify_scale=10.0,
        balance="none",
        balance_tol=0.01,
        max_iter=50,
        tol=1e-4,
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
        self.balance = balance
        self.balance_tol = balance_tol
        self.max_iter = max_iter
        self.tol = tol

    def _params(self):
        return {k: getattr(self, k) for k in _DEFAULTS}

    # appended to the shared error on None labels (utils._validation)
    _missing_label_hint = (
        " Mark query (unlabelled) rows with the integer -1 (scikit-learn's "
        "semi-supervised convention)."
    )

    @staticmethod
    def _unlabeled_mask(y):
        if y.dtype.kind in "iuf":
            return y == -1
        if y.dtype.kind == "O":
            return np.array([v == -1 for v in y], dtype=bool)
        if y.dtype.kind in "US" and (y == y.dtype.type("-1")).any():
            # np.r_[names, [-1, ...]] gives strings: "-1" would silently be a class
            raise ValueError(
                "y has a string dtype and contains the label '-1'. To mark query "
                "(unlabelled) rows with string class labels, use an object array with "
                "the integer -1 for them: y = y.astype(object); y[query] = -1."
            )
        return np.zeros(y.shape, dtype=bool)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Solve the transductive problem over support and query rows.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels of the support rows; ``-1`` for the query (unlabelled) rows.  With
            string class labels, pass an object array with the integer ``-1`` for
            the queries (a string array containing ``"-1"`` raises a ValueError).

        Returns
        -------
        self : object
        """
        X, y = validate_fit_data(self, X, y, reset=True)
        query = self._unlabeled_mask(y)
        if query.all():
            raise ValueError(
                "y has no labelled rows (all are -1); at least one support sample per "
                "class is needed."
            )
        labelled = _labelled_targets(y[~query])
        check_classification_targets(labelled)
        classes, y_idx = np.unique(labelled, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                "LaplacianFewShotClassifier needs labelled samples of at least 2 "
                f"classes; got 1 class ({classes[0]!r})."
            )
        self.classes_ = classes
        if self.center is not None:
            center = _check_center(self.center, X.shape[1], X.dtype)
        elif self.preprocessing == "cl2n":
            center = X.mean(0)
        else:
            center = None
        self.center_ = center if self.preprocessing == "cl2n" else None
        Z = self._preprocess(X)
        sup, qry = np.flatnonzero(~query), np.flatnonzero(query)
        onehot = one_hot(y_idx, classes.size, like=Z)[None]
        order = as_index_like(np.r_[sup, qry], Z)
        (Y, M, n_iter, hist, conv, bal), h = transduce(
            Z[order][None], onehot, self._params(), sparse_graph=True
        )
        dist = np.empty((X.shape[0], classes.size), dtype=Z.dtype)
        dist[sup], dist[qry] = Y[0, : sup.size], Y[0, sup.size :]
        self.label_distributions_ = dist
        self.transduction_ = classes[dist.argmax(1)]
        self.prototypes_ = M[0]
        self.bandwidth_ = None if h is None else float(h[0])
        self.n_iter_ = int(n_iter[0])  # 1 with no queries: one (idle) iteration
        self.objective_ = hist[0, : self.n_iter_ + 1]
        self.balanced_ = bool(bal[0])
        if qry.size and not conv[0]:
            warnings.warn(
                f"LaplacianFewShotClassifier did not converge in max_iter="
                f"{self.max_iter} iterations (relative objective change above "
                f"tol={self.tol}); raise max_iter.",
                ConvergenceWarning,
            )
        return self

    def _class_scores(self, X):
        M = asarray_like(self.prototypes_, X)
        c = common_centre(M)  # f depends on z - m only (see common_centre)
        M = M - c
        h = None if self.bandwidth_ is None else full((1,), self.bandwidth_, X)

        def scores(Xc, rows):  # row chunks: a few (rows, d) temporaries each
            Z = self._preprocess(Xc) - c
            f = prototype_term(Z[None], M[None], self.prototype, h)[0]
            return -f / self.temperature

        return map_row_chunks(scores, X, (4 * X.shape[1] + 3 * M.shape[0]) * 8)

    def solve_episodes(self, support, support_labels, query, *, n_jobs=None):
        """:func:`laplacian_fewshot_episodes` with this estimator's hyperparameters.

        Needs no fitting (nothing is stored); see that function for the arguments
        (`n_jobs` included) and the returned Bunch.
        """
        return laplacian_fewshot_episodes(
            support, support_labels, query, n_jobs=n_jobs, **self._params()
        )


# The batched function shares the estimator's defaults: one list, read off its signature.
_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(LaplacianFewShotClassifier).parameters.items()
}
