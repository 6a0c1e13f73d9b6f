"""Deep Classification-by-Components: a learned projection + CBC, certified radii."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._core import _prototypes, _reasoning, _robustness
from ..utils._sklearn_compat import Interval, StrOptions
from ..utils._validation import validate_predict_data
from ._base import BaseDeepPrototypeClassifier, training_doc


class DeepCBCClassifier(BaseDeepPrototypeClassifier):
    __doc__ = (
        """Classification-by-Components on a learned projection, with certified radii.

    A projection (identity, linear map or MLP with 1-Lipschitz activations) maps the
    features to a learned space where CBC detects components
    ``d_k(z) = exp(-|z - w_k| / sigma)`` and reasons over them (positive / negative
    reasoning, Saralajew et al., 2019; 2024; see
    :class:`~protolearn.classification.CBCClassifier`).  Trained with CBC's margin
    loss, or (``loss="robust"``) first with it and then with the robust loss, which
    asks every training sample to be certified at ``robust_margin`` in the *input*
    space.

    :meth:`certified_radius` is in the input space and sound: the learned-space
    radius of Theorem 1 (Saralajew et al., 2024) divided by the projection's
    Lipschitz bound ``lipschitz_`` (the spectral norm of a linear map; the product
    of the spectral norms for an MLP, as ReLU / tanh are 1-Lipschitz).

    Read more in the :doc:`User Guide </user_guide/deep_heads>`.

    Parameters
    ----------
    n_components : int or None, default=None
        Components shared by all classes; None means two per class.
    reasoning : {"stable", "original"}, default="stable"
        The CBC model (see :class:`~protolearn.classification.CBCClassifier`).
    detection : {"exponential", "gaussian"}, default="exponential"
        Detection from the euclidean or the squared euclidean distance.
    sigma : "auto" or float, default="auto"
        Initial (positive) detection temperature ("auto": the shallow model's rule
        in the initial learned space).
    learn_sigma : bool, default=True
        Train ``sigma`` with the other parameters.
    loss : {"margin", "robust"}, default="margin"
        CBC's margin loss, or the margin loss followed by the robust loss.
    margin : float, default=0.1
        Margin (>= 0) of the "margin" loss, in probability units.
    mixup : float, default=0.0
        Non-negative weight of a manifold-mixup term in the margin loss: pairs of
        training rows mixed in the learned space, each mix scored against both
        labels in proportion (:func:`protolearn.nn.cbc_margin_loss`).  It
        regularises the head and costs a second scoring of each batch; the robust
        loss's stage does not use it.
    robust_margin : "auto" or float, default="auto"
        Input-space radius (>= 0) the robust loss asks for ("auto": the median over at most
        500 training samples of half the distance to the nearest sample of another
        class); stored in ``robust_margin_``.
"""
        + training_doc("(256,)", alpha=0.0, lr=1e-3, max_iter=40)
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    components_ : ndarray of shape (n_components, n_dims)
        Components in the learned space (``prototypes_`` is the same array).
    prototypes_ : ndarray of shape (n_components, n_dims)
    sigma_ : float
    reasoning_ : ndarray of shape (n_classes, n_components, 3)
        (positive, negative, indefinite) reasoning, as in ``CBCClassifier``.
    lipschitz_ : float
        Lipschitz bound of the projection (1 for the identity).
    robust_margin_ : float or None
    net_ : skorch ``NeuralNet``
    loss_curve_ : list of float
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    protolearn.classification.CBCClassifier : the shallow model.

    References
    ----------
    .. [1] Saralajew, Holdijk, Rees, Villmann. "Classification-by-Components."
       NeurIPS, 2019.
    .. [2] Saralajew, Rana, Villmann, Shaker. "A Robust Prototype-Based Network with
       Interpretable RBF Classifier Foundations." AAAI, 2025 (arXiv:2412.15499).
    .. [3] Szegedy et al. "Intriguing properties of neural networks." ICLR, 2014
       (Lipschitz bounds from spectral norms).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.deep import DeepCBCClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DeepCBCClassifier(hidden_layer_sizes=(4,), n_components=6,
    ...                         learning_rate_init=0.01, max_iter=100,
    ...                         random_state=0).fit(X, y)
    >>> float(clf.score(X, y)) > 0.9
    True
    >>> bool((clf.certified_radius(X[:5]) >= 0).all())
    True
    """
    )

    _parameter_constraints = {
        **BaseDeepPrototypeClassifier._parameter_constraints,
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "reasoning": [StrOptions({"stable", "original"})],
        "detection": [StrOptions({"exponential", "gaussian"})],
        "sigma": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "learn_sigma": ["boolean"],
        "loss": [StrOptions({"margin", "robust"})],
        "margin": [Interval(Real, 0, None, closed="left")],
        "mixup": [Interval(Real, 0, None, closed="left")],
        "robust_margin": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        n_components=None,
        reasoning="stable",
        detection="exponential",
        sigma="auto",
        learn_sigma=True,
        loss="margin",
        margin=0.1,
        mixup=0.0,
        robust_margin="auto",
        hidden_layer_sizes=(256,),
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size="auto",
        learning_rate_init=1e-3,
        max_iter=40,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        average=False,
        warm_start=False,
        verbose=0,
        random_state=None,
        device="auto",
        net_params=None,
    ):
        self.n_components = n_components
        self.reasoning = reasoning
        self.detection = detection
        self.sigma = sigma
        self.learn_sigma = learn_sigma
        self.loss = loss
        self.margin = margin
        self.mixup = mixup
        self.robust_margin = robust_margin
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.average = average
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state
        self.device = device
        self.net_params = net_params

    # ------------------------------------------------------------------ hooks
    def _n_components(self, n_classes):
        return 2 * n_classes if self.n_components is None else self.n_components

    def _head_spec(self, n_features, n_classes):
        hls = self._check_hidden()
        return {
            "n_features": int(n_features),
            "hidden_layer_sizes": hls,
            "activation": self.activation,
            "normalize": False,
            "layer": "components",
            "layer_params": {
                "n_classes": int(n_classes),
                "n_components": int(self._n_components(n_classes)),
                "reasoning": self.reasoning,
                "detection": self.detection,
                "learn_sigma": bool(self.learn_sigma),
            },
            "lipschitz_in_output": self.loss == "robust",
        }

    def _loss_spec(self, stage=None):
        stage = self.loss if stage is None else stage
        if stage == "robust":
            return "robust_cbc", {"robust_margin": float(self.robust_margin_)}
        return "cbc_margin", {"margin": float(self.margin), "mixup": float(self.mixup)}

    def _init_head(self, head, X, y_idx, rng):
        """Components at class-balanced k-means centres of the initial embedding,
        reasoning and sigma as the shallow CBCClassifier starts them."""
        import torch

        layer = head.layer
        C = self._n_classes
        K = layer.components.shape[0]
        with torch.no_grad():
            Z = head.projection(torch.as_tensor(X))
            W, origin = _prototypes.class_balanced_components(Z, y_idx, C, K, rng)
            layer.components.copy_(W)
            # the shallow model's reasoning initialisation (own components positive,
            # the others negative)
            logits = _reasoning.initial_reasoning_logits(origin, C, rng, self.reasoning)
            layer.reasoning_logits.copy_(torch.as_tensor(logits))
            if self.sigma == "auto":
                dist = _reasoning.component_distances(Z, W, self.detection)
                sigma = _reasoning.initial_sigma(dist)
            else:
                sigma = float(self.sigma)
            layer.log_sigma.copy_(torch.tensor(np.log(sigma)))

    # -------------------------------------------------------------------- fit
    def _fit_head(self, X, y, device):
        classes, y_idx = self._encode_classes(y)
        warm = self._can_warm_start(X, classes)
        self.classes_ = classes
        self._n_classes = classes.size
        rng = check_random_state(self.random_state)
        X32, y_idx = self._cast(X, y_idx)
        self.robust_margin_ = None
        if self.loss == "robust":
            import torch

            # the shallow model's "auto" rule, in the input space
            self.robust_margin_ = (
                float(self.robust_margin)
                if self.robust_margin != "auto"
                else _robustness.median_half_gap(
                    torch.as_tensor(X32), y_idx, random_state=rng
                )
            )
        if self.loss == "robust" and not warm:
            # margin loss first, then the robust loss from there (as the shallow
            # model: started cold, the robust loss stalls in worse optima)
            from ..nn import fit_net

            self.net_, self._spec, losses, _ = self._train_head(
                X32, y_idx, classes.size, rng, device, loss=self._loss_spec("margin")
            )
            name, params = self._loss_spec("robust")
            self.net_.set_params(criterion__loss=name, criterion__loss_params=params)
            more, _ = fit_net(
                self.net_, X32, y_idx, name=type(self).__name__, partial=True
            )
            self.loss_curve_ = more
            self.n_iter_ = len(more)
            self._store_fitted()
        else:
            self._fit_final(X32, y_idx, classes.size, rng, device, warm)
        del self._n_classes
        return self

    def _store_fitted(self):
        super()._store_fitted()
        layer = self.net_.module_.layer
        self.components_ = self.prototypes_
        self.sigma_ = float(layer.log_sigma.detach().exp().cpu())
        pos, neg = (
            t.detach().cpu().numpy() if t is not None else None
            for t in layer.combination()
        )
        if self.reasoning == "original":
            ind = 1 - pos - neg
        else:
            ind = np.zeros_like(pos)
        self.reasoning_ = np.stack([pos, neg, ind], axis=-1).astype(np.float32)
        self.lipschitz_ = float(self.net_.module_.projection.lipschitz_bound().detach())

    # ---------------------------------------------------------------- predict
    def certified_radius(self, X):
        """Certified L2 robustness radius of each prediction, in the input space.

        The learned-space radius (Saralajew et al., 2024, Theorem 1, for the
        components, ``sigma_`` and ``reasoning_``) divided by ``lipschitz_``: a
        perturbation of norm ``eps`` moves the embedding by at most
        ``lipschitz_ * eps``, so none below the returned radius changes the
        predicted class.  A sound lower bound, not the exact radius.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        radius : ndarray (or tensor on X's device) of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        Z = self._outputs(X, ["z"])["z"]
        neg = self.reasoning_[..., 1]
        r = _robustness.reasoning_radius(
            Z,
            self.components_,
            self.sigma_,
            self.reasoning_[..., 0],
            neg,
            detection=self.detection,
        )
        return r / self.lipschitz_
