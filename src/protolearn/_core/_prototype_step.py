"""The prototype term ``f`` of the Laplacian objective and its prototype step.

``f(z, m)`` is the squared distance ("kmeans") or minus a Gaussian kernel ("kmodes");
the prototype step for fixed soft labels ``Y`` gives weighted means or one mean-shift
step, ``M = C^T Z`` for per-point weights ``C`` (:func:`prototype_weights`).
:class:`_Prototypes` carries the prototypes through
:func:`~protolearn._core._laplacian_solver.laplacian_solve`: explicitly, or, for tasks
of fewer points than features, as the weights ``C`` with every distance read off the
Gram matrix of the points.

numpy or torch (any device) in, the same kind out; every array has a leading task axis.
"""

import numpy as np

from ..utils._array_api import (
    as_index_like,
    clip_min,
    diagonal,
    empty,
    get_namespace,
    is_torch,
)
from ._batched import (
    batched_sqeuclidean,
    bmm,
    columnwise_dot,
    has_contiguous_label_columns,
    label_columns_product,
    sum_over_points,
    take_tasks,
)

PROTOTYPE_TERMS = ("kmeans", "kmodes")


def _term_from_sqdist(D, kind, bandwidth):
    if kind == "kmeans":
        return D
    if kind == "kmodes":
        h2 = bandwidth * bandwidth
        return -get_namespace(D).exp(-D / (2 * h2[:, None, None]))
    raise ValueError(f"prototype must be one of {PROTOTYPE_TERMS}; got {kind!r}.")


def prototype_term(Z, M, kind="kmeans", bandwidth=None):
    """``f(z_p, m_k)`` (T, n, K): squared distance ("kmeans") or minus the Gaussian kernel
    ``exp(-|z - m|^2 / (2 h^2))`` ("kmodes", `bandwidth` h of shape (T,))."""
    return _term_from_sqdist(batched_sqeuclidean(Z, M), kind, bandwidth)


def prototype_weights(Y, f, kind="kmeans"):
    """Per-point weights ``C`` (T, n, K) of the prototype step, ``M_new = C^T Z``.

    K-means: ``C = Y`` normalised per column (weighted means).  K-modes: ``Y`` times the
    kernel ``-f`` at the current prototypes, normalised (one mean-shift step towards
    each weighted mode).  Neither step increases ``E``.  Also returns the (T, K) mask of
    prototypes whose total weight is positive (the others must be kept as they are).
    """
    G = Y if kind == "kmeans" else Y * (-f)
    mass = sum_over_points(G)  # (T, K)
    tiny = float(np.finfo(np.float32).tiny)
    return G / clip_min(mass * 1, tiny)[:, None, :], mass > tiny


def update_prototypes(Z, Y, M, kind="kmeans", bandwidth=None):
    """The prototype step for fixed ``Y`` (see :func:`prototype_weights`)."""
    f = prototype_term(Z, M, kind, bandwidth) if kind == "kmodes" else None
    C, keep = prototype_weights(Y, f, kind)
    return get_namespace(M).where(keep[:, :, None], bmm(C.swapaxes(1, 2), Z), M)


class _Prototypes:
    """Prototypes during :func:`~._laplacian_solver.laplacian_solve`, explicit or
    through the Gram matrix.

    Every prototype step gives ``M = C^T Z`` for per-point weights ``C`` (T, n, K)
    (``Y`` or ``Y * kernel``, normalised per column).  When tasks have fewer points than
    features (few-shot episodes), ``|z - m|^2`` is computed from ``G = Z Z^T`` as
    ``G_pp - 2 (G C)_pk + (C^T G C)_kk`` -- O(n^2 K) per step instead of O(n K d) --
    and ``M`` is formed once at the end.  Large problems (n > d) keep ``M`` explicit.
    With a row scale ``s`` the features are ``Z * s``: ``M = (C * s)^T Z``.
    """

    def __init__(
        self, Z, M, kind, bandwidth, gram=None, coef=None, row_scale=None,
        features=None,
    ):  # fmt: skip
        self.kind, self.bandwidth = kind, bandwidth
        self.combine = features  # C -> C^T Z when Z is not stored (Z None)
        if Z is None:  # the Gram path with weights, as laplacian_solve checks
            n = d = gram.shape[1]
        else:
            n, d = Z.shape[1], Z.shape[2]
        self.gram = n <= d
        if coef is not None and not self.gram:
            raise ValueError("coef needs n_points <= n_features (the Gram path).")
        if row_scale is not None and not self.gram:
            Z, row_scale = Z * row_scale[:, :, None], None
        self.Z, self.s, self.M, self.C = Z, row_scale, M, coef
        like = gram if Z is None else Z
        self.xp = get_namespace(like)
        self.n_tasks, self.out, self.s_all = like.shape[0], None, row_scale
        self.rows = as_index_like(np.arange(like.shape[0]), like)
        if self.gram:
            if gram is None:
                Zs = Z if row_scale is None else Z * row_scale[:, :, None]
                gram = Zs @ Zs.swapaxes(1, 2)
            self.G = gram
            self.zz = diagonal(self.G)
        else:
            self.zz = (Z * Z).sum(-1)

    def sqdist(self):
        if self.C is None or not self.gram:
            D = (self.features() if self.gram else self.Z) @ self.M.swapaxes(1, 2)
            if self.s is not None:
                D *= self.s[:, :, None]
            mm = (self.M * self.M).sum(-1)
        else:  # G C, in the layout of C (G is symmetric)
            if has_contiguous_label_columns(self.C):
                D = label_columns_product(self.G, self.C, symmetric=True)
            else:
                D = bmm(self.G, self.C)
            # numpy: one einsum, no (T, n, K) temporary (a different summation order)
            mm = (
                sum_over_points(self.C * D)
                if is_torch(D)
                else columnwise_dot(self.C, D)
            )
        D *= -2
        D += self.zz[:, :, None]
        D += mm[:, None, :]
        return clip_min(D, 0)

    def term(self):
        return _term_from_sqdist(self.sqdist(), self.kind, self.bandwidth)

    def update(self, Y, active=None):
        """The prototype step (:func:`prototype_weights`) for the `active` tasks
        ((T, 1, 1) mask; None: all)."""
        C, keep = prototype_weights(
            Y, self.term() if self.kind == "kmodes" else None, self.kind
        )
        all_kept = bool(keep.all())
        if not self.gram:
            M_new = C.swapaxes(1, 2) @ self.Z
            if not all_kept:
                M_new = self.xp.where(keep[:, :, None], M_new, self.M)
            self.M = M_new if active is None else self.xp.where(active, M_new, self.M)
            return
        if self.C is None:  # first step from explicit prototypes: every task active
            if not all_kept:  # an empty cluster keeps its explicit prototype: rare,
                M_new = C.swapaxes(1, 2) @ self.Z  # so leave the Gram path
                self.M = self.xp.where(keep[:, :, None], M_new, self.M)
                self.gram = False
                if self.s is not None:
                    self.Z, self.s = self.Z * self.s[:, :, None], None
                self.zz = (self.Z * self.Z).sum(-1)
                return
            self.M = None
            self.C = C
            return
        if not all_kept:
            C = self.xp.where(keep[:, None, :], C, self.C)
        self.C = C if active is None else self.xp.where(active, C, self.C)

    def store(self, tasks, rows):
        """Set aside the state of the working tasks `tasks` (index array) as the
        results of the batch's tasks `rows` (before :meth:`subset` drops them)."""
        if self.out is None:
            self.out = empty((self.n_tasks,) + tuple(self.state().shape[1:]),
                                like=self.zz)  # fmt: skip
        self.out[as_index_like(rows, self.zz)] = self.state()[tasks]

    def state(self):
        return self.C if self.gram and self.C is not None else self.M

    def subset(self, keep):
        """Keep only the tasks `keep` (an index array); the full-batch features stay
        (only the final prototypes need them), indexed through ``self.rows``."""
        if self.gram:
            self.rows = self.rows[keep]
        else:  # the explicit path works on the features every step
            self.Z = self.Z[keep]
        self.zz = self.zz[keep]
        if self.s is not None:
            self.s = self.s[keep]
        if self.bandwidth is not None:
            self.bandwidth = self.bandwidth[keep]
        if self.gram:
            self.G = self.G[keep]
        if self.C is not None:
            self.C = take_tasks(self.C, keep)
        if self.M is not None:
            self.M = self.M[keep]

    def features(self):
        """The working tasks' rows of ``Z`` (a copy once tasks have been dropped)."""
        return self.Z if self.rows.shape[0] == self.Z.shape[0] else self.Z[self.rows]

    def prototypes(self):
        """(T, K, d) prototypes: of every task of the batch once :meth:`store` has
        been called for all of them, else of the working tasks."""
        state = self.state() if self.out is None else self.out
        if not (self.gram and self.C is not None):
            return state
        s = self.s if self.out is None else self.s_all
        C = state if s is None else state * s[:, :, None]
        if self.combine is not None:  # every task of the batch (see laplacian_solve)
            if self.out is None and self.rows.shape[0] != self.n_tasks:
                raise RuntimeError("prototypes of a subset of unstored features.")
            return self.combine(C)
        Z = self.features() if self.out is None else self.Z
        return bmm(C.swapaxes(1, 2), Z)
