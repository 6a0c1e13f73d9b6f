"""Linear algebra over stacks of small matrices with a leading task axis ``T``.

The Laplacian solver runs many few-shot episodes as one computation: every array is a
stack (T, n, ...) of per-task matrices.  This module holds the operations on such
stacks that the solver's steps are made of -- batched products (:func:`bmm`), per-task
sums and dot products, a softmax over a short last axis, squared distances, centring
and L2 normalisation of rows -- and the "contiguous label columns" layout of (T, n, K)
soft-label stacks (:func:`contiguous_label_columns`).

numpy arrays or torch tensors (any device) in, the same kind out.  Where the two
libraries differ only in speed, each function takes the faster route per backend; the
values are the same.
"""

import numpy as np

from ..utils._array_api import asarray_like, clip_min, get_namespace, is_torch


def sum_per_task(A):
    """Sum over every axis but the first: (T, ...) -> (T,)."""
    return A.reshape(A.shape[0], -1).sum(1)


def sum_over_points(A):
    """Sum of (T, n, K) over its middle axis -> (T, K)."""
    if is_torch(A):
        return A.sum(1)
    # numpy: a product with ones, faster than its reduction over a middle axis
    return np.ones(A.shape[1], dtype=A.dtype) @ A


def on_cpu_torch(A):
    """Whether `A` is a torch tensor on the CPU."""
    return is_torch(A) and A.device.type == "cpu"


def bmm(A, B, out=None):
    """``A @ B`` for stacks of matrices, into `out` when given.

    torch CPU tensors go through numpy views of the same memory: for the many small
    products of batched episodes numpy's per-matrix BLAS calls are faster than torch's
    CPU ``bmm``.
    """
    if on_cpu_torch(A) and not (A.requires_grad or B.requires_grad):
        import torch

        if out is not None:
            np.matmul(A.numpy(), B.numpy(), out=out.numpy())
            return out
        return torch.from_numpy(np.matmul(A.numpy(), B.numpy()))
    if not is_torch(A):
        return np.matmul(A, B, out=out)
    if out is None:
        return A @ B
    out.copy_(A @ B)  # torch: the product, then a copy into the view `out`
    return out


def c_contiguous(A):
    """`A` itself when C-contiguous, else a C-contiguous copy."""
    # the array API has no way to ask for a C-contiguous copy of a strided view
    return A.contiguous() if is_torch(A) else np.ascontiguousarray(A)


def _is_c_contiguous(A):
    # the array API does not expose memory layout
    return A.is_contiguous() if is_torch(A) else A.flags.c_contiguous


def contiguous_label_columns(A):
    """A (T, n, K) stack as a view of (T, K, n) memory: each label's column of a task
    contiguous.

    The soft labels, unaries and prototype weights of
    :func:`~protolearn._core._laplacian_solver.laplacian_solve` are held this way on
    the Gram path: with K of a few labels, elementwise steps broadcast a per-point or
    per-label value along a contiguous axis of n points instead of along rows of K
    entries, the reductions over the labels are K contiguous passes, and ``C^T G`` is
    one product of contiguous (K, n) and (n, n) matrices.  Elementwise operations keep
    the layout (order "K").
    """
    if has_contiguous_label_columns(A):
        return A
    return c_contiguous(A.swapaxes(1, 2)).swapaxes(1, 2)


def has_contiguous_label_columns(A):
    """Whether the (T, n, K) stack `A` is a view of contiguous (T, K, n) memory."""
    contiguous = _is_c_contiguous(A.swapaxes(1, 2))
    return bool(contiguous) and A.shape[1] > 1 and A.shape[2] > 1


def take_tasks(A, index):
    """``A[index]`` over the leading (task) axis, keeping contiguous label columns."""
    if has_contiguous_label_columns(A):
        return A.swapaxes(1, 2)[index].swapaxes(1, 2)
    return A[index]


def label_columns_product(A, Y, symmetric=False):
    """``A @ Y`` for stacks (T, m, m) and `Y` (T, m, K) with contiguous label columns,
    returned in the same layout: computed as ``(Y^T A^T)^T``, or ``(Y^T A)^T`` when `A`
    is symmetric."""
    Yt = Y.swapaxes(1, 2)
    return bmm(Yt, A if symmetric else A.swapaxes(1, 2)).swapaxes(1, 2)


def all_finite(A):
    """Whether every entry of `A` is finite.

    A sum is non-finite whenever an entry is (inf and NaN propagate), so the exact
    elementwise test only runs when the sum overflows; it is much slower than a sum.
    """
    xp = get_namespace(A)
    return bool(xp.isfinite(A.sum())) or bool(xp.all(xp.isfinite(A)))


def batched_sqeuclidean(A, B):
    """Squared euclidean distances between the rows of ``A`` (T, n, d) and ``B`` (T, m, d)."""
    D = A @ B.swapaxes(1, 2)
    D *= -2
    D += (A * A).sum(-1)[:, :, None]
    D += (B * B).sum(-1)[:, None, :]
    return clip_min(D, 0)


def center_l2_normalize(X, center=None, *, normalize=True):
    """Centre (T, n, d) rows on `center` ((d,), (T, d) or None = each task's mean) and
    divide them by their L2 norm ("CL2N", Wang et al., 2019)."""
    if center is None:
        Z = X - X.mean(1)[:, None, :]
    else:
        c = asarray_like(center, X)
        Z = X - (c[None, None, :] if c.ndim == 1 else c[:, None, :])
    if not normalize:
        return Z
    return batched_l2_normalize(Z)


def batched_l2_normalize(Z):
    """Rows of (T, n, d) divided by their L2 norm (all-zero rows stay zero)."""
    if is_torch(Z):
        norms = Z.norm(dim=-1, keepdim=True)
    else:  # einsum: no (T, n, d) temporary for the squares
        norms = np.sqrt(np.einsum("tnd,tnd->tn", Z, Z))[:, :, None]
    norms[norms == 0] = 1
    return Z / norms


def columnwise_dot(A, B):
    """``sum_p A_pk B_pk`` per task and column, numpy (T, n, K) x 2 -> (T, K)."""
    return np.einsum("tnk,tnk->tk", A, B)


def task_dot(A, B):
    """``sum(A * B)`` over every axis but the first: (T, n, K) x 2 -> (T,)."""
    if is_torch(A):
        return (A * B).sum((1, 2))
    # one einsum: no (T, n, K) temporary for the products
    return np.einsum("tnk,tnk->t", A, B)


def reduce_last_axis(A, op):
    """``op``-reduce (np.add / np.maximum) over a short last axis of a numpy array.

    numpy reduces a last axis of a few entries row by row; a running ``op`` over its K
    slices is an order of magnitude faster.
    """
    K = A.shape[-1]
    if K > 16:
        return op.reduce(A, axis=-1)
    out = A[..., 0].copy()
    for k in range(1, K):
        op(out, A[..., k], out=out)
    return out


def softmax_last_axis(L, lse=False):
    """Softmax over the last axis of (T, n, K) logits (in place for numpy); with
    `lse`, also the log-sum-exp of each row: ``(Y, lse)``."""
    if is_torch(L):  # (torch's softmax is slower over a short last axis)
        m = L.amax(-1, keepdim=True)
        L = L - m
        L.exp_()
        s = L.sum(-1, keepdim=True)
        L.div_(s)
        return (L, (m + s.log())[..., 0]) if lse else L
    # numpy: in place, reducing the short last axis slice by slice
    m = reduce_last_axis(L, np.maximum)
    L -= m[..., None]
    np.exp(L, out=L)
    s = reduce_last_axis(L, np.add)
    L /= s[..., None]
    if not lse:
        return L
    np.log(s, out=s)
    s += m
    return L, s
