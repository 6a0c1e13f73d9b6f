"""Torch layers of the prototype heads: a projection and one prototype layer.

Every prototype layer maps embeddings ``z`` (n, k) to a dict that holds at least
``"scores"`` (n, n_classes, higher = more likely, the estimator's decision scores)
and whatever its family's loss needs; the formulas come from :mod:`protolearn._core`
(distances, CBC reasoning, vMF densities), so training and the shallow estimators share
one implementation.  Parameters are unconstrained (``log_*`` for scales, logits for
reasoning); ``reset_parameters(generator)`` draws every random initial value from the
given ``torch.Generator`` (never the global torch seed).
"""

import math

import numpy as np
import torch
from torch import nn

from .._core import _distances, _mixture, _reasoning

ACTIVATIONS = {
    # name: (module, Lipschitz constant)
    "relu": (nn.ReLU, 1.0),
    "tanh": (nn.Tanh, 1.0),
    "logistic": (nn.Sigmoid, 0.25),
    "identity": (nn.Identity, 1.0),
}


def reset_linear(layer, generator):
    """torch's default ``nn.Linear`` initialisation (uniform in +-1/sqrt(fan_in)),
    drawn from `generator`."""
    bound = 1.0 / math.sqrt(max(layer.in_features, 1))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)


class Projection(nn.Module):
    """Identity, linear map or MLP from the input features to the learned space.

    ``hidden_layer_sizes=()`` is the identity; ``(k,)`` a linear map to ``k``
    dimensions; ``(h1, ..., k)`` an MLP with `activation` between the linear maps and
    none after the last (so the last size is the learned dimension).  With
    `normalize`, outputs are projected onto the unit sphere.
    """

    def __init__(
        self, n_features, hidden_layer_sizes=(), activation="relu", normalize=False
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}; got {activation!r}."
            )
        sizes = [int(n_features), *(int(h) for h in hidden_layer_sizes)]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                layers.append(ACTIVATIONS[activation][0]())
            layers.append(nn.Linear(a, b))
        self.layers = nn.Sequential(*layers)
        self.activation = activation
        self.normalize = bool(normalize)
        self.n_features_out = sizes[-1]

    def linears(self):
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def reset_parameters(self, generator):
        for lin in self.linears():
            reset_linear(lin, generator)

    def forward(self, X):
        Z = self.layers(X)
        return _distances.l2_normalize(Z) if self.normalize else Z

    def lipschitz_bound(self):
        """An upper bound on the L2 Lipschitz constant of the map (a tensor).

        The product of the spectral norms of the linear maps times the activation's
        Lipschitz constant per activation (Szegedy et al., 2014); 1 for the identity.
        Differentiable (the robust CBC loss trains through it).  Not defined with
        `normalize` (``z / |z|`` is not Lipschitz near 0).
        """
        if self.normalize:
            raise ValueError("No Lipschitz bound for a projection onto the sphere.")
        lins = self.linears()
        ref = next(self.parameters(), None)
        bound = torch.ones((), dtype=torch.float32 if ref is None else ref.dtype)
        if ref is not None:
            bound = bound.to(ref.device)
        for lin in lins:
            bound = bound * torch.linalg.matrix_norm(lin.weight, ord=2)
        act = ACTIVATIONS[self.activation][1]
        return bound * act ** max(len(lins) - 1, 0)


class GaussianPrototypeLayer(nn.Module):
    """One Gaussian prototype per class, with a spherical covariance.

    Scores are class log-densities ``-prec_c / 2 |z - mu_c|^2 + k/2 log prec_c``
    (constants dropped) from :func:`protolearn._core._distances.mahalanobis_distances`.
    With `normalize` the means live on the unit sphere (as the projection's outputs
    should then), where ``|z - mu|^2 = 2 - 2 cos(z, mu)``: a tied precision makes the
    scores ``prec * cos`` plus a constant, a cosine-prototype head.  `covariance`
    "tied" shares one precision, "spherical" learns one per class; `learn_scale`
    False keeps the initial precision fixed.
    """

    def __init__(
        self,
        n_classes,
        dim,
        *,
        covariance="tied",
        scale=16.0,
        learn_scale=False,
        normalize=True,
    ):
        super().__init__()
        if covariance not in ("tied", "spherical"):
            raise ValueError(
                f"covariance must be 'tied' or 'spherical'; got {covariance!r}."
            )
        self.means = nn.Parameter(torch.zeros(n_classes, dim))
        n_prec = n_classes if covariance == "spherical" else 1
        log_prec = torch.full((n_prec,), math.log(scale))
        if learn_scale:
            self.log_precision = nn.Parameter(log_prec)
        else:
            self.register_buffer("log_precision", log_prec)
        self.covariance = covariance
        self.normalize = bool(normalize)
        self.n_classes = int(n_classes)

    def reset_parameters(self, generator):
        with torch.no_grad():
            self.means.normal_(generator=generator)

    def prototypes(self):
        return _distances.l2_normalize(self.means) if self.normalize else self.means

    def precisions(self):
        return self.log_precision.exp().expand(self.n_classes)

    def forward(self, Z):
        mu = self.prototypes()
        prec = self.precisions()
        D = _distances.mahalanobis_distances(Z, mu, prec.sqrt(), "spherical")
        scores = -0.5 * D + 0.5 * Z.shape[1] * self.log_precision.expand(self.n_classes)
        return {
            "scores": scores,
            "sq_distances": D,
            "precisions": prec,
            "means": mu,
            "layer": self,
        }


class PrototypeLayer(nn.Module):
    """Labelled prototypes with squared euclidean distances (the GLVQ family).

    ``scores[:, c] = -min_{p of class c} d(z, w_p)``; prototypes are stored grouped
    by class (``prototype_classes`` sorted).  ``d`` is the squared euclidean distance,
    or with `metric_rank` ``r`` GMLVQ's ``|Omega (z - w)|^2`` with a learned
    ``omega`` (r, dim) used normalised to unit Frobenius norm (output ``"omega"``).
    With ``training_scores=False`` the scores are left out in training mode (for
    losses that read the distances only: the GLVQ loss).
    """

    def __init__(
        self, prototype_classes, dim, *, metric_rank=None, training_scores=True
    ):
        super().__init__()
        self.training_scores = bool(training_scores)
        pc = torch.as_tensor(np.asarray(prototype_classes), dtype=torch.int64)
        if torch.any(pc[1:] < pc[:-1]):
            raise ValueError("prototype_classes must be sorted (grouped by class).")
        self.register_buffer("prototype_classes", pc)
        self.prototypes_ = nn.Parameter(torch.zeros(pc.numel(), dim))
        self.n_classes = int(pc.max()) + 1 if pc.numel() else 0
        self._groups = pc.numpy()
        if metric_rank is not None:
            self.omega = nn.Parameter(torch.eye(int(metric_rank), dim))

    def reset_parameters(self, generator):
        with torch.no_grad():
            self.prototypes_.normal_(generator=generator)

    def prototypes(self):
        return self.prototypes_

    def normalized_omega(self):
        """``omega / |omega|_F`` (None without a learned metric)."""
        omega = getattr(self, "omega", None)
        return None if omega is None else omega / (omega * omega).sum().sqrt()

    def forward(self, Z):
        omega = self.normalized_omega()
        if omega is None:
            D = _distances.squared_euclidean_distances(Z, self.prototypes_)
        else:
            D = _distances.mahalanobis_distances(Z, self.prototypes_, omega.T, "tied")
        out = {"distances": D, "prototype_classes": self.prototype_classes}
        if self.training_scores or not self.training:
            out["scores"] = -_distances.min_per_group(D, self._groups, self.n_classes)
        if omega is not None:
            out["omega"] = omega
        return out


class ComponentLayer(nn.Module):
    """RBF network / CBC over detected components (:mod:`protolearn._core._reasoning`).

    ``reasoning`` "rbf" (positive class weights only), "stable" (robust CBC, 2024) or
    "original" (CBC, 2019).  Scores are ``log p_c`` computed in log space; with
    ``training_scores=False`` they are left out in training mode (for losses that
    read the probabilities or detections only: the margin and robust losses).
    """

    def __init__(
        self,
        n_classes,
        n_components,
        dim,
        *,
        reasoning="stable",
        detection="exponential",
        sigma=1.0,
        learn_sigma=True,
        training_scores=True,
    ):
        super().__init__()
        self.training_scores = bool(training_scores)
        if reasoning not in ("rbf", "stable", "original"):
            raise ValueError(f"unknown reasoning {reasoning!r}.")
        self.components = nn.Parameter(torch.zeros(n_components, dim))
        shape = {
            "rbf": (n_classes, n_components),
            "stable": (n_classes, 2 * n_components),
            "original": (2, n_classes, n_components),
        }[reasoning]
        self.reasoning_logits = nn.Parameter(torch.zeros(shape))
        log_sigma = torch.tensor(math.log(sigma))
        if learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        self.reasoning = reasoning
        self.detection = detection

    def reset_parameters(self, generator):
        with torch.no_grad():
            self.components.normal_(generator=generator)
            self.reasoning_logits.uniform_(-0.1, 0.1, generator=generator)

    def prototypes(self):
        return self.components

    def combination(self):
        """(positive, negative) reasoning, each (C, K); negative None for "rbf"."""
        L = self.reasoning_logits
        if self.reasoning == "rbf":
            return _reasoning.decode_rbf_weights(L), None
        if self.reasoning == "stable":
            return _reasoning.decode_stable_reasoning(L)
        pos, neg, _ = _reasoning.decode_original_reasoning(L)
        return pos, neg

    def forward(self, Z):
        dist = _reasoning.component_distances(Z, self.components, self.detection)
        sigma = self.log_sigma.exp()
        pos, neg = self.combination()
        D = (-dist / sigma).exp()
        scores = None
        if self.training_scores or not self.training:
            scores = _reasoning.log_class_probabilities(dist, sigma, pos, neg)
        return {
            "scores": scores,
            "probabilities": _reasoning.class_probabilities(D, pos, neg),
            "detections": D,
            "distances": dist,
            "positive": pos,
            "negative": neg,
            "sigma": sigma,
            "detection": self.detection,
            "layer": self,
        }


class VMFMixtureLayer(nn.Module):
    """Several prototypes per class on the unit sphere (PALM's mixture of vMF).

    Prototypes are a buffer moved by exponential moving averages
    (:meth:`ema_update`, called by the PALM loss during training), not by gradients.
    Scores: ``log sum_k exp(kappa cos(z, p_ck))`` per class (the log of an equally
    weighted vMF mixture, up to the normaliser).  ``z`` must be unit-norm.
    """

    def __init__(self, n_classes, n_prototypes, dim, *, kappa=10.0, momentum=0.999):
        super().__init__()
        self.register_buffer("prototypes_", torch.zeros(n_classes * n_prototypes, dim))
        self.n_classes, self.n_prototypes = int(n_classes), int(n_prototypes)
        self.kappa, self.momentum = float(kappa), float(momentum)

    def reset_parameters(self, generator):
        with torch.no_grad():
            self.prototypes_.normal_(generator=generator)
            self.prototypes_.copy_(_distances.l2_normalize(self.prototypes_))

    def prototypes(self):
        return self.prototypes_

    def forward(self, Z):
        S = Z @ self.prototypes_.T  # cosine similarities (unit-norm rows)
        C, K = self.n_classes, self.n_prototypes
        scores = torch.logsumexp(self.kappa * S.view(-1, C, K), dim=2)
        return {"scores": scores, "similarities": S, "z": Z, "layer": self}

    @torch.no_grad()
    def ema_update(self, Z, y, assignment):
        """``p <- normalise(m p + (1 - m) sum_i q_i z_i)`` for the prototypes of each
        class in the batch, ``q`` the (n, K) within-class assignments."""
        C, K = self.n_classes, self.n_prototypes
        P = self.prototypes_.view(C, K, -1)
        for c in torch.unique(y).tolist():
            rows = y == c
            update = assignment[rows].T @ Z[rows]  # (K, k)
            P[c] = _distances.l2_normalize(
                self.momentum * P[c] + (1 - self.momentum) * update
            )

    def log_density(self, Z):
        """Equal-weight vMF mixture log-density of each class at ``Z``, (n, C), from
        :func:`protolearn._core._mixture.vmf_mixture_log_density` (no gradient)."""
        C, K = self.n_classes, self.n_prototypes
        P = self.prototypes_.detach().cpu().numpy().reshape(C, K, -1)
        log_w = np.full(K, -np.log(K))
        cols = [
            _mixture.vmf_mixture_log_density(Z, P[c], log_w, self.kappa)
            for c in range(C)
        ]
        return torch.stack(cols, dim=1)
