"""Rejection margins for none-of-the-above (NOTA) prediction.

A classifier assigns each query its best class ``a`` and a class-fit score ``s`` (higher =
fits better); the query is rejected when ``s < margin[a]``.  This module fits the margins
from held-out scores:

- :func:`conformal_threshold` / :func:`grouped_conformal_thresholds`: split-conformal
  lower quantiles (no negatives needed): a new in-class score falls below the threshold
  with probability at most ``alpha`` (finite-sample, for exchangeable scores).
- :func:`fit_margins`: margins chosen with negatives (held-out "pseudo-unknown" classes or
  known-unknown samples), to maximise the weighted F1 of the NOTA label or to reject as
  many negatives as possible at a target in-class acceptance, with one global margin or
  one margin per class.
- :func:`cross_fit_folds`: the cross-fitting plan producing those held-out scores, and
  :func:`cross_fitted_margins`: the whole loop for any model (fit / score callables);
  :func:`calibration_split`: the held-out rows of the conformal margins.

Everything here works on 1-D numpy arrays of scores (the margin math is cheap); the
scores come from any model.
"""

import numpy as np
from sklearn.utils import check_random_state


def conformal_threshold(scores, alpha):
    """Split-conformal lower threshold of held-out in-class scores.

    With ``k = floor(alpha * (n + 1))``, the threshold is the ``k``-th smallest of the
    ``n`` scores (``-inf`` when ``k == 0``, i.e. too few scores to reject anything).
    Accepting ``s >= threshold`` keeps a new score exchangeable with the ``n`` held-out
    ones with probability at least ``1 - alpha`` (Vovk et al., 2005; Lei et al., 2018).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}.")
    k = int(np.floor(alpha * (scores.size + 1)))
    if k < 1:
        return -np.inf
    return float(np.partition(scores, k - 1)[k - 1])


def grouped_conformal_thresholds(scores, groups, n_groups, alpha):
    """:func:`conformal_threshold` within each group (a Mondrian conformal predictor)."""
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    return np.array(
        [conformal_threshold(scores[groups == g], alpha) for g in range(n_groups)]
    )


# ------------------------------------------------------------------ margin fitting
class _Curve:
    """Rejection counts of one group as its threshold sweeps its sorted scores.

    Candidate ``j`` rejects the ``j`` lowest scores (``j = 0..m``); only ``j`` at a gap
    between distinct scores are valid.  ``unknown[j]`` / ``known[j]`` are the weights of
    rejected negatives / rejected in-class samples.
    """

    def __init__(self, scores, is_unknown, weights):
        order = np.argsort(scores, kind="stable")
        self.s = scores[order]
        u = is_unknown[order]
        w = weights[order]
        self.unknown = np.r_[0.0, np.cumsum(w * u)]
        self.known = np.r_[0.0, np.cumsum(w * ~u)]
        m = self.s.size
        valid = np.ones(m + 1, dtype=bool)
        valid[1:m] = self.s[1:] > self.s[:-1]
        self.valid = valid

    def threshold(self, j, reference):
        """A threshold rejecting exactly the ``j`` lowest scores, as near `reference`
        as possible (ties between equally good thresholds go to the reference)."""
        lo = self.s[j - 1] if j > 0 else -np.inf
        hi = self.s[j] if j < self.s.size else np.inf
        if lo < reference <= hi:
            return float(reference)
        if np.isfinite(lo) and np.isfinite(hi):
            return float(0.5 * (lo + hi))
        # an open end: step one mean gap beyond the extreme score
        gap = (self.s[-1] - self.s[0]) / max(self.s.size - 1, 1)
        gap = gap if gap > 0 else max(abs(self.s[-1]) * 1e-6, 1e-6)
        if np.isfinite(hi):  # j == 0: accept all; reference lies above hi
            return float(hi - 0.5 * gap)
        return float(lo + 0.5 * gap)  # j == m: reject all


def _f1(tp, fp, fn):
    den = 2 * tp + fp + fn
    return np.divide(
        2 * tp, den, out=np.zeros_like(den, dtype=np.float64), where=den > 0
    )


def _global_f1_margin(curve, reference=0.0):
    f = np.where(
        curve.valid,
        _f1(curve.unknown, curve.known, curve.unknown[-1] - curve.unknown),
        -1,
    )
    j = int(np.argmax(f))
    return curve.threshold(j, reference)


def _global_recall_margin(curve, target_recall, reference=0.0):
    allowed = (1 - target_recall) * curve.known[-1]
    ok = curve.valid & (curve.known <= allowed + 1e-9 * max(curve.known[-1], 1))
    j = int(np.flatnonzero(ok).max())
    return curve.threshold(j, reference)


def _per_group_f1(curves, start, max_iter=100):
    """Per-group thresholds maximising the pooled F1 exactly (Dinkelbach's method).

    With ``U`` the total negative weight, ``F1 = 2 TP / (TP + FP + U)`` is a ratio of
    sums over groups, so for a fixed ratio ``beta`` the problem
    ``max sum_g (2 - beta) TP_g - beta FP_g`` separates into one sweep per group;
    iterating ``beta <- F1(solution)`` reaches the global optimum in finitely many
    steps (Dinkelbach, 1967).
    """
    live = [c for c in curves if c is not None]
    U = sum(c.unknown[-1] for c in live)
    js = [
        None if c is None else int(np.searchsorted(c.s, t))
        for c, t in zip(curves, start)
    ]

    def ratio(js):
        tp = sum(c.unknown[j] for c, j in zip(curves, js) if c is not None)
        fp = sum(c.known[j] for c, j in zip(curves, js) if c is not None)
        den = tp + fp + U
        return 2 * tp / den if den > 0 else 0.0

    beta = ratio(js)
    for _ in range(max_iter):
        new = []
        for c, j in zip(curves, js):
            if c is None:
                new.append(None)
                continue
            gain = np.where(c.valid, (2 - beta) * c.unknown - beta * c.known, -np.inf)
            best = int(np.argmax(gain))
            # keep the current choice unless strictly better (guarantees termination)
            new.append(j if gain[j] >= gain[best] - 1e-12 and c.valid[j] else best)
        f = ratio(new)
        if f <= beta + 1e-12:
            break
        js, beta = new, f
    return np.array(
        [
            start[g] if c is None else c.threshold(js[g], start[g])
            for g, c in enumerate(curves)
        ]
    )


def _per_group_recall(curves, start, target_recall, n_iter=60):
    """Most negatives rejected with pooled in-class acceptance >= target_recall.

    A Lagrangian relaxation: for a price ``lam`` of rejecting an in-class sample, each
    group independently maximises ``rejected negatives - lam * rejected in-class``;
    ``lam`` is bisected to the smallest price meeting the acceptance target.
    """
    known_total = sum(c.known[-1] for c in curves if c is not None)
    allowed = (1 - target_recall) * known_total + 1e-9 * max(known_total, 1)

    def solve(lam):
        js, rejected = [], 0.0
        for c in curves:
            if c is None:
                js.append(0)
                continue
            gain = np.where(c.valid, c.unknown - lam * c.known, -np.inf)
            # ties: prefer rejecting fewer in-class samples
            j = int(np.flatnonzero(gain >= gain.max() - 1e-12)[0])
            js.append(j)
            rejected += c.known[j]
        return js, rejected

    lo, hi = 0.0, 1.0
    while solve(hi)[1] > allowed and hi < 1e12:
        hi *= 2
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        if solve(mid)[1] > allowed:
            lo = mid
        else:
            hi = mid
    js, rejected = solve(hi)
    # Greedy fill of the budget the relaxation leaves (it only reaches points on each
    # group's convex hull): move a group to a threshold rejecting more negatives when
    # the extra in-class rejections still fit, best ratio first.
    while True:
        best = None
        for g, c in enumerate(curves):
            if c is None:
                continue
            j = js[g]
            extra_k = c.known - c.known[j]
            extra_u = c.unknown - c.unknown[j]
            ok = c.valid & (extra_u > 0) & (rejected + extra_k <= allowed)
            if not ok.any():
                continue
            ratio = np.where(ok, extra_u / np.maximum(extra_k, 1e-12), -np.inf)
            k = int(np.argmax(ratio))
            if best is None or ratio[k] > best[0]:
                best = (ratio[k], g, k, extra_k[k])
        if best is None:
            break
        _, g, k, ek = best
        js[g] = k
        rejected += ek
    return np.array(
        [
            start[g] if c is None else c.threshold(js[g], start[g])
            for g, c in enumerate(curves)
        ]
    )


def fit_margins(
    scores,
    groups,
    is_unknown,
    n_groups,
    *,
    per_group=True,
    target_recall=None,
    unknown_weight=1.0,
    shrinkage=0.5,
):
    """Fit rejection margins (reject ``score < margin[group]``) on held-out scores.

    Parameters
    ----------
    scores : ndarray of shape (n,)
        Class-fit score of each held-out sample under the class it was assigned to.
    groups : ndarray of shape (n,)
        That class (``0..n_groups-1``).
    is_unknown : ndarray of bool, shape (n,)
        True for negatives (pseudo-unknown classes or known-unknown samples).
    n_groups : int
    per_group : bool, default=True
        One margin per class ("adaptive") or one shared margin ("global").
    target_recall : float in (0, 1) or None
        None: maximise the F1 of the NOTA label (negatives weighted by
        `unknown_weight`).  A float: reject as many negatives as possible while
        accepting at least this share of the in-class samples.
    unknown_weight : float > 0
        Weight of each negative (sets the NOTA share the F1 is computed at).
    shrinkage : float in [0, 1]
        Per-class margins only: each class's offset from the global margin is
        multiplied by ``1 - shrinkage`` and the common level is then re-fitted for
        the same objective, i.e. ``margin_c = t0 + (1 - shrinkage) * (m_c - m)``,
        where ``m`` is the global margin and ``m_c`` the per-class one.  With
        ``shrinkage > 0``, classes that no negative was assigned to keep
        ``m_c = m``; ``shrinkage=0`` returns the exact per-class optimum.

    Returns
    -------
    margins : ndarray of shape (n_groups,)
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.intp)
    is_unknown = np.asarray(is_unknown, dtype=bool)
    weights = np.where(is_unknown, float(unknown_weight), 1.0)
    if target_recall is None and not is_unknown.any():
        raise ValueError(
            "Fitting margins for the F1 of the NOTA label needs negatives; none were "
            "given (pass target_recall instead)."
        )
    if not (~is_unknown).any():
        raise ValueError("Fitting margins needs held-out in-class scores; none given.")

    def global_margin(s):
        curve = _Curve(s, is_unknown, weights)
        if target_recall is None:
            return _global_f1_margin(curve)
        return _global_recall_margin(curve, target_recall)

    m = global_margin(scores)
    if not per_group:
        return np.full(n_groups, m)
    curves = [
        _Curve(scores[groups == g], is_unknown[groups == g], weights[groups == g])
        if np.any(groups == g)
        else None
        for g in range(n_groups)
    ]
    start = np.full(n_groups, m)
    if target_recall is None:
        per = _per_group_f1(curves, start)
    else:
        per = _per_group_recall(curves, start, target_recall)
    if shrinkage == 0:
        return per
    # Regularised margins: a class no negative was assigned to has no evidence to
    # move its margin (its optimum accepts every in-class score, however low an
    # outlier sets it), so it keeps the global margin.
    no_evidence = np.array([c is None or c.unknown[-1] == 0 for c in curves])
    per[no_evidence] = m
    offsets = (1 - shrinkage) * (per - m)
    t0 = global_margin(scores - offsets[groups])
    return t0 + offsets


# ---------------------------------------------------------------- cross-fitting plan
def cross_fit_folds(y, n_classes, n_splits, *, hold_out_classes, random_state=None):
    """Folds for fitting margins on held-out scores.

    Each class's samples are dealt into `n_splits` sample folds (stratified); with
    `hold_out_classes` the classes are dealt into `n_splits` class folds as well.  Fold
    ``k`` trains on samples outside sample fold ``k`` of the classes outside class fold
    ``k``; it scores those classes' samples in sample fold ``k`` (held-out in-class
    scores) and every sample of the classes in class fold ``k`` (pseudo-unknowns: the
    classes play "none of the above").

    Returns
    -------
    folds : list of (train, heldout, pseudo_unknown, known_classes) index arrays
        (row indices into ``y`` and the class indices the fold's model knows).
    sample_fold : ndarray of shape (n,)
        The sample fold of each row.
    """
    y = np.asarray(y, dtype=np.intp)
    rng = check_random_state(random_state)
    sample_fold = np.empty(y.size, dtype=np.intp)
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)
        sample_fold[rows] = (
            rng.permutation(rows.size) + rng.randint(n_splits)
        ) % n_splits
    if hold_out_classes:
        class_fold = rng.permutation(n_classes) % n_splits
    else:
        class_fold = np.full(n_classes, -1)
    folds = []
    for k in range(n_splits):
        known = class_fold[y] != k
        train = np.flatnonzero(known & (sample_fold != k))
        heldout = np.flatnonzero(known & (sample_fold == k))
        pseudo = np.flatnonzero(~known)
        folds.append((train, heldout, pseudo, np.flatnonzero(class_fold != k)))
    return folds, sample_fold


def fit_cross_fitted_margins(
    scores,
    groups,
    is_unknown,
    n_groups,
    *,
    nota,
    target_recall=None,
    nota_rate=None,
    shrinkage=0.5,
):
    """:func:`fit_margins` on the held-out parts of a cross-fit, as the NOTA
    estimators use it.

    Parameters
    ----------
    scores, groups, is_unknown : lists of ndarrays
        Per held-out part: class-fit scores, assigned classes and the negatives' mask
        (concatenated here).
    n_groups : int
    nota : {"global", "adaptive"}
        One margin for all classes, or one per class.
    target_recall : float in (0, 1) or None
        As in :func:`fit_margins`.
    nota_rate : float in (0, 1) or None
        The NOTA share the F1 objective assumes: the negatives are weighted so that
        they make up this share of the held-out rows; None weighs them as they come.
    shrinkage : float in [0, 1]
        As in :func:`fit_margins`.

    Returns
    -------
    margins : ndarray of shape (n_groups,)
    """
    scores = np.concatenate(scores)
    groups = np.concatenate(groups)
    is_unknown = np.concatenate(is_unknown)
    n_unknown, n_known = int(is_unknown.sum()), int((~is_unknown).sum())
    if n_unknown == 0 and target_recall is None:
        raise ValueError(
            f"nota={nota!r} with the F1 objective needs negatives: give "
            "known-unknown rows (labelled nota_label) or at least 2 classes to "
            "hold out, or set target_recall."
        )
    weight = 1.0
    if nota_rate is not None and n_unknown:
        weight = nota_rate * n_known / ((1 - nota_rate) * n_unknown)
    return fit_margins(
        scores,
        groups,
        is_unknown,
        n_groups,
        per_group=nota == "adaptive",
        target_recall=target_recall,
        unknown_weight=weight,
        shrinkage=shrinkage,
    )


def calibration_split(y, n_classes, calibration_size, random_state):
    """Mask of the calibration rows of a split-conformal fit: a ``calibration_size``
    share of each class (at least one row, and at least one left to fit on)."""
    rng = check_random_state(random_state)
    calib = np.zeros(y.size, dtype=bool)
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)
        n_cal = int(np.clip(round(calibration_size * rows.size), 1, rows.size - 1))
        calib[rng.choice(rows, size=n_cal, replace=False)] = True
    return calib


def cross_fitted_margins(
    X,
    y,
    X_unknown,
    n_classes,
    *,
    fit,
    score,
    skip_fold,
    n_splits,
    nota,
    target_recall=None,
    nota_rate=None,
    shrinkage=0.5,
    random_state=None,
):
    """Rejection margins of any classifier, from the held-out scores of a cross-fit.

    The folds are :func:`cross_fit_folds` (classes held out as pseudo-unknowns when
    there are no known-unknown rows ``X_unknown``; otherwise those rows, dealt into
    ``n_splits`` folds, are the negatives).  Fold ``k``'s model is
    ``fit(X_train, y_train, known)`` (``y_train`` indexes ``known``, the classes
    the fold's model knows); ``score(model, X_eval, known)`` returns each
    evaluated row's assigned index into ``known`` and its class-fit score.  A fold
    where ``skip_fold(train, heldout, pseudo, known)`` is true is neither fitted nor
    scored.
    The margins are then :func:`fit_cross_fitted_margins` of the scores.

    ``random_state`` is drawn from in this order: the fold plan, the known-unknown
    rows' folds, then whatever ``fit`` draws, fold by fold.

    Returns
    -------
    margins : ndarray of shape (n_classes,)
    """
    rng = check_random_state(random_state)
    has_unknown = X_unknown.shape[0] > 0
    folds, _ = cross_fit_folds(
        y, n_classes, n_splits, hold_out_classes=not has_unknown, random_state=rng
    )
    unknown_fold = rng.permutation(X_unknown.shape[0]) % n_splits
    scores, groups, is_unknown = [], [], []
    for k, (train, heldout, pseudo, known) in enumerate(folds):
        if skip_fold(train, heldout, pseudo, known):
            continue
        remap = np.full(n_classes, -1)
        remap[known] = np.arange(known.size)
        model = fit(X[train], remap[y[train]], known)
        negatives = X_unknown[unknown_fold == k] if has_unknown else X[pseudo]
        for Xe, unk in ((X[heldout], False), (negatives, True)):
            if Xe.shape[0] == 0:
                continue
            a, s = score(model, Xe, known)
            scores.append(s)
            groups.append(known[a])
            is_unknown.append(np.full(s.size, unk))
    if not scores:
        raise ValueError(
            f"nota={nota!r} found no fold to fit margins on; give more classes or "
            "known-unknown rows."
        )
    return fit_cross_fitted_margins(
        scores,
        groups,
        is_unknown,
        n_classes,
        nota=nota,
        target_recall=target_recall,
        nota_rate=nota_rate,
        shrinkage=shrinkage,
    )
