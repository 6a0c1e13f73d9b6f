"""Few-shot episodes: N-way K-shot samplers (balanced, Dirichlet-imbalanced, with NOTA
queries), disjoint class pools for tuning and testing, and episode evaluation."""

from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch, check_random_state, column_or_1d

from ..metrics import mean_confidence_interval
from ..utils._array_api import as_index_like, get_namespace, is_torch, to_numpy
from ..utils._sklearn_compat import get_chunk_n_rows
from ..utils._validation import resolve_nota_label


class Episode(NamedTuple):
    """One few-shot episode: row indices into the pool and their labels.

    ``query_labels`` holds ``nota_label`` for none-of-the-above queries.

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.model_selection import sample_episodes
    >>> y = np.repeat([0, 1, 2, 3], 10)
    >>> ep = sample_episodes(y, n_way=2, n_shot=1, n_query=3, n_episodes=1,
    ...                      random_state=0)[0]
    >>> ep.support_index.shape, ep.query_index.shape
    ((2,), (6,))
    >>> bool((y[ep.query_index] == ep.query_labels).all())
    True
    """

    classes: np.ndarray
    support_index: np.ndarray
    support_labels: np.ndarray
    query_index: np.ndarray
    query_labels: np.ndarray


def split_classes(y, *, test_size=0.5, exclude="auto", random_state=None):
    """Split the classes of ``y`` into two disjoint pools (tuning, test).

    Tune hyperparameters on episodes drawn from the first pool and report on episodes
    from the second, so that no class used to evaluate was used to tune.

    Parameters
    ----------
    y : array-like or torch tensor (any device) of shape (n_samples,)
    test_size : float in (0, 1) or int, default=0.5
        Share (or number) of classes in the test pool.
    exclude : tuple or "auto", default="auto"
        Labels that are not classes (e.g. out-of-scope rows).  "auto": the NOTA label
        of :func:`sample_episodes`, -1 for numeric labels and "NOTA" for strings.

    Returns
    -------
    tune_classes, test_classes : ndarrays of labels

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.model_selection import split_classes
    >>> tune, test = split_classes(np.repeat(np.arange(10), 5), random_state=0)
    >>> tune.size, test.size, np.intersect1d(tune, test).size
    (5, 5, 0)
    """
    y = column_or_1d(_numpy(y))
    if isinstance(exclude, str) and exclude == "auto":
        exclude = (resolve_nota_label("auto", y),)
    classes = np.setdiff1d(np.unique(y), np.asarray(exclude))
    n = classes.size
    n_test = (
        int(round(test_size * n))
        if isinstance(test_size, Real) and not (isinstance(test_size, Integral))
        else int(test_size)
    )
    if not 0 < n_test < n:
        raise ValueError(f"test_size={test_size} leaves an empty pool for {n} classes.")
    perm = check_random_state(random_state).permutation(n)
    return np.sort(classes[perm[n_test:]]), np.sort(classes[perm[:n_test]])


def _check_positive_int(name, value):
    if not isinstance(value, (Integral, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}.")


def _dirichlet_counts(rng, alpha, n_way, total, available):
    """Per-class query counts with Dirichlet(alpha) proportions, within availability.

    Proportions p ~ Dir(alpha 1_N) (Veilleux et al., 2021); counts are the
    largest-remainder rounding of ``p * total``; any count above a class's available
    samples is capped and the surplus goes to classes with room, largest share first.
    """
    p = rng.dirichlet(np.full(n_way, float(alpha)))
    raw = p * total
    counts = np.floor(raw).astype(int)
    rest = total - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    over = counts > available
    surplus = int((counts[over] - available[over]).sum())
    counts = np.minimum(counts, available)
    for c in np.argsort(-p, kind="stable"):
        if surplus == 0:
            break
        add = min(surplus, available[c] - counts[c])
        counts[c] += add
        surplus -= add
    return counts


def sample_episodes(
    y,
    *,
    n_way=5,
    n_shot=1,
    n_query=15,
    n_episodes=1000,
    imbalance=None,
    nota_rate=0.0,
    nota_label="auto",
    classes=None,
    random_state=None,
):
    """Sample N-way K-shot episodes from a labelled pool.

    Parameters
    ----------
    y : array-like or torch tensor (any device) of shape (n_samples,)
        Labels of the pool; rows labelled `nota_label` never form a class but may serve
        as none-of-the-above queries.
    n_way, n_shot, n_query : int
        Classes per episode, support samples per class, query samples per class (the
        query set holds ``n_way * n_query`` in-class samples).
    n_episodes : int
    imbalance : float or None, default=None
        None: balanced queries (``n_query`` per class).  A float ``alpha``: the class
        proportions of each query set are drawn from a symmetric Dirichlet(alpha), the
        realistic setting of Veilleux et al. (NeurIPS 2021; they use alpha=2).
    nota_rate : float in [0, 1), default=0.0
        Share of the query set drawn from outside the episode's classes ("none of the
        above", FewRel 2.0 style): ``round(nota_rate / (1 - nota_rate) * n_way *
        n_query)`` extra queries, from the pool's other classes and `nota_label` rows,
        labelled `nota_label`.
    nota_label : scalar or "auto", default="auto"
        "auto": -1 for numeric labels, "NOTA" for string labels (the default of
        :class:`~protolearn.classification.GaussianPrototypeClassifier`, so that its
        rejections are scored as right).  A label of the other kind raises.
    classes : array-like, default=None
        Restrict the episode classes to these labels (e.g. one pool of
        :func:`split_classes`); NOTA queries still come from outside the episode.
    random_state : int, RandomState instance or None

    Returns
    -------
    episodes : list of :class:`Episode`

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.model_selection import sample_episodes
    >>> y = np.repeat(np.arange(10), 20)
    >>> episodes = sample_episodes(y, n_way=5, n_shot=1, n_query=15, n_episodes=100,
    ...                            imbalance=2.0, random_state=0)
    >>> len(episodes), episodes[0].support_labels.size, episodes[0].query_labels.size
    (100, 5, 75)
    """
    y = column_or_1d(_numpy(y))
    for name in ("n_way", "n_shot", "n_query", "n_episodes"):
        _check_positive_int(name, locals()[name])
    if not 0 <= nota_rate < 1:
        raise ValueError(f"nota_rate must be in [0, 1); got {nota_rate}.")
    if imbalance is not None and not (isinstance(imbalance, Real) and imbalance > 0):
        raise ValueError(f"imbalance must be None or a float > 0; got {imbalance!r}.")
    rng = check_random_state(random_state)
    nota_label = resolve_nota_label(nota_label, y)
    labels = np.unique(y[y != nota_label])
    if classes is not None:
        classes = np.asarray(classes)
        if np.any(classes == nota_label):
            raise ValueError(
                f"classes contains the nota_label {nota_label!r}, which never forms a "
                "class."
            )
        unknown = np.setdiff1d(classes, labels)
        if unknown.size:
            raise ValueError(f"classes not present in y: {unknown.tolist()}.")
        labels = classes
    members = {c: np.flatnonzero(y == c) for c in labels}
    need = n_shot + (1 if imbalance is not None else n_query)
    eligible = np.array([c for c in labels if members[c].size >= need])
    if eligible.size < n_way:
        raise ValueError(
            f"Only {eligible.size} classes have at least {need} samples "
            f"(n_shot={n_shot} + n_query={n_query}); n_way={n_way} needs {n_way}."
        )
    n_in = n_way * n_query
    n_nota = int(round(nota_rate / (1 - nota_rate) * n_in)) if nota_rate else 0
    episodes = []
    for _ in range(n_episodes):
        chosen = rng.choice(eligible, size=n_way, replace=False)
        perms = [rng.permutation(members[c]) for c in chosen]
        available = np.array([p.size - n_shot for p in perms])
        if imbalance is None:
            counts = np.full(n_way, n_query)
        else:
            counts = _dirichlet_counts(rng, imbalance, n_way, n_in, available)
        s_idx = np.concatenate([p[:n_shot] for p in perms])
        q_idx = np.concatenate([p[n_shot : n_shot + k] for p, k in zip(perms, counts)])
        s_lab = np.repeat(chosen, n_shot)
        q_lab = np.repeat(chosen, counts)
        if n_nota:
            outside = np.flatnonzero(~np.isin(y, chosen))
            if outside.size < n_nota:
                raise ValueError(
                    f"Only {outside.size} rows lie outside the episode classes; "
                    f"nota_rate={nota_rate} needs {n_nota}."
                )
            extra = rng.choice(outside, size=n_nota, replace=False)
            q_idx = np.concatenate([q_idx, extra])
            # the label array's dtype widens to hold nota_label (a string label
            # longer than the class names must not be truncated)
            nota = np.asarray([nota_label])
            q_lab = np.concatenate([q_lab, np.repeat(nota, n_nota)])
        order = rng.permutation(q_idx.size)
        episodes.append(Episode(chosen, s_idx, s_lab, q_idx[order], q_lab[order]))
    return episodes


def evaluate_episodes(
    estimator, X, episodes, *, transductive=False, unlabeled=-1, batched=False
):
    """Mean accuracy over episodes with its 95% confidence interval.

    Parameters
    ----------
    estimator : scikit-learn estimator
        Cloned for each episode.  Inductive: ``fit(X_support, y_support)`` then
        ``predict(X_query)``.  Transductive: ``fit`` on support and query rows together
        with the query labels set to `unlabeled` (scikit-learn's semi-supervised
        convention), predictions read from ``transduction_``.
    X : array-like or torch tensor of shape (n_samples, n_features)
        The pool the episodes index into.  A tensor stays a tensor on its device
        (e.g. a GPU): episodes are cut from it there, and with ``batched=True`` solved
        there.
    episodes : list of :class:`Episode`
    transductive : bool, default=False
    unlabeled : scalar, default=-1
        Label marking query rows in transductive mode.
    batched : bool, default=False
        Transductive mode only: solve all episodes at once with the estimator's
        ``solve_episodes(support, support_labels, query)`` (e.g.
        :meth:`protolearn.transductive.LaplacianFewShotClassifier.solve_episodes`),
        one call per group of episodes with the same shape.  Same predictions as the
        per-episode loop, much faster.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` with ``mean``, ``ci95`` and ``scores`` (the
        accuracy of each episode).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from protolearn.classification import NearestPrototypeClassifier
    >>> from protolearn.model_selection import evaluate_episodes, sample_episodes
    >>> from protolearn.transductive import LaplacianFewShotClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> episodes = sample_episodes(y, n_way=3, n_shot=1, n_query=5, n_episodes=200,
    ...                            random_state=0)
    >>> inductive = evaluate_episodes(NearestPrototypeClassifier(), X, episodes)
    >>> transductive = evaluate_episodes(LaplacianFewShotClassifier(), X, episodes,
    ...                                  transductive=True, batched=True)
    >>> bool(transductive.mean > inductive.mean), inductive.scores.shape
    (True, (200,))
    """
    if not is_torch(X):  # array-likes (lists, frames) become numpy; tensors stay
        X = np.asarray(X)
    if len(episodes) == 0:
        raise ValueError("episodes is empty: nothing to evaluate.")
    scores = np.empty(len(episodes))
    if batched:
        if not transductive or not hasattr(estimator, "solve_episodes"):
            raise ValueError(
                "batched=True needs transductive=True and an estimator with a "
                f"solve_episodes method; got {type(estimator).__name__}."
            )
        _evaluate_batched(estimator, X, episodes, scores)
        mean, ci = mean_confidence_interval(scores)
        return Bunch(mean=mean, ci95=ci, scores=scores)
    for i, ep in enumerate(episodes):
        est = clone(estimator)
        if transductive:
            if np.any(ep.support_labels == unlabeled):
                raise ValueError(
                    f"support labels use the unlabeled marker {unlabeled!r}."
                )
            Xe = _rows(X, np.concatenate([ep.support_index, ep.query_index]))
            ye = _with_unlabeled(ep.support_labels, ep.query_index.size, unlabeled)
            est.fit(Xe, ye)
            pred = est.transduction_[ep.support_index.size :]
        else:
            est.fit(_rows(X, ep.support_index), ep.support_labels)
            pred = est.predict(_rows(X, ep.query_index))
        scores[i] = np.mean(_numpy(pred) == ep.query_labels)
    mean, ci = mean_confidence_interval(scores)
    return Bunch(mean=mean, ci95=ci, scores=scores)


def _rows(X, index):
    """Rows of the pool (numpy, or a torch tensor on its device)."""
    return X[as_index_like(index, X)]


def _numpy(a):
    return to_numpy(a)


def _with_unlabeled(labels, n_unlabeled, unlabeled):
    """`labels` followed by `n_unlabeled` copies of the `unlabeled` marker.

    Numeric labels and a numeric marker share a numeric dtype; otherwise (e.g. string
    class names with the integer -1) the result is an object array, so the marker is
    neither truncated (``np.full(n, -1, dtype="<U1")`` holds ``"-"``) nor turned into
    a string that the estimator would take for a class.
    """
    marker = np.asarray(unlabeled)
    if labels.dtype.kind in "biuf" and marker.dtype.kind in "biuf":
        dtype = np.result_type(labels.dtype, marker.dtype)
    else:
        dtype = object
    out = np.empty(labels.size + n_unlabeled, dtype=dtype)
    out[: labels.size] = labels
    out[labels.size :] = unlabeled
    return out


def _evaluate_batched(estimator, X, episodes, scores):
    """Per-episode accuracies into `scores`, episodes of one shape solved together."""
    groups = {}
    for i, ep in enumerate(episodes):
        key = (ep.support_index.size, ep.query_index.size, ep.classes.size)
        groups.setdefault(key, []).append(i)
    for group in groups.values():
        # chunks of episodes: the stacked features of a whole group would be an
        # (n_episodes * n_points, n_features) copy of the pool's rows
        ep = episodes[group[0]]
        n_points = ep.support_index.size + ep.query_index.size
        itemsize = X.dtype.itemsize
        step = get_chunk_n_rows(
            row_bytes=2 * n_points * (X.shape[1] + ep.classes.size) * itemsize,
            max_n_rows=len(group),
        )
        for start in range(0, len(group), step):
            _evaluate_chunk(estimator, X, episodes, group[start : start + step], scores)


def _evaluate_chunk(estimator, X, episodes, idx, scores):
    """Accuracies of the episodes `idx` (all of one shape), solved together."""
    eps = [episodes[i] for i in idx]
    stack = get_namespace(X).stack
    S = stack([_rows(X, e.support_index) for e in eps])
    Q = stack([_rows(X, e.query_index) for e in eps])
    # class indices in the order of each episode's sorted classes (as fit would)
    s_lab = np.stack([np.searchsorted(np.sort(e.classes), e.support_labels)
                      for e in eps])  # fmt: skip
    out = estimator.solve_episodes(S, s_lab, Q)
    pred = _numpy(out.labels)
    for row, (i, e) in enumerate(zip(idx, eps)):
        labels = np.sort(e.classes)[pred[row]]
        scores[i] = np.mean(labels == e.query_labels)
