"""Blockwise prediction and batched few-shot episodes on dask."""

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

try:
    import dask
    import dask.array as da
    import dask.bag as db
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "protolearn.parallel needs dask: pip install 'protolearn[dask]'."
    ) from exc


def _apply(block, estimator, method):
    return getattr(estimator, method)(block)


def _apply_frame(part, estimator, method, columns):
    import pandas as pd

    out = np.asarray(getattr(estimator, method)(part))
    if out.ndim == 1:
        return pd.Series(out, index=part.index, name=method)
    return pd.DataFrame(out, index=part.index, columns=columns)


def blockwise(estimator, X, method="predict"):
    """``getattr(estimator, method)(X)`` block by block over a dask collection.

    The fitted estimator enters the task graph once (one ``dask.delayed`` key that
    every block depends on), so a cluster ships it to each worker once, not once
    per block.  Written because dask-ml's
    :class:`~dask_ml.wrappers.ParallelPostFit` only wraps ``predict``,
    ``predict_proba``, ``predict_log_proba``, ``transform`` and ``score``: the
    detectors' ``score_samples`` / ``decision_function`` and the classifiers'
    ``decision_function`` / ``certified_radius`` have no wrapper there.  Any method
    mapping ``n`` rows to ``n`` outputs works.

    Parameters
    ----------
    estimator : fitted protolearn (or scikit-learn) estimator
    X : dask array of shape (n_samples, n_features) or dask DataFrame
        Chunked along the rows (column chunks are merged first).
    method : str, default="predict"

    Returns
    -------
    out : dask array (for a dask array ``X``), or dask Series / DataFrame (for a
        dask DataFrame), lazily computed; ``.compute()`` it.

    Examples
    --------
    >>> import dask.array as da
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.ood import MahalanobisDetector
    >>> from protolearn.parallel import blockwise
    >>> X, y = load_iris(return_X_y=True)
    >>> det = MahalanobisDetector().fit(X, y)
    >>> scores = blockwise(det, da.from_array(X, chunks=50), "score_samples")
    >>> scores.numblocks, bool((scores.compute() == det.score_samples(X)).all())
    ((3,), True)
    """
    check_is_fitted(estimator)
    if not callable(getattr(estimator, method, None)):
        raise ValueError(f"{type(estimator).__name__} has no method {method!r}.")
    est = dask.delayed(estimator, pure=True)
    if isinstance(X, da.Array):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-d; got a dask array of shape {X.shape}.")
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        # output shape and dtype from one row (the estimator run locally once)
        probe = np.asarray(
            getattr(estimator, method)(np.zeros((1, X.shape[1]), dtype=X.dtype))
        )
        kw = dict(dtype=probe.dtype, meta=probe[:0])
        if probe.ndim == 1:
            return da.map_blocks(_apply, X, est, method, drop_axis=1, **kw)
        return da.map_blocks(
            _apply, X, est, method, chunks=(X.chunks[0], probe.shape[1:]), **kw
        )
    if hasattr(X, "map_partitions"):  # dask DataFrame
        head = X._meta_nonempty.iloc[:1]
        probe = np.asarray(getattr(estimator, method)(head))
        columns = None
        if probe.ndim == 2:
            columns = (
                list(estimator.classes_)
                if method.startswith("predict_") and hasattr(estimator, "classes_")
                and probe.shape[1] == len(estimator.classes_)
                else list(range(probe.shape[1]))
            )  # fmt: skip
        meta = _apply_frame(head, estimator, method, columns).iloc[:0]
        return X.map_partitions(_apply_frame, est, method, columns, meta=meta)
    raise TypeError(
        f"X must be a dask array or dask DataFrame; got {type(X).__name__} (call "
        f"estimator.{method}(X) directly on in-memory data)."
    )


def _solve_chunk(support, labels, query, params):
    from ..transductive import laplacian_fewshot_episodes

    out = laplacian_fewshot_episodes(support, labels, query, **params)
    return out.labels, out.label_distributions


def solve_episodes(support, support_labels, query, **params):
    """:func:`~protolearn.transductive.laplacian_fewshot_episodes` over dask arrays.

    Each chunk of tasks (the arrays' first axis) is solved by one batched call on a
    worker; results are exactly those of one in-memory call (every task's result is
    the one it gets alone).

    Parameters
    ----------
    support : dask array of shape (n_tasks, n_support, d)
    support_labels : dask or numpy array of shape (n_tasks, n_support)
    query : dask array of shape (n_tasks, n_query, d)
        Chunked along the task axis only, with the same task chunks as `support`.
    **params
        The solver's hyperparameters (``lam``, ``n_neighbors``, ...).

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` of lazy dask arrays ``labels``
        (n_tasks, n_query) and ``label_distributions`` (n_tasks, n_query,
        n_classes).

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from protolearn.parallel import solve_episodes
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.normal(size=(3, 8))
    >>> y = np.tile(np.arange(3), (6, 1))  # 6 tasks, one support row per class
    >>> S = centers[y] + 0.3 * rng.normal(size=(6, 3, 8))
    >>> Q = centers[np.tile(np.arange(3), (6, 4))] + 0.3 * rng.normal(size=(6, 12, 8))
    >>> out = solve_episodes(da.from_array(S, chunks=(3, 3, 8)), y,
    ...                      da.from_array(Q, chunks=(3, 12, 8)))
    >>> out.labels.numblocks, out.labels.compute().shape
    ((2, 1), (6, 12))
    """
    support = da.asarray(support)
    query = da.asarray(query)
    task_chunks = support.chunks[0]
    support = support.rechunk({1: -1, 2: -1})
    query = query.rechunk({0: task_chunks, 1: -1, 2: -1})
    lab = da.asarray(support_labels).rechunk({0: task_chunks, 1: -1})
    n_classes = int(np.asarray(lab.max().compute())) + 1
    nq, dtype = query.shape[1], query.dtype
    labels, dists = [], []
    for s, y, q, t in zip(
        support.to_delayed().ravel(), lab.to_delayed().ravel(),
        query.to_delayed().ravel(), task_chunks,
    ):  # fmt: skip
        part = dask.delayed(_solve_chunk, nout=2)(s, y, q, params)
        labels.append(da.from_delayed(part[0], (t, nq), dtype=np.int64))
        dists.append(da.from_delayed(part[1], (t, nq, n_classes), dtype=dtype))
    return Bunch(
        labels=da.concatenate(labels), label_distributions=da.concatenate(dists)
    )


def _evaluate_partition(episodes, estimator, X, kwargs):
    from ..model_selection import evaluate_episodes as _evaluate

    episodes = list(episodes)
    if not episodes:
        return []
    return _evaluate(estimator, X, episodes, **kwargs).scores.tolist()


def evaluate_episodes(estimator, X, episodes, *, npartitions=None, **kwargs):
    """:func:`protolearn.model_selection.evaluate_episodes` over a dask bag.

    Each partition of episodes is evaluated on a worker (with ``batched=True``, by
    one batched solve); the pool ``X`` enters the graph once.  Same scores, in the
    same order, as the in-memory call.

    Parameters
    ----------
    estimator : scikit-learn estimator
    X : array-like of shape (n_samples, n_features)
        The pool the episodes index into.
    episodes : dask bag of :class:`~protolearn.model_selection.Episode`, or a list
        (made a bag of `npartitions` partitions).
    npartitions : int, default=None
        For a list: the number of partitions (dask's default when None).
    **kwargs
        ``transductive``, ``unlabeled``, ``batched``: as in
        :func:`protolearn.model_selection.evaluate_episodes`.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch` with ``mean``, ``ci95`` and ``scores``
        (computed).
    """
    from ..metrics import mean_confidence_interval

    if not isinstance(episodes, db.Bag):
        episodes = list(episodes)
        if not episodes:
            raise ValueError("episodes is empty: nothing to evaluate.")
        episodes = db.from_sequence(episodes, npartitions=npartitions)
    pool = dask.delayed(np.asarray(X), pure=True)
    est = dask.delayed(estimator, pure=True)
    scores = np.asarray(
        episodes.map_partitions(_evaluate_partition, est, pool, kwargs).compute(),
        dtype=np.float64,
    )
    if scores.size == 0:
        raise ValueError("episodes is empty: nothing to evaluate.")
    mean, ci = mean_confidence_interval(scores)
    return Bunch(mean=mean, ci95=ci, scores=scores)
