"""Family losses of the prototype heads.

Each loss is a function ``loss(out, y, **params) -> scalar tensor`` (the mean over the
batch) of a prototype layer's output dict ``out`` (see :mod:`protolearn.nn._layers`)
and the int64 class indices ``y``.  :class:`HeadLoss` wraps one as the skorch
criterion.  The math comes from :mod:`protolearn._core` (GLVQ cost, CBC margin,
certified radius, Sinkhorn assignments) wherever it exists there.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._core import _lvq, _mixture, _reasoning, _robustness
from .._core._distances import l2_normalize


def cross_entropy(out, y):
    """Softmax cross-entropy of the class scores."""
    return F.cross_entropy(out["scores"], y)


def gpam_margin_loss(out, y, margin=0.2, outlier_exposure=0.0):
    """Cross-entropy with an additive margin on the true class (GPAM / CosFace).

    The true class's squared distance is enlarged by `margin` before the softmax, so
    a sample must lie inside its own class by that much more than inside any other
    (Gaussian layer: ``scores_y -= prec_y * margin / 2``; on the sphere, where
    ``|z - mu|^2 = 2 - 2 cos``, this is CosFace's cosine margin ``margin / 2``).
    Layers without precisions get ``scores_y -= margin``.

    `outlier_exposure` > 0 adds that weight times :func:`outlier_exposure_loss` of
    the batch's :func:`between_class_points`, scored by the layer itself
    (``out["layer"]``).
    """
    scores = out["scores"]
    onehot = F.one_hot(y, scores.shape[1]).to(scores.dtype)
    prec = out.get("precisions")
    shift = margin if prec is None else 0.5 * margin * prec[None, :]
    loss = F.cross_entropy(scores - shift * onehot, y)
    if outlier_exposure:
        # (a layer whose means are on the sphere expects its inputs there too)
        unit = getattr(out["layer"], "normalize", None)
        Z = between_class_points(out["z"], y, normalize=unit)
        if Z.shape[0]:
            loss = loss + outlier_exposure * outlier_exposure_loss(
                out["layer"](Z)["scores"]
            )
    return loss


#: mixing weights of :func:`between_class_points`, spread evenly over this range
BETWEEN_CLASS_WEIGHTS = (0.1, 0.9)


def batch_pairs(Z, weights):
    """Each row ``z_i`` of a batch mixed with row ``z_{i-1}`` (cyclically; the seeded
    data loader shuffles the batches, so the pairs are random and reproducible),
    ``lam_i z_i + (1 - lam_i) z_{i-1}``, with ``lam_i`` spread evenly over the range
    `weights` along the batch: ``(mixed, prev, lam)``, ``prev`` the int64 indices
    ``i - 1``, ``lam`` in ``Z``'s dtype, on its device.  A gradient flows into both
    rows of every pair."""
    n = Z.shape[0]
    prev = torch.roll(torch.arange(n, device=Z.device), 1)
    lam = torch.linspace(*weights, n, device=Z.device, dtype=Z.dtype)
    return lam[:, None] * Z + (1 - lam[:, None]) * Z[prev], prev, lam


def between_class_points(Z, y, normalize=None):
    """Synthetic outliers: convex combinations of embeddings of different classes.

    The mixes of :func:`batch_pairs` (weights over :data:`BETWEEN_CLASS_WEIGHTS`),
    kept where the two classes differ, and put
    back on the unit sphere when `normalize` (None: when ``Z``'s rows are there, a
    check that costs a GPU a synchronisation) (as Zhan et al., ACL 2021, synthesise
    out-of-scope intents from in-scope features).
    """
    if Z.shape[0] < 2:
        return Z[:0]
    M, prev, _ = batch_pairs(Z, BETWEEN_CLASS_WEIGHTS)
    if normalize is None:
        one = torch.ones((), dtype=Z.dtype, device=Z.device)
        normalize = bool(torch.allclose(Z.detach().norm(dim=1), one))
    M = l2_normalize(M) if normalize else M
    return M[y != y[prev]]


def outlier_exposure_loss(scores):
    """Outlier exposure (Hendrycks et al., ICLR 2019): the cross-entropy of the
    class softmax of outliers' `scores` to the uniform distribution,
    ``mean(logsumexp_j s_j - mean_j s_j)``; its minimum, ``log n_classes``, is
    reached when every class is equally likely."""
    return (torch.logsumexp(scores, dim=1) - scores.mean(dim=1)).mean()


def adb_boundary_loss(out, y, radii):
    """ADB's boundary loss (Zhang, Xu, Lin, AAAI 2021) for per-class radii.

    With ``d`` the euclidean distance of a sample to its class centre
    (``out["sq_distances"]``) and ``r = softplus(radii)`` its class radius, the loss
    is ``mean(relu(d - r)) + mean(relu(r - d))``: samples outside push the radius
    out (empirical risk), samples inside pull it in (open-space risk).  Its minimiser
    is each class's median distance.  Train it with the features fixed (detach the
    projection), as ADB does.
    """
    # (the layer's squared distances are precision-weighted: undo it)
    sq = out["sq_distances"].gather(1, y[:, None])[:, 0] / out["precisions"][y]
    d = (sq + 1e-12).sqrt()
    r = F.softplus(radii)[y]
    return F.relu(d - r).mean() + F.relu(r - d).mean()


def glvq_loss(out, y, activation="sigmoid", beta=1.0, regularization=0.0):
    """GLVQ cost ``f(mu)``, ``mu = (d+ - d-) / (d+ + d-)`` (:mod:`protolearn._core._lvq`).

    With a learned metric (``out["omega"]``, GMLVQ) and `regularization` ``mu > 0``,
    ``- mu / 2 log det(Omega Omega^T)`` is added (Schneider et al., 2010).
    """
    mu = _lvq.glvq_mu(out["distances"], y, out["prototype_classes"])
    loss = _lvq.glvq_activation(mu, activation, beta).mean()
    if regularization and out.get("omega") is not None:
        loss = loss - 0.5 * regularization * _lvq.omega_log_det(out["omega"])
    return loss


def cbc_margin_loss(out, y, margin=0.1, mixup=0.0):
    """CBC's margin loss on the class probabilities (Saralajew et al., 2019).

    `mixup` > 0 adds that weight times the loss of manifold mixup (Verma et al.,
    ICML 2019) in the learned space: the mixes of :func:`batch_pairs` (weights over
    0-1), ``z = lam_i z_i + (1 - lam_i) z_{i-1}``, their class probabilities
    from the layer itself (``out["layer"]``), and the margin loss of each against
    both labels, weighted ``lam_i`` and ``1 - lam_i``.
    """
    loss = _reasoning.margin_loss(out["probabilities"], y, margin).mean()
    if mixup and y.shape[0] > 1:
        M, prev, lam = batch_pairs(out["z"], (0.0, 1.0))
        P = out["layer"](M)["probabilities"]
        mixed = lam * _reasoning.margin_loss(P, y, margin) + (
            1 - lam
        ) * _reasoning.margin_loss(P, y[prev], margin)
        loss = loss + mixup * mixed.mean()
    return loss


def robust_cbc_loss(out, y, robust_margin=1.0):
    """Robust CBC loss (Saralajew et al., 2024): ``relu(robust_margin - r(x))`` with
    ``r`` the signed certified radius of the true class in the *input* space.

    The learned-space radius (Theorem 1, :mod:`protolearn._core._robustness`) is
    divided by ``out["lipschitz"]`` (the projection's Lipschitz bound, differentiable;
    1 when absent), so the loss enlarges the radius that ``certified_radius`` reports.
    """
    log_t = _robustness.reasoning_log_margin(
        out["detections"], out["positive"], out["negative"], y, smooth=1e-12
    )
    r_max = None
    if out["detection"] == "gaussian":
        r_max = out["distances"].amax(1).sqrt()
    radius = _robustness.log_margin_to_radius(
        log_t, out["sigma"], out["detection"], r_max
    )
    lip = out.get("lipschitz")
    if lip is not None:
        radius = radius / lip
    return (robust_margin - radius).clamp(min=0).mean()


def palm_loss(
    out, y, epsilon=0.05, n_sinkhorn=3, top_k=None, temperature=0.5, weight=1.0
):
    """PALM (Lu et al., ICLR 2024): vMF-mixture MLE + prototype-level contrastive.

    As PALM's official code, in one training step:

    1. each sample is softly assigned to the prototypes of its class by Sinkhorn
       (:func:`protolearn._core._mixture.sinkhorn` on its similarities to them, no
       gradient), keeping its `top_k` largest weights (rows renormalised);
    2. every prototype with assigned samples moves to
       ``normalise(m p + (1 - m) u)``, ``u`` the assignment-weighted mean of its
       samples' embeddings and ``m`` the layer's momentum (EMA);
    3. MLE term: ``-sum_k q_k log softmax_j(kappa z.p_j)[k]`` over all prototypes
       ``j`` (the moved ones, detached);
    4. prototype-contrastive term over all moved prototypes at `temperature` (PALM's
       0.5): each prototype's log-softmax similarity to the other prototypes of its
       class, against all other prototypes (a gradient flows through ``u`` into the
       batch's embeddings), weighted by `weight`.

    In training mode the layer keeps the moved prototypes (detached; the buffer is
    replaced, not written in place, so the step's autograd graph stays valid).
    """
    layer, S, Z = out["layer"], out["similarities"], out["z"]
    C, K = layer.n_classes, layer.n_prototypes
    n = y.shape[0]
    rows = torch.arange(n, device=y.device)
    # 1. Sinkhorn assignment to the own class's prototypes (numpy, no gradient)
    own = S.detach().view(n, C, K)[rows, y].cpu().float().numpy()
    y_np = y.cpu().numpy()
    q = np.zeros_like(own)
    for c in np.unique(y_np):
        m = y_np == c
        q[m] = _mixture.sinkhorn(own[m], epsilon, n_iter=n_sinkhorn)
    if top_k is not None and top_k < K:
        drop = np.argsort(-q, axis=1, kind="stable")[:, top_k:]
        np.put_along_axis(q, drop, 0.0, axis=1)
    q /= np.maximum(q.sum(1, keepdims=True), 1e-12)
    Q = torch.as_tensor(q, device=S.device, dtype=S.dtype)
    cols = (y[:, None] * K + torch.arange(K, device=y.device)[None, :]).reshape(-1)
    W = torch.zeros(n, C * K, device=S.device, dtype=S.dtype)
    W[rows.repeat_interleave(K), cols] = Q.reshape(-1)
    # 2. EMA step towards the weighted means of the assigned embeddings
    mass = W.sum(0)
    U = (W / mass.clamp(min=1e-12)).T @ Z
    P = layer.prototypes_
    moved = l2_normalize(layer.momentum * P + (1 - layer.momentum) * U)
    new = torch.where((mass > 0)[:, None], moved, P)
    # 3. MLE of the assigned prototypes against all of them
    logits = layer.kappa * (Z @ new.detach().T)
    log_p = torch.log_softmax(logits, dim=1).view(n, C, K)[rows, y]
    mle = -(Q * log_p).sum(1).mean()
    # 4. prototype-level contrastive term
    contrast = torch.zeros((), device=S.device, dtype=S.dtype)
    if weight and C * K > 1:
        labels = torch.arange(C, device=y.device).repeat_interleave(K)
        sim = new @ new.T / temperature
        eye = torch.eye(C * K, dtype=torch.bool, device=sim.device)
        log_prob = sim.masked_fill(eye, -torch.inf)
        log_prob = log_prob - torch.logsumexp(log_prob, dim=1, keepdim=True)
        same = (labels[:, None] == labels[None, :]) & ~eye
        n_same = same.sum(1).clamp(min=1)
        pos = log_prob.masked_fill(~same, 0).sum(1) / n_same
        contrast = -pos.mean()
        if K == 1:  # no positives: PALM's term is the log-partition alone
            contrast = torch.logsumexp(sim.masked_fill(eye, -torch.inf), dim=1).mean()
    if layer.training:
        layer.prototypes_ = new.detach()
    return mle + weight * contrast


LOSSES = {
    "cross_entropy": cross_entropy,
    "gpam_margin": gpam_margin_loss,
    "glvq": glvq_loss,
    "cbc_margin": cbc_margin_loss,
    "robust_cbc": robust_cbc_loss,
    "palm": palm_loss,
}


class HeadLoss(nn.Module):
    """The skorch criterion of a prototype head: ``loss(out, y, **loss_params)``.

    `loss` is a name from :data:`LOSSES` or any callable with that signature.
    """

    def __init__(self, loss="cross_entropy", loss_params=None):
        super().__init__()
        if isinstance(loss, str) and loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}; got {loss!r}.")
        self.loss = loss
        self.loss_params = dict(loss_params or {})

    def forward(self, out, y):
        fn = LOSSES[self.loss] if isinstance(self.loss, str) else self.loss
        return fn(out, y, **self.loss_params)
