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

Persistence: ``__getstate__`` replaces ``net_`` by plain numpy / list state
(:func:`protolearn.nn.net_state`) and the head spec; ``__setstate__`` rebuilds the
skorch net on the CPU, so a model fitted on a GPU loads on a machine without one.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..base import BasePrototypeClassifier, VersionedStateMixin
from ..utils._sklearn_compat import Interval, StrOptions
from ..utils._validation import validate_predict_data
from ._streaming import EPOCH_DOC, classifier_partial_fit, stochastic

_TRAINING_DOC = """
    hidden_layer_sizes : tuple of int, default={hls}
        The projection: ``()`` is the identity, ``(k,)`` a linear map to ``k``
        dimensions, ``(h1, ..., k)`` an MLP with `activation` between the linear maps
        (the last size is the learned dimension).
    activation : {{"relu", "tanh", "logistic", "identity"}}, default="relu"
    solver : {{"adam", "lbfgs"}}, default="adam"
        Mini-batch Adam (one epoch per iteration) or full-batch L-BFGS
        (``torch.optim.LBFGS`` with a strong-Wolfe line search, one ``step`` per
        iteration).
    alpha : float >= 0, default={alpha}
        L2 penalty on the projection's weights (MLPClassifier's meaning).
    batch_size : int or "auto", default="auto"
        Adam mini-batch size; "auto" is ``min(200, n_samples)``.
    learning_rate_init : float > 0, default={lr}
        Adam learning rate.
    max_iter : int >= 1, default={max_iter}
        Most epochs (Adam) or L-BFGS steps.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the training data and stop
        when its loss has not improved by ``tol`` for ``n_iter_no_change`` epochs
        (the best weights are restored); otherwise the training loss is monitored.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int >= 1, default=10
    tol : float >= 0, default=1e-4
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
    net_params : dict or None, default=None
        Extra keyword arguments of the skorch ``NeuralNet`` (skorch's names, e.g.
        ``{{"optimizer__weight_decay": 1e-4}}``); they override the above.
"""


def training_doc(hls, alpha=1e-4, lr=1e-3, max_iter=200):
    return _TRAINING_DOC.format(hls=hls, alpha=alpha, lr=lr, max_iter=max_iter)


class BaseDeepPrototypeClassifier(BasePrototypeClassifier):
    """Base of the deep prototype classifiers (see the module docstring)."""

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

    # --------------------------------------------------------------- training
    def _settings(self):
        from ..nn import SETTINGS

        return {k: getattr(self, k) for k in SETTINGS}

    def _check_hidden(self):
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
        return (
            self.warm_start
            and hasattr(self, "net_")
            and np.array_equal(getattr(self, "classes_", None), classes)
        )

    def _fit_final(self, X, y_idx, rng, device):
        """Train (or with warm_start continue) the head that predicts."""
        from ..nn import fit_net

        if self._can_warm_start(X, self.classes_):
            losses, n_iter = fit_net(
                self.net_, X, y_idx, name=type(self).__name__, partial=True
            )
        else:
            self.net_, self._spec, losses, n_iter = self._train_head(
                X, y_idx, self.classes_.size, rng, device
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

    # ------------------------------------------------------------- prediction
    def _outputs(self, X, keys):
        from ..nn import head_outputs

        return head_outputs(self.net_.module_, X, keys)

    def _class_scores(self, X):
        return self._outputs(X, ["scores"])["scores"]

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

    def __sklearn_tags__(self):
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        # transform (the learned embedding) computes in float32, the head's dtype
        tags.transformer_tags = TransformerTags(preserves_dtype=["float32"])
        tags.non_deterministic = False
        return tags

    def fit_transform(self, X, y):
        """Fit, then return the learned embedding of ``X`` (:meth:`transform`).

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        Z : ndarray (or tensor on X's device) of shape (n_samples, n_dims)
        """
        return self.fit(X, y).transform(X)

    # ------------------------------------------------------------ persistence
    # Called as plain functions by DeepPrototypeMixtureDetector too, hence the explicit
    # VersionedStateMixin (which records and checks the protolearn version) instead of
    # super().
    def __getstate__(self):
        state = VersionedStateMixin.__getstate__(self)
        net = state.pop("net_", None)
        if net is not None:
            from ..nn import net_state

            state["_net_state"] = net_state(net)
        return state

    def __setstate__(self, state):
        state = dict(state)
        net = state.pop("_net_state", None)
        VersionedStateMixin.__setstate__(self, state)
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
