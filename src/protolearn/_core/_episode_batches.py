"""Many few-shot episodes solved as one computation, in chunks of tasks.

:func:`solve_episode_batches` plans chunks of tasks whose dense (n, n) arrays fit a
memory budget (:func:`plan_task_chunks`), solves each chunk as one batched computation
(:func:`solve_task_chunk`: the streamed-rows Gram path, stored rows, or, for a task too
large for dense arrays, a sparse kNN graph) and, with ``n_jobs > 1``, runs the chunks
in threads with one BLAS thread each.  Every task's result is the one it gets alone,
whatever the chunking.

numpy or torch (any device) in, the same kind out.
"""

import functools
import queue
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn import get_config
from sklearn.utils import Bunch
from threadpoolctl import ThreadpoolController

from ..utils._array_api import empty, get_namespace, is_torch, one_hot
from ._batched import all_finite, batched_l2_normalize
from ._episode_rows import StreamedEpisodeRows, centre_episode_rows, streams_rows
from ._transduction import transduce, transduce_rows

# Tasks are solved in chunks whose (n_tasks, n, n) arrays take about this much memory
# on the CPU (scikit-learn's working_memory on a GPU): memory stays bounded for any
# number of tasks, and chunks that fit in the cache run faster than one large batch.
TASK_CHUNK_MIB = 4
# With n_jobs > 1 the CPU chunks are this many times larger: a thread holds the GIL for
# the Python steps of every iteration of its chunk, so fewer, larger chunks overlap
# better.
THREAD_CHUNK_FACTOR = 2


def plan_task_chunks(support, query, n_classes, n_jobs):
    """``(step, sparse)``: tasks per chunk, and whether each task is solved alone with
    a sparse kNN graph because its dense (n, n) arrays alone exceed the budget."""
    T, ns, _ = support.shape
    n = ns + query.shape[1]
    on_gpu = is_torch(support) and support.device.type != "cpu"
    budget = (get_config()["working_memory"] if on_gpu else TASK_CHUNK_MIB) * 2**20
    per_task = n * max(n, n_classes) * support.dtype.itemsize
    # decided before the thread factor, so that results do not depend on n_jobs
    sparse = per_task > budget
    if n_jobs > 1 and not on_gpu:
        budget *= THREAD_CHUNK_FACTOR
    step = 1 if sparse else max(1, int(budget // per_task))
    if n_jobs > 1:  # chunks of equal size, as many per thread
        n_chunks = -(-T // step)
        n_chunks = min(T, -(-n_chunks // n_jobs) * n_jobs)
        step = -(-T // n_chunks)
    return step, sparse


def solve_episode_batches(support, labels, query, n_classes, hyperparams, n_jobs):
    """Solve every task of (T, n_s, d) `support` with (T, n_s) class indices `labels`
    and (T, n_q, d) `query` rows (checked by the caller) -> the Bunch of
    :func:`~protolearn.transductive.laplacian_fewshot_episodes`."""
    T, ns, d = support.shape
    n, K = ns + query.shape[1], n_classes
    step, sparse = plan_task_chunks(support, query, K, n_jobs)
    starts = range(0, T, step)
    n_workers = min(n_jobs, len(starts))
    # where the stacked rows are stored, one (step, n, d) buffer of them per worker,
    # reused by its chunks: chunks that each allocate and free theirs make the
    # allocator hand the memory back to the system and fault it in again
    buffers = queue.SimpleQueue()
    if len(starts) > 1 and not (
        sparse or streams_rows(support, query, hyperparams, sparse)
    ):
        for _ in range(n_workers):
            buffers.put(empty((step, n, d), like=support))

    def solve(a):
        buf = None if buffers.empty() else buffers.get()
        try:
            return solve_task_chunk(
                support[a : a + step], labels[a : a + step], query[a : a + step], K,
                hyperparams, sparse=sparse, out=buf,
            )  # fmt: skip
        finally:
            if buf is not None:
                buffers.put(buf)

    if len(starts) == 1:
        Yq, M, n_iter, hist, conv, bal = solve(0)
    else:  # every chunk writes its rows of the outputs (in its own thread)
        out = (
            empty((T, n - ns, K), like=support),
            empty((T, K, d), like=support),
            np.empty(T, dtype=np.int64),
            np.empty((T, hyperparams["max_iter"] + 1)),
            np.empty(T, dtype=bool),
            np.empty(T, dtype=bool),
        )

        def solve_into(a):
            for o, r in zip(out, solve(a)):
                o[a : a + r.shape[0]] = r

        _run_chunks(solve_into, starts, n_jobs, n_workers)
        Yq, M, n_iter, hist, conv, bal = out
    return Bunch(
        labels=get_namespace(Yq).argmax(Yq, axis=2),
        label_distributions=Yq,
        prototypes=M,
        n_iter=n_iter,
        converged=conv,
        objective=hist,
        balanced=bal,
    )


def _run_chunks(solve_into, starts, n_jobs, n_workers):
    if n_jobs > 1:
        # one BLAS thread per worker: BLAS threads of concurrent calls would compete
        # for the same cores
        with (
            _blas_controller().limit(limits=1, user_api="blas"),
            ThreadPoolExecutor(max_workers=n_workers) as pool,
        ):
            list(pool.map(solve_into, starts))
    else:
        for a in starts:
            solve_into(a)


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, found once: a fresh
    ``threadpool_limits`` scans the process's libraries on every call."""
    return ThreadpoolController()


def check_episodes_finite(support, query):
    """Raise a ValueError when `support` or `query` holds NaN or infinity."""
    for name, A in (("support", support), ("query", query)):
        if not all_finite(A):
            raise ValueError(f"{name} contains NaN or infinity.")


def solve_task_chunk(support, labels, query, K, hyperparams, sparse=False, out=None):
    """One chunk of tasks, densely; or (`sparse`, one task) with a sparse kNN graph.
    `out`: None, or a buffer for the stacked rows (see
    :func:`~._episode_rows.centre_episode_rows`).  Returns the query rows' soft
    labels, the prototypes, iterations, objectives, convergence and balance flags."""
    ns = support.shape[1]

    def check_finite():
        check_episodes_finite(support, query)

    if streams_rows(support, query, hyperparams, sparse):
        rows = StreamedEpisodeRows(
            support, query, hyperparams["preprocessing"], hyperparams["center"]
        )
        with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf: checked later
            G = rows.gram()
        (Y, M, n_iter, hist, conv, bal), _ = transduce_rows(
            None,
            one_hot(labels, K, like=G),
            hyperparams,
            sparse_graph=False,
            normalize=True,
            check_finite=check_finite,
            gram=G,
            features=rows.weighted_sums,
        )
        return Y[:, ns:], M, n_iter, hist, conv, bal
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf: checked later
        X = centre_episode_rows(
            support, query, hyperparams["preprocessing"], hyperparams["center"], out=out
        )
    if sparse:
        check_finite()
        if hyperparams["preprocessing"] is not None:
            X = batched_l2_normalize(X)
    (Y, M, n_iter, hist, conv, bal), _ = transduce(
        X,
        one_hot(labels, K, like=X),
        hyperparams,
        sparse_graph=sparse,
        normalize=hyperparams["preprocessing"] is not None and not sparse,
        check_finite=check_finite,
    )
    return Y[:, ns:], M, n_iter, hist, conv, bal
