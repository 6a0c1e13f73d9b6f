"""The Laplacian-regularised bound optimizer (LaplacianShot / Laplacian K-modes).

The model (LaplacianShot, Ziko et al., ICML 2020; "Scalable Laplacian K-modes", Ziko et
al., NeurIPS 2018; Ziko et al., 2021) assigns every point ``p`` a soft label ``y_p`` in
the simplex and every class/cluster ``k`` a prototype ``m_k``, minimising

    E(Y, M) = sum_p sum_k y_pk a_pk            a_pk = f(x_p, m_k) / temperature
              + sum_{p free} sum_k y_pk log y_pk           (negative-entropy barrier)
              - lambda / 2 * sum_{p, q} w_pq y_p . y_q     (Laplacian term, kNN W)

with the rows of labelled points held at their one-hot labels.  ``f`` is the squared
euclidean distance ("kmeans") or minus a Gaussian kernel ``-exp(-|x - m|^2 / (2 h^2))``
("kmodes").  One iteration of :func:`laplacian_solve` is

1. the bound step: the concave pairwise term is replaced by its tangent at the current
   ``Y``, whose minimiser over the simplex is, for every free point at once,
   ``y_p <- softmax(-a_p + lambda * (W Y)_p)`` (:func:`bound_step`);
2. the prototype step: for fixed ``Y``, weighted means (K-means) or one mean-shift step
   (K-modes), both of which cannot increase ``E``.

With class masses imposed on the free rows (``marginals``: e.g. balanced query classes,
as PT-MAP assumes), the bound step's minimiser over the simplex rows that also meet
those column sums is the entropic transport plan ``softmax(-a_p + lambda (W Y)_p + g)``
with K class potentials ``g`` (:func:`~._balanced.balanced_softmax`); everything below
holds unchanged, since that set is convex.

For a symmetric ``W`` the bound step's direction ``Y_new - Y`` is a descent direction of
``E`` (the tangent bound and ``E`` share their gradient at ``Y``, and the bound is convex
in ``Y``), so when a full step would increase ``E`` (``W`` is not positive semi-definite
in general) the step is halved until ``E`` does not increase: the objective history is
non-increasing by construction.  For a directed ``W`` (the official LaplacianShot code and
easyfsl) no such guarantee exists and full steps are always taken.

Every array carries a leading task axis ``T`` (many episodes solved as one computation);
numpy or torch (any device) in, the same kind out.  The graph ``W`` is a dense
(T, n, n) array for batches of small episodes, or, for one large problem (T == 1), a
scipy.sparse matrix (numpy) or a torch sparse tensor (torch)
(:mod:`~protolearn._core._knn_graph`).  The prototypes are carried by
:class:`~._prototype_step._Prototypes`.
"""

import numpy as np
from scipy import sparse

from ..utils._array_api import (
    as_index_like,
    asarray_like,
    empty,
    get_namespace,
    is_torch,
    to_numpy,
)
from ._balanced import _Balance
from ._batched import (
    c_contiguous,
    contiguous_label_columns,
    reduce_last_axis,
    softmax_last_axis,
    take_tasks,
    task_dot,
)
from ._knn_graph import graph_product
from ._prototype_step import _Prototypes


def laplacian_energy(Y, A, WY, laplacian_weight, free):
    """``E`` per task (T,) from soft labels ``Y``, unary ``A`` = f / temperature,
    ``WY`` = :func:`~._knn_graph.graph_product` ``(W, Y)``, the weight lambda of the
    Laplacian term, and the (T, n) mask of free rows."""
    weighted = laplacian_weight * WY if laplacian_weight else None
    return _energy_rest(Y, weighted, free) + task_dot(Y, A)


def _energy_rest(Y, LWY, free):
    """The parts of ``E`` that do not depend on the prototypes: the entropy of the free
    rows minus half the Laplacian term (``LWY = lambda * W Y``, or None when lambda = 0)."""
    tiny = float(np.finfo(np.float32).tiny)
    xp = get_namespace(Y)
    logY = xp.log(xp.maximum(Y, tiny))
    logY *= Y
    # numpy sums the short last axis slice by slice (faster than its reduction)
    ent = logY.sum(-1) if is_torch(logY) else reduce_last_axis(logY, np.add)
    ent *= free
    E = ent.sum(1)
    if LWY is not None:
        E = E - 0.5 * task_dot(Y, LWY)
    return E


def bound_step(A, WY, laplacian_weight, Y_fixed, fixed, marginals=None):
    """One bound update for every free point in parallel:
    ``y_p <- softmax(-a_p + lambda (W Y)_p)``; rows where `fixed` keep ``Y_fixed``.

    With `marginals` (T, K), the minimiser over the soft labels whose free rows also
    sum to ``marginals[t, k]`` per class (see :func:`~._balanced.balanced_softmax`)."""
    fixed3 = fixed[:, :, None]
    bal = None if marginals is None else _Balance(marginals, fixed3)
    weighted = laplacian_weight * WY if laplacian_weight else None
    return _bound_step(A, weighted, Y_fixed, fixed3, bal)


def _bound_step(A, LWY, Y_fixed, fixed3, balance=None):
    L = -A if LWY is None else LWY - A
    if balance is not None:
        return get_namespace(L).where(fixed3, Y_fixed, balance.project(L))
    if is_torch(L):  # torch: a new array; numpy keeps the softmax's layout below
        return get_namespace(L).where(fixed3, Y_fixed, softmax_last_axis(L))
    # numpy: the fixed rows are copied into the softmax's own array (its layout kept)
    L = softmax_last_axis(L)
    np.copyto(L, Y_fixed, where=fixed3)
    return L


# The working batch shrinks to the running tasks once at most COMPACT_FRAC of it still
# runs (and it holds at least COMPACT_MIN tasks).
COMPACT_FRAC, COMPACT_MIN = 0.75, 4
# Most halvings of one bound step (each halves the step of the tasks whose E went up).
MAX_HALVINGS = 30


def laplacian_solve(
    Z,
    Y_fixed,
    fixed,
    M,
    W,
    *,
    laplacian_weight,
    prototype="kmeans",
    update=True,
    temperature=1.0,
    bandwidth=None,
    max_iter=20,
    tol=1e-6,
    safeguard=True,
    gram=None,
    coef=None,
    row_scale=None,
    marginals=None,
    features=None,
    symmetric_graph=False,
):
    """Alternate bound steps on ``Y`` and prototype steps on ``M`` (see module docstring).

    Parameters
    ----------
    Z : (T, n, d) features (already preprocessed; see `row_scale`)
    Y_fixed : (T, n, K) one-hot rows for the labelled points (other rows ignored)
    fixed : (T, n) bool, True for labelled points
    M : (T, K, d) initial prototypes, or None when `coef` is given
    W : graph for :func:`~._knn_graph.graph_product`, or None (no Laplacian term)
    laplacian_weight : float >= 0
        The weight lambda of the Laplacian term.
    prototype : {"kmeans", "kmodes"}
    update : bool
        Update the prototypes after each bound step (False: LaplacianShot's fixed
        prototypes).
    temperature : float > 0, or (T,) array
        Divides the prototype term.
    bandwidth : (T,) kernel bandwidths for "kmodes".
    max_iter : int >= 1
    tol : float >= 0
        A task stops when ``|E_t - E_{t-1}| <= tol * |E_{t-1}|``; stopped tasks are left
        untouched, so each task's result is the one it would get alone.
    safeguard : bool
        Halve steps that would increase ``E`` (valid for symmetric ``W`` only).
    gram : (T, n, n) Gram matrix of the features when already computed (used when
        n <= d).
    coef : (T, n, K) or None
        Initial prototypes as weights over the rows, ``M = coef^T Z`` (e.g. one-hot
        support rows divided by the class sizes for class means); needs n <= d.
    row_scale : (T, n) or None
        The features are ``Z * row_scale[..., None]`` (e.g. the inverse row norms of
        centred data, whose Gram matrix `gram` already includes the scaling): saves
        forming the scaled (T, n, d) array when n <= d.
    marginals : (T, K) or None
        Class masses the free rows must sum to (e.g. ``n_free / K`` each: balanced
        classes); every bound step is then the constrained minimiser of
        :func:`~._balanced.balanced_softmax`.  The halved steps stay feasible (the constraint set is
        convex), so the objective is still non-increasing.
    features : callable or None
        ``C -> C^T Z`` for per-row weights ``C`` (T, n, K): forms the final prototypes
        when the features are not stored; `Z` is then None, and `gram` and `coef` must
        be given.
    symmetric_graph : bool
        ``W`` is exactly symmetric (as built with ``symmetric=True``): its products
        need no transpose.

    Returns
    -------
    Y : (T, n, K), M : (T, K, d), n_iter : (T,) int ndarray, objective : (T, max_iter + 1)
    float64 ndarray (``E`` before the first step, then after each iteration; NaN after
    a task stopped), converged : (T,) bool ndarray
    """
    if Z is None and (gram is None or coef is None or features is None):
        raise ValueError("Z=None needs gram, coef and features.")
    run = _SolverRun(
        Z, Y_fixed, fixed, M, W, laplacian_weight=laplacian_weight,
        prototype=prototype, temperature=temperature, bandwidth=bandwidth,
        max_iter=max_iter, gram=gram, coef=coef, row_scale=row_scale,
        marginals=marginals, features=features, symmetric_graph=symmetric_graph,
    )  # fmt: skip
    for it in range(1, max_iter + 1):
        if not run.iterate(it, update=update, safeguard=safeguard, tol=tol):
            break
        if run.worth_compacting():
            run.compact()
    return run.results()


class _SolverRun:
    """The state of one :func:`laplacian_solve` call over a batch of tasks.

    Tasks stop at different iterations.  The working arrays hold the tasks ``work``
    (indices into the batch); once few enough of them still run (dense graphs only),
    the stopped ones are written out and the arrays shrink to the running ones
    (:meth:`compact`), so late iterations cost only what the slow tasks need.
    """

    def __init__(
        self, Z, Y_fixed, fixed, M, W, *, laplacian_weight, prototype, temperature,
        bandwidth, max_iter, gram, coef, row_scale, marginals, features,
        symmetric_graph,
    ):  # fmt: skip
        like = Y_fixed if Z is None else Z  # kind, dtype and device of the features
        T = like.shape[0]
        self.like, self.weight, self.symmetric = like, laplacian_weight, symmetric_graph
        self.temperature = temperature
        self.task_temperatures = (
            asarray_like(np.asarray(temperature), like)
            if np.ndim(temperature)
            else None
        )
        fixed = asarray_like(fixed, like) > 0.5
        sparse_W = W is not None and (sparse.issparse(W) or getattr(W, "is_sparse", 0))
        # small tasks with dense graphs: soft labels, unaries and weights held with
        # contiguous label columns
        n_pts, n_feat = (gram.shape[1], gram.shape[1]) if Z is None else Z.shape[1:]
        self.by_columns = n_pts <= n_feat and not sparse_W
        if self.by_columns:
            Y_fixed = contiguous_label_columns(Y_fixed)
            coef = None if coef is None else contiguous_label_columns(coef)
        self.protos = _Prototypes(
            Z, M, prototype, bandwidth, gram, coef, row_scale, features
        )
        self.Y_fixed, self.W = Y_fixed, W
        self.fixed, self.fixed3 = fixed, fixed[:, :, None]
        self.bal = None
        if marginals is not None:
            self.bal = _Balance(asarray_like(marginals, like), self.fixed3)
        self.freef = get_namespace(like).where(
            fixed, like[:, :, 0] * 0, like[:, :, 0] * 0 + 1
        )
        # the working arrays: unary term A = f / temperature, soft labels Y,
        # LWY = lambda W Y, and the energy E = R + <Y, A> of each working task
        self.A = self._unary()
        self.Y = _bound_step(self.A, None, Y_fixed, self.fixed3, self.bal)
        self.LWY = self._weighted_product(self.Y)
        self.R = _energy_rest(self.Y, self.LWY, self.freef)
        self.E = self.R + task_dot(self.Y, self.A)
        self.history = np.full((T, max_iter + 1), np.nan)
        self.history[:, 0] = to_numpy(self.E)
        self.n_iter = np.zeros(T, dtype=np.int64)
        self.converged = np.zeros(T, dtype=bool)
        self.eps = 16 * float(np.finfo(to_numpy(like[:1, :1, :1]).dtype).eps)
        self.work = np.arange(T)
        self.active = np.ones(T, dtype=bool)  # over the working tasks
        self.Y_out = None
        self.compactable = not sparse_W

    def _unary(self):
        A = self.protos.term()
        if self.by_columns:  # explicit first prototypes give C-ordered (T, n, K) terms
            A = contiguous_label_columns(A)
        if self.task_temperatures is None:
            A /= self.temperature
        else:
            A /= self.task_temperatures[:, None, None]
        return A

    def _weighted_product(self, Y):
        """``lambda W Y``, or None without a Laplacian term."""
        if not self.weight:
            return None
        return self.weight * graph_product(self.W, Y, self.symmetric)

    def iterate(self, it, *, update, safeguard, tol):
        """Iteration `it` on the running tasks: a bound step (halved where it would
        raise ``E``), then a prototype step; records ``E`` and stops converged tasks.
        Returns whether any task still runs."""
        active = self.active
        all_active = bool(active.all())
        act = None if all_active else as_index_like(active, self.like) > 0
        Yn = _bound_step(self.A, self.LWY, self.Y_fixed, self.fixed3, self.bal)
        LWYn = self._weighted_product(Yn)
        Rn = _energy_rest(Yn, LWYn, self.freef)
        if safeguard and self.weight:
            self._halve_steps(Yn, LWYn, Rn)
        xp = get_namespace(self.like)
        if all_active:  # no working task has stopped yet
            self.Y, self.LWY, self.R = Yn, LWYn, Rn
        else:
            a3 = act[:, None, None]
            self.Y = xp.where(a3, Yn, self.Y)
            self.LWY = None if self.LWY is None else xp.where(a3, LWYn, self.LWY)
            self.R = xp.where(act, Rn, self.R)
        if update:
            self.protos.update(self.Y, None if all_active else act[:, None, None])
            self.A = self._unary()
        E_new = self.R + task_dot(self.Y, self.A)
        E_np, En_np = to_numpy(self.E).astype(np.float64), to_numpy(E_new)
        work = self.work
        self.history[work[active], it] = En_np[active]
        self.n_iter[work[active]] = it
        done = np.abs(En_np - E_np) <= tol * np.abs(E_np)
        self.converged[work[active & done]] = True
        active &= ~done
        self.E = E_new if all_active else xp.where(act, E_new, self.E)
        return bool(active.any())

    def _halve_steps(self, Yn, LWYn, Rn):
        """Halve, in place, the steps of the running tasks whose energy went up (only
        those: the others keep exactly the step they would take alone), until none
        does or :data:`MAX_HALVINGS` halvings."""
        Y, LWY, A, freef = self.Y, self.LWY, self.A, self.freef
        En = Rn + task_dot(Yn, A)
        for _ in range(MAX_HALVINGS):
            E0, E1 = to_numpy(self.E), to_numpy(En)
            worse = self.active & (E1 > E0 + self.eps * np.abs(E0))
            if not worse.any():
                break
            b = as_index_like(np.flatnonzero(worse), self.like)
            Yb, LWYb = Yn[b], LWYn[b]
            Yb -= Y[b]
            Yb *= 0.5
            Yb += Y[b]
            LWYb -= LWY[b]
            LWYb *= 0.5
            LWYb += LWY[b]
            Yn[b], LWYn[b] = Yb, LWYb
            Rb = _energy_rest(Yb, LWYb, freef[b])
            Rn[b] = Rb
            En[b] = Rb + task_dot(Yb, A[b])

    def worth_compacting(self):
        work, active = self.work, self.active
        return (
            self.compactable
            and work.size >= COMPACT_MIN
            and active.sum() <= COMPACT_FRAC * work.size
        )

    def compact(self):
        """Write the stopped tasks out and keep only the running ones."""
        like, work, active = self.like, self.work, self.active
        if self.Y_out is None:
            self.Y_out = empty(tuple(self.Y_fixed.shape), like=self.Y)
        stop = as_index_like(np.flatnonzero(~active), like)
        self.Y_out[as_index_like(work[~active], like)] = self.Y[stop]
        self.protos.store(stop, work[~active])
        keep = as_index_like(np.flatnonzero(active), like)
        self.Y, self.A = take_tasks(self.Y, keep), take_tasks(self.A, keep)
        self.E, self.R = self.E[keep], self.R[keep]
        self.LWY = None if self.LWY is None else take_tasks(self.LWY, keep)
        self.Y_fixed = take_tasks(self.Y_fixed, keep)
        self.fixed, self.fixed3 = self.fixed[keep], self.fixed3[keep]
        self.freef = self.freef[keep]
        self.W = None if self.W is None else self.W[keep]
        self.task_temperatures = (
            None if self.task_temperatures is None else self.task_temperatures[keep]
        )
        self.protos.subset(keep)
        if self.bal is not None:
            self.bal.subset(keep)
        self.work = work[active]
        self.active = np.ones(self.work.size, dtype=bool)

    def results(self):
        """``(Y, M, n_iter, objective, converged)`` of every task of the batch."""
        protos, out = self.protos, (self.n_iter, self.history, self.converged)
        if self.Y_out is None:
            return c_contiguous(self.Y), protos.prototypes(), *out
        like = self.like
        self.Y_out[as_index_like(self.work, like)] = self.Y
        protos.store(as_index_like(np.arange(self.work.size), like), self.work)
        return self.Y_out, protos.prototypes(), *out
