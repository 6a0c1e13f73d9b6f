"""RBF detections and Classification-by-Components (CBC) reasoning.

numpy or torch in, same kind out (torch functions are differentiable, so training
and prediction share one formula).  Shapes: samples ``X`` (n, d), components ``W``
(K, d), detections ``D`` (n, K), reasoning matrices (C, K) -- one row per class, one
column per component.

Detection
    ``d_k(x) = exp(-dist(x, w_k) / sigma)`` with ``dist`` the euclidean distance
    (``detection="exponential"``, the robust-CBC paper's choice: a proper metric, so the
    certificate of :func:`protolearn._core._robustness.reasoning_radius` applies
    directly) or the squared euclidean distance (``detection="gaussian"``, the classical
    RBF kernel ``exp(-|x - w|^2 / (2 s^2))`` with ``sigma = 2 s^2``).

Reasoning (Saralajew et al., 2019; 2024)
    For class ``c`` and component ``k``: positive reasoning ``r+_ck`` (the component's
    presence supports ``c``), negative ``r-_ck`` (its absence supports ``c``) and, in the
    original CBC, indefinite ``r0_ck`` (the component is irrelevant).  The class
    probability is

        p_c(x) = sum_k (r+_ck d_k(x) + r-_ck (1 - d_k(x))) / sum_k (r+_ck + r-_ck).

    *Original* CBC parametrises, per (c, k), ``r+ = q0`` and ``r- = (1 - q0) q1`` with
    ``q = sigmoid(logits)`` (the "breaking chopstick" of the authors' code, which clips
    ``q`` to [0, 1] after each step instead), ``r0 = 1 - r+ - r-``.  *Stable* CBC (2024)
    drops the indefinite state and learns, per class, one probability vector over the
    2K (component, sign) pairs: ``softmax`` over a (C, 2K) logit matrix, so
    ``sum_k r+_ck + r-_ck = 1`` and the denominator is 1.  An RBF network with
    normalised non-negative class weights is stable CBC without negative reasoning.
"""

import numpy as np

from ..utils._array_api import (
    asarray_like,
    device,
    get_namespace,
    is_torch,
    softmax,
)
from ._distances import common_centre, pairwise_distances

DETECTIONS = ("exponential", "gaussian")


def _sigmoid(x):
    if is_torch(x):  # the array API has no sigmoid: torch's, or scipy's for numpy
        return x.sigmoid()
    from scipy.special import expit

    return expit(x)


def component_distances(X, components, detection="exponential"):
    """The distances the detection squashes: euclidean ("exponential") or squared
    euclidean ("gaussian"), shape (n, K), chunked."""
    if detection not in DETECTIONS:
        raise ValueError(f"detection must be one of {DETECTIONS}; got {detection!r}.")
    W = components if is_torch(components) else asarray_like(components, X)
    if is_torch(X) and is_torch(W) and (W.requires_grad or X.requires_grad):
        # Differentiable path (training): one product, sqrt kept away from 0; both
        # sides centred on the components first (see common_centre).
        c = common_centre(W)
        Xc, Wc = (X, W) if c is None else (X - c, W - c)
        D = (Xc * Xc).sum(1)[:, None] - 2 * Xc @ Wc.T + (Wc * Wc).sum(1)[None, :]
        D = D.clamp(min=0)
        return (D + 1e-12).sqrt() if detection == "exponential" else D
    D = pairwise_distances(X, W, "sqeuclidean")
    return get_namespace(D).sqrt(D) if detection == "exponential" else D


def detection_probabilities(X, components, sigma, detection="exponential"):
    """``exp(-dist(x, w_k) / sigma)``, shape (n, K); `sigma` a positive scalar."""
    dist = component_distances(X, components, detection)
    return get_namespace(dist).exp(-dist / sigma)


def initial_sigma(distances, detect_probability=0.01):
    """The authors' initial detection temperature from sample-component
    `distances`: ``(mean + std) / log(1 / detect_probability)``, so a typical sample
    still detects a typical component with that probability (1.0 if not positive)."""
    s = float(distances.mean() + distances.std()) / np.log(1 / detect_probability)
    return s if s > 0 else 1.0


def decode_original_reasoning(logits):
    """(2, C, K) unconstrained logits -> (positive, negative, indefinite), each (C, K).

    ``q = sigmoid(logits)``; ``r+ = q[0]``, ``r- = (1 - q[0]) q[1]``,
    ``r0 = 1 - r+ - r-`` (so the three are non-negative and sum to 1 per (c, k)).
    """
    q = _sigmoid(logits)
    pos = q[0]
    neg = (1 - q[0]) * q[1]
    return pos, neg, 1 - pos - neg


def decode_stable_reasoning(logits):
    """(C, 2K) logits -> (positive, negative), each (C, K); per class the 2K values are
    a probability vector (``softmax`` over the last axis)."""
    P = softmax(logits, axis=1)
    K = P.shape[1] // 2
    return P[:, :K], P[:, K:]


def decode_rbf_weights(logits):
    """(C, K) logits -> non-negative class weights summing to 1 over components."""
    return softmax(logits, axis=1)


def encode_original_reasoning(positive, negative, *, tiny=1e-7):
    """Logits that :func:`decode_original_reasoning` maps (up to clipping at `tiny`)
    back to `positive` and `negative` (numpy, each (C, K)); shape (2, C, K)."""
    q0 = np.clip(positive, tiny, 1 - tiny)
    q1 = np.clip(negative / np.maximum(1 - positive, tiny), tiny, 1 - tiny)
    q = np.stack([q0, q1])
    return np.log(q) - np.log1p(-q)


def encode_stable_reasoning(positive, negative, *, tiny=1e-7):
    """Logits (C, 2K) that :func:`decode_stable_reasoning` maps back to `positive`
    and `negative` (numpy, each (C, K), rows of the pair summing to 1)."""
    return np.log(np.concatenate([positive, negative], axis=1) + tiny)


def encode_rbf_weights(weights, *, tiny=1e-12):
    """Logits (C, K) that :func:`decode_rbf_weights` maps back to `weights`."""
    return np.log(weights + tiny)


def _own_components(origin, n_classes):
    """(C, K) mask of the components seeded from each class, and per class the
    number of its own components and of the others (each at least 1)."""
    K = origin.size
    own = np.zeros((n_classes, K), dtype=bool)
    own[origin, np.arange(K)] = True
    n_own = np.maximum(own.sum(1, keepdims=True), 1)
    return own, n_own, np.maximum(K - n_own, 1)


def initial_rbf_logits(origin, n_classes, rng):
    """Initial (C, K) class-weight logits of an RBF network whose component ``k``
    was seeded from class ``origin[k]``: each class puts 90% of its weight on its own
    components, 10% on the others, plus uniform noise in [-0.1, 0.1] from `rng`."""
    own, n_own, n_other = _own_components(origin, n_classes)
    logits = np.log(np.where(own, 0.9 / n_own, 0.1 / n_other))
    logits += rng.uniform(-0.1, 0.1, size=(n_classes, origin.size))
    return logits


def initial_reasoning_logits(origin, n_classes, rng, reasoning="stable"):
    """Initial CBC logits when component ``k`` was seeded from class ``origin[k]``.

    "stable" (C, 2K): half of each class's probability on the presence of its own
    components, half on the absence of the others (a nearest-prototype-like start),
    a little everywhere else.  "original" (2, C, K): own components get positive
    reasoning; the others as much negative reasoning in total as positive, the rest
    indefinite.  Both add uniform noise in [-0.1, 0.1] from `rng`.
    """
    K = origin.size
    own, n_own, n_other = _own_components(origin, n_classes)
    noise = rng.uniform(-0.1, 0.1, size=(2, n_classes, K))
    if reasoning == "original":
        q0 = np.where(own, 0.9, np.clip(0.01 * n_own / n_other, 1e-4, 0.01))
        q1 = np.where(own, 0.5, np.clip(0.9 * n_own / n_other, 0.01, 0.9))
        q = np.stack([q0, q1])
        return np.log(q) - np.log1p(-q) + noise
    pos = np.where(own, 0.5 / n_own, 0.01 / K)
    neg = np.where(own, 0.01 / K, 0.5 / n_other)
    logits = np.log(np.concatenate([pos, neg], axis=1))
    logits += np.concatenate([noise[0], noise[1]], axis=1)
    return logits


def _normaliser(R):
    """The row sums (C, 1) of the reasoning `R`, kept away from 0."""
    return _at_least(R.sum(1)[:, None], 1e-30)


def effective_reasoning(positive, negative):
    """Reasoning divided by the class normaliser ``sum_k r+_ck + r-_ck``.

    With these the class probability is linear in the detections:
    ``p_c = D @ (r+ - r-)_c + sum_k r-_ck``.  Stable reasoning is returned unchanged
    (up to rounding: its normaliser is 1).
    """
    Z = _normaliser(positive + negative)
    return positive / Z, negative / Z


def class_probabilities(D, positive, negative=None):
    """CBC class probabilities ``p_c(x)`` (n, C) from detections ``D`` (n, K).

    `negative` None means positive reasoning only (an RBF network whose class weights
    `positive` sum to 1 per class).  See the module docstring for the formula.
    """
    if negative is None:
        return D @ (positive / _normaliser(positive)).T
    pos, neg = effective_reasoning(positive, negative)
    return D @ (pos - neg).T + neg.sum(1)[None, :]


def margin_loss(scores, y, margin):
    """Per-sample margin loss ``max(0, max_{c != y} s_c - s_y + margin)`` (n,).

    `scores` (n, C), `y` (n,) int class indices (same array kind as `scores`).
    """
    xp = get_namespace(scores)
    y = xp.asarray(y)
    own = xp.take_along_axis(scores, y[:, None], axis=1)[:, 0]
    classes = xp.arange(scores.shape[1], device=device(scores))
    other = xp.max(xp.where(y[:, None] == classes, -float("inf"), scores), axis=1)
    return _at_least(other - own + margin, 0)


def _at_least(x, low):
    """``max(x, low)`` elementwise."""
    # torch's clamp is the gradient training has used (1 where x == low; maximum's
    # would be 1/2 there)
    return x.clamp(min=low) if is_torch(x) else np.maximum(x, low)


def log_class_probabilities(dist, sigma, positive, negative=None):
    """``log p_c(x)`` (n, C) from component distances, computed without underflow.

    ``p_c = sum_k r+_ck d_k + r-_ck (1 - d_k)`` (effective reasoning; `negative` None
    for an RBF network) with ``d_k = exp(-dist_k / sigma)``.  Far from every component
    all ``d_k`` underflow (or fall below any clamp) and ``log p_c`` of a model without
    negative evidence would tie across classes; the positive evidence is therefore
    summed as ``exp(m) * sum_k r+_ck exp(-dist_k / sigma - m)`` with ``m`` the row
    maximum of ``-dist / sigma``, and added to the negative evidence in log space.
    numpy or torch in, same kind out.
    """
    xp = get_namespace(dist)
    log_d = -dist / sigma
    m = xp.max(log_d, axis=1)[:, None]
    if negative is None:
        pos, neg = positive / _normaliser(positive), None
    else:
        pos, neg = effective_reasoning(positive, negative)
    S = _at_least(xp.exp(log_d - m) @ pos.T, xp.finfo(dist.dtype).tiny)
    log_pos = m + xp.log(S)
    if neg is None:
        return log_pos
    N = (1 - xp.exp(log_d)) @ neg.T  # the absence evidence, >= 0, no cancellation
    with np.errstate(divide="ignore"):
        return xp.logaddexp(log_pos, xp.log(N))
