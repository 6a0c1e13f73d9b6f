"""The numpy / torch contract (CONVENTIONS section 4) beyond the estimators' predict
methods: batched functions and ``_core`` helpers given tensors (autograd, float16,
on a device), ``explain`` given tensors, and no implicit tensor -> numpy conversion (the
conversion that fails for CUDA tensors) anywhere on the tensor paths.

Without a GPU, "on a device" is simulated: ``torch.Tensor.__array__`` raises as it does
for a CUDA tensor, so ``np.asarray(t)``, ``np.log(t)``, ``t + ndarray`` or scikit-learn's
``column_or_1d(t)`` fail here as they would on a GPU.  The ``cuda`` tests run the same
calls on a real device when there is one.
"""

import warnings

import numpy as np
import pytest
from _estimators import FAST_PARAMS
from _inputs import numeric_estimators
from sklearn.datasets import load_iris

from protolearn import _core
from protolearn.model_selection import (
    EpisodeSplit,
    evaluate_episodes,
    sample_episodes,
    split_classes,
)
from protolearn.transductive import (
    LaplacianFewShotClassifier,
    laplacian_fewshot_episodes,
)

torch = pytest.importorskip("torch")

FAST = FAST_PARAMS
METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "score_samples",
    "certified_radius",
    "transform",
)


@pytest.fixture
def no_implicit_numpy(monkeypatch):
    """Make tensors refuse implicit conversion to numpy, as CUDA tensors do."""

    def refuse(self, *args, **kwargs):
        raise TypeError(
            "implicit tensor -> numpy conversion (fails for a CUDA tensor); use "
            ".cpu().numpy()"
        )

    monkeypatch.setattr(torch.Tensor, "__array__", refuse)


def _np(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _iris():
    X, y = load_iris(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(y))
    return X[order].astype(np.float32), y[order]


def _fit(name, cls, X, y):
    est = cls(**FAST.get(name, {}))
    if name == "LaplacianKMeans":
        return est.fit(X)
    if name == "LaplacianFewShotClassifier":
        y = np.where(np.arange(len(y)) % 3 == 0, -1, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _episode_data(rng, n_tasks=4, n_shot=2, n_query=10, d=8):
    centers = rng.normal(size=(3, d))

    def draw(n):
        y = np.tile(np.repeat(np.arange(3), n), (n_tasks, 1))
        X = centers[y] + 0.3 * rng.normal(size=(n_tasks, 3 * n, d))
        return X.astype(np.float32), y

    S, s_lab = draw(n_shot)
    Q, _ = draw(n_query)
    return S, s_lab, Q


# ------------------------------------------------------------------ estimators


@pytest.mark.parametrize(
    "name, cls", numeric_estimators(), ids=[n for n, _ in numeric_estimators()]
)
def test_estimator_tensor_paths_never_convert_implicitly(name, cls, no_implicit_numpy):
    """fit on a tensor == fit on numpy; every method given a tensor returns the same
    values as a tensor, without converting the tensor implicitly (a CUDA failure)."""
    X, y = _iris()
    Xt = torch.from_numpy(X)
    ref = _fit(name, cls, X, y)
    est = _fit(name, cls, Xt.clone().requires_grad_(True), y)
    for method in METHODS:
        if not hasattr(ref, method):
            continue
        want = getattr(ref, method)(X)
        got = getattr(est, method)(Xt.clone().requires_grad_(True))
        if want.dtype.kind in "US":
            assert isinstance(got, np.ndarray)
        else:
            assert isinstance(got, torch.Tensor), method
            assert str(got.dtype) == f"torch.{want.dtype}", method
        # float32 rounding of the two libraries' products: a few ulps of the
        # largest intermediate (the vMF logits are ~kappa, in the hundreds)
        scale = float(np.abs(want).max()) if want.dtype.kind == "f" else 0.0
        np.testing.assert_allclose(
            _np(got), want, rtol=1e-4, atol=1e-4 * max(1.0, scale)
        )


@pytest.mark.parametrize(
    "name",
    ["NearestPrototypeClassifier", "GLVQClassifier", "GMLVQClassifier",
     "RBFClassifier", "CBCClassifier"],
)  # fmt: skip
def test_explain_returns_tensors_for_tensors(name):
    """explain(tensor): the same explanation, numeric entries as tensors on X's
    device (it used to return numpy arrays only)."""
    cls = dict(numeric_estimators())[name]
    X, y = _iris()
    est = _fit(name, cls, X, y)
    want = est.explain(X[:7])
    got = est.explain(torch.from_numpy(X[:7]).requires_grad_(True))
    assert set(got) == set(want)
    for key, value in want.items():
        assert isinstance(got[key], torch.Tensor), key
        assert got[key].device.type == "cpu"
        np.testing.assert_array_equal(_np(got[key]), value)
    assert all(isinstance(v, np.ndarray) for v in want.values())  # numpy in: numpy


def test_explain_string_labels_stay_numpy():
    from protolearn.classification import NearestPrototypeClassifier

    X, y = _iris()
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = NearestPrototypeClassifier(random_state=0).fit(X, names)
    e = clf.explain(torch.from_numpy(X[:5]))
    assert isinstance(e.prototype_label, np.ndarray)
    assert e.prototype_label.dtype.kind == "U"
    assert isinstance(e.prototype_distance, torch.Tensor)


# -------------------------------------------------------- batched transductive


@pytest.mark.parametrize("preprocessing", ["cl2n", None, "l2n"])
def test_laplacian_episodes_accept_tensors_that_require_grad(rng, preprocessing):
    """The default preprocessing ("cl2n") centred into an ``out=`` buffer, which
    autograd refuses: tensors that require grad raised a RuntimeError."""
    S, s_lab, Q = _episode_data(rng)
    want = laplacian_fewshot_episodes(S, s_lab, Q, preprocessing=preprocessing)
    St = torch.from_numpy(S).requires_grad_(True)
    Qt = torch.from_numpy(Q).requires_grad_(True)
    got = laplacian_fewshot_episodes(St, s_lab, Qt, preprocessing=preprocessing)
    assert isinstance(got.labels, torch.Tensor)
    assert got.label_distributions.dtype == torch.float32
    assert not got.label_distributions.requires_grad
    np.testing.assert_array_equal(_np(got.labels), want.labels)
    np.testing.assert_allclose(
        _np(got.label_distributions), want.label_distributions, atol=1e-5
    )


def test_evaluate_episodes_batched_on_a_tensor_that_requires_grad(rng):
    X, y = _iris()
    episodes = sample_episodes(
        y, n_way=3, n_shot=2, n_query=5, n_episodes=6, random_state=0
    )
    clf = LaplacianFewShotClassifier(max_iter=20)
    want = evaluate_episodes(clf, X, episodes, transductive=True, batched=True)
    got = evaluate_episodes(
        clf,
        torch.from_numpy(X).requires_grad_(True),
        episodes,
        transductive=True,
        batched=True,
    )
    np.testing.assert_array_equal(got.scores, want.scores)


def test_laplacian_episodes_never_convert_implicitly(rng, no_implicit_numpy):
    S, s_lab, Q = _episode_data(rng)
    got = laplacian_fewshot_episodes(
        torch.from_numpy(S),
        torch.from_numpy(s_lab),
        torch.from_numpy(Q),
        rectify=True,
        balance="auto",
        center=torch.zeros(S.shape[2]),
    )
    want = laplacian_fewshot_episodes(
        S, s_lab, Q, rectify=True, balance="auto", center=np.zeros(S.shape[2])
    )
    assert isinstance(got.prototypes, torch.Tensor)
    np.testing.assert_array_equal(_np(got.labels), want.labels)


# ------------------------------------------------------------------ _core


def test_fit_gaussian_and_shrunk_precision_cholesky_take_tensors(rng):
    """They called ``covariance.copy()``, which tensors do not have."""
    X = rng.normal(size=(50, 4)).astype(np.float32)
    want = _core.fit_gaussian(X, 0.2)
    got = _core.fit_gaussian(torch.from_numpy(X).requires_grad_(True), 0.2)
    for w, g in zip(want[:3], got[:3]):
        assert isinstance(g, torch.Tensor) and g.dtype == torch.float32
        np.testing.assert_allclose(_np(g), w, rtol=1e-5, atol=1e-6)
    assert got[3] == want[3]
    S = np.cov(X.T).astype(np.float32)
    St = torch.from_numpy(S.copy())
    L, s = _core.shrunk_precision_cholesky(St, 50, "auto")
    L_np, s_np = _core.shrunk_precision_cholesky(S, 50, "auto")
    assert isinstance(L, torch.Tensor) and s == s_np
    np.testing.assert_allclose(_np(L), L_np, rtol=1e-5)
    np.testing.assert_array_equal(_np(St), S)  # the input is not modified


@pytest.mark.parametrize("mode", ["plain", "requires_grad", "float16"])
def test_fit_vmf_mixtures_takes_tensors(rng, mode):
    """``np.asarray(X)`` failed for tensors that require grad (and on a GPU), and
    float16 rows reached scipy.sparse, which has no float16."""
    X = rng.normal(size=(60, 5)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    want = _core.fit_vmf_mixtures(X, y, 3, 2, random_state=0)
    Xt = torch.from_numpy(X)
    if mode == "requires_grad":
        Xt.requires_grad_(True)
    elif mode == "float16":
        Xt = Xt.half()
        want = _core.fit_vmf_mixtures(
            X.astype(np.float16).astype(np.float32), y, 3, 2, random_state=0
        )
    got = _core.fit_vmf_mixtures(Xt, torch.from_numpy(y), 3, 2, random_state=0)
    assert got.means.dtype == np.float32
    np.testing.assert_allclose(got.means, want.means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.weights, want.weights)


def test_fit_vmf_mixtures_never_converts_implicitly(rng, no_implicit_numpy):
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = np.repeat(np.arange(2), 20)
    want = _core.fit_vmf_mixtures(X, y, 2, 2, random_state=0)
    got = _core.fit_vmf_mixtures(torch.from_numpy(X), y, 2, 2, random_state=0)
    np.testing.assert_allclose(got.means, want.means, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kw", [{}, {"bandwidth": 1.0}, {"kind": "heat"}], ids=["auto", "given", "heat"]
)
def test_batched_knn_affinity_gram_that_requires_grad(rng, kw):
    """The CPU fast paths called ``.numpy()`` on the ranking scores, which fails when
    the Gram matrix requires grad."""
    X = rng.normal(size=(2, 12, 4)).astype(np.float32)
    G = X @ X.transpose(0, 2, 1)
    want, h_want = _core.batched_knn_affinity(X, 3, gram=G, **kw)
    Xt = torch.from_numpy(X).requires_grad_(True)
    got, h = _core.batched_knn_affinity(Xt, 3, gram=Xt @ Xt.transpose(1, 2), **kw)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(_np(got), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(h), h_want, rtol=1e-5)


# ----------------------------------------------------------- model_selection


def test_episode_samplers_take_label_tensors_without_implicit_conversion(
    no_implicit_numpy,
):
    """``column_or_1d(y)`` converted a label tensor implicitly (a TypeError for labels
    on a GPU)."""
    y = np.repeat(np.arange(6), 8)
    yt = torch.from_numpy(y)
    a, b = split_classes(yt, random_state=0)
    a_np, b_np = split_classes(y, random_state=0)
    np.testing.assert_array_equal(a, a_np)
    np.testing.assert_array_equal(b, b_np)
    kw = dict(n_way=3, n_shot=1, n_query=4, n_episodes=3, random_state=0)
    for got, want in zip(sample_episodes(yt, **kw), sample_episodes(y, **kw)):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    X = torch.zeros((y.size, 2))
    split = EpisodeSplit(n_way=3, n_shot=1, n_query=4, n_episodes=3, random_state=0)
    for (s, q), (s_np, q_np) in zip(
        split.split(X, yt), split.split(np.zeros((y.size, 2)), y)
    ):
        np.testing.assert_array_equal(s, s_np)
        np.testing.assert_array_equal(q, q_np)


# --------------------------------------------------------------------- CUDA


@pytest.mark.cuda
def test_cuda_end_to_end(rng):
    """On a real device: outputs stay there, and equal the CPU results."""
    dev = torch.device("cuda")
    X, y = _iris()
    Xc = torch.from_numpy(X).to(dev)
    for name, cls in numeric_estimators():
        ref = _fit(name, cls, X, y)
        est = _fit(name, cls, Xc, y)
        for method in METHODS:
            if not hasattr(ref, method):
                continue
            got = getattr(est, method)(Xc)
            if isinstance(got, torch.Tensor):
                assert got.device.type == "cuda", (name, method)
            np.testing.assert_allclose(
                _np(got), getattr(ref, method)(X), rtol=1e-3, atol=1e-4
            )
        if hasattr(est, "explain"):
            e = est.explain(Xc[:5])
            assert all(v.device.type == "cuda" for v in e.values()
                       if isinstance(v, torch.Tensor))  # fmt: skip
    S, s_lab, Q = _episode_data(rng)
    out = laplacian_fewshot_episodes(
        torch.from_numpy(S).to(dev), torch.from_numpy(s_lab).to(dev),
        torch.from_numpy(Q).to(dev),
    )  # fmt: skip
    assert out.labels.device.type == "cuda"
    yc = torch.from_numpy(np.repeat(np.arange(6), 8)).to(dev)
    assert len(sample_episodes(yc, n_way=3, n_query=4, n_episodes=2)) == 2
    vmf = _core.fit_vmf_mixtures(Xc, torch.from_numpy(y).to(dev), 3, 2, random_state=0)
    assert vmf.means.shape == (6, 4)
    L, _ = _core.shrunk_precision_cholesky(torch.cov(Xc.T), len(y), 0.1)
    assert L.device.type == "cuda"
