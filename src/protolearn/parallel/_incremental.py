"""Fitting from a dask array batch by batch: ``partial_fit`` over its blocks."""

import copy
import inspect

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "protolearn.parallel needs dask: pip install 'protolearn[dask]'."
    ) from exc


def _partial_fit_block(model, X, y, params):
    if y is None:
        model.partial_fit(X, **params)
    else:
        model.partial_fit(X, y, **params)
    return model


def _row_blocks(X, name):
    """The row blocks of a dask array (column chunks merged) or dask DataFrame /
    Series as a list of delayed objects, and their lengths (None if unknown)."""
    if isinstance(X, da.Array):
        if X.ndim == 2 and X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        return list(X.to_delayed().ravel()), X.chunks[0]
    if hasattr(X, "to_delayed") and hasattr(X, "npartitions"):
        return list(X.to_delayed()), None
    raise TypeError(
        f"{name} must be a dask array or dask DataFrame / Series; got "
        f"{type(X).__name__} (call partial_fit directly on in-memory data)."
    )


def fit_blocks(
    estimator,
    X,
    y=None,
    *,
    epochs=1,
    shuffle_blocks=False,
    random_state=None,
    compute=True,
    **partial_fit_params,
):
    """Fit an estimator on a dask collection block by block with ``partial_fit``.

    One task per block runs ``partial_fit`` on a worker, taking the model from the
    previous task: the blocks stay where they are and never meet in one place, the
    model (small) travels from task to task.  For estimators whose ``partial_fit``
    is exact (:class:`~protolearn.classification.GaussianPrototypeClassifier`,
    :class:`~protolearn.ood.MahalanobisDetector`,
    :class:`~protolearn.ood.KNNDetector`, the class means of
    :class:`~protolearn.classification.NearestPrototypeClassifier`) the result is
    :meth:`fit` on all rows, to rounding; online ones (the mixture detector, the
    deep heads) get one ``partial_fit`` call per block per epoch.

    dask-ml's :class:`~dask_ml.wrappers.Incremental` does the same for supervised
    estimators that have a ``score`` method (the classifiers; it also wraps
    prediction).  This function exists for what it lacks: without ``y`` it hands
    each block's graph key to ``partial_fit`` as ``y`` (unsupervised detectors
    fail), it needs a ``score`` method or a ``scoring`` even to fit (the detectors
    have none), it feeds only the first column block of an array chunked along
    the columns, and it makes one pass.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
        Not modified: a copy is fitted (a fitted `estimator` is continued).
    X : dask array of shape (n_samples, n_features), or dask DataFrame
        Chunked along the rows.
    y : dask array or dask Series of shape (n_samples,), default=None
        Chunked as `X`'s rows.
    epochs : int >= 1, default=1
        Passes over the blocks.
    shuffle_blocks : bool, default=False
        Visit the blocks in a new random order at each pass.
    random_state : int, RandomState instance or None, default=None
        Seeds the block order.
    compute : bool, default=True
        Return the fitted estimator; False returns the ``dask.delayed`` one.
    **partial_fit_params
        Passed to every ``partial_fit`` call.  When the estimator's
        ``partial_fit`` takes ``classes`` and none is given, ``classes`` are the
        unique labels of `y` (one pass over `y` only).

    Returns
    -------
    estimator : fitted copy of `estimator` (or a ``dask.delayed`` of it)

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.classification import GaussianPrototypeClassifier
    >>> from protolearn.parallel import fit_blocks
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = fit_blocks(GaussianPrototypeClassifier(),
    ...                  da.from_array(X, chunks=50), da.from_array(y, chunks=50))
    >>> full = GaussianPrototypeClassifier().fit(X, y)
    >>> bool(np.allclose(clf.means_, full.means_))
    True
    """
    from sklearn.utils import check_random_state

    if not hasattr(estimator, "partial_fit"):
        raise ValueError(f"{type(estimator).__name__} has no partial_fit.")
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}.")
    xb, x_len = _row_blocks(X, "X")
    yb = [None] * len(xb)
    if y is not None:
        yb, y_len = _row_blocks(y, "y")
        if len(yb) != len(xb) or (
            x_len is not None and y_len is not None and tuple(x_len) != tuple(y_len)
        ):
            raise ValueError(
                "X and y must have the same row blocks; got "
                f"{x_len if x_len is not None else len(xb)} and "
                f"{y_len if y_len is not None else len(yb)}."
            )
        takes = inspect.signature(estimator.partial_fit).parameters
        if "classes" in takes and "classes" not in partial_fit_params:
            y_all = y.compute() if hasattr(y, "compute") else y
            partial_fit_params["classes"] = np.unique(np.asarray(y_all))
    rng = check_random_state(random_state)
    step = dask.delayed(_partial_fit_block, pure=False)
    model = dask.delayed(copy.deepcopy(estimator), pure=True)
    for _ in range(int(epochs)):
        order = rng.permutation(len(xb)) if shuffle_blocks else range(len(xb))
        for i in order:
            model = step(model, xb[i], yb[i], partial_fit_params)
    return model.compute() if compute else model
