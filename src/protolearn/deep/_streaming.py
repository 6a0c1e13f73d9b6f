"""``partial_fit`` of the deep heads: one epoch over each new batch, from the current net.

MLPClassifier.partial_fit's convention: one pass of the optimiser over the batch,
its weights and Adam state carried over from the previous call (or from ``fit``);
no validation split and no stopping rule.  The head's output size is fixed, so the
classes of the stream are given on the first call.  The training step works on a
copy of the net that replaces ``net_`` only when the epoch succeeds, so a batch
that raises (bad input, a diverging loss) leaves the model as it was
(:func:`protolearn.base.unchanged_on_error` restores the other attributes).

The classifiers' ``partial_fit`` is
:meth:`~protolearn.deep._base.BaseDeepPrototypeClassifier.partial_fit`;
:func:`detector_partial_fit` is DeepPrototypeMixtureDetector's.
"""

import copy
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ..base import unchanged_on_error
from ..utils._validation import validate_fit_data, validate_optional_labels

# Fitted attributes of ``fit`` that a stream sets to None, by the parameter that
# makes them non-None (DeepGaussianPrototypeClassifier's rejection margins,
# DeepCBCClassifier's robust margin).
_STREAM_NONE = {"nota": ("margins_", "nota_label_"), "loss": ("robust_margin_",)}

EPOCH_DOC = """One epoch of training over a batch, continuing from the current net.

        As :meth:`sklearn.neural_network.MLPClassifier.partial_fit`: each call
        runs one pass of Adam over the batch, in mini-batches of ``batch_size``,
        from the current weights and optimiser state (``max_iter``,
        ``early_stopping`` and the stopping rule do not apply: call it again for
        more epochs).  A model fitted by :meth:`fit` is continued.  The first call
        builds the head; its prototypes start as :meth:`fit` starts them (from the
        batch's class statistics) when the batch holds every class, else at their
        seeded random initialisation (with a warning).  Needs ``solver="adam"``.
        A batch that raises leaves the model as it was.
"""


def stochastic(est):
    """``partial_fit`` exists for the Adam solver only (as MLPClassifier's for its
    stochastic solvers): an L-BFGS step needs the whole training set."""
    if est.solver != "adam":
        raise AttributeError(
            f"partial_fit is only available for solver='adam'; got solver={est.solver!r}."
        )
    return True


def _refuse(est, first):
    """Raise for configurations that cannot learn from a stream."""
    if getattr(est, "nota", None) is not None:
        raise ValueError(
            f"partial_fit needs nota=None: nota={est.nota!r} fits its rejection "
            "margins on held-out rows. Use fit."
        )
    if first and getattr(est, "loss", None) == "robust":
        raise ValueError(
            "loss='robust' starts from a margin-loss fit and a margin measured on "
            "the training data: call fit first (partial_fit then continues it), or "
            "stream with loss='margin'."
        )


def _stream_classes(est, y, classes, known, min_classes):
    """The classes of the stream: `classes` on the first call (`known` is None),
    equal to `known` afterwards; labels of `y` outside them raise."""
    if known is None:
        if classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit (the head "
                "allocates the prototypes of every class at once)."
            )
        known = np.unique(np.asarray(classes))
        if known.size < min_classes:
            raise ValueError(
                f"{type(est).__name__} needs at least {min_classes} classes; got "
                f"classes={known.tolist()!r}."
            )
    elif classes is not None and not np.array_equal(np.unique(classes), known):
        raise ValueError(
            f"classes={np.asarray(classes).tolist()!r} is not the same as on the "
            f"first call to partial_fit: {known.tolist()!r}."
        )
    unseen = np.setdiff1d(np.unique(y), known)
    if unseen.size:
        raise ValueError(
            f"y has labels {unseen.tolist()!r} that are not in the classes of the "
            f"stream {known.tolist()!r}; pass every class in classes on the first call."
        )
    return known


def _new_net(est, X, y_idx, n_classes, need, rng, device):
    """A fresh, initialised, untrained net for the first batch of a stream; the
    head is initialised from the batch as ``fit`` does when the batch has `need`
    rows of every class."""
    import torch

    from ..nn import build_head, make_net

    spec = est._head_spec(X.shape[1], n_classes)
    head = build_head(spec)
    g = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
    head.reset_parameters(g)
    counts = np.bincount(y_idx, minlength=n_classes)
    if counts.min() >= need:
        est._n_classes = n_classes  # (DeepCBCClassifier's _init_head reads it)
        try:
            est._init_head(head, X, y_idx, rng)
        finally:
            del est._n_classes
    else:
        warnings.warn(
            f"The first partial_fit batch has fewer than {need} row(s) of class "
            f"index(es) {np.flatnonzero(counts < need).tolist()}: the head starts at "
            "its random initialisation instead of the batch's class statistics. "
            "Put every class in the first batch.",
            UserWarning,
        )
    name, params = est._loss_spec()
    net = make_net(
        head,
        {**est._settings(), "early_stopping": False},
        loss=name,
        loss_params=params,
        seed=int(rng.randint(np.iinfo(np.int32).max)),
        n_samples=X.shape[0],
        device=device,
    )
    net.initialize()
    return net, spec


def _one_epoch(est, net, X, y_idx):
    """One epoch of `net`'s optimiser on the batch, without a validation split or a
    stopping rule; ``(loss_curve, n_iter)`` over all epochs so far."""
    from ..nn import fit_net

    saved = net.max_epochs, net.train_split, net.callbacks_
    net.max_epochs, net.train_split = 1, None
    net.callbacks_ = [
        (n, cb)
        for n, cb in net.callbacks_
        if n not in ("early_stopping", "valid_acc", "weight_averaging")
    ]
    try:
        with warnings.catch_warnings():
            # (one epoch always "reaches max_iter")
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fit_net(net, X, y_idx, name=type(est).__name__, partial=True)
    finally:
        net.max_epochs, net.train_split, net.callbacks_ = saved


def _step(est, X, y_idx, n_classes, need, first, device):
    """Train the stream's net on a batch (a copy, kept only if the epoch succeeds).
    Returns the generator of the first call (None afterwards)."""
    rng = None
    if first:
        rng = check_random_state(est.random_state)
        net, est._spec = _new_net(est, X, y_idx, n_classes, need, rng, device)
        params = est.get_params(deep=False)
        for param, attrs in _STREAM_NONE.items():
            if param in params:
                for attr in attrs:
                    setattr(est, attr, None)
    else:
        net = copy.deepcopy(est.net_)
    est.loss_curve_, est.n_iter_ = _one_epoch(est, net, X, y_idx)
    est.net_ = net
    return rng


def _store_fitted(est):
    """``est._store_fitted()`` on few CPU threads: it runs after every batch, and
    small linear algebra on it (DeepCBCClassifier's spectral norms) takes seconds on
    two busy threads against milliseconds on one."""
    import torch

    from ..classification._trained import _cpu_threads

    n = sum(p.numel() for p in est.net_.module_.parameters())
    with _cpu_threads(torch, est.net_.device, n):
        est._store_fitted()


def classifier_partial_fit(est, X, y, classes):
    """BaseDeepPrototypeClassifier.partial_fit."""
    with unchanged_on_error(est):
        first = not hasattr(est, "net_")
        _refuse(est, first)
        device = est._device(X)
        X, y = validate_fit_data(est, X, y, reset=first)
        check_classification_targets(y)
        y = column_or_1d(y)
        est._check_hidden()
        known = _stream_classes(
            est, y, classes, None if first else est.classes_, min_classes=2
        )
        X32, y_idx = est._cast(X, np.searchsorted(known, y))
        est.classes_ = known
        _step(est, X32, y_idx, known.size, 1, first, device)
        _store_fitted(est)
    return est


def detector_partial_fit(self, X, y=None, classes=None):
    with unchanged_on_error(self):
        first = not hasattr(self, "net_")
        device = self._device(X)
        labelled = y is not None
        # (a model from fit has no stream yet: its labels show in its classes)
        was = None if first else getattr(self, "_stream_labelled", None)
        if was is None and not first and self._classes.size > 1:
            was = True
        if was is not None and labelled != was:
            raise ValueError(
                "Give y in every partial_fit batch or in none: this model was "
                f"trained {'with' if was else 'without'} labels."
            )
        if labelled:
            X, y = validate_fit_data(self, X, y, reset=first)
            check_classification_targets(y)
            y = column_or_1d(y)
            if first and classes is None:  # (not a classifier: sklearn passes none)
                classes = np.unique(y)
            known = _stream_classes(
                self, y, classes, None if first else self._classes, min_classes=1
            )
            y_idx = np.searchsorted(known, y)
        else:
            X, known, y_idx = validate_optional_labels(self, X, None, reset=first)
        self._check_hidden(X.shape[1])
        Xf, y_idx = self._cast(X, y_idx)
        K = self.n_prototypes
        rng = _step(self, Xf, y_idx, known.size, K, first, device)
        self._classes, self._stream_labelled = known, labelled
        self.prototypes_ = self.net_.module_.layer.prototypes().detach().cpu().numpy()
        self.prototype_labels_ = np.repeat(known, K)
        if first:
            from ..ood import PrototypeMixtureDetector

            self.detector_ = PrototypeMixtureDetector(
                n_prototypes=K,
                top_k=self.top_k,
                epsilon=self.epsilon,
                score_type=self.score_type,
                contamination=self.contamination,
                random_state=int(rng.randint(np.iinfo(np.int32).max)),
            )
        else:
            self.detector_ = copy.deepcopy(self.detector_)
        Z = self._outputs(Xf, ["z"])["z"]
        self.detector_.partial_fit(Z, y_idx if labelled else None)
        # (the scoring detector's offset is the contamination percentile of the
        # scores of the embedded rows it has seen: the deep detector's own rule)
        self.offset_ = self.detector_.offset_
    return self


detector_partial_fit.__doc__ = (
    EPOCH_DOC
    + """
        The scoring detector (``detector_``) is then updated by its own
        :meth:`~protolearn.ood.PrototypeMixtureDetector.partial_fit` (incremental
        EM) with the batch's embedding under the updated net, and ``offset_`` is
        its offset; earlier batches' statistics stay in the embedding of their
        time.  After :meth:`fit` (which keeps no running statistics) the scoring
        detector starts a new stream from this batch, with a warning.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Class labels (``n_prototypes`` prototypes per class); None: one class.
            Give them in every batch or in none.
        classes : array-like, default=None
            Every class of the stream (None on the first call: the labels of the
            first batch), equal to the first call's when given later; labels
            outside it raise.

        Returns
        -------
        self : object
        """
)
