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


def gpam_margin_loss(out, y, margin=0.2):
    """Cross-entropy with an additive margin on the true class (GPAM / CosFace).

    The true class's squared distance is enlarged by `margin` before the softmax, so
    a sample must lie inside its own class by that much more than inside any other
    (Gaussian layer: ``scores_y -= prec_y * margin / 2``; on the sphere, where
    ``|z - mu|^2 = 2 - 2 cos``, this is CosFace's cosine margin ``margin / 2``).
    Layers without precisions get ``scores_y -= margin``.
    """
    scores = out["scores"]
    onehot = F.one_hot(y, scores.shape[1]).to(scores.dtype)
    prec = out.get("precisions")
    shift = margin if prec is None else 0.5 * margin * prec[None, :]
    return F.cross_entropy(scores - shift * onehot, y)


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


def cbc_margin_loss(out, y, margin=0.1):
    """CBC's margin loss on the class probabilities (Saralajew et al., 2019)."""
    return _reasoning.margin_loss(out["probabilities"], y, margin).mean()


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
    out, y, epsilon=0.05, n_sinkhorn=3, top_k=None, temperature=0.1, weight=1.0
):
    """PALM (Lu et al., ICLR 2024): vMF-mixture MLE + prototype-level contrastive.

    Each sample is softly assigned to the prototypes of its class by Sinkhorn
    (:func:`protolearn._core._mixture.sinkhorn`, no gradient), keeping the `top_k`
    largest weights; the MLE term is ``-sum_k q_k log softmax_j(kappa z.p_j)[ck]``
    over all prototypes ``j``.  The class's prototypes are then moved towards the
    batch by the layer's EMA (with gradient through the update, for the contrastive
    term), and the contrastive term pulls prototypes of one class together and pushes
    the others away at `temperature`.  The layer (``out["layer"]``) keeps the
    detached, updated prototypes when training.
    """
    layer, S, Z = out["layer"], out["similarities"], out["z"]
    C, K = layer.n_classes, layer.n_prototypes
    rows = torch.arange(y.shape[0], device=y.device)
    own = S.view(-1, C, K)[rows, y]  # (n, K) similarities to own prototypes
    q = np.zeros(tuple(own.shape), dtype=np.float32)
    y_np = y.cpu().numpy()
    own_np = own.detach().cpu().float().numpy()
    for c in np.unique(y_np):
        m = y_np == c
        q[m] = _mixture.sinkhorn(own_np[m], epsilon, n_iter=n_sinkhorn)
    if top_k is not None and top_k < K:
        keep = np.argsort(-q, axis=1)[:, :top_k]
        mask = np.zeros_like(q, dtype=bool)
        np.put_along_axis(mask, keep, True, axis=1)
        q = np.where(mask, q, 0)
    q = q / np.maximum(q.sum(1, keepdims=True), 1e-12)
    Q = torch.as_tensor(q, device=S.device, dtype=S.dtype)
    log_p = torch.log_softmax(layer.kappa * S, dim=1).view(-1, C, K)[rows, y]
    mle = -(Q * log_p).sum(1).mean()
    # prototypes after the EMA step, with gradient through the batch's features
    P = layer.prototypes_.view(C, K, -1)
    classes = torch.unique(y)
    moved = []
    for c in classes.tolist():
        sel = y == c
        upd = Q[sel].T @ Z[sel]
        moved.append(l2_normalize(layer.momentum * P[c] + (1 - layer.momentum) * upd))
    moved = torch.cat(moved)  # (n_batch_classes * K, k)
    labels = classes.repeat_interleave(K)
    sim = moved @ moved.T / temperature
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(eye, -torch.inf)
    same = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    n_same = same.sum(1)
    has = n_same > 0
    contrast = torch.zeros((), device=S.device, dtype=S.dtype)
    if bool(has.any()):
        pos = log_prob.masked_fill(~same, 0).sum(1)[has] / n_same[has]
        contrast = -pos.mean()
    if layer.training:
        with torch.no_grad():
            P[classes] = moved.detach().view(-1, K, P.shape[-1])
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
