"""Margin fitting in ``_core/_margins.py``: the split-conformal guarantee and the optimality
of the F1 / target-recall margins against brute force."""

import itertools

import numpy as np
import pytest

from protolearn._core import _margins as M


def test_conformal_threshold_is_the_finite_sample_quantile():
    scores = np.arange(1.0, 20.0)  # n = 19
    assert M.conformal_threshold(scores, 0.1) == 2.0  # k = floor(0.1 * 20) = 2
    assert M.conformal_threshold(scores, 0.05) == 1.0  # k = 1
    assert M.conformal_threshold(scores, 0.04) == -np.inf  # k = 0: reject nothing
    with pytest.raises(ValueError, match="alpha"):
        M.conformal_threshold(scores, 1.5)


@pytest.mark.parametrize("alpha", [0.1, 0.25])
def test_conformal_coverage_by_simulation(alpha):
    # a fresh exchangeable score falls below the threshold with probability
    # floor(alpha (n + 1)) / (n + 1) <= alpha, whatever the distribution
    rng = np.random.default_rng(0)
    n, trials = 13, 20000
    S = rng.standard_exponential(size=(trials, n + 1))
    t = np.array([M.conformal_threshold(row[:n], alpha) for row in S])
    miss = np.mean(S[:, n] < t)
    exact = np.floor(alpha * (n + 1)) / (n + 1)
    assert exact <= alpha
    assert abs(miss - exact) < 4 * np.sqrt(exact * (1 - exact) / trials)


def test_grouped_conformal_thresholds():
    scores = np.r_[np.arange(19.0), np.arange(19.0) + 100, [5.0]]
    groups = np.r_[np.zeros(19, int), np.ones(19, int), [2]]
    t = M.grouped_conformal_thresholds(scores, groups, 4, 0.1)
    np.testing.assert_array_equal(t, [1.0, 101.0, -np.inf, -np.inf])


def _instances(seed, n_trials=150):
    rng = np.random.default_rng(seed)
    for _ in range(n_trials):
        n = int(rng.integers(8, 15))
        G = int(rng.integers(1, 4))
        s = np.round(rng.normal(size=n), 1)
        g = rng.integers(0, G, n)
        u = rng.random(n) < 0.4
        if u.any() and not u.all():
            yield s, g, u, G


def _all_thresholds(s, g, G):
    cands = [np.r_[-np.inf, np.unique(s[g == k]) + 1e-9, np.inf] for k in range(G)]
    return [np.array(t) for t in itertools.product(*cands)]


def test_per_class_f1_margins_are_optimal():
    for s, g, u, G in _instances(1):
        w = np.where(u, 1.7, 1.0)

        def f1(t, s=s, g=g, u=u, w=w):
            rej = s < t[g]
            tp, fp = w[rej & u].sum(), w[rej & ~u].sum()
            fn = w[~rej & u].sum()
            return 2 * tp / (2 * tp + fp + fn)

        best = max(f1(t) for t in _all_thresholds(s, g, G))
        per = M.fit_margins(s, g, u, G, unknown_weight=1.7, shrinkage=0.0)
        assert f1(per) == pytest.approx(best, abs=1e-12)
        glob = M.fit_margins(s, g, u, G, unknown_weight=1.7, per_group=False)
        assert np.ptp(glob) == 0
        best_global = max(f1(np.full(G, t)) for t in np.r_[-np.inf, s + 1e-9])
        assert f1(glob) == pytest.approx(best_global, abs=1e-12)
        # full shrinkage gives back the global margin
        full = M.fit_margins(s, g, u, G, unknown_weight=1.7, shrinkage=1.0)
        assert f1(full) == pytest.approx(f1(glob), abs=1e-12)


def test_per_class_recall_margins_are_optimal():
    target = 0.8
    for s, g, u, G in _instances(2):
        allowed = (1 - target) * np.sum(~u)

        def rejected(t, s=s, g=g, u=u):
            rej = s < t[g]
            return np.sum(rej & u), np.sum(rej & ~u)

        best = max(
            rejected(t)[0]
            for t in _all_thresholds(s, g, G)
            if rejected(t)[1] <= allowed + 1e-9
        )
        per = M.fit_margins(s, g, u, G, target_recall=target, shrinkage=0.0)
        ru, rk = rejected(per)
        assert rk <= allowed + 1e-9
        assert ru == best


def test_fit_margins_errors():
    s = np.arange(5.0)
    with pytest.raises(ValueError, match="negatives"):
        M.fit_margins(s, np.zeros(5, int), np.zeros(5, bool), 1)
    with pytest.raises(ValueError, match="in-class"):
        M.fit_margins(s, np.zeros(5, int), np.ones(5, bool), 1)


def test_cross_fit_folds_partition():
    y = np.repeat(np.arange(6), 7)
    folds, sample_fold = M.cross_fit_folds(
        y, 6, 3, hold_out_classes=True, random_state=0
    )
    seen_heldout, seen_pseudo = [], []
    for train, heldout, pseudo, known in folds:
        assert not set(train) & set(heldout) and not set(train) & set(pseudo)
        assert set(np.unique(y[train])) == set(known)  # every known class trains
        assert not set(y[pseudo]) & set(known)
        seen_heldout.extend(heldout)
        seen_pseudo.extend(pseudo)
    assert sorted(seen_pseudo) == list(range(y.size))  # each row is a negative once
    assert len(seen_heldout) == len(set(seen_heldout))  # and held out at most once
    folds, _ = M.cross_fit_folds(y, 6, 3, hold_out_classes=False, random_state=0)
    assert sum(h.size for _, h, _, _ in folds) == y.size
    assert all(p.size == 0 for _, _, p, _ in folds)
