"""RBF detections, CBC reasoning and the RBF/CBC certificate against brute force."""

import numpy as np
import pytest
import torch
from _attacks import line_search, pgd_search

from protolearn._core import _reasoning as R
from protolearn._core._robustness import (
    log_margin_to_radius,
    reasoning_log_margin,
    reasoning_radius,
)


def _setup(rng, n=20, d=3, K=6, C=3):
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(K, d))
    return X, W


def test_detections_brute_force(rng):
    X, W = _setup(rng)
    for detection, power in (("exponential", 1), ("gaussian", 2)):
        D = R.detection_probabilities(X, W, 0.7, detection)
        ref = np.array(
            [[np.exp(-(np.linalg.norm(x - w) ** power) / 0.7) for w in W] for x in X]
        )
        np.testing.assert_allclose(D, ref, rtol=1e-10)
        Dt = R.detection_probabilities(torch.from_numpy(X), W, 0.7, detection)
        assert isinstance(Dt, torch.Tensor)
        np.testing.assert_allclose(Dt.numpy(), ref, rtol=1e-8)
    with pytest.raises(ValueError, match="detection must be one of"):
        R.detection_probabilities(X, W, 1.0, "cosine")


def test_original_reasoning_decoding_and_probabilities(rng):
    C, K = 3, 6
    logits = rng.normal(size=(2, C, K))
    pos, neg, ind = R.decode_original_reasoning(logits)
    q = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(pos, q[0])
    np.testing.assert_allclose(neg, (1 - q[0]) * q[1])
    np.testing.assert_allclose(pos + neg + ind, 1)
    assert (ind >= 0).all()
    D = rng.uniform(size=(10, K))
    P = R.class_probabilities(D, pos, neg)
    # The CBC formula of Saralajew et al. (2019), one sample and class at a time.
    for i in range(10):
        for c in range(C):
            num = sum(pos[c, k] * D[i, k] + neg[c, k] * (1 - D[i, k]) for k in range(K))
            den = sum(pos[c, k] + neg[c, k] for k in range(K))
            assert P[i, c] == pytest.approx(num / den, rel=1e-12)
    assert ((P >= 0) & (P <= 1)).all()
    Pt = R.class_probabilities(
        torch.from_numpy(D), *R.decode_original_reasoning(torch.from_numpy(logits))[:2]
    )
    np.testing.assert_allclose(Pt.numpy(), P, rtol=1e-10)


def test_stable_reasoning_and_rbf_weights(rng):
    C, K = 4, 5
    logits = rng.normal(size=(C, 2 * K))
    pos, neg = R.decode_stable_reasoning(logits)
    np.testing.assert_allclose(pos.sum(1) + neg.sum(1), 1)
    e = np.exp(logits)
    np.testing.assert_allclose(pos, e[:, :K] / e.sum(1, keepdims=True))
    D = rng.uniform(size=(7, K))
    P = R.class_probabilities(D, pos, neg)
    ref = D @ pos.T + (1 - D) @ neg.T  # normaliser 1
    np.testing.assert_allclose(P, ref, rtol=1e-12)
    Wt = R.decode_rbf_weights(rng.normal(size=(C, K)))
    np.testing.assert_allclose(Wt.sum(1), 1)
    np.testing.assert_allclose(R.class_probabilities(D, Wt), D @ Wt.T, rtol=1e-12)


def test_margin_loss_reference(rng):
    S = rng.normal(size=(9, 4))
    y = rng.integers(0, 4, size=9)
    ref = [
        max(0, max(S[i, c] for c in range(4) if c != y[i]) - S[i, y[i]] + 0.3)
        for i in range(9)
    ]
    np.testing.assert_allclose(R.margin_loss(S, y, 0.3), ref)
    lt = R.margin_loss(torch.from_numpy(S), torch.from_numpy(y), 0.3)
    np.testing.assert_allclose(lt.numpy(), ref)


def _brute_log_t(D, pos, neg, y):
    """Smallest t >= 0 with max_{c != y} [upper(p_c) - lower(p_y)](t) >= 0, by bisection
    on log t (the detections of the theorem move within [d / t, d t])."""
    pos, neg = R.effective_reasoning(pos, neg)
    out = []
    for d, yi in zip(D, y):
        best = np.inf
        for c in range(pos.shape[0]):
            if c == yi:
                continue

            def gap(s, c=c, yi=yi, d=d):
                t = np.exp(s)
                up = t * d @ pos[c] + neg[c].sum() - d @ neg[c] / t
                low = d @ pos[yi] / t + neg[yi].sum() - t * d @ neg[yi]
                return up - low

            lo, hi = -30.0, 30.0
            if gap(hi) < 0:
                continue
            for _ in range(200):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
            best = min(best, hi)
        out.append(best)
    return np.array(out)


@pytest.mark.parametrize("kind", ["original", "stable", "rbf"])
def test_log_margin_matches_brute_force_root(rng, kind):
    C, K = 3, 5
    if kind == "original":
        pos, neg, _ = R.decode_original_reasoning(rng.normal(size=(2, C, K)))
    elif kind == "stable":
        pos, neg = R.decode_stable_reasoning(rng.normal(size=(C, 2 * K)))
    else:
        pos, neg = R.decode_rbf_weights(rng.normal(size=(C, K))), np.zeros((C, K))
    D = rng.uniform(0.01, 1, size=(15, K))
    P = R.class_probabilities(D, pos, neg)
    for y in (P.argmax(1), rng.integers(0, C, size=15)):
        got = reasoning_log_margin(D, pos, neg, y)
        np.testing.assert_allclose(got, _brute_log_t(D, pos, neg, y), atol=1e-9)
        # signed: non-negative exactly where y is the prediction
        assert np.all((got >= -1e-12) == (P[np.arange(15), y] >= P.max(1) - 1e-12))
        gt = reasoning_log_margin(
            torch.from_numpy(D),
            torch.from_numpy(pos),
            torch.from_numpy(neg),
            torch.from_numpy(y),
        )
        np.testing.assert_allclose(gt.numpy(), got, rtol=1e-9, atol=1e-12)
    if kind == "rbf":  # the RobustRBF special case t* = sqrt(p_y / p_c)
        y = P.argmax(1)
        Ps = np.sort(P, axis=1)
        np.testing.assert_allclose(
            reasoning_log_margin(D, pos, None, y), 0.5 * np.log(Ps[:, -1] / Ps[:, -2])
        )


def test_log_margin_has_no_cancellation_in_float32():
    # Near-saturated detections (large sigma) with the true class's mass on negative
    # reasoning: b = N_c - N_y < 0 and 4ac << b^2.  The root 2c / (b + sqrt(...))
    # cancels to 0 in float32 and gave a huge *positive* radius for a misclassified
    # sample (the robust loss exploited it: constant predictions on breast cancer).
    pos = np.array([[1.0, 0.0], [1e-27, 1e-27]])
    neg = np.array([[0.0, 1e-27], [1.0 - 2e-27, 1e-27]])
    D = np.array([[0.9999, 0.5], [0.3, 0.9999]])
    y = np.array([1, 1])
    ref = _brute_log_t(D, pos, neg, y)
    assert ref[0] < 0  # sample 0 is misclassified: its signed margin is negative
    for dtype in (np.float64, np.float32):
        args = [a.astype(dtype) for a in (D, pos, neg)]
        got = reasoning_log_margin(*args, y)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        got_t = reasoning_log_margin(*map(torch.from_numpy, args), torch.from_numpy(y))
        np.testing.assert_allclose(got_t.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_gaussian_radius_conversion():
    # |x + e - w|^2 - |x - w|^2 <= 2 r e + e^2 = Delta  <=>  e = sqrt(r^2 + Delta) - r
    e = log_margin_to_radius(
        np.array([2.0, -2.0]), 0.5, "gaussian", np.array([3.0, 3.0])
    )
    np.testing.assert_allclose(e, [np.sqrt(10) - 3, -(np.sqrt(10) - 3)])
    np.testing.assert_allclose(
        log_margin_to_radius(np.array([2.0]), 0.5, "exponential"), [1.0]
    )


def _model(rng, kind, K=6, C=3, d=2):
    W = rng.normal(scale=1.5, size=(K, d))
    if kind == "original":
        pos, neg, _ = R.decode_original_reasoning(rng.normal(scale=2, size=(2, C, K)))
    elif kind == "stable":
        pos, neg = R.decode_stable_reasoning(rng.normal(scale=2, size=(C, 2 * K)))
    else:
        pos, neg = R.decode_rbf_weights(rng.normal(scale=2, size=(C, K))), None
    return W, pos, neg


@pytest.mark.parametrize("kind", ["original", "stable", "rbf"])
@pytest.mark.parametrize("detection", ["exponential", "gaussian"])
def test_radius_never_exceeds_attacks(rng, kind, detection):
    W, pos, neg = _model(rng, kind)
    sigma = 0.8
    X = rng.normal(scale=1.5, size=(25, 2))
    r = reasoning_radius(X, W, sigma, pos, neg, detection=detection)
    assert np.all(r >= 0)

    def scores(Z):
        return R.class_probabilities(
            R.detection_probabilities(Z, W, sigma, detection), pos, neg
        )

    def predict(Z):
        return scores(Z).argmax(1)

    def scores_t(Z):
        return R.class_probabilities(
            R.detection_probabilities(Z, torch.from_numpy(W), sigma, detection),
            torch.from_numpy(pos),
            None if neg is None else torch.from_numpy(neg),
        )

    grid = rng.normal(scale=3, size=(60, 2))
    line = np.array([line_search(predict, x, np.r_[W, grid]) for x in X])
    pgd = pgd_search(scores_t, X, line)
    found = np.minimum(line, pgd)
    assert np.isfinite(found).mean() > 0.8
    assert np.all(r <= found + 1e-7)
    assert np.median(r[np.isfinite(found)]) > 0  # not a trivial zero bound


def test_radius_torch_in_torch_out(rng):
    W, pos, neg = _model(rng, "stable")
    X = rng.normal(size=(8, 2))
    r = reasoning_radius(X.astype(np.float32), W, 0.8, pos, neg)
    assert r.dtype == np.float32
    rt = reasoning_radius(torch.from_numpy(X.astype(np.float32)), W, 0.8, pos, neg)
    assert isinstance(rt, torch.Tensor) and rt.dtype == torch.float32
    np.testing.assert_allclose(rt.numpy(), r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["original", "stable", "rbf"])
@pytest.mark.parametrize("detection", ["exponential", "gaussian"])
def test_radius_stays_sound_where_detections_underflow(rng, kind, detection):
    # Far from every component all detections exp(-dist / sigma) underflow to 0; the
    # CBC quadratic then had a = c = 0 and reported an infinite radius although
    # walking to the components flips the prediction.
    W, pos, neg = _model(rng, kind)
    sigma = 0.8
    directions = rng.normal(size=(6, 2))
    X = 1500 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    assert np.all(R.detection_probabilities(X, W, sigma, detection) == 0)

    def predict(Z):
        dist = R.component_distances(Z, W, detection)
        return R.log_class_probabilities(dist, sigma, pos, neg).argmax(1)

    found = np.array([line_search(predict, x, W, n_grid=300) for x in X])
    assert np.isfinite(found).all()
    for Xin in (X, torch.from_numpy(X)):
        r = reasoning_radius(Xin, W, sigma, pos, neg, detection=detection)
        r = r.numpy() if isinstance(r, torch.Tensor) else r
        assert np.all(np.isfinite(r))
        assert np.all(r <= found + 1e-6)
        if neg is not None:  # CBC: p_c ~ sum_k r-_ck there, far from any flip
            assert np.all(r > (0.9 if detection == "exponential" else 0.3) * found)
    # the scaled (log-space) root agrees with the plain one where nothing underflows
    Xn = rng.normal(scale=1.5, size=(25, 2))
    dist = R.component_distances(Xn, W, detection)
    D = np.exp(-dist / sigma)
    tgt = R.log_class_probabilities(dist, sigma, pos, neg).argmax(1)
    m = (-dist / sigma).max(1)
    plain = reasoning_log_margin(D, pos, neg, tgt)
    scaled = reasoning_log_margin(D / np.exp(m)[:, None], pos, neg, tgt, log_scale=m)
    np.testing.assert_allclose(scaled, plain, rtol=1e-9, atol=1e-12)


def test_reasoning_encoders_invert_the_decoders(rng):
    pos, neg, _ = R.decode_original_reasoning(rng.normal(size=(2, 3, 5)))
    p2, n2, _ = R.decode_original_reasoning(R.encode_original_reasoning(pos, neg))
    np.testing.assert_allclose(p2, pos, atol=1e-6)
    np.testing.assert_allclose(n2, neg, atol=1e-6)
    pos, neg = R.decode_stable_reasoning(rng.normal(size=(3, 10)))
    p2, n2 = R.decode_stable_reasoning(R.encode_stable_reasoning(pos, neg))
    np.testing.assert_allclose(np.c_[p2, n2], np.c_[pos, neg], atol=1e-6)
    W = R.decode_rbf_weights(rng.normal(size=(3, 5)))
    np.testing.assert_allclose(
        R.decode_rbf_weights(R.encode_rbf_weights(W)), W, atol=1e-10
    )
