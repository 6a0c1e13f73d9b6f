"""Input validation shared by every estimator (numpy and torch inputs)."""

from numbers import Real

import numpy as np
from sklearn.utils import assert_all_finite
from sklearn.utils.multiclass import check_classification_targets

from . import _array_api as xp
from ._sklearn_compat import validate_data

FLOAT_DTYPES = (np.float64, np.float32)


def validate_fit_data(estimator, X, y="no_validation", **kwargs):
    """``validate_data(reset=True)`` that also accepts torch tensors (any device).

    Fitted state is kept as numpy arrays (so estimators pickle and load anywhere); a
    tensor is moved to the CPU first.  float32 stays float32, other dtypes -> float64.
    Beyond scikit-learn's checks, rows whose squared distances overflow the dtype
    (:func:`check_magnitude`) and missing labels in an object ``y``
    (:func:`check_missing_labels`) raise a ValueError.
    """
    kwargs.setdefault("dtype", list(FLOAT_DTYPES))
    out = validate_data(estimator, _tensor_to_numpy(X), _tensor_to_numpy(y), **kwargs)
    X_out = out[0] if isinstance(out, tuple) else out
    if isinstance(out, tuple):
        check_missing_labels(out[1], estimator)
    if isinstance(X_out, np.ndarray) and X_out.dtype.kind == "f":
        check_magnitude(X_out)
    return out


def _tensor_to_numpy(a):
    """A torch tensor as a numpy array; anything else as it is (scikit-learn's
    validation then keeps a DataFrame's feature names)."""
    return xp.to_numpy(a) if xp.is_torch(a) else a


#: Bytes of `X` below which :func:`_extremes` reads it on one thread.
EXTREMES_THREADED_BYTES = 16 * 2**20


def _extremes(X):
    """``(X.max(), X.min())`` of a 2-D numpy array (NaN when any entry is NaN).

    A large `X` is read once, not twice, on the threads of
    :func:`~protolearn._core._distances.map_row_chunks`: each reduces a chunk of rows
    to its maximum and minimum while the chunk is in cache.
    """
    if X.nbytes < EXTREMES_THREADED_BYTES or not X.flags.c_contiguous:
        return X.max(), X.min()
    from .._core._distances import map_row_chunks

    def chunk(Xc, _):
        return np.broadcast_to(np.array([Xc.max(), Xc.min()]), (len(Xc), 2))

    # (no temporaries: chunks of about THREAD_CHUNK_BYTES of X itself)
    ext = map_row_chunks(chunk, X, X.strides[0])
    return ext[:, 0].max(), ext[:, 1].min()


def check_magnitude(X, estimator=None):
    """Raise a ValueError when the squared distances between rows of `X` (and between
    them and anything fitted on such rows) can overflow `X`'s dtype.

    Every distance, density and score protolearn computes starts from squared
    distances, at most ``4 max_i ||x_i||^2``; rows beyond that give inf - inf = NaN
    probabilities and silently wrong scores, so they are refused here, once, for
    every estimator (numpy arrays and torch tensors).  A numpy `X` is also checked
    for NaN and infinity (scikit-learn's message, naming `estimator`): its largest
    and smallest entries answer both questions in two passes, and bound
    ``||x_i||^2 <= d max |x_ij|^2``; only a bound above the limit computes the row
    norms.
    """
    # the two backends truly differ: torch's norms stay on the device, numpy's are
    # accumulated in float64
    if xp.is_torch(X):
        import torch

        with torch.no_grad():  # row norms only: no (n, d) temporary
            norm = torch.linalg.vector_norm(X, dim=1).amax() if X.numel() else 0.0
        sq_max = float(norm) ** 2
        limit = float(torch.finfo(X.dtype).max)
        dtype = str(X.dtype).replace("torch.", "")
    else:
        if X.size == 0:
            return
        hi, lo = map(float, _extremes(X))  # NaN if any entry is NaN
        if not (np.isfinite(hi) and np.isfinite(lo)):
            assert_all_finite(
                X,
                input_name="X",
                estimator_name=None if estimator is None else type(estimator).__name__,
            )
        limit = float(np.finfo(X.dtype).max)
        if max(hi, -lo) <= (limit / (4 * X.shape[1])) ** 0.5:
            return
        with np.errstate(over="ignore"):
            sq_max = float(np.einsum("ij,ij->i", X, X, dtype=np.float64).max())
        dtype = str(X.dtype)
    if not 4 * sq_max <= limit:
        hint = " or pass float64 data" if dtype == "float32" else ""
        largest = float(xp.to_numpy(abs(X).max()))
        raise ValueError(
            f"X is too large in magnitude: its squared distances overflow {dtype} "
            f"(largest absolute value {largest:.3g}); rescale X (e.g. "
            f"StandardScaler){hint}."
        )


def check_missing_labels(y, estimator=None):
    """Raise a ValueError naming the rows of an object `y` that hold None or NaN (a
    missing label, which numpy cannot even sort among string labels)."""
    if not isinstance(y, np.ndarray) or y.dtype != object:
        return
    missing = np.fromiter(
        (v is None or (isinstance(v, float) and v != v) for v in y.ravel()),
        dtype=bool,
        count=y.size,
    )
    if missing.any():
        rows = np.flatnonzero(missing)
        hint = getattr(estimator, "_missing_label_hint", "")
        raise ValueError(
            f"y contains None/NaN (missing labels) at row(s) {rows[:5].tolist()}"
            f"{' ...' if rows.size > 5 else ''}: every row needs a class label, all "
            f"strings or all numbers.{hint}"
        )


def check_class_sizes(
    classes, counts, needed, param, *, where="", remedy="", skip_empty=False
):
    """Raise a ValueError naming every class with fewer samples than it needs.

    ``needed`` is an int or one value per class (e.g. its prototypes); ``param``
    names the parameter to lower, ``where`` the rows counted (e.g. the training
    part left by a validation split) and ``remedy`` any other way out (" or ...").
    With ``skip_empty``, classes with no samples at all (absent from a streamed
    batch) pass.
    """
    needed = np.broadcast_to(np.asarray(needed), np.shape(counts))
    short = [
        (c, int(n), int(k))
        for c, n, k in zip(np.asarray(classes).tolist(), counts, needed)
        if n < k and (n > 0 or not skip_empty)
    ]
    if short:
        desc = ", ".join(f"{c!r} has {n} < {k}" for c, n, k in short)
        raise ValueError(
            f"Each class needs at least as many samples as {param}{where}: {desc}. "
            f"Lower {param}{remedy}."
        )


def check_finite_output(values, estimator, what="scores"):
    """Raise a ValueError (instead of returning NaN / inf) when `values`, computed
    for validated input rows, are not all finite: the rows are too far from the
    fitted model for the dtype's range."""
    finite = xp.get_namespace(values).isfinite(values)
    if bool(finite.all()):
        return values
    bad = xp.to_numpy(~finite)
    rows = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(1))
    raise ValueError(
        f"{type(estimator).__name__} {what} are not finite for row(s) "
        f"{rows[:5].tolist()}{' ...' if rows.size > 5 else ''}: these rows are too far "
        "from the fitted model for the precision of X; rescale X (e.g. StandardScaler) "
        "or pass float64 data."
    )


def validate_optional_labels(estimator, X, y=None, **kwargs):
    """:func:`validate_fit_data` for estimators whose labels are optional.

    Returns ``X``, the sorted ``classes`` and each row's class index ``y_idx``; without
    labels (``y=None``) every row is in one class, 0.
    """
    if y is None:
        X = validate_fit_data(estimator, X, **kwargs)
        return X, np.zeros(1, dtype=int), np.zeros(X.shape[0], dtype=int)
    X, y = validate_fit_data(estimator, X, y, **kwargs)
    check_classification_targets(y)
    classes, y_idx = np.unique(y, return_inverse=True)
    return X, classes, y_idx


def resolve_nota_label(label, y):
    """The none-of-the-above label for class labels `y`: "auto" is -1 for numeric
    labels and "NOTA" for the others (strings); a label of the other kind raises, so
    that it is neither converted (-1 -> "-1") nor compared with labels it never equals.
    """
    numeric = y.dtype.kind in "biuf"
    if isinstance(label, str) and label == "auto":
        return -1 if numeric else "NOTA"
    if numeric != isinstance(label, (Real, np.number)) or isinstance(label, bool):
        kind = "numeric" if numeric else "string"
        raise ValueError(
            f"nota_label={label!r} does not match the {kind} class labels; pass a "
            f"{kind} nota_label (or 'auto')."
        )
    return label


def validate_predict_data(estimator, X):
    """``validate_data(reset=False)`` for array-likes; the same checks on device for torch.

    A torch tensor comes back as a tensor on its own device (float16/bfloat16 -> float32,
    integers -> float64), so predictions can be computed there.  Rows too large in
    magnitude for the dtype raise (:func:`check_magnitude`).
    """
    # scikit-learn validates array-likes; a tensor is checked on its own device
    if not xp.is_torch(X):
        # (NaN and infinity are refused by check_magnitude, in the same passes)
        X = validate_data(
            estimator,
            X,
            reset=False,
            dtype=list(FLOAT_DTYPES),
            ensure_all_finite=False,
        )
        check_magnitude(X, estimator)
        return X
    import torch

    name = type(estimator).__name__
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D tensor, got a {X.ndim}D tensor instead.")
    if X.shape[0] < 1:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of "
            "1 is required."
        )
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {name} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    if X.is_complex():
        raise ValueError("Complex data not supported.")
    if not X.is_floating_point():
        X = X.to(torch.float64)
    elif X.dtype in (torch.float16, torch.bfloat16):
        X = X.to(torch.float32)
    if not bool(torch.isfinite(X).all()):
        raise ValueError("Input X contains NaN or infinity.")
    check_magnitude(X)
    return X


def labels_out(classes, index, like):
    """``classes[index]``, as a tensor on `like`'s device when `like` is a tensor.

    String labels cannot be tensors: they always come back as a numpy array.
    """
    idx = xp.to_numpy(index)
    labels = classes[idx]
    # numeric labels follow a tensor input onto its device; strings stay numpy
    if xp.is_torch(like) and labels.dtype.kind in "biuf":
        import torch

        return torch.as_tensor(labels, device=like.device)
    return labels


def bunch_like(bunch, like):
    """`bunch` (a Bunch of numpy arrays) with its numeric arrays as tensors on `like`'s
    device when `like` is a tensor (string arrays stay numpy); unchanged otherwise."""
    if not xp.is_torch(like):  # numpy in, numpy out
        return bunch
    import torch

    for key, value in bunch.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            bunch[key] = torch.as_tensor(value, device=like.device)
    return bunch
