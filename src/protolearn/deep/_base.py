"""The shared base of the deep prototype heads: wraps a skorch net in ``net_``.

The estimator owns the scikit-learn contract (validation, ``classes_``, float32 /
int64 casts, labels out of ``classes_``, ``random_state``); training is
:mod:`protolearn.nn`'s engine.  Subclasses implement three hooks:

``_head_spec(n_features, n_classes) -> dict``
    The :func:`protolearn.nn.build_head` spec (plain values).
``_loss_spec() -> (name, params)``
    The loss of :data:`protolearn.nn.LOSSES` and its parameters.
``_init_head(head, X, y_idx, rng)``
    Data-dependent initialisation after the seeded random one (``X`` float32 numpy,
    ``y_idx`` int64 class indices; e.g. prototypes at the class means of the initial
    embedding).

:class:`DeepHeadMixin` holds the training, embedding and persistence machinery (shared
by the classifiers and the detector); :class:`BaseDeepPrototypeClassifier` adds the
classifier's ``fit`` prologue, whose hook is ``_fit_head(X, y, device)``.

Persistence: ``__getstate__`` replaces ``net_`` by plain numpy / list state
(:func:`protolearn.nn.net_state`) and the head spec; ``__setstate__`` rebuilds the
skorch net on the CPU, so a model fitted on a GPU loads on a machine without one.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..base import BasePrototypeClassifier
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import validate_fit_data, validate_predict_data
from ._streaming import EPOCH_DOC, classifier_partial_fit, stochastic

_TRAINING_DOC = """
    hidden_layer_sizes : tuple of int, default={hls}
        The projection: ``()`` is the identity, ``(k,)`` a linear map to ``k``
        dimensions, ``(h1, ..., k)`` an MLP with `activation` between the linear maps
        (the last size is the learned dimension).
    activation : {{"relu", "tanh", "logistic", "identity"}}, default="relu"
        The MLP's non-linearity.
    solver : {{"adam", "lbfgs"}}, default="adam"
        Mini-batch Adam (one epoch per iteration) or full-batch L-BFGS
        (``torch.optim.LBFGS`` with a strong-Wolfe line search, one ``step`` per
        iteration).
    alpha : float, default={alpha}
        Non-negative L2 penalty on the projection's weights (MLPClassifier's meaning).
    batch_size : int or "auto", default="auto"
        Adam mini-batch size; "auto" is ``min(200, n_samples)``.
    learning_rate_init : float, default={lr}
        Adam learning rate (positive).
    max_iter : int, default={max_iter}
        Most epochs (Adam) or L-BFGS steps.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the training data and stop
        when its loss has not improved by ``tol`` for ``n_iter_no_change`` epochs
        (the best weights are restored); otherwise the training loss is monitored.
    validation_fraction : float, default=0.1
        Share of the training data held out with ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` before stopping.
    tol : float, default=1e-4
        Smallest loss improvement that counts (non-negative).
    average : bool or int, default=False
        Stochastic weight averaging (Izmailov et al., 2018): the weights a fit
        returns are the equal-weight average of the weights at the end of each
        epoch from the ``average``-th epoch of that fit on (True: from epoch
        ``max_iter // 2 + 1``, the second half); False keeps the last epoch's
        weights.  A fit that stops earlier keeps its last weights; with
        ``warm_start`` the next fit continues from the average and averages its
        own epochs; ``partial_fit`` does not average.  Needs ``solver="adam"`` and
        ``early_stopping=False``.
    warm_start : bool, default=False
        Continue training the fitted head (same classes and features) instead of
        starting again.
    verbose : int, default=0
        Print skorch's epoch table (and a progress bar when epochs have many
        batches).
    random_state : int, RandomState instance or None, default=None
        Seeds a ``torch.Generator`` for the initialisation and one for the data
        loader (never torch's global seed), and every split.
    device : {{"auto", "cpu", "cuda"}}, default="auto"
        Where training runs ("auto": CUDA when available); the fitted model predicts
        there and pickles to a CPU-loadable state.
    net_params : dict, default=None
        Extra keyword arguments of the skorch ``NeuralNet`` (skorch's names, e.g.
        ``{{"optimizer__weight_decay": 1e-4}}``); they override the above.
"""


def training_doc(hls, alpha=1e-4, lr=1e-3, max_iter=200):
    return _TRAINING_DOC.format(hls=hls, alpha=alpha, lr=lr, max_iter=max_iter)


class DeepHeadMixin:
    """Training, embedding and persistence of a head wrapping a skorch net in ``net_``
    (see the module docstring); left of the estimator's base class."""

    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions({"relu", "tanh", "logistic", "identity"})],
        "solver": [StrOptions({"adam", "lbfgs"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "average": ["boolean", Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "net_params": [dict, None],
    }

    # ------------------------------------------------------------------ hooks
    def _head_spec(self, n_features, n_classes):  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss_spec(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _init_head(self, head, X, y_idx, rng):
        """Optional data-dependent initialisation (default: none)."""

    def _fitted_classes(self):
        """The classes the fitted net was trained on (None before fit)."""
        return getattr(self, "classes_", None)

    # --------------------------------------------------------------- training
    def _settings(self):
        from ..nn import SETTINGS

        return {k: getattr(self, k) for k in SETTINGS}

    def _check_hidden(self, n_features=None):
        """``hidden_layer_sizes`` as a tuple of ints (None, where a subclass allows
        it, is one linear map of the input's own dimension, ``n_features``)."""
        if self.hidden_layer_sizes is None:
            return (int(n_features),)
        hls = tuple(np.atleast_1d(np.asarray(self.hidden_layer_sizes, dtype=object)))
        if not all(isinstance(h, (Integral, np.integer)) and h >= 1 for h in hls):
            raise ValueError(
                "hidden_layer_sizes must hold positive integers; got "
                f"{self.hidden_layer_sizes!r}."
            )
        return tuple(int(h) for h in hls)

    def _train_head(self, X, y_idx, n_classes, rng, device, *, loss=None):
        """Build, initialise and train one head on (X float32, y_idx int64).

        Returns ``(net, spec, loss_curve, n_iter)``.
        """
        import torch

        from ..nn import build_head, fit_net, make_net

        spec = self._head_spec(X.shape[1], n_classes)
        head = build_head(spec)
        g = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        head.reset_parameters(g)
        self._init_head(head, X, y_idx, rng)
        name, params = self._loss_spec() if loss is None else loss
        net = make_net(
            head,
            self._settings(),
            loss=name,
            loss_params=params,
            seed=int(rng.randint(np.iinfo(np.int32).max)),
            n_samples=X.shape[0],
            device=device,
        )
        losses, n_iter = fit_net(net, X, y_idx, name=type(self).__name__)
        return net, spec, losses, n_iter

    def _can_warm_start(self, X, classes):
        """Whether ``fit`` continues the fitted net: ``warm_start``, and the same
        classes and number of features as the net was trained on."""
        return (
            self.warm_start
            and hasattr(self, "net_")
            and self._spec["n_features"] == X.shape[1]
            and np.array_equal(self._fitted_classes(), classes)
        )

    def _fit_final(self, X, y_idx, n_classes, rng, device, warm):
        """Train (or with ``warm``, continue) the net that predicts; sets ``net_``,
        ``loss_curve_``, ``n_iter_`` and ``prototypes_``."""
        from ..nn import fit_net

        if warm:
            losses, n_iter = fit_net(
                self.net_, X, y_idx, name=type(self).__name__, partial=True
            )
        else:
            self.net_, self._spec, losses, n_iter = self._train_head(
                X, y_idx, n_classes, rng, device
            )
        self.loss_curve_ = losses
        self.n_iter_ = n_iter
        self._store_fitted()

    def _store_fitted(self):
        """Numpy fitted attributes from the trained head (``prototypes_``, ...)."""
        layer = self.net_.module_.layer
        self.prototypes_ = layer.prototypes().detach().cpu().numpy().copy()

    @staticmethod
    def _cast(X, y_idx):
        return np.asarray(X, dtype=np.float32), np.asarray(y_idx, dtype=np.int64)

    def _device(self, X):
        from ..nn import resolve_device

        return resolve_device(self.device, X)

    # ------------------------------------------------------------- embedding
    def _outputs(self, X, keys):
        from ..nn import head_outputs

        return head_outputs(self.net_.module_, X, keys)

    def transform(self, X):
        """The learned embedding (the projection's output).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray (or tensor on X's device) of shape (n_samples, n_dims)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        return self._outputs(X, ["z"])["z"]

    def fit_transform(self, X, y=None):
        """Fit, then return the learned embedding of ``X`` (:meth:`transform`).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Labels, as in :meth:`fit`.

        Returns
        -------
        Z : ndarray (or tensor on X's device) of shape (n_samples, n_dims)
        """
        return self.fit(X, y).transform(X)

    def __sklearn_tags__(self):
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        # transform (the learned embedding) computes in float32, the head's dtype
        tags.transformer_tags = TransformerTags(preserves_dtype=["float32"])
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------ persistence
    def __getstate__(self):
        state = super().__getstate__()
        net = state.pop("net_", None)
        if net is not None:
            from ..nn import net_state

            state["_net_state"] = net_state(net)
        return state

    def __setstate__(self, state):
        state = dict(state)
        net = state.pop("_net_state", None)
        super().__setstate__(state)
        if net is not None:
            from ..nn import build_head, make_net, restore_net

            head = build_head(self._spec)
            name, params = self._loss_spec()
            self.net_ = restore_net(
                make_net(
                    head, self._settings(), loss=name, loss_params=params, device="cpu"
                ),
                head,
                net,
            )


class BaseDeepPrototypeClassifier(DeepHeadMixin, BasePrototypeClassifier):
    """Base of the deep prototype classifiers: the ``fit`` prologue (validation,
    labels, device) before the hook ``_fit_head(X, y, device)``."""

    def _fit_head(self, X, y, device):  # pragma: no cover - abstract
        raise NotImplementedError

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the head (and, with rejection, fit its margins).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (with rejection, rows labelled ``nota_label`` are
            known-unknown samples, see the class docstring).

        Returns
        -------
        self : object
        """
        device = self._device(X)
        X, y = validate_fit_data(self, X, y, reset=True)
        check_classification_targets(y)
        y = column_or_1d(y)
        self._check_hidden()
        return self._fit_head(X, y, device)

    def _encode_classes(self, y):
        """Sorted classes of ``y`` and each row's class index (at least 2 classes)."""
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got "
                f"{classes.size} class ({classes.tolist()})."
            )
        return classes, y_idx

    def _class_scores(self, X):
        return self._outputs(X, ["scores"])["scores"]

    # -------------------------------------------------------------- streaming
    @available_if(stochastic)
    def partial_fit(self, X, y, classes=None):
        return classifier_partial_fit(self, X, y, classes)

    partial_fit.__doc__ = (
        EPOCH_DOC
        + """
        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every class of the stream: required on the first call (the head
            allocates the prototypes of every class at once), equal to
            ``classes_`` when given later.  Labels outside it raise.

        Returns
        -------
        self : object
        """
    )
