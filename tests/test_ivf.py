"""The inverted-file neighbour search that ``kneighbors`` uses for large inputs."""

import numpy as np

from protolearn._core import _knn_graph


def test_ivf_kneighbors_recalls_the_exact_neighbours():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 32)) * 3
    X = (centres[rng.integers(0, 30, 4000)] + rng.normal(size=(4000, 32))).astype(
        np.float32
    )
    X[1] = X[0]  # a duplicated row: the other copy is its neighbour, not itself
    d_ivf, i_ivf = _knn_graph.kneighbors(X, 10, algorithm="ivf")
    d_ex, i_ex = _knn_graph.kneighbors(X, 10, algorithm="brute")
    assert i_ivf.shape == (4000, 10) and i_ivf.dtype == np.int64
    assert not np.any(i_ivf == np.arange(4000)[:, None])  # never the row itself
    assert i_ivf[0, 0] == 1 and i_ivf[1, 0] == 0
    recall = np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(i_ivf, i_ex)])
    assert recall > 0.9, recall
    # the distances returned are the true ones of the indices returned, ascending
    true = ((X[:, None, :] - X[i_ivf]) ** 2).sum(-1)
    np.testing.assert_allclose(d_ivf, true, rtol=1e-3, atol=1e-3)
    assert np.all(np.diff(d_ivf, axis=1) >= 0)
    assert np.all(d_ivf >= d_ex - 1e-3)  # never closer than the exact neighbours


def test_auto_switches_to_ivf_only_for_large_inputs(monkeypatch):
    calls = []
    real = _knn_graph.ivf_kneighbors
    monkeypatch.setattr(
        _knn_graph, "ivf_kneighbors", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    X = np.random.default_rng(0).normal(size=(300, 20)).astype(np.float32)
    _knn_graph.kneighbors(X, 5)
    assert not calls
    monkeypatch.setattr(_knn_graph, "IVF_MIN_SAMPLES", 300)
    _knn_graph.kneighbors(X, 5)
    assert calls
