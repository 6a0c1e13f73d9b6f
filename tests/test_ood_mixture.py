"""PrototypeMixtureDetector: EM, the vMF density against brute force, CLINC150 quality."""

import warnings

import numpy as np
import pytest
from scipy.special import ive, logsumexp
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning

from protolearn._core import _mixture
from protolearn.metrics import auroc
from protolearn.ood import MahalanobisDetector, PrototypeMixtureDetector


def _sphere_blobs(rng, n_classes=3, per_class=60, modes=3, d=10, spread=0.25):
    """Classes made of several directional modes each (a vMF mixture per class)."""
    X, y = [], []
    for c in range(n_classes):
        centres = rng.normal(size=(modes, d))
        for m in range(modes):
            k = per_class // modes
            X.append(centres[m] + spread * rng.normal(size=(k, d)) * np.sqrt(d) / 3)
            y.append(np.full(k, c))
    X = np.concatenate(X)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float64), np.r_[
        tuple(y)
    ]


def _log_c(d, kappa):
    """vMF log normaliser straight from its definition (scipy's scaled Bessel)."""
    nu = d / 2 - 1
    return (
        nu * np.log(kappa)
        - d / 2 * np.log(2 * np.pi)
        - (np.log(ive(nu, kappa)) + kappa)
    )


def _brute_log_density(X, P, w, kappa):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    log_c = np.array([_log_c(X.shape[1], k) for k in kappa])
    return logsumexp(kappa * (Xn @ P.T) + np.log(w) + log_c, axis=1)


def _class_loglik(X, y, det, labels):
    """Mean class-conditional log-likelihood sum_i log sum_{j in class y_i} ... (full)."""
    kappa = 1 / det.temperature
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    total = 0.0
    for c in labels:
        cols = det.prototype_labels_ == c
        w = det.weights_[cols] / det.weights_[cols].sum()
        logits = kappa * Xn[y == c] @ det.prototypes_[cols].T + np.log(w)
        total += logsumexp(logits, axis=1).sum()
    return total / X.shape[0] + _log_c(X.shape[1], kappa)


# ----------------------------------------------------------------- the density


def test_vmf_normalizer_closed_form_d3():
    # On the 2-sphere C_3(kappa) = kappa / (4 pi sinh kappa).
    for kappa in (0.5, 3.0, 20.0):
        expected = np.log(kappa / (4 * np.pi * np.sinh(kappa)))
        assert _mixture.vmf_log_normalizer(3, kappa) == pytest.approx(expected, 1e-10)


def test_vmf_normalizer_asymptotic_branch_matches_bessel():
    # 384-d at kappa=20: scipy's ive is still a normal float, so both branches apply.
    direct = _log_c(384, 20.0)
    nu = 384 / 2 - 1
    debye = (
        nu * np.log(20.0)
        - 192 * np.log(2 * np.pi)
        - _mixture._log_bessel_iv_uniform(nu, 20.0)
    )
    assert debye == pytest.approx(direct, rel=1e-9)
    # Where ive underflows (768-d, kappa=1) the result stays finite.
    assert np.isfinite(_mixture.vmf_log_normalizer(768, 1.0))


@pytest.mark.parametrize("temperature", ["auto", 0.1])
def test_score_samples_equals_bruteforce_mixture(rng, temperature):
    X, y = _sphere_blobs(rng)
    det = PrototypeMixtureDetector(
        n_prototypes=3, temperature=temperature, random_state=0
    ).fit(X, y)
    if temperature == "auto":
        kappa = det.concentrations_
        assert np.unique(kappa).size == kappa.size  # one per prototype
    else:
        kappa = np.full(9, 10.0)
        np.testing.assert_array_equal(det.concentrations_, kappa)
    X_new = rng.normal(size=(40, X.shape[1]))
    expected = _brute_log_density(X_new, det.prototypes_, det.weights_, kappa)
    np.testing.assert_allclose(det.score_samples(X_new), expected, rtol=1e-10)
    np.testing.assert_allclose(
        det.decision_function(X_new), expected - det.offset_, rtol=1e-10
    )
    assert det.weights_.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.linalg.norm(det.prototypes_, axis=1), 1.0)
    # prototypes are grouped by class in sorted label order
    np.testing.assert_array_equal(det.prototype_labels_, np.repeat([0, 1, 2], 3))


def test_other_scores_equal_bruteforce(rng):
    X, y = _sphere_blobs(rng)
    Xq = rng.normal(size=(30, X.shape[1]))
    Xqn = Xq / np.linalg.norm(Xq, axis=1, keepdims=True)
    common = dict(n_prototypes=3, top_k=2, random_state=0)
    det = PrototypeMixtureDetector(score_type="max_similarity", **common).fit(X, y)
    S = Xqn @ det.prototypes_.T
    np.testing.assert_allclose(det.score_samples(Xq), S.max(1), atol=1e-12)
    det = PrototypeMixtureDetector(score_type="knn", **common).fit(X, y)
    S = Xqn @ det.prototypes_.T
    np.testing.assert_allclose(
        det.score_samples(Xq), np.sort(S, axis=1)[:, -2], atol=1e-12
    )
    # "ssd" is PALM's reported score: SSD+ on normalised features
    det = PrototypeMixtureDetector(score_type="ssd", **common).fit(X, y)
    ref = MahalanobisDetector(method="agnostic", normalize=True).fit(X)
    np.testing.assert_allclose(det.score_samples(Xq), ref.score_samples(Xq))


def test_chunked_scoring_equals_unchunked(rng):
    X, y = _sphere_blobs(rng)
    X = X.astype(np.float32)
    Xq = rng.normal(size=(101, X.shape[1])).astype(np.float32)
    for score_type in ("mixture", "max_similarity", "ssd"):
        det = PrototypeMixtureDetector(
            n_prototypes=3, score_type=score_type, random_state=0
        ).fit(X, y)
        full = det.score_samples(Xq)
        with config_context(working_memory=0.002):  # a few rows per chunk
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no "row too big" fallback warning
                chunked = det.score_samples(Xq)
        assert chunked.dtype == np.float32
        np.testing.assert_allclose(chunked, full, rtol=1e-6, atol=1e-5)


# ------------------------------------------------------------------------- EM


def test_em_is_monotone_exact_em(rng):
    """Full EM (no pruning, no balancing): the log-likelihood never decreases."""
    X, y = _sphere_blobs(rng, spread=0.4)
    params = dict(
        n_prototypes=4, top_k=None, balance=False, temperature=0.2, init="random"
    )
    values = []
    for t in range(1, 9):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            det = PrototypeMixtureDetector(
                max_iter=t, tol=0, random_state=0, **params
            ).fit(X, y)
        values.append(_class_loglik(X, y, det, [0, 1, 2]))
        # the objective it reports at its parameters is this log-likelihood
        assert det.lower_bounds_[-1] == pytest.approx(values[-1], rel=1e-10)
    diffs = np.diff(values)
    assert np.all(diffs >= -1e-10), diffs
    assert values[-1] > values[0] + 1e-3  # it actually moved
    assert np.all(np.diff(det.lower_bounds_) >= -1e-10)


def test_em_is_monotone_truncated(rng):
    """Top-k pruned EM (truncated EM): its lower bound never decreases."""
    X, y = _sphere_blobs(rng, spread=0.4)
    X = np.r_[X, -X]  # one class in two antipodal halves: plenty to move
    det = PrototypeMixtureDetector(
        n_prototypes=6,
        top_k=2,
        balance=False,
        temperature=0.2,
        init="random",
        tol=0,
        max_iter=30,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        det.fit(X)
    lb = det.lower_bounds_
    assert lb.size == 31
    assert np.all(np.diff(lb) >= -1e-9), np.diff(lb)
    assert lb[-1] > lb[0]


def test_sinkhorn_balances_prototypes(rng):
    S = rng.normal(size=(2, 50, 4))
    S[:, :, 0] += 3  # prototype 0 is everybody's favourite
    valid = np.ones((2, 50), dtype=bool)
    valid[1, 40:] = False
    Q = _mixture.sinkhorn(S, epsilon=0.5, n_iter=50, row_mask=valid)
    np.testing.assert_allclose(Q.sum(-1)[valid], 1.0)
    assert np.all(Q[1, 40:] == 0)
    # every prototype receives the same mass (up to the last row normalisation)
    np.testing.assert_allclose(Q[0].sum(0), 50 / 4, rtol=1e-3)
    np.testing.assert_allclose(Q[1].sum(0), 40 / 4, rtol=1e-3)
    posterior = np.exp(S[0] / 0.5) / np.exp(S[0] / 0.5).sum(1, keepdims=True)
    assert posterior.sum(0)[0] > 2 * Q[0].sum(0)[0]


def test_balanced_em_uses_every_prototype(rng):
    X, y = _sphere_blobs(rng, n_classes=2, per_class=90)
    det = PrototypeMixtureDetector(n_prototypes=5, random_state=0).fit(X, y)
    assert det.converged_ and det.n_iter_ >= 1
    w = det.weights_.reshape(2, 5) / det.weights_.reshape(2, 5).sum(1, keepdims=True)
    assert w.min() > 0.05


def test_small_epsilon_float32_keeps_every_sample(rng):
    """Sinkhorn with a small epsilon in float32: no sample's assignment underflows."""
    X, y = _sphere_blobs(rng, n_classes=2, per_class=90, spread=0.6)
    dets = [
        PrototypeMixtureDetector(n_prototypes=3, epsilon=2e-3, random_state=0).fit(
            X.astype(dtype), y
        )
        for dtype in (np.float32, np.float64)
    ]
    for det in dets:
        assert det.weights_.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(dets[0].weights_, dets[1].weights_, atol=1e-3)


def test_antipodal_class_single_prototype_is_unit(rng):
    """A class whose samples sum to zero still gets a unit-norm prototype."""
    X = np.r_[np.eye(5), -np.eye(5)]
    for score_type in ("mixture", "max_similarity"):
        det = PrototypeMixtureDetector(
            n_prototypes=1, score_type=score_type, random_state=0
        ).fit(X)
        np.testing.assert_allclose(np.linalg.norm(det.prototypes_, axis=1), 1.0)
    # max_similarity is the cosine to a training sample: 1 for it, not 0 for all
    assert det.score_samples(X).max() == pytest.approx(1.0)


def test_convergence_warning(rng):
    X, y = _sphere_blobs(rng)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        det = PrototypeMixtureDetector(
            n_prototypes=3, max_iter=1, tol=0, random_state=0
        ).fit(X, y)
    assert not det.converged_ and det.n_iter_ == 1


def test_unlabelled_fit_and_init_options(rng):
    X, _ = _sphere_blobs(rng)
    for init in ("k-means++", "kmeans", "random"):
        det = PrototypeMixtureDetector(n_prototypes=7, init=init, random_state=0)
        det.fit(X)
        assert det.prototypes_.shape == (7, X.shape[1])
        np.testing.assert_array_equal(det.prototype_labels_, np.zeros(7, int))
        assert det.weights_.sum() == pytest.approx(1.0)
        # in-distribution directions score above their antipodes
        assert np.mean(det.score_samples(X) > det.score_samples(-X)) > 0.95


def test_string_labels_and_determinism(rng):
    X, y = _sphere_blobs(rng)
    names = np.array(["a", "b", "c"])[y]
    a = PrototypeMixtureDetector(n_prototypes=2, random_state=3).fit(X, names)
    b = PrototypeMixtureDetector(n_prototypes=2, random_state=3).fit(X, names)
    np.testing.assert_array_equal(a.prototype_labels_, np.repeat(["a", "b", "c"], 2))
    np.testing.assert_array_equal(a.prototypes_, b.prototypes_)


# ------------------------------------------------------- detector conventions


@pytest.mark.parametrize("contamination", ["auto", 0.1, 0.25])
def test_contamination_sets_training_outlier_share(rng, contamination):
    X, y = _sphere_blobs(rng, per_class=120)
    det = PrototypeMixtureDetector(
        n_prototypes=2, contamination=contamination, random_state=0
    ).fit(X, y)
    share = 0.05 if contamination == "auto" else contamination
    pred = det.predict(X)
    assert pred.dtype.kind == "i" and set(np.unique(pred)) == {-1, 1}
    assert np.mean(pred == -1) == pytest.approx(share, abs=1 / X.shape[0])
    np.testing.assert_array_equal(pred, np.where(det.decision_function(X) < 0, -1, 1))


def test_bad_input_raises(rng):
    X, y = _sphere_blobs(rng)
    det = PrototypeMixtureDetector(n_prototypes=61)
    with pytest.raises(ValueError, match="at least as many samples as n_prototypes"):
        det.fit(X, y)
    # the message names the labels as the user wrote them (not np.str_('b'))
    with pytest.raises(ValueError, match="'b' has 1 < 2. Lower n_prototypes"):
        PrototypeMixtureDetector(n_prototypes=2).fit(X[:7], np.array(["a"] * 6 + ["b"]))
    # score_type="ssd" on identical (normalised) samples: a zero covariance
    with pytest.raises(ValueError, match="all samples are identical after L2"):
        PrototypeMixtureDetector(n_prototypes=1, score_type="ssd").fit(
            X[:1] * np.arange(1, 9)[:, None]
        )
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PrototypeMixtureDetector(n_prototypes=2).fit(X_nan, y)
    with pytest.raises(ValueError, match="1 sample"):
        PrototypeMixtureDetector(n_prototypes=1).fit(X[:1])
    fitted = PrototypeMixtureDetector(n_prototypes=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fitted.score_samples(X[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        PrototypeMixtureDetector(temperature=0).fit(X, y)
    with pytest.raises(ValueError, match="contamination"):
        PrototypeMixtureDetector(contamination=0.7).fit(X, y)


def test_torch_tensors_stay_on_device(rng):
    torch = pytest.importorskip("torch")
    X, y = _sphere_blobs(rng)
    X = X.astype(np.float32)
    Xq = rng.normal(size=(25, X.shape[1])).astype(np.float32)
    for score_type in ("mixture", "max_similarity", "knn", "ssd"):
        det = PrototypeMixtureDetector(
            n_prototypes=3, score_type=score_type, random_state=0
        )
        det.fit(torch.from_numpy(X), torch.from_numpy(y))
        ref = PrototypeMixtureDetector(
            n_prototypes=3, score_type=score_type, random_state=0
        ).fit(X, y)
        s = det.score_samples(torch.from_numpy(Xq))
        assert isinstance(s, torch.Tensor) and s.device.type == "cpu"
        assert s.dtype == torch.float32
        np.testing.assert_allclose(
            s.numpy(), ref.score_samples(Xq), rtol=1e-5, atol=1e-6
        )
        p = det.predict(torch.from_numpy(Xq))
        assert isinstance(p, torch.Tensor) and p.dtype == torch.int64
        np.testing.assert_array_equal(p.numpy(), ref.predict(Xq))


@pytest.mark.cuda
def test_cuda_tensors_stay_on_device(rng):
    torch = pytest.importorskip("torch")
    X, y = _sphere_blobs(rng)
    det = PrototypeMixtureDetector(n_prototypes=3, random_state=0).fit(X, y)
    Xq = torch.from_numpy(X).cuda()
    s = det.score_samples(Xq)
    assert s.device.type == "cuda"
    np.testing.assert_allclose(s.cpu().numpy(), det.score_samples(X), rtol=1e-6)
    assert det.predict(Xq).device.type == "cuda"


# ---------------------------------------------------------------- real data


def test_clinc150_beats_one_prototype_and_mahalanobis(clinc150):
    """Fit on in-scope train; in-scope test vs out-of-scope test."""
    d = clinc150
    is_in = (d["y_test"] >= 0).astype(int)

    def test_auroc(det, y):
        det.fit(d["X_train_in"], y)
        return auroc(is_in, det.score_samples(d["X_test"]))

    ours = test_auroc(PrototypeMixtureDetector(random_state=0), d["y_train_in"])
    one = test_auroc(
        PrototypeMixtureDetector(n_prototypes=1, random_state=0), d["y_train_in"]
    )
    maha = test_auroc(MahalanobisDetector(), d["y_train_in"])
    assert ours > 0.97
    assert ours > one + 0.002
    assert ours > maha + 0.01
