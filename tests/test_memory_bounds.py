"""Prediction-side memory stays bounded by ``working_memory`` as the query grows.

Each test traces the peak of numpy allocations (``tracemalloc``) during one call on a
query of ``N`` float32 rows whose full-size temporaries (an (n, d) copy of the query,
or a few (n, n_components) arrays) would take tens of MiB, and asserts that the peak,
less the returned output, stays within a few MiB under ``working_memory=1``.
"""

import gc
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from sklearn import config_context
from torch.utils._python_dispatch import TorchDispatchMode

from protolearn import nn
from protolearn.classification import (
    CBCClassifier,
    GLVQClassifier,
    GMLVQClassifier,
    NearestPrototypeClassifier,
    RBFClassifier,
)
from protolearn.model_selection import evaluate_episodes, sample_episodes
from protolearn.nn import _engine
from protolearn.nn._engine import row_chunk_size
from protolearn.transductive import LaplacianFewShotClassifier

MiB = 2**20
# Working memory 1 MiB: a chunk's temporaries take a few MiB at most (a chunk holds a
# few arrays of the budgeted size, and get_chunk_n_rows rounds up to one row).
BOUND_MIB = 6


def _nbytes(out):
    if isinstance(out, np.ndarray):
        return out.nbytes
    if isinstance(out, dict):
        return sum(_nbytes(v) for v in out.values())
    return 0


def _peak_minus_output_mib(fn):
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with config_context(working_memory=1):
            out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - base - _nbytes(out)) / MiB


def _blobs(n, d, n_classes, seed):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(n_classes, d)) * 3
    y = rng.integers(0, n_classes, n)
    X = centres[y] + rng.normal(size=(n, d))
    return X.astype(np.float32), y


@pytest.mark.parametrize("method", ["predict", "certified_radius", "decision_function"])
def test_nearest_prototype_chunks_bound_the_query_copy(method):
    # Few prototypes, many features: the row chunks of nearest_prototype_index and
    # nearest_prototype_radius were sized for the (rows, P) scores alone, so the
    # centred (rows, d) copy of the chunk covered the whole 20 MiB query.
    X, y = _blobs(200, 256, 2, seed=0)
    clf = NearestPrototypeClassifier().fit(X, y)
    Xq, _ = _blobs(20_000, 256, 2, seed=1)
    assert Xq.nbytes > 16 * MiB
    extra = _peak_minus_output_mib(lambda: getattr(clf, method)(Xq))
    assert extra < BOUND_MIB, f"{method}: {extra:.1f} MiB beyond the output"


def test_nearest_prototype_scores_do_not_hold_all_distances():
    # decision_function took the class minimum of the full (n, n_prototypes) matrix.
    X, y = _blobs(600, 4, 3, seed=0)
    clf = NearestPrototypeClassifier(n_prototypes=40, random_state=0).fit(X, y)
    Xq, _ = _blobs(50_000, 4, 3, seed=1)
    extra = _peak_minus_output_mib(lambda: clf.decision_function(Xq))
    assert extra < BOUND_MIB, f"{extra:.1f} MiB beyond the output"
    with config_context(working_memory=1):
        chunked = clf.decision_function(Xq)
    D = ((Xq[:, None, :] - clf.prototypes_[None]) ** 2).sum(-1)
    ref = -np.stack(
        [D[:, clf.prototype_labels_ == c].min(1) for c in clf.classes_], axis=1
    )
    np.testing.assert_allclose(chunked, ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("cls", [RBFClassifier, CBCClassifier])
@pytest.mark.parametrize(
    "method", ["decision_function", "certified_radius", "class_probabilities"]
)
def test_component_classifiers_chunk_the_component_distances(cls, method):
    # log_class_probabilities and reasoning_radius ran on the full (n, K) distances
    # (several (n, K) and (n, C) temporaries, float64 in the margin).
    X, y = _blobs(300, 8, 3, seed=0)
    clf = cls(n_components=60, max_iter=3, random_state=0).fit(X, y)
    Xq, _ = _blobs(20_000, 8, 3, seed=1)
    extra = _peak_minus_output_mib(lambda: getattr(clf, method)(Xq))
    assert extra < BOUND_MIB, f"{method}: {extra:.1f} MiB beyond the output"
    with config_context(working_memory=1):
        chunked = getattr(clf, method)(Xq[:3000])
    with config_context(working_memory=1024):
        whole = getattr(clf, method)(Xq[:3000])
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_laplacian_fewshot_predict_is_chunked():
    # _class_scores centred, normalised and squared whole (n, d) copies of the query.
    X, y = _blobs(100, 256, 4, seed=0)
    clf = LaplacianFewShotClassifier(max_iter=5).fit(X, y)
    Xq, _ = _blobs(20_000, 256, 4, seed=1)
    extra = _peak_minus_output_mib(lambda: clf.decision_function(Xq))
    assert extra < BOUND_MIB, f"{extra:.1f} MiB beyond the output"
    with config_context(working_memory=1):
        chunked = clf.predict_proba(Xq[:3000])
    with config_context(working_memory=1024):
        whole = clf.predict_proba(Xq[:3000])
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_batched_episode_evaluation_stacks_chunks_of_episodes():
    # All episodes of one shape were stacked at once: a (n_episodes * n_points, d)
    # copy of the pool's rows (here 500 * 20 * 256 float32 = 10 MiB, twice in flight).
    X, y = _blobs(2_000, 256, 10, seed=0)
    episodes = sample_episodes(
        y, n_way=3, n_shot=1, n_query=5, n_episodes=500, random_state=0
    )
    est = LaplacianFewShotClassifier(max_iter=5)
    extra = _peak_minus_output_mib(
        lambda: evaluate_episodes(est, X, episodes, transductive=True, batched=True)
    )
    assert extra < 2 * BOUND_MIB, f"{extra:.1f} MiB"
    with config_context(working_memory=1):
        chunked = evaluate_episodes(est, X, episodes, transductive=True, batched=True)
    loop = evaluate_episodes(est, X, episodes[:50], transductive=True)
    np.testing.assert_array_equal(chunked.scores[:50], loop.scores)


def test_one_large_episode_is_solved_with_a_sparse_graph():
    # A task whose dense (n, n) arrays exceed the chunk budget goes through the sparse
    # kNN graph (as the estimator): memory O(n * k), not O(n^2).  Dense, one task of
    # 8,000 queries held several (8005, 8005) float32 arrays (256 MB each).
    from protolearn.transductive import (
        LaplacianFewShotClassifier,
        laplacian_fewshot_episodes,
    )

    rng = np.random.default_rng(0)
    C = rng.normal(size=(5, 32)) * 1.5
    yq = rng.integers(0, 5, 8000)
    Q = (C[yq] + rng.normal(size=(8000, 32))).astype(np.float32)
    S = (C + 0.3 * rng.normal(size=(5, 32))).astype(np.float32)
    with config_context(working_memory=8):
        tracemalloc.start()
        try:
            out = laplacian_fewshot_episodes(S[None], np.arange(5)[None], Q[None])
            peak = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    assert peak < 40, peak
    est = LaplacianFewShotClassifier().fit(
        np.r_[S, Q], np.r_[np.arange(5), -np.ones(8000, int)]
    )
    np.testing.assert_array_equal(out.labels[0], est.transduction_[5:])
    np.testing.assert_allclose(
        out.label_distributions[0], est.label_distributions_[5:], atol=1e-5
    )
    assert np.mean(out.labels[0] == yq) > 0.95


def test_knn_detector_normalises_the_query_chunk_by_chunk():
    # score_samples L2-normalised the whole query first: an (n, d) copy (20 MiB here)
    from protolearn.ood import KNNDetector

    X, _ = _blobs(2000, 256, 4, seed=0)
    det = KNNDetector(n_neighbors=10).fit(X)
    Xq, _ = _blobs(20_000, 256, 4, seed=1)
    assert Xq.nbytes > 16 * MiB
    extra = _peak_minus_output_mib(lambda: det.score_samples(Xq))
    assert extra < BOUND_MIB, f"{extra:.1f} MiB beyond the output"
    ref = det.score_samples(Xq)  # default working memory: one chunk
    with config_context(working_memory=1):
        np.testing.assert_allclose(det.score_samples(Xq), ref, rtol=1e-5, atol=1e-6)


# Training side: full-batch L-BFGS steps are chunked under working_memory.  A step
# of the engine (PrototypeNet(row_chunks=True): one closure evaluation, forward and
# backward) runs its rows in chunks, so no tensor of all rows x prototypes is made
# (torch's CPU allocations are not seen by tracemalloc: a dispatch mode records the
# largest tensor any torch operation of a training step creates, backward included).
# The chunked fits equal the unchunked ones to rounding.


class _LargestTensor(TorchDispatchMode):
    """Largest tensor (bytes) created by any torch operation while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def _largest_in_training_steps(est, X, y, monkeypatch):
    mode = _LargestTensor()
    step = nn.PrototypeNet.train_step_single

    def traced(self, batch, **fit_params):
        with mode:
            return step(self, batch, **fit_params)

    monkeypatch.setattr(nn.PrototypeNet, "train_step_single", traced)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with config_context(working_memory=1):
            est.fit(X, y)
    return mode.largest


@pytest.mark.parametrize(
    "est",
    [
        GLVQClassifier(n_prototypes=20),
        CBCClassifier(n_components=60),
    ],
    ids=["GLVQ", "CBC"],
)
def test_lbfgs_steps_never_hold_all_rows_x_prototypes(est, monkeypatch):
    # 10,000 rows x 60 prototypes: one (n, P) float32 tensor is 2.3 MiB (unchunked,
    # a step makes several, and (n, P) x-grads in backward); the chunks under
    # working_memory=1 (MiB) are a few hundred rows.  The largest tensor left is the
    # (n, d) gather of the shuffled batch (0.3 MiB).
    X, y = _blobs(10_000, 8, 3, seed=0)
    est.set_params(max_iter=2, n_iter_no_change=2, random_state=0, device="cpu")
    largest = _largest_in_training_steps(est, X, y, monkeypatch)
    assert largest < 0.5 * MiB, f"{largest / MiB:.2f} MiB"
    # the guard can fail: without row chunks a step holds (n, P) tensors
    monkeypatch.setattr(_engine, "row_chunk_size", lambda module, X: len(X))
    largest = _largest_in_training_steps(est, X, y, monkeypatch)
    assert largest >= 10_000 * 60 * 4


@pytest.mark.parametrize(
    "est",
    [
        GLVQClassifier(n_prototypes=2),
        GMLVQClassifier(n_prototypes=2),
        CBCClassifier(n_components=6),
        CBCClassifier(n_components=6, loss="robust"),
    ],
    ids=["GLVQ", "GMLVQ", "CBC", "CBC-robust"],
)
def test_chunked_full_batch_steps_equal_unchunked(est):
    """L-BFGS accumulates loss and gradient over row chunks: same fit to rounding."""
    X, y = _blobs(120, 4, 3, seed=1)
    X = X.astype(np.float64)
    est.set_params(max_iter=6, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = est.fit(X, y)
        whole_curve = list(whole.loss_curve_)
        whole_attrs = {k: v.copy() for k, v in vars(whole).items() if k.endswith("_")
                       and isinstance(v, np.ndarray)}  # fmt: skip
        # ~1 KiB: chunks of a few rows (the assertion below checks there are many)
        with config_context(working_memory=0.001):
            X_t = torch.as_tensor(X)
            assert row_chunk_size(torch.nn.Linear(4, 6).double(), X_t) * 10 < 120
            chunked = est.fit(X, y)
    np.testing.assert_allclose(chunked.loss_curve_, whole_curve, rtol=1e-9)
    for k, v in whole_attrs.items():
        np.testing.assert_allclose(getattr(chunked, k), v, rtol=1e-7, atol=1e-9)
