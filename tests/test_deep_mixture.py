"""DeepPrototypeMixtureDetector (PALM head) and the PALM loss."""

import pickle
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.metrics import roc_auc_score

torch = pytest.importorskip("torch")

from protolearn.deep import DeepPrototypeMixtureDetector  # noqa: E402
from protolearn.nn import build_head, palm_loss  # noqa: E402
from protolearn.ood import PrototypeMixtureDetector  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATA = DATA / "clinc150_minilm.npz"


def blobs(n=240, d=8, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = rng.normal(size=(n, d)) + 4 * np.eye(d)[y]
    return X.astype(np.float32), y


FAST = dict(n_prototypes=2, top_k=None, hidden_layer_sizes=(8,), max_iter=5)


def test_novelty_api_and_attributes():
    X, y = blobs()
    det = DeepPrototypeMixtureDetector(random_state=0, **FAST).fit(X, y)
    s = det.score_samples(X)
    assert s.dtype == np.float32 and s.shape == (len(X),)
    assert_allclose(det.decision_function(X), s - det.offset_, rtol=1e-6)
    p = det.predict(X)
    assert set(np.unique(p)) <= {-1, 1}
    # contamination="auto": 5 % of the training rows flagged
    assert np.mean(p == -1) == pytest.approx(0.05, abs=0.01)
    assert det.prototypes_.shape == (6, 8)
    assert_allclose(np.linalg.norm(det.prototypes_, axis=1), 1, rtol=1e-5)
    assert_array_equal(det.prototype_labels_, [0, 0, 1, 1, 2, 2])
    assert det.transform(X).shape == (len(X), 8)
    assert len(det.loss_curve_) == det.n_iter_ == 5
    assert isinstance(det.detector_, PrototypeMixtureDetector)
    assert not hasattr(det, "classes_")
    # far from the data scores lower than the data
    assert det.score_samples(-X).mean() < s.mean()


def test_unlabelled_mode_is_one_class():
    X, _ = blobs()
    det = DeepPrototypeMixtureDetector(random_state=0, **FAST).fit(X)
    assert det.prototypes_.shape == (2, 8)
    assert_array_equal(det.prototype_labels_, [0, 0])
    assert np.isfinite(det.loss_curve_).all()


def test_too_few_samples_per_class_is_refused():
    X, y = blobs()
    y = y.copy()
    y[0] = 7  # a class with one sample
    with pytest.raises(
        ValueError, match="as many samples as n_prototypes: 7 has 1 < 2"
    ):
        DeepPrototypeMixtureDetector(**FAST).fit(X, y)


def test_same_random_state_same_scores():
    X, y = blobs()
    a = DeepPrototypeMixtureDetector(random_state=3, **FAST).fit(X, y)
    b = DeepPrototypeMixtureDetector(random_state=3, **FAST).fit(X, y)
    c = DeepPrototypeMixtureDetector(random_state=4, **FAST).fit(X, y)
    assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert_array_equal(a.prototypes_, b.prototypes_)
    assert not np.array_equal(a.prototypes_, c.prototypes_)


def test_torch_input_gives_tensor_output():
    X, y = blobs()
    det = DeepPrototypeMixtureDetector(random_state=0, **FAST).fit(X, y)
    s = det.score_samples(torch.as_tensor(X))
    assert isinstance(s, torch.Tensor)
    assert_allclose(s.numpy(), det.score_samples(X), rtol=1e-5, atol=1e-6)


def _plain(obj):
    """Every leaf of a pickled state is a plain Python / numpy / protolearn value."""
    if isinstance(obj, dict):
        return all(_plain(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    return not type(obj).__module__.startswith(("torch", "skorch"))


def test_pickle_plain_state_and_gpu_model_loads_on_cpu(monkeypatch):
    X, y = blobs()
    det = DeepPrototypeMixtureDetector(random_state=0, **FAST).fit(X, y)
    state = det.__getstate__()
    assert "net_" not in state and _plain(state)
    want = det.score_samples(X)
    assert_array_equal(pickle.loads(pickle.dumps(det)).score_samples(X), want)
    # a model fitted on a GPU: its state says so; it loads where CUDA is absent
    state["_net_state"] = {**state["_net_state"], "device": "cuda:0"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    blob = pickle.dumps(state)
    loaded = DeepPrototypeMixtureDetector.__new__(DeepPrototypeMixtureDetector)
    loaded.__setstate__(pickle.loads(blob))
    assert str(loaded.net_.device) == "cpu"
    assert_array_equal(loaded.score_samples(X), want)
    assert_array_equal(loaded.predict(X), det.predict(X))


def test_palm_step_matches_brute_force():
    """One training step of the PALM loss: the EMA moves every assigned prototype to
    normalise(m p + (1 - m) u), u the assignment-weighted mean of its samples, and
    the loss is finite with a gradient into the projection."""
    X, y = blobs(n=60)
    spec = {
        "n_features": 8,
        "hidden_layer_sizes": (4,),
        "normalize": True,
        "layer": "vmf_mixture",
        "layer_params": {"n_classes": 3, "n_prototypes": 2, "momentum": 0.9},
    }
    head = build_head(spec)
    head.reset_parameters(torch.Generator().manual_seed(0))
    head.train()
    P0 = head.layer.prototypes_.clone()
    out = head(torch.as_tensor(X))
    Z = out["z"].detach().numpy()
    loss = palm_loss(out, torch.as_tensor(y), top_k=None)
    loss.backward()
    assert torch.isfinite(loss)
    assert head.projection.linears()[0].weight.grad.abs().sum() > 0
    # brute force: Sinkhorn weights recomputed per class
    from protolearn._core._mixture import sinkhorn

    P0 = P0.numpy().reshape(3, 2, 4)
    got = head.layer.prototypes_.numpy().reshape(3, 2, 4)
    for c in range(3):
        Zc = Z[y == c]
        q = sinkhorn(Zc @ P0[c].T, 0.05, n_iter=3)
        q = q / q.sum(1, keepdims=True)
        for k in range(2):
            u = (q[:, k] @ Zc) / q[:, k].sum()
            p = 0.9 * P0[c, k] + 0.1 * u
            assert_allclose(got[c, k], p / np.linalg.norm(p), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not DATA.exists(), reason="CLINC150 embeddings not present")
def test_matches_or_beats_shallow_detector_on_clinc150():
    """40 intents x 40 training rows (seeded); their 1,200 test rows against the
    1,000 out-of-scope test rows.  The learned space scores at least as well as the
    shallow detector on the input space (measured: 0.9870 vs 0.9854) and above 0.985."""
    d = np.load(DATA)
    X, y, split = d["X"].astype(np.float32), d["y"], d["split"]
    rng = np.random.default_rng(0)
    intents = rng.choice(150, 40, replace=False)
    rows = np.flatnonzero((split == "train") & np.isin(y, intents))
    tr = np.concatenate(
        [rng.choice(rows[y[rows] == c], 40, replace=False) for c in intents]
    )
    ev = (split == "test") & (np.isin(y, intents) | (y == -1))
    shallow = PrototypeMixtureDetector(n_prototypes=3, random_state=0).fit(X[tr], y[tr])
    deep = DeepPrototypeMixtureDetector(random_state=0).fit(X[tr], y[tr])
    auc_shallow = roc_auc_score(y[ev] >= 0, shallow.score_samples(X[ev]))
    auc_deep = roc_auc_score(y[ev] >= 0, deep.score_samples(X[ev]))
    assert auc_deep >= auc_shallow
    assert auc_deep > 0.985


def test_warm_start_continues_training():
    X, y = blobs()
    det = DeepPrototypeMixtureDetector(random_state=0, **FAST).fit(X, y)
    before = det.prototypes_.copy()
    det.set_params(warm_start=True).fit(X, y)
    assert det.n_iter_ == 10 and len(det.loss_curve_) == 10
    assert not np.array_equal(det.prototypes_, before)
