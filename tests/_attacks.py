"""Attacks that search for the smallest L2 perturbation flipping a prediction.

Used to check certified radii: a sound radius is never larger than what an attack
finds.  Two searches, both with a bisection on the perturbation size:

- ``line_search``: along straight lines from ``x`` towards given targets (other-class
  prototypes / components / samples);
- ``pgd_search``: projected gradient descent on the margin ``s_y - max_{c != y} s_c``
  of a differentiable score function, at a per-sample budget ``eps`` that a bisection
  shrinks (the budgets of all samples are searched at once).
"""

import numpy as np
import torch


def line_search(predict, x, targets, n_grid=64, n_bisect=30):
    """Smallest ``t * |u|`` along ``u = target - x`` (t in (0, 1.5]) that flips
    ``predict``; inf if no line flips."""
    y0 = predict(x[None])[0]
    best = np.inf
    ts = np.linspace(0, 1.5, n_grid + 1)[1:]
    for w in targets:
        u = w - x
        norm = np.linalg.norm(u)
        if norm == 0:
            continue
        Z = x[None] + ts[:, None] * u[None]
        flips = predict(Z) != y0
        if not flips.any():
            continue
        hi = ts[np.argmax(flips)]
        lo = hi - ts[0]
        for _ in range(n_bisect):
            mid = (lo + hi) / 2
            if predict((x + mid * u)[None])[0] != y0:
                hi = mid
            else:
                lo = mid
        best = min(best, hi * norm)
    return best


def pgd_search(score_fn, X, upper, n_bisect=10, n_steps=30, seed=0):
    """Per-row smallest budget (within [0, upper]) at which an L2 PGD attack on the
    margin of ``score_fn`` (torch, (n, d) -> (n, C)) flips the argmax.

    Rows whose ``upper`` is not finite get ``2 * max(finite upper)`` as budget; rows
    that never flip get inf.
    """
    X = torch.as_tensor(X, dtype=torch.float64)
    with torch.no_grad():
        y = score_fn(X).argmax(1)
    finite = np.isfinite(upper)
    cap = 2 * (upper[finite].max() if finite.any() else 1.0)
    hi = torch.as_tensor(np.where(finite, upper, cap), dtype=torch.float64)
    lo = torch.zeros_like(hi)
    g = torch.Generator().manual_seed(seed)

    def attack(eps):
        delta = torch.randn(X.shape, generator=g, dtype=X.dtype) * 1e-3
        delta = delta * (eps / delta.norm(dim=1)).clamp(max=1)[:, None] * 0.01
        flipped = torch.zeros(X.shape[0], dtype=torch.bool)
        alpha = 2.5 * eps / n_steps
        for _ in range(n_steps):
            delta.requires_grad_(True)
            s = score_fn(X + delta)
            own = s.gather(1, y[:, None])[:, 0]
            other = s.masked_fill(
                torch.nn.functional.one_hot(y, s.shape[1]).bool(), -torch.inf
            ).amax(1)
            margin = own - other
            (grad,) = torch.autograd.grad(margin.sum(), delta)
            with torch.no_grad():
                flipped |= margin < 0
                step = grad / grad.norm(dim=1, keepdim=True).clamp(min=1e-30)
                delta = delta - alpha[:, None] * step
                n = delta.norm(dim=1, keepdim=True)
                delta = delta * (eps[:, None] / n.clamp(min=1e-30)).clamp(max=1)
        with torch.no_grad():
            s = score_fn(X + delta)
            flipped |= s.argmax(1) != y
        return flipped

    known = torch.as_tensor(finite) | attack(hi)
    hi = torch.where(known, hi, torch.full_like(hi, np.inf))
    for _ in range(n_bisect):
        mid = torch.where(known, (lo + hi) / 2, torch.full_like(lo, cap))
        f = attack(mid)
        hi = torch.where(known & f, mid, hi)
        lo = torch.where(known & ~f, mid, lo)
    return hi.numpy()
