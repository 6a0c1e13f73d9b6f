"""Shared fixtures: the real embedding data in ../shared/data (beside the repository)."""

import os
from pathlib import Path

import numpy as np
import pytest

try:  # property-based tests (tests/test_core_properties.py): a bounded budget for CI
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "protolearn",
        max_examples=20,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    # HYPOTHESIS_PROFILE=thorough runs many more (random) examples, locally
    settings.register_profile("thorough", max_examples=1000, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "protolearn"))
except ImportError:  # pragma: no cover - hypothesis is in the tests extra
    pass

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data_home():
    """The shared data folder: $PROTOLEARN_DATA if set, else <repo>/../shared/data."""
    env = os.environ.get("PROTOLEARN_DATA")
    return Path(env) if env else SHARED_DATA


def pytest_configure(config):
    # Point the loaders at the shared folder for every test (and subprocess).
    os.environ.setdefault("PROTOLEARN_DATA", str(SHARED_DATA))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="no CUDA device present")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def clinc150():
    """CLINC150 embeddings as a dict of float32 splits; skips only if the file is absent."""
    path = shared_data_home() / "clinc150_minilm.npz"
    if not path.is_file():
        pytest.skip(f"CLINC150 data not found at {path} (set PROTOLEARN_DATA)")
    from protolearn.datasets import load_clinc150

    b = load_clinc150(data_home=path.parent)
    out = {"target_names": b.target_names}
    for split in ("train", "val", "test"):
        m = b.split == split
        out[f"X_{split}"], out[f"y_{split}"] = b.data[m], b.target[m]
    out["X_train_in"] = out["X_train"][out["y_train"] >= 0]
    out["y_train_in"] = out["y_train"][out["y_train"] >= 0]
    out["X_test_in"] = out["X_test"][out["y_test"] >= 0]
    out["y_test_in"] = out["y_test"][out["y_test"] >= 0]
    return out


@pytest.fixture(scope="session")
def clinc_small(clinc150):
    """20 intents with all their 100 training rows; their test rows + 300
    out-of-scope test rows (labelled -1)."""
    rng = np.random.default_rng(0)
    known = rng.choice(150, 20, replace=False)
    y = clinc150["y_train_in"]
    rows = np.flatnonzero(np.isin(y, known))
    yt = clinc150["y_test"]
    te = np.concatenate(
        [np.flatnonzero(np.isin(yt, known)), np.flatnonzero(yt == -1)[:300]]
    )
    y_open = np.where(np.isin(yt[te], known), yt[te], -1)
    return clinc150["X_train_in"][rows], y[rows], clinc150["X_test"][te], y_open


@pytest.fixture(scope="session")
def digits():
    from protolearn.datasets import load_demo_data

    return load_demo_data("digits")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def thread_chunks(monkeypatch):
    """``thread_chunks(nbytes, threads=None)``: make ``map_row_chunks`` cut numpy
    inputs into chunks of about `nbytes` of temporaries (no row minimum), on
    `threads` threads when given (else the CPUs there are)."""
    from protolearn._core import _distances

    def set_chunks(nbytes, threads=None):
        monkeypatch.setattr(_distances, "THREAD_CHUNK_BYTES", nbytes)
        monkeypatch.setattr(_distances, "MIN_THREAD_CHUNK_ROWS", 1)
        if threads is not None:
            monkeypatch.setattr(_distances, "n_threads", lambda: threads)

    return set_chunks
