"""The class-balanced bound step (``balance="equal"``) and its automatic per-episode
choice (``balance="auto"``): a brute-force dual reference, feasibility, a monotone
objective, accuracy on CLINC150 episodes, numpy/torch, the estimator path."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from protolearn._core import _balanced, _knn_graph
from protolearn.model_selection import sample_episodes, split_classes
from protolearn.transductive import (
    LaplacianFewShotClassifier,
    laplacian_fewshot_episodes,
)


def _reference_balanced(L, free, r):
    """The entropic projection by minimising its convex dual with scipy (float64)."""
    rows = L[free]

    def dual(g):
        Z = rows + g
        return logsumexp(Z, axis=1).sum() - r @ g, softmax(Z, axis=1).sum(0) - r

    g = minimize(dual, np.zeros(L.shape[1]), jac=True, method="BFGS",
                 options={"gtol": 1e-12, "maxiter": 10_000}).x  # fmt: skip
    return softmax(L + g, axis=1)


@pytest.mark.parametrize("scale", [1.0, 30.0, 300.0])
def test_balanced_softmax_matches_dual_reference(rng, scale):
    # scale 300: logits far steeper than exp can hold in float32 or float64 without
    # the log domain (differences of hundreds); the masses must still be met
    T, n, K = 3, 14, 4
    L = scale * rng.normal(size=(T, n, K))
    fixed = np.zeros((T, n), dtype=bool)
    fixed[:, :3] = True  # e.g. supports: excluded from the class masses
    r = rng.dirichlet(np.ones(K) * 3, size=T) * (n - 3)
    Y, g = _balanced.balanced_softmax(L, (~fixed)[:, :, None].astype(float), r)
    assert np.all(np.isfinite(Y)) and g.shape == (T, K)
    np.testing.assert_allclose(Y.sum(2), 1, atol=1e-12)
    mass = (Y * ~fixed[:, :, None]).sum(1)
    assert np.abs(mass - r).max() <= 2 * _balanced.BALANCE_TOL * r.max()
    for t in range(T):
        ref = _reference_balanced(L[t], ~fixed[t], r[t])
        np.testing.assert_allclose(Y[t][~fixed[t]], ref[~fixed[t]], atol=5e-3)
    # the plain softmax is the special case whose masses are already met
    P = softmax(L, axis=2)
    Y2, _ = _balanced.balanced_softmax(L, np.ones((T, n, 1)), P.sum(1))
    np.testing.assert_allclose(Y2, P, atol=1e-10)


def test_balanced_softmax_tasks_stop_on_their_own(rng):
    # tasks of very different steepness need different numbers of Newton steps and
    # halvings; each stops on its own error, so the batch gives every task exactly
    # what it gets alone (numpy and torch alike)
    T, n, K = 6, 20, 5
    L = rng.normal(size=(T, n, K)) * np.array([0.1, 1, 5, 30, 100, 300])[:, None, None]
    free = np.ones((T, n, 1))
    free[:, :K] = 0
    r = rng.dirichlet(np.ones(K), size=T) * (n - K)
    Y, g = _balanced.balanced_softmax(L, free, r)
    for t in range(T):
        Yt, gt = _balanced.balanced_softmax(L[t : t + 1], free[t : t + 1], r[t : t + 1])
        np.testing.assert_allclose(Y[t], Yt[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g[t], gt[0], rtol=1e-12, atol=1e-12)
    torch = pytest.importorskip("torch")
    Yt, gt = _balanced.balanced_softmax(*(torch.from_numpy(a) for a in (L, free, r)))
    assert isinstance(Yt, torch.Tensor) and Yt.dtype == torch.float64
    np.testing.assert_allclose(Yt.numpy(), Y, atol=1e-9)
    np.testing.assert_allclose(gt.numpy(), g, atol=1e-6)
    # the masses are met for every task, steep or flat
    mass = (Y * free).sum(1)
    assert np.abs(mass - r).max() <= 2 * _balanced.BALANCE_TOL * r.max()


@pytest.fixture(scope="module")
def clinc_test_pool(clinc150):
    # test-split rows of the test classes only (nothing here was used for tuning)
    _, test_cls = split_classes(clinc150["y_train_in"], random_state=0)
    m = np.isin(clinc150["y_test_in"], test_cls)
    return clinc150["X_test_in"][m], clinc150["y_test_in"][m], clinc150["X_train_in"]


def _episodes(X, y, n_shot, imbalance, n, seed):
    eps = sample_episodes(y, n_way=5, n_shot=n_shot, n_query=15, n_episodes=n,
                          imbalance=imbalance, random_state=seed)  # fmt: skip

    def index(e, labels):
        return np.argmax(labels[:, None] == e.classes[None, :], axis=1)

    return (
        np.stack([X[e.support_index] for e in eps]),
        np.stack([index(e, e.support_labels) for e in eps]),
        np.stack([X[e.query_index] for e in eps]),
        np.stack([index(e, e.query_labels) for e in eps]),
    )


def test_equal_solution_is_balanced_and_objective_non_increasing(clinc_test_pool):
    X, y, _ = clinc_test_pool
    S, s_lab, Q, _ = _episodes(X.astype(np.float64), y, 1, None, 30, 3)
    for params in ({}, dict(lam=1.5, n_neighbors=5, temperature=0.05)):
        out = laplacian_fewshot_episodes(S, s_lab, Q, balance="equal", **params)
        assert out.balanced.all()
        mass = out.label_distributions.sum(1)  # (T, K) over the 75 queries
        np.testing.assert_allclose(mass, 15, rtol=2 * _balanced.BALANCE_TOL)
        for hist in out.objective:
            E = hist[~np.isnan(hist)]
            assert E.size >= 2
            assert np.all(np.diff(E) <= 1e-9 * np.abs(E[:-1])), params


@pytest.mark.parametrize(
    "n_shot, imbalance, gain",
    [
        # measured on these 300 test-pool episodes with the defaults and the base-class
        # mean as centre (accuracy points, auto - none): +0.73, -0.19, +0.34, 0.00;
        # equal alone: +0.97, -22.6, +0.53, -19.8
        (1, None, 0.005),
        (1, 2.0, -0.004),
        (5, None, 0.002),
        (5, 2.0, -0.002),
    ],
)
def test_auto_balance_on_clinc150(clinc_test_pool, n_shot, imbalance, gain):
    X, y, X_base = clinc_test_pool
    S, s_lab, Q, q_lab = _episodes(X, y, n_shot, imbalance, 300, 0)
    kw = dict(center=X_base.mean(0))
    free = laplacian_fewshot_episodes(S, s_lab, Q, **kw)
    auto = laplacian_fewshot_episodes(S, s_lab, Q, balance="auto", **kw)
    acc_free = float((free.labels == q_lab).mean())
    acc_auto = float((auto.labels == q_lab).mean())
    assert acc_auto >= acc_free + gain, (acc_auto, acc_free)
    # the choice follows the queries: balanced episodes mostly take the balanced
    # solution, Dirichlet(2) ones almost never
    if imbalance is None:
        assert auto.balanced.mean() > 0.8
    else:
        assert auto.balanced.mean() < 0.05
    assert not free.balanced.any()
    # every task's result is one of the two solutions, whole
    equal = laplacian_fewshot_episodes(S, s_lab, Q, balance="equal", **kw)
    pick = np.where(auto.balanced[:, None], equal.labels, free.labels)
    np.testing.assert_array_equal(auto.labels, pick)


def test_cut_fraction_matches_brute_force(rng):
    W = rng.random((2, 6, 6))
    Y = rng.random((2, 6, 3))
    lab = Y.argmax(2)
    ref = [
        sum(W[t, i, j] for i in range(6) for j in range(6) if lab[t, i] != lab[t, j])
        / W[t].sum()
        for t in range(2)
    ]
    np.testing.assert_allclose(_knn_graph.cut_fraction(W, Y), ref, rtol=1e-12)


def _toy(rng, sizes=(12, 12, 12), d=6):
    centers = rng.normal(size=(3, d))
    ys = np.arange(3)
    yq = np.repeat(np.arange(3), sizes)
    Xs = centers[ys] + 0.35 * rng.normal(size=(3, d))
    Xq = centers[yq] + 0.35 * rng.normal(size=(yq.size, d))
    return Xs, ys, Xq, yq


@pytest.mark.parametrize("balance", ["equal", "auto"])
def test_estimator_equals_batched_function(rng, balance):
    Xs, ys, Xq, yq = _toy(rng)
    X, y = np.vstack([Xs, Xq]), np.r_[ys, np.full(yq.size, -1)]
    clf = LaplacianFewShotClassifier(balance=balance).fit(X, y)
    out = laplacian_fewshot_episodes(Xs[None], ys[None], Xq[None], balance=balance)
    np.testing.assert_allclose(
        clf.label_distributions_[ys.size :], out.label_distributions[0], atol=1e-6
    )
    assert clf.balanced_ == bool(out.balanced[0])
    assert (clf.transduction_[ys.size :] == yq).mean() > 0.9
    if balance == "equal":
        np.testing.assert_allclose(clf.label_distributions_[3:].sum(0), 12, rtol=2e-3)


def test_torch_matches_numpy(rng):
    torch = pytest.importorskip("torch")
    Xs, ys, Xq, _ = _toy(rng, sizes=(20, 10, 6))
    S = np.stack([Xs, Xs + 0.01]).astype(np.float32)
    Q = np.stack([Xq, Xq[::-1]]).astype(np.float32)
    lab = np.stack([ys, ys])
    for balance in ("equal", "auto"):
        ref = laplacian_fewshot_episodes(S, lab, Q, balance=balance)
        out = laplacian_fewshot_episodes(
            torch.from_numpy(S), torch.from_numpy(lab), torch.from_numpy(Q),
            balance=balance,
        )  # fmt: skip
        assert out.label_distributions.dtype == torch.float32
        assert ref.label_distributions.dtype == np.float32
        np.testing.assert_array_equal(out.balanced, ref.balanced)
        np.testing.assert_allclose(out.label_distributions.numpy(),
                                   ref.label_distributions, atol=1e-4)  # fmt: skip


def test_bad_balance_parameters(rng):
    Xs, ys, Xq, _ = _toy(rng)
    S, lab, Q = Xs[None], ys[None], Xq[None]
    with pytest.raises(ValueError, match="balance"):
        laplacian_fewshot_episodes(S, lab, Q, balance="uniform")
    with pytest.raises(ValueError, match="balance_tol"):
        laplacian_fewshot_episodes(S, lab, Q, balance="auto", balance_tol=-0.1)
    X, y = np.vstack([Xs, Xq]), np.r_[ys, np.full(len(Xq), -1)]
    with pytest.raises(ValueError, match="balance"):
        LaplacianFewShotClassifier(balance=True).fit(X, y)
