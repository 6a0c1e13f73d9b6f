"""The balanced assignment step: soft labels whose free rows carry given class masses.

:func:`balanced_softmax` is the bound step of the Laplacian objective with the class
sizes of the free (query) rows imposed -- the entropic transport plan of PT-MAP's
balanced assignment -- solved for its K class potentials by damped Newton steps on the
convex dual.  :class:`_Balance` carries the targets and the potentials from one bound
step of :func:`~protolearn._core._laplacian_solver.laplacian_solve` to the next.

numpy or torch (any device) in, the same kind out; every array has a leading task axis.
"""

import numpy as np

from ..utils._array_api import (
    as_index_like,
    asarray_like,
    clip_min,
    full,
    get_namespace,
    to_numpy,
)
from ._batched import softmax_last_axis

# The balanced bound step solves for its K class potentials by damped Newton steps:
# at most BALANCE_MAX_ITER of them, stopping once every class's mass is within
# BALANCE_TOL relative error of its target.
BALANCE_MAX_ITER, BALANCE_TOL = 50, 1e-3


def _solve_small(H, b):
    """Batched solve of (T, K, K) systems."""
    return get_namespace(H).linalg.solve(H, b[..., None])[..., 0]


def balanced_softmax(L, free, marginals, log_v=None):
    """The soft labels closest to ``softmax(L)`` whose free rows sum to `marginals`.

    Minimises ``sum_pk y_pk (log y_pk - L_pk)`` over the rows ``y_p`` of the simplex
    (the free rows, mask `free` (T, n, 1)) with column sums ``sum_p y_pk = r_k``
    (`marginals`, (T, K), summing to the number of free rows): the entropic transport
    plan ``y_pk = exp(L_pk + g_k) / sum_j exp(L_pj + g_j)`` (PT-MAP's balanced
    assignment, Hu et al. 2021, here as the bound step of the Laplacian objective).
    The class potentials ``g`` (returned, (T, K)) minimise the convex dual
    ``sum_p logsumexp_k(L_pk + g_k) - sum_k r_k g_k``, whose gradient is the class
    masses minus `marginals` and whose Hessian is ``sum_p diag(y_p) - y_p y_p^T``:
    damped Newton steps (backtracking), warm-started from `log_v`, reach the masses
    within ``BALANCE_TOL`` relative error in a few steps where Sinkhorn scaling needs
    hundreds on steep ``L``.  Each task stops on its own error and halves only its own
    step (only the tasks still running are computed), so a task's result is the one
    it gets alone.  Rows come out exactly on the simplex; rows outside `free` are
    plain softmax rows.
    """
    T, _, K = L.shape
    g = L[:, 0, :] * 0 if log_v is None else log_v * 1
    tiny = float(np.finfo(np.float32).tiny)
    r_all = clip_min(marginals * 1, tiny)
    eye = asarray_like(np.eye(K), L)
    ones = asarray_like(np.ones((K, K)) / K, L)

    def dual(L, g, r, free2):
        Y, lse = softmax_last_axis(L + g[:, None, :], lse=True)  # a new array
        return Y, (lse * free2).sum(1) - (r * g).sum(1)

    Y, phi = dual(L, g, r_all, free[..., 0])
    run = np.arange(T)  # the tasks still running
    Lr, fr, r, gr, Yr, phir = L, free, r_all, g, Y, phi
    for _ in range(BALANCE_MAX_ITER):
        Yf = Yr * fr
        mass = Yf.sum(1)
        grad = mass - r
        err = to_numpy(grad * grad / (r * r)).max(1)
        going = err > BALANCE_TOL**2
        if not going.all():  # write the stopped tasks out, keep the running ones
            g, Y = _write_rows(g, Y, gr, Yr, run)
            if not going.any():
                break
            run = run[going]
            keep = as_index_like(np.flatnonzero(going), L)
            Lr, fr, r, gr = L[as_index_like(run, L)], fr[keep], r[keep], gr[keep]
            Yr, Yf, phir, mass, grad = (
                Yr[keep],
                Yf[keep],
                phir[keep],
                mass[keep],
                grad[keep],
            )
        # Hessian diag(mass) - sum_p y_p y_p^T over the free rows, with a small ridge
        # (classes of ~zero mass) and a multiple of 1 1^T: the dual is flat along
        # g + c 1 (the gradient sums to zero), so the step keeps sum(step) = 0
        d = mass + 1e-6 * r.sum(1)[:, None]
        H = eye * d[:, :, None] - Yf.swapaxes(1, 2) @ Yr
        H = H + ones * r.sum(1)[:, None, None] / K
        step = -_solve_small(H, grad)
        step = clip_min(step, -20.0)  # at most 20 in log units either way
        step = -clip_min(-step, -20.0)
        slope = (grad * step).sum(1)
        t = full((run.size,), 1.0, L)
        Yn, phin = dual(Lr, gr + step, r, fr[..., 0])
        bad = np.flatnonzero(to_numpy(phin > phir + 1e-4 * slope))
        for _ in range(30):  # backtracking: halve the step of the tasks it overshoots
            if not bad.size:
                break
            b = as_index_like(bad, L)
            t[b] *= 0.5
            Yb, pb = dual(Lr[b], gr[b] + t[b][:, None] * step[b], r[b], fr[b][..., 0])
            Yn[b], phin[b] = Yb, pb
            still = to_numpy(pb > phir[b] + 1e-4 * t[b] * slope[b])
            bad = bad[still]
        gr = gr + t[:, None] * step
        Yr, phir = Yn, phin
    else:  # BALANCE_MAX_ITER steps: the running tasks keep their last step
        g, Y = _write_rows(g, Y, gr, Yr, run)
    return Y, g


def _write_rows(g, Y, gr, Yr, run):
    """`g`, `Y` with the rows of the tasks `run` set to `gr`, `Yr`; when `run` holds
    every task, `gr` and `Yr` themselves."""
    if run.size == g.shape[0]:
        return gr, Yr
    idx = as_index_like(run, g)
    g[idx], Y[idx] = gr, Yr
    return g, Y


class _Balance:
    """The class-marginal constraint of :func:`laplacian_solve`: its targets and the
    class potentials carried from one bound step to the next (warm start)."""

    def __init__(self, marginals, fixed3):
        self.r, self.g = marginals, None
        self.free = asarray_like(~to_numpy(fixed3), marginals)

    def project(self, L):
        Y, self.g = balanced_softmax(L, self.free, self.r, self.g)
        return Y

    def subset(self, keep):
        self.r, self.free = self.r[keep], self.free[keep]
        self.g = None if self.g is None else self.g[keep]
