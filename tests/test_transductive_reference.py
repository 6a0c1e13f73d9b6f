"""An independent dense brute-force reference of the whole transductive solve of
:class:`LaplacianFewShotClassifier` / :func:`laplacian_fewshot_episodes`.

Written from the documented model (the user guide's "The model" and "Balanced query
classes", the estimator's and ``protolearn._core._laplacian_solver``'s docstrings), one episode
at a time, in float64, with plain numpy loops and no code of the package: CL2N, the
kNN graph, the unary term, the bound step with its step-halving safeguard, the
prototype steps, the stopping rule, BD-CSPN rectification and the balanced bound step
(its K class potentials solved to machine precision).  Every path of the package is
compared with it: the estimator (sparse kNN graph), the batched function on the
direct path (n > d) and on the Gram path (n <= d).
"""

import numpy as np
import pytest

from protolearn.transductive import (
    LaplacianFewShotClassifier,
    laplacian_fewshot_episodes,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"  # max_iter=2 cases, on purpose
)

# The estimator's defaults (the reference re-implements the model, not the defaults).
DEFAULTS = LaplacianFewShotClassifier().get_params()


# ------------------------------------------------------------------ the reference
def _softmax_rows(L):
    L = L - L.max(1, keepdims=True)
    E = np.exp(L)
    return E / E.sum(1, keepdims=True)


def _sqdist(A, B):
    """Squared euclidean distances by explicit differences (no expansion)."""
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)


def _knn_graph(P, k, affinity, symmetric):
    """kNN graph of the rows of P (m, d): each row's k nearest *other* rows (ties to
    the lower index), weights 1 or exp(-d^2 / (2 h^2)) with h^2 the mean of the m*k
    squared kNN distances; symmetrised as (W + W^T) / 2.  Returns W (m, m) and h."""
    m = P.shape[0]
    D = _sqdist(P, P)
    W = np.zeros((m, m))
    nbr_d = []
    for i in range(m):
        order = [j for j in np.argsort(D[i], kind="stable") if j != i][:k]
        nbr_d.append(D[i, order])
        W[i, order] = -1.0  # mark; weights below
    nbr_d = np.array(nbr_d)
    h2 = nbr_d.mean()
    for i in range(m):
        for j in np.flatnonzero(W[i]):
            W[i, j] = 1.0 if affinity == "binary" else np.exp(-D[i, j] / (2 * h2))
    if symmetric:
        W = (W + W.T) / 2
    return W, np.sqrt(h2)


def _unary(Z, M, prototype, h, T):
    D = _sqdist(Z, M)
    f = D if prototype == "kmeans" else -np.exp(-D / (2 * h * h))
    return f / T


def _energy(Y, A, W, lam, ns):
    """E = sum_pk y_pk a_pk + sum_{q query} y_q . log y_q - lam/2 sum_pq w_pq y_p . y_q"""
    Yq = Y[ns:]
    ent = np.sum(Yq * np.log(np.where(Yq > 0, Yq, 1.0)))
    E = np.sum(Y * A) + ent
    if lam:
        E -= 0.5 * lam * np.sum(W * (Y @ Y.T))
    return E


def _balanced_rows(L, r, g0=None):
    """argmin over the rows y_q of the simplex with sum_q y_qk = r_k of
    sum_qk y_qk (log y_qk - L_qk): y_qk = softmax_k(L_qk + g_k), the K potentials
    minimising the convex dual phi(g) = sum_q logsumexp_k(L_q + g) - r . g (unique up
    to a constant).  Levenberg-Marquardt-damped Newton steps (H + mu I) s = -grad,
    accepted when phi does not increase, so steep logits (nearly one-hot rows, H ~ 0)
    converge too; until the masses are met to 1e-11.  `g0` only warm-starts the
    search.  Returns the rows and g."""
    K = L.shape[1]
    g = np.zeros(K) if g0 is None else g0.copy()

    def dual(g):
        S = L + g
        mx = S.max(1, keepdims=True)
        lse = (mx[:, 0] + np.log(np.exp(S - mx).sum(1))).sum()
        return lse - r @ g, _softmax_rows(S)

    phi, Y = dual(g)
    mu = 1e-6 * r.sum()
    for _ in range(2000):
        grad = Y.sum(0) - r
        if np.abs(grad).max() <= 1e-11 * r.max():
            return Y, g
        H = np.diag(Y.sum(0)) - Y.T @ Y + np.ones((K, K)) / K  # flat along g + c1
        step = -np.linalg.solve(H + mu * np.eye(K), grad)
        phin, Yn = dual(g + step)
        # (the slack: near the solution the decrease is below phi's rounding)
        if phin <= phi + 1e-13 * abs(phi):
            g, phi, Y = g + step, phin, Yn
            mu = max(mu / 4, 1e-9 * r.sum())
        else:
            mu *= 4
    raise AssertionError("reference balanced step did not converge")


def _rectify(Zs, ys, Zq, M, K, scale):
    """BD-CSPN (Liu et al., 2020): queries shifted by mean(S) - mean(Q), pseudo-labelled
    by the most cosine-similar support-mean prototype; each prototype the mean of its
    supports and pseudo-labelled shifted queries weighted by exp(scale * cos(x, m_k))."""

    def unit(A):
        n = np.linalg.norm(A, axis=-1, keepdims=True)
        return A / np.where(n == 0, 1, n)

    shifted = Zq + (Zs.mean(0) - Zq.mean(0))
    P = unit(M)
    pseudo = (unit(shifted) @ P.T).argmax(1)
    out = np.empty_like(M)
    for c in range(K):
        pts = np.vstack([Zs[ys == c], shifted[pseudo == c]])
        w = np.exp(scale * (unit(pts) @ P[c]))
        out[c] = (w[:, None] * pts).sum(0) / w.sum()
    return out


def reference_solve(S, ys, Q, **params):
    """One episode, from the documented model: supports S (ns, d) with labels ys,
    queries Q (nq, d).  Returns a dict of the solution kept (and of both solutions for
    balance="auto")."""
    p = {**DEFAULTS, **params}
    if p["balance"] == "auto":
        eq = _solve_one(S, ys, Q, p, balanced=True)
        free = _solve_one(S, ys, Q, p, balanced=False)
        if eq["W"] is None:
            free["balanced"] = False
            return free
        # "at most balance_tol more" (a tie keeps the balanced solution)
        cut_eq, cut_free = _cut(eq["W"], eq["Y"]), _cut(free["W"], free["Y"])
        use = cut_eq - cut_free <= p["balance_tol"] + 1e-12
        out = dict(eq if use else free)
        out["balanced"] = bool(use)
        out["cuts"] = (cut_eq, cut_free)
        return out
    out = _solve_one(S, ys, Q, p, balanced=p["balance"] == "equal")
    out["balanced"] = p["balance"] == "equal"
    return out


def _cut(W, Y):
    """Fraction of the graph's edge weight between points of different hard labels."""
    lab = Y.argmax(1)
    return W[lab[:, None] != lab[None, :]].sum() / W.sum()


def _solve_one(S, ys, Q, p, balanced):
    X = np.vstack([S, Q]).astype(np.float64)
    ns, nq = S.shape[0], Q.shape[0]
    n = ns + nq
    K = int(ys.max()) + 1
    if p["preprocessing"] == "cl2n":
        c = X.mean(0) if p["center"] is None else np.asarray(p["center"], float)
        Z = X - c
    else:
        Z = X.copy()
    if p["preprocessing"] is not None:
        Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    Y = np.zeros((n, K))
    Y[np.arange(ns), ys] = 1.0
    # the kNN graph over all points or over the queries only
    nodes = np.arange(ns, n) if p["graph"] == "query" else np.arange(n)
    k = min(p["n_neighbors"], nodes.size - 1)
    W, h = None, 1.0
    if nq and k >= 1:
        Wm, h = _knn_graph(Z[nodes], k, p["affinity"], p["symmetric"])
        W = np.zeros((n, n))
        W[np.ix_(nodes, nodes)] = Wm
    lam = p["lam"] if W is not None else 0.0
    Wl = W if lam else np.zeros((n, n))
    # initial prototypes: support class means (BD-CSPN rectified on request)
    M = np.array([Z[:ns][ys == c].mean(0) for c in range(K)])
    if p["rectify"] and nq:
        M = _rectify(Z[:ns], ys, Z[ns:], M, K, p["rectify_scale"])
    T, kind = p["temperature"], p["prototype"]
    r = np.full(K, nq / K)

    pot = [None]

    def step(L):  # the (balanced) bound step's minimiser for logits L of the queries
        if not balanced:
            return _softmax_rows(L)
        Yq, pot[0] = _balanced_rows(L, r, pot[0])
        return Yq

    A = _unary(Z, M, kind, h, T)
    if nq:
        Y[ns:] = step(-A[ns:])
    E = _energy(Y, A, Wl, lam, ns)
    hist, halvings, converged, it = [E], [], False, 0
    for it in range(1, p["max_iter"] + 1):  # noqa: B007 (n_iter after the loop)
        Yn = Y.copy()
        if nq:
            Yn[ns:] = step(-A[ns:] + lam * (Wl @ Y)[ns:])
        nh = 0
        if p["symmetric"] and lam:
            while nh < 30 and _energy(Yn, A, Wl, lam, ns) > E + 1e-13 * abs(E):
                Yn = (Y + Yn) / 2
                nh += 1
        halvings.append(nh)
        Y = Yn
        if p["update_prototypes"] and nq:
            Dk = _sqdist(Z, M)
            Cw = Y if kind == "kmeans" else Y * np.exp(-Dk / (2 * h * h))
            M = (Cw / Cw.sum(0)).T @ Z
            A = _unary(Z, M, kind, h, T)
        E_new = _energy(Y, A, Wl, lam, ns)
        hist.append(E_new)
        if abs(E_new - E) <= p["tol"] * abs(E):
            converged = True
            break
        E = E_new
    if p["preprocessing"] is None:
        pass  # prototypes in the input space
    return dict(
        Y=Y,
        M=M,
        objective=np.array(hist),
        n_iter=it,
        converged=converged,
        W=W,
        bandwidth=h,
        halvings=halvings,
        Z=Z,
    )


# ------------------------------------------------------------------- comparisons
def _episodes(seed, n_shot, d, counts=(15,) * 5, sep=0.35, n_tasks=2):
    """Random 5-way episodes: class centres sep * N(0, I), points centre + 0.8 N(0, I)."""
    rng = np.random.default_rng(seed)
    K = len(counts)
    S, Q = [], []
    for _ in range(n_tasks):
        C = sep * rng.normal(size=(K, d))
        S.append(C.repeat(n_shot, 0) + 0.8 * rng.normal(size=(K * n_shot, d)))
        Q.append(C.repeat(counts, 0) + 0.8 * rng.normal(size=(sum(counts), d)))
    ys = np.tile(np.repeat(np.arange(K), n_shot), (n_tasks, 1))
    return np.stack(S), ys, np.stack(Q)


def _check(got, ref, ns, atol):
    """One task's (Y_query, M, objective, n_iter, balanced) against the reference."""
    Yq, M, hist, n_iter, balanced = got
    Yr = ref["Y"][ns:]
    assert n_iter == ref["n_iter"]
    assert bool(balanced) == ref["balanced"]
    np.testing.assert_allclose(Yq, Yr, rtol=0, atol=atol)
    np.testing.assert_allclose(M, ref["M"], rtol=0, atol=atol)
    scale = np.abs(ref["objective"]).max()
    np.testing.assert_allclose(hist, ref["objective"], rtol=0, atol=atol * scale)
    # hard labels exactly, wherever the reference's top two classes are apart
    top2 = np.sort(Yr, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e3 * atol
    assert clear.mean() > 0.5
    np.testing.assert_array_equal(Yq.argmax(1)[clear], Yr.argmax(1)[clear])


def _compare(params, n_shot, d, *, atol=1e-7, seed=0, **episode):
    """Batched function (direct path for d=16, Gram path for d=200) and estimator
    (sparse kNN graph) against the reference, task by task; returns the references."""
    S, ys, Q = _episodes(seed, n_shot, d, **episode)
    ns = S.shape[1]
    out = laplacian_fewshot_episodes(S, ys, Q, **params)
    refs = []
    for t in range(S.shape[0]):
        ref = reference_solve(S[t], ys[t], Q[t], **params)
        refs.append(ref)
        k = out.n_iter[t]
        assert out.converged[t] == ref["converged"]
        assert np.all(np.isnan(out.objective[t, k + 1 :]))
        np.testing.assert_array_equal(
            out.labels[t], out.label_distributions[t].argmax(1)
        )
        _check((out.label_distributions[t], out.prototypes[t], out.objective[t, : k + 1],
                k, out.balanced[t]), ref, ns, atol)  # fmt: skip
        X = np.vstack([S[t], Q[t]])
        y = np.r_[ys[t], np.full(Q.shape[1], -1)]
        perm = np.random.default_rng(t).permutation(len(y))  # rows in any order
        clf = LaplacianFewShotClassifier(**params).fit(X[perm], y[perm])
        inv = np.argsort(perm)
        dist = clf.label_distributions_[inv]
        np.testing.assert_array_equal(dist[:ns], np.eye(ys.max() + 1)[ys[t]])
        _check((dist[ns:], clf.prototypes_, clf.objective_, clf.n_iter_, clf.balanced_),
               ref, ns, atol)  # fmt: skip
        if params.get("prototype") == "kmodes":
            assert clf.bandwidth_ == pytest.approx(ref["bandwidth"], rel=1e-10)
    return refs


CASES = {
    "defaults": {},
    "heat-directed": dict(affinity="heat", symmetric=False, lam=1.5),
    "query-graph-kmodes": dict(graph="query", prototype="kmodes", n_neighbors=5),
    "heat-kmodes-T1": dict(affinity="heat", prototype="kmodes", temperature=1.0),
    "laplacianshot": dict(
        rectify=True,
        update_prototypes=False,
        graph="query",
        symmetric=False,
        temperature=1.0,
        lam=1.0,
        max_iter=20,
    ),
    "rectify-updates": dict(rectify=True, rectify_scale=1.0, temperature=0.3),
    "l2n-tol": dict(preprocessing="l2n", tol=1e-6, n_neighbors=10),
    "raw": dict(preprocessing=None, temperature=30.0, prototype="kmodes"),
    "raw-rectify": dict(preprocessing=None, temperature=30.0, rectify=True),
    "centre": dict(center=np.linspace(-0.3, 0.3, 16)),
    "lam0": dict(lam=0.0),
    "max-iter-2": dict(max_iter=2, tol=0.0, lam=1.5, temperature=1.0),
}


@pytest.mark.parametrize("n_shot", [1, 5])
@pytest.mark.parametrize("d", [16, 200])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case, d, n_shot):
    params = dict(CASES[case])
    if "center" in params:
        params["center"] = np.resize(params["center"], d)
    _compare(params, n_shot, d)


@pytest.mark.parametrize("d", [16, 200])
@pytest.mark.parametrize("affinity", ["binary", "heat"])
@pytest.mark.parametrize("update", [True, False])
def test_step_halving_matches_reference(d, affinity, update):
    # structureless points and a large lam: the tangent bound fails (W is not PSD)
    # and the reference halves steps; so must the package, at the same iterations
    params = dict(
        lam=10.0, temperature=1.0, affinity=affinity, update_prototypes=update
    )
    refs = _compare(params, 1, d, sep=0.0, seed=1, n_tasks=3)
    assert sum(sum(r["halvings"]) for r in refs) > 0
    for r in refs:  # and the objective never increases
        assert np.all(np.diff(r["objective"]) <= 1e-12 * np.abs(r["objective"][:-1]))


@pytest.fixture
def exact_balance(monkeypatch):
    """The balanced bound step solved to 1e-11 relative mass error instead of
    BALANCE_TOL = 1e-3 (its documented stopping rule), so that it can be compared with
    the reference's exact class potentials."""
    from protolearn._core import _balanced

    monkeypatch.setattr(_balanced, "BALANCE_TOL", 1e-11)


@pytest.mark.parametrize("n_shot", [1, 5])
@pytest.mark.parametrize("d", [16, 200])
@pytest.mark.parametrize("balance", ["equal", "auto"])
@pytest.mark.parametrize("counts", [(15,) * 5, (3, 25, 10, 30, 7)])
def test_balance_matches_reference(exact_balance, balance, counts, d, n_shot):
    refs = _compare(dict(balance=balance), n_shot, d, counts=counts)
    for r in refs:
        if r["balanced"]:  # the queries' class masses are n_query / K each
            np.testing.assert_allclose(r["Y"][n_shot * 5 :].sum(0), sum(counts) / 5,
                                       rtol=1e-10)  # fmt: skip


def test_auto_takes_both_branches(exact_balance):
    # balanced queries keep the balanced solution, strongly imbalanced ones the free
    # one (the reference decides so too: the comparison above checks `balanced_`)
    kept = [r["balanced"] for r in _compare(dict(balance="auto"), 5, 200)]
    free = [r["balanced"] for r in _compare(dict(balance="auto"), 5, 200,
                                            counts=(3, 25, 10, 30, 7))]  # fmt: skip
    assert all(kept) and not any(free)


@pytest.mark.parametrize("d", [16, 200])
def test_balance_default_tolerance(d):
    # at the default BALANCE_TOL the balanced step stops at 1e-3 relative mass error:
    # soft labels within a few 1e-3 of the exact solution, the same hard labels and
    # iteration counts, masses within BALANCE_TOL of n_query / K
    from protolearn._core import _balanced

    S, ys, Q = _episodes(0, 1, d)
    out = laplacian_fewshot_episodes(S, ys, Q, balance="equal")
    for t in range(S.shape[0]):
        ref = reference_solve(S[t], ys[t], Q[t], balance="equal")
        Yq = out.label_distributions[t]
        np.testing.assert_allclose(Yq, ref["Y"][5:], atol=1e-2)
        np.testing.assert_array_equal(Yq.argmax(1), ref["Y"][5:].argmax(1))
        assert out.n_iter[t] == ref["n_iter"]
        np.testing.assert_allclose(Yq.sum(0), 15, rtol=2 * _balanced.BALANCE_TOL)


@pytest.mark.parametrize("seed", range(4))
def test_random_settings_match_reference(exact_balance, seed):
    # a few random combinations of every hyperparameter
    rng = np.random.default_rng(100 + seed)
    choices = dict(
        lam=[0.0, 0.3, 0.7, 3.0], n_neighbors=[1, 3, 5, 200], affinity=["binary", "heat"],
        symmetric=[True, False], graph=["all", "query"], prototype=["kmeans", "kmodes"],
        update_prototypes=[True, False], temperature=[0.1, 0.3, 1.0],
        preprocessing=["cl2n", "l2n"], rectify=[False, True], rectify_scale=[1.0, 10.0],
        balance=["none", "equal", "auto"], balance_tol=[0.0, 0.01, 0.05],
        max_iter=[3, 50], tol=[1e-6, 1e-4, 1e-2],
    )  # fmt: skip
    for _ in range(3):
        params = {k: v[rng.integers(len(v))] for k, v in choices.items()}
        counts = tuple(int(c) for c in rng.integers(2, 25, size=5))
        _compare(params, int(rng.choice([1, 5])), int(rng.choice([16, 200])),
                 counts=counts, n_tasks=1, seed=int(rng.integers(1000)))  # fmt: skip


# ----------------------------------------------------- the graph-cut fraction, ties
def test_cut_fraction_is_exact_for_uncut_labellings(rng):
    # a 1-NN heat graph has many components; labellings constant on each component cut
    # nothing, and their fraction must be exactly 0 (it was +-1e-16 as 1 - same/total,
    # which let balance="auto" with balance_tol=0 choose between two such labellings
    # by rounding)
    from scipy.sparse.csgraph import connected_components

    from protolearn._core import _knn_graph

    for _ in range(20):
        X = rng.normal(size=(60, 8))
        W, _ = _knn_graph.knn_affinity(X, 1, kind="heat")
        _, comp = connected_components(W)
        Y = np.eye(4)[rng.integers(0, 4, comp.max() + 1)[comp]][None]
        assert _knn_graph.cut_fraction(W, Y)[0] == 0.0
        assert _knn_graph.cut_fraction(W.toarray()[None], Y)[0] == 0.0
        # a graph over the last rows only (the queries) reads the last rows of Y
        Y2 = np.concatenate([np.eye(4)[rng.integers(0, 4, (1, 5))], Y], axis=1)
        assert _knn_graph.cut_fraction(W.toarray()[None], Y2)[0] == 0.0
        assert _knn_graph.cut_fraction(W.toarray()[None], Y + 0.01 * rng.random(Y.shape))[0] \
            == _knn_graph.cut_fraction(W, Y)[0]  # fmt: skip


def test_auto_keeps_balanced_solution_at_a_tie(monkeypatch):
    # "at most balance_tol more": a difference of exactly balance_tol (common with a
    # binary graph, whose fractions are multiples of 1 / (2 sum W)) keeps the balanced
    # solution, whatever the rounding of the two fractions (0.0425 - 0.0125 rounds
    # above 0.03 in float64)
    from protolearn._core import _transduction

    assert 0.0425 - 0.0125 > 0.03
    S, ys, Q = _episodes(0, 1, 16, n_tasks=1)
    calls = []

    def fake_cut(W, Y):
        calls.append(None)
        return np.array([0.0425 if len(calls) == 1 else 0.0125])  # equal first

    monkeypatch.setattr(_transduction, "cut_fraction", fake_cut)
    out = laplacian_fewshot_episodes(S, ys, Q, balance="auto", balance_tol=0.03)
    assert len(calls) == 2 and out.balanced[0]
    calls.clear()
    out = laplacian_fewshot_episodes(S, ys, Q, balance="auto", balance_tol=0.0299)
    assert not out.balanced[0]


@pytest.mark.xfail(strict=True, reason="documented contract not met: with logit gaps "
                   "in the thousands (raw 200-d features at temperature 0.05) the balanced "
                   "step's damped Newton iterations (steps clipped to 20, at most "
                   "BALANCE_MAX_ITER) leave the masses at the free solution's class "
                   "counts, silently")  # fmt: skip
def test_balance_on_very_steep_logits():
    S, ys, Q = _episodes(2, 5, 200, counts=(25, 8, 4, 9, 13), n_tasks=1, sep=1.0)
    out = laplacian_fewshot_episodes(S, ys, Q, lam=0.0, preprocessing=None,
                                     temperature=0.05, balance="equal",
                                     update_prototypes=False, max_iter=1)  # fmt: skip
    np.testing.assert_allclose(out.label_distributions[0].sum(0), 59 / 5, rtol=1e-2)
