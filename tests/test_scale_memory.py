"""Every per-row output (``predict``, ``score_samples``, two-class
``decision_function``) of every estimator from ``all_estimators()`` is computed in row
chunks: its peak memory beyond the output stays within a few MiB under
``working_memory=1`` on a 10 MiB query, whatever the number of queries.  Exceptions
are listed in ``EXPECTED`` with the reason."""

import gc
import tracemalloc

import numpy as np
import pytest
from _estimators import FAST_PARAMS
from _inputs import numeric_estimators
from sklearn import config_context
from sklearn.base import is_classifier, is_clusterer

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

MiB = 2**20
BOUND_MIB = 6
ALL = dict(numeric_estimators())
# (name, method) -> reason it may hold O(n_queries) temporaries
EXPECTED = {}
METHODS = ("predict", "score_samples", "decision_function")


def _data(n, d=128, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(2, d)) * 3
    y = rng.integers(0, 2, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("name", sorted(ALL))
def test_per_row_outputs_are_chunked(name):
    est = ALL[name](**FAST_PARAMS.get(name, {}))
    if is_clusterer(est) and hasattr(est, "n_clusters"):
        est.set_params(n_clusters=2)
    X, y = _data(200)
    est.fit(X, y if is_classifier(est) else None)
    Q, _ = _data(20_000, seed=1)
    checked = 0
    for method in METHODS:
        fn = getattr(est, method, None)
        if fn is None or (name, method) in EXPECTED:
            continue
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            with config_context(working_memory=1):
                out = fn(Q)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert np.asarray(out).shape == (Q.shape[0],), method
        extra = (peak - base - np.asarray(out).nbytes) / MiB
        assert extra < BOUND_MIB, f"{name}.{method}: {extra:.1f} MiB beyond the output"
        checked += 1
    assert checked
