"""Torch layers, family losses and the one skorch training engine of protolearn.

This is the only module that imports skorch.  It has no estimators:
:mod:`protolearn.deep` (and the shallow trained classifiers) build on it.

Engine API (small and stable)
-----------------------------
A *head* is a ``torch.nn.Module`` whose ``forward(X)`` returns a dict with at least
``"scores"`` (n, n_classes; higher = more likely) and whatever its loss reads.
:class:`PrototypeHead` = :class:`Projection` (identity / linear / MLP, from
``hidden_layer_sizes``) followed by one prototype layer
(:class:`GaussianPrototypeLayer`, :class:`PrototypeLayer` (GLVQ),
:class:`ComponentLayer` (RBF / CBC), :class:`VMFMixtureLayer` (PALM)); it adds ``"z"``
(the learned embedding).  :func:`build_head` makes one from a plain spec dict, which is
what a fitted estimator pickles.

A *loss* is a function ``loss(out, y, **params) -> scalar`` (batch mean) of that dict
and the int64 class indices: one of :data:`LOSSES` by name (``"cross_entropy"``,
``"gpam_margin"``, ``"glvq"``, ``"cbc_margin"``, ``"robust_cbc"``, ``"palm"``) or any
callable; :func:`adb_boundary_loss` (second-stage radii) is exported separately, as are
:func:`between_class_points` and :func:`outlier_exposure_loss` (the synthetic
outliers ``"gpam_margin"`` trains with when its ``outlier_exposure`` weight is set).

Training::

    head = build_head(spec); head.reset_parameters(torch.Generator().manual_seed(s))
    net = make_net(head, settings, loss="gpam_margin", loss_params={"margin": 0.2},
                   seed=s, n_samples=len(X), device=resolve_device("auto"))
    loss_curve, n_iter = fit_net(net, X.astype("float32"), y.astype("int64"))
    out = head_outputs(net.module_, X_new, ["scores", "z"])   # numpy in -> numpy out

A shallow trained classifier (GLVQ, GMLVQ, RBF, CBC) is a head whose projection is the
identity: ``{"hidden_layer_sizes": (), "layer": "prototypes", "layer_params":
{"prototype_classes": ...}}`` with ``loss="glvq"``, or ``"layer": "components"`` with
``loss="cbc_margin"`` / ``"robust_cbc"``; a new family adds a layer to :data:`LAYERS`
and a loss to :data:`LOSSES` and needs nothing else from the engine.

``settings`` is a dict with MLPClassifier's names and meanings (:data:`SETTINGS`):
``solver`` ("adam": mini-batch Adam, one epoch per iteration; "lbfgs": full-batch
``torch.optim.LBFGS`` with a strong-Wolfe line search, one ``LBFGS.step`` -- up to
torch's 20 quasi-Newton iterations, ``net_params={"optimizer__max_iter": m}`` -- per
iteration; skorch passes the closure.  One inner iteration per step stalls on these
losses), ``alpha`` (L2 penalty on the projection's
weights), ``batch_size`` ("auto" = min(200, n)), ``learning_rate_init``, ``max_iter``
(epochs), ``early_stopping`` (a stratified ``validation_fraction`` split, skorch's
``ValidSplit``; stop when the validation loss has not improved by ``tol`` for
``n_iter_no_change`` epochs and restore the best weights; without it the training
loss is monitored the same way), ``verbose`` (skorch's epoch table, and a progress bar
when an epoch has many batches), ``device`` and ``net_params`` (skorch keyword
overrides); optionally ``average`` (False, True or an epoch k: the weights a training
run returns are the average of those at the end of each of its epochs from the k-th,
by default the second half's -- stochastic weight averaging through
``torch.optim.swa_utils.AveragedModel``, :class:`WeightAveraging`; Adam without early
stopping only).  Randomness comes only from the generators given (the head's
``reset_parameters`` and the data loader's seeded ``torch.Generator``); nothing
seeds torch's global state.  :func:`net_state` / :func:`restore_net` turn a trained
net into plain numpy/lists and back (on the CPU when no GPU is present).
"""

from ._engine import (
    SETTINGS,
    PrototypeNet,
    WeightAveraging,
    fit_net,
    make_net,
    net_state,
    resolve_device,
    restore_net,
)
from ._head import LAYERS, PrototypeHead, build_head, head_outputs
from ._layers import (
    ComponentLayer,
    GaussianPrototypeLayer,
    Projection,
    PrototypeLayer,
    VMFMixtureLayer,
)
from ._losses import (
    LOSSES,
    HeadLoss,
    adb_boundary_loss,
    batch_pairs,
    between_class_points,
    cbc_margin_loss,
    cross_entropy,
    glvq_loss,
    gpam_margin_loss,
    outlier_exposure_loss,
    palm_loss,
    robust_cbc_loss,
)

__all__ = [
    "LAYERS",
    "LOSSES",
    "SETTINGS",
    "ComponentLayer",
    "GaussianPrototypeLayer",
    "HeadLoss",
    "Projection",
    "PrototypeHead",
    "PrototypeLayer",
    "PrototypeNet",
    "VMFMixtureLayer",
    "WeightAveraging",
    "adb_boundary_loss",
    "batch_pairs",
    "between_class_points",
    "build_head",
    "cbc_margin_loss",
    "cross_entropy",
    "fit_net",
    "glvq_loss",
    "gpam_margin_loss",
    "head_outputs",
    "make_net",
    "net_state",
    "outlier_exposure_loss",
    "palm_loss",
    "resolve_device",
    "restore_net",
    "robust_cbc_loss",
]
