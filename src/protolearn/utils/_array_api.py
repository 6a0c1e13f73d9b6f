"""numpy / torch dispatch.

protolearn's `_core` functions accept numpy arrays or torch tensors and return the same kind
(on the same device).  A function takes the array namespace once,
``xp = get_namespace(X)`` (array-api-compat's wrapper of numpy or torch), and writes
``xp.sqrt(x)``, ``xp.sum(x, axis=1)``, ``xp.zeros(shape, dtype=x.dtype, device=device(x))``
once for both.  The helpers below cover what the array API standard lacks or what the two
libraries do differently (each says which).
"""

import sys

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as device


def get_namespace(*arrays):
    """The array namespace of `arrays` (numpy or torch, as array-api-compat wraps them).

    ``None`` and Python scalars are ignored (numpy scalars, such as ``np.float64``,
    which subclasses ``float``, count as numpy); mixing numpy arrays and torch tensors
    raises ``TypeError``.
    """
    arrays = [a for a in arrays if a is not None and type(a) not in (int, float, bool)]
    return array_namespace(*arrays)


def is_torch(x):
    """True if `x` is a torch tensor (without importing torch when it is not loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x):
    """Return `x` as a numpy array (a torch tensor is moved to the CPU first)."""
    if is_torch(x):  # leaves torch: detach and copy to the host
        return x.detach().cpu().numpy()
    return np.asarray(x)


def asarray_like(a, like):
    """Convert numpy array `a` to the array kind, dtype and device of `like`."""
    a = a if is_torch(like) else to_numpy(a)  # numpy cannot take a device tensor
    return get_namespace(like).asarray(a, dtype=like.dtype, device=device(like))


def as_index_like(a, like):
    """Convert integer array `a` to an index array usable on `like`'s device."""
    if is_torch(like):  # torch indexes with int64 tensors; numpy keeps `a`'s dtype
        import torch

        return torch.as_tensor(to_numpy(a), dtype=torch.int64, device=like.device)
    return np.asarray(to_numpy(a))


def clip_min(x, low):
    """``max(x, low)`` elementwise, in place when possible."""
    if is_torch(x):  # in place: the array API's clip returns a new array
        return x.clamp_(min=low)
    return np.maximum(x, low, out=x)


def sqrt(x):
    return get_namespace(x).sqrt(x)


def concat(arrays, axis=0):
    return get_namespace(*arrays).concat(list(arrays), axis=axis)


def argmin(x, axis):
    return get_namespace(x).argmin(x, axis=axis)


def argmax(x, axis):
    return get_namespace(x).argmax(x, axis=axis)


def amin(x, axis):
    return get_namespace(x).min(x, axis=axis)


def amax(x, axis):
    return get_namespace(x).max(x, axis=axis)


def empty(shape, like):
    return get_namespace(like).empty(shape, dtype=like.dtype, device=device(like))


def full(shape, value, like):
    ns = get_namespace(like)
    return ns.full(shape, value, dtype=like.dtype, device=device(like))


def exp_floor(dtype):
    """The least exponent worth computing in a logsumexp shifted by its maximum.

    ``exp`` of less is subnormal, which x86 CPUs compute tens of times slower, and is
    lost anyway: a sum that holds the maximum's ``exp(0) = 1`` cannot resolve it, so
    flooring the shifted terms leaves the logsumexp of a row with a finite maximum
    as it was (to the last bit, unless a partial sum of terms below ``1e-30`` lands
    on a rounding tie).
    """
    return float(np.log(np.finfo(dtype).tiny)) + 1.0


def logsumexp(x, axis, keepdims=False, overwrite_input=False):
    """``log sum exp`` of `x` along `axis`, ``-inf`` where every entry is ``-inf``.

    numpy: ``log(sum(exp(x - m))) + m`` with ``m`` the maximum (0 where it is not
    finite), with one temporary; torch: :func:`torch.logsumexp`.  Not
    :func:`scipy.special.logsumexp`, whose rounding differs from this formula's in the
    last bit for a few percent of rows; the fitted mixtures are defined by this one.

    ``overwrite_input=True`` (numpy, prediction's hot path) works in `x` itself and,
    when every maximum is finite, floors the shifted terms at :func:`exp_floor`
    (same result, without slow subnormal exponentials).
    """
    if is_torch(x):  # torch's fused kernel (its rounding is what tensor callers get)
        return x.logsumexp(dim=axis, keepdim=keepdims)
    m = np.max(x, axis=axis, keepdims=True)
    finite = np.isfinite(m)
    all_finite = bool(finite.all())
    if not all_finite:
        m = np.where(finite, m, 0).astype(m.dtype, copy=False)
    if overwrite_input:
        x -= m
        if all_finite:
            np.maximum(x, exp_floor(x.dtype), out=x)
        e = x
    else:
        e = x - m
    np.exp(e, out=e)
    with np.errstate(divide="ignore"):
        s = np.log(e.sum(axis=axis, keepdims=keepdims))
    return s + (m if keepdims else np.squeeze(m, axis=axis))


def softmax(x, axis):
    if is_torch(x):  # torch's fused kernel; the array API has no softmax
        return x.softmax(dim=axis)
    from scipy.special import softmax as _softmax

    return _softmax(x, axis=axis)


def log_softmax(x, axis):
    if is_torch(x):  # as softmax
        return x.log_softmax(dim=axis)
    from scipy.special import log_softmax as _log_softmax

    return _log_softmax(x, axis=axis)


def take(x, idx, axis=0):
    return get_namespace(x).take(x, idx, axis=axis)


def float_dtype(x):
    """The dtype computations on `x` run in: float16/32 -> float32, anything else -> float64."""
    if is_torch(x):  # bfloat16 exists in torch only; numpy's side takes array-likes
        import torch

        if x.dtype in (torch.float16, torch.bfloat16, torch.float32):
            return torch.float32
        return torch.float64
    dt = np.asarray(x).dtype
    return (
        np.dtype(np.float32) if dt in (np.float16, np.float32) else np.dtype(np.float64)
    )


def exp(x):
    return get_namespace(x).exp(x)


def where(cond, a, b):
    """``a`` where `cond` else ``b`` (broadcasting), same kind as `a`."""
    return get_namespace(a).where(cond, a, b)


def one_hot(index, n_classes, like):
    """(..., n_classes) one-hot rows of integer `index`, dtype and kind of `like`."""
    eye = get_namespace(like).eye(n_classes, dtype=like.dtype, device=device(like))
    return eye[as_index_like(index, like)]


def smallest_k(D, k):
    """Values and indices of the `k` smallest entries along the last axis, ascending."""
    if is_torch(D):  # the array API has no top-k; numpy partitions then sorts
        v, i = D.topk(k, dim=-1, largest=False, sorted=True)
        return v, i
    idx = np.argpartition(D, k - 1, axis=-1)[..., :k]
    val = np.take_along_axis(D, idx, axis=-1)
    order = np.argsort(val, axis=-1, kind="stable")
    return np.take_along_axis(val, order, axis=-1), np.take_along_axis(idx, order, -1)


def diagonal(A):
    """Diagonals of a stack of square matrices (T, n, n) -> (T, n)."""
    if is_torch(A):  # a view; numpy's view is read-only, so numpy copies
        return A.diagonal(dim1=1, dim2=2)
    return np.diagonal(A, axis1=1, axis2=2).copy()
