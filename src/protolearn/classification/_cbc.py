"""RBF networks and Classification-by-Components (CBC), with certified robustness.

Both models detect *components* ``w_1..w_K`` (points in feature space) with
``d_k(x) = exp(-dist(x, w_k) / sigma)`` and combine the detections into class
probabilities: an RBF network with non-negative class weights summing to one, CBC
with positive / negative (/ indefinite) reasoning (:mod:`protolearn._core._reasoning`).
Both are shallow heads (a :class:`protolearn.nn.ComponentLayer` behind the identity
projection) trained on the skorch engine of :mod:`protolearn.nn` through
:class:`~protolearn.classification._trained.BaseTrainedPrototypeClassifier`, with
either the margin loss of the CBC paper or the robust loss of Saralajew et al. (2024)
that enlarges the certified radius (:mod:`protolearn._core._robustness`).
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from .._core import _distances, _prototypes, _reasoning, _robustness
from ..utils import _array_api as xp
from ..utils._sklearn_compat import Interval, StrOptions
from ..utils._validation import bunch_like, validate_predict_data
from ._trained import BaseTrainedPrototypeClassifier


class _ComponentClassifier(BaseTrainedPrototypeClassifier):
    """Shared machinery of RBFClassifier and CBCClassifier (components, sigma, losses,
    radius); subclasses define the class combination ``_combination``."""

    _parameter_constraints = {
        **BaseTrainedPrototypeClassifier._parameter_constraints,
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "detection": [StrOptions({"exponential", "gaussian"})],
        "sigma": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "learn_sigma": ["boolean"],
        "loss": [StrOptions({"margin", "robust"})],
        "margin": [Interval(Real, 0, None, closed="left")],
        "robust_margin": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
    }

    # ------------------------------------------------------------ hook helpers
    def _n_components(self, n_classes):
        return 2 * n_classes if self.n_components is None else self.n_components

    def _init_components(self, X, y, rng):
        """Class-balanced k-means centres (see
        :func:`~protolearn._core._prototypes.class_balanced_components`) and the
        class index each came from."""
        K = self._n_components(len(self.classes_))
        return _prototypes.class_balanced_components(
            X, y.cpu().numpy(), len(self.classes_), K, rng
        )

    def _init_sigma(self, X, W):
        if self.sigma != "auto":
            return float(self.sigma)
        dist = _reasoning.component_distances(X, W.detach(), self.detection)
        return _reasoning.initial_sigma(dist)

    def _init_robust_margin(self, X, y, rng):
        """Median over (at most 500) training samples of half the distance to the
        nearest sample of another class: the largest radius any classifier that is
        correct on the training data could certify there."""
        if self.loss != "robust":
            return None
        if self.robust_margin != "auto":
            return float(self.robust_margin)
        return _robustness.median_half_gap(X, y.cpu().numpy(), random_state=rng)

    def fit(self, X, y):
        """Fit components, ``sigma`` and the class combination with torch autograd.

        With ``loss="robust"`` the model is first fitted with the margin loss (same
        hyperparameters) and the robust loss then starts from that solution: started
        cold, gradient descent on the robust loss stalls in worse optima.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        if self.loss != "robust":
            return super().fit(X, y)
        self._warm = clone(self).set_params(loss="margin").fit(X, y)
        try:
            return super().fit(X, y)
        finally:
            del self._warm

    def _build_head(self, X, y, rng):
        import torch

        from .. import nn

        W, origin = self._init_components(X, y, rng)
        warm = getattr(self, "_warm", None)
        if warm is not None:
            W = torch.as_tensor(warm.components_, device=X.device)
        sigma = self._init_sigma(X, W) if warm is None else warm.sigma_
        self.robust_margin_ = self._init_robust_margin(X, y, rng)
        logits = self._init_combination(origin, len(self.classes_), rng, X)
        if warm is not None:
            logits = warm._combination_logits()
        layer = nn.ComponentLayer(
            len(self.classes_),
            W.shape[0],
            X.shape[1],
            reasoning=self._layer_reasoning(),
            detection=self.detection,
            sigma=sigma,
            learn_sigma=self.learn_sigma,
            training_scores=False,  # (the margin / robust losses do not read them)
        )
        with torch.no_grad():
            layer.components.copy_(W.detach().cpu())
            layer.reasoning_logits.copy_(torch.as_tensor(logits))
        if self.loss == "margin":
            return layer, "cbc_margin", {"margin": self.margin}
        return layer, "robust_cbc", {"robust_margin": self.robust_margin_}

    def _store(self, state):
        self.components_ = state["components"]
        dtype = self.components_.dtype
        self.sigma_ = float(np.exp(state["log_sigma"]))
        self._store_combination(state["reasoning_logits"], dtype)

    # -------------------------------------------------------------- prediction
    def _numpy_combination(self, like):
        pos, neg = self._fitted_combination()
        pos = xp.asarray_like(pos, like)
        return pos, None if neg is None else xp.asarray_like(neg, like)

    def _detections(self, X):
        return _reasoning.detection_probabilities(
            X, xp.asarray_like(self.components_, X), self.sigma_, self.detection
        )

    def _probabilities(self, X):
        D = self._detections(X)
        return D, _reasoning.class_probabilities(D, *self._numpy_combination(X))

    def _chunk_row_bytes(self, X):
        # a few (rows, n_components) temporaries per row chunk (float64 at worst)
        return (6 * self.components_.shape[0] + X.shape[1]) * 8

    def _class_scores(self, X):
        # log p_c computed in log space, so that classes stay distinct far from all
        # components where the detections underflow.  Row chunk by row chunk: never
        # the full (n, n_components) distances.
        W = xp.asarray_like(self.components_, X)
        combination = self._numpy_combination(X)

        def scores(Xc, rows):
            dist = _reasoning.component_distances(Xc, W, self.detection)
            return _reasoning.log_class_probabilities(dist, self.sigma_, *combination)

        return _distances.map_row_chunks(scores, X, self._chunk_row_bytes(X))

    def class_probabilities(self, X):
        """The model's class probabilities ``p_c(x)`` (not normalised over classes).

        Each is a probability in [0, 1] on its own (the agreement of ``x`` with the
        reasoning of class ``c``); :meth:`predict_proba` normalises them over classes.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        P : ndarray (or tensor on X's device) of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        return _distances.map_row_chunks(
            lambda Xc, rows: self._probabilities(Xc)[1], X, self._chunk_row_bytes(X)
        )

    def _proba_logits(self, scores):
        # scores are log p_c: their softmax normalises the agreement probabilities
        # over classes.
        return scores

    def detections(self, X):
        """Detection probabilities ``d_k(x) = exp(-dist(x, w_k) / sigma_)``.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        D : ndarray (or tensor on X's device) of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        return self._detections(validate_predict_data(self, X))

    def certified_radius(self, X):
        """Certified L2 robustness radius of each prediction, in the input space.

        No perturbation ``delta`` with ``||delta||_2`` below the returned radius changes
        the predicted class.  The bound is Theorem 1 of Saralajew et al. (2024): with
        the euclidean distance inside the detection, a perturbation of norm ``eps``
        keeps every detection within a factor ``exp(+-eps / sigma_)``, and the radius
        is ``sigma_ * min_c log t*_c`` with ``t*_c`` the root of the quadratic that
        class ``c`` must satisfy to overtake the prediction.  For
        ``detection="gaussian"`` the bound on the squared distance is converted to an
        L2 radius through the largest sample-component distance.  It is a sound lower
        bound, not the exact radius.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        radius : ndarray (or tensor on X's device) of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        pos, neg = self._numpy_combination(X)
        return _robustness.reasoning_radius(
            X,
            self.components_,
            self.sigma_,
            pos,
            neg,
            detection=self.detection,
        )

    def explain(self, X, n_components=3):
        """The components that drove each decision, with their detections and
        reasoning.

        The probability of the predicted class ``c`` is a sum over components of
        ``r+_ck d_k(x) + r-_ck (1 - d_k(x))`` (normalised reasoning): evidence from the
        component's presence (positive reasoning) and from its absence (negative
        reasoning).  The components with the largest terms are returned.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        n_components : int, default=3
            Components to return per sample, largest contribution first.

        Returns
        -------
        explanation : :class:`~sklearn.utils.Bunch` of numpy arrays (tensors on X's
            device for a tensor ``X``; string labels stay numpy) with
            ``predicted_label`` (n_samples,); ``probability`` (n_samples,), ``p_c(x)``
            of the predicted class; ``detections`` (n_samples, n_components_total),
            all detections; ``component_index`` (n_samples, n_components) into
            ``components_``; ``detection`` of those components; ``contribution`` (their
            terms, summing over all components to ``probability``);
            ``positive_contribution`` (``r+ d``) and ``negative_contribution``
            (``r- (1 - d)``); ``reasoning`` (n_samples, n_components, 3), the
            predicted class's (positive, negative, indefinite) entries of
            ``reasoning_`` (CBC) or (weight, 0, 0) (RBF).
        """
        check_is_fitted(self)
        if not (isinstance(n_components, (int, np.integer)) and n_components >= 1):
            raise ValueError(f"n_components must be an int >= 1; got {n_components!r}.")
        like = X
        X = xp.to_numpy(validate_predict_data(self, X))
        D, P = self._probabilities(X)
        pos, neg = self._numpy_combination(X)
        if neg is None:
            neg = np.zeros_like(pos)
        pos_e, neg_e = _reasoning.effective_reasoning(pos, neg)
        pred = self._class_scores(X).argmax(1)  # predict's class (log-space scores)
        rows = np.arange(X.shape[0])
        plus = D * pos_e[pred]
        minus = (1 - D) * neg_e[pred]
        contrib = plus + minus
        m = min(n_components, D.shape[1])
        order = np.argsort(-contrib, axis=1, kind="stable")[:, :m]
        table = self._reasoning_table()
        explanation = Bunch(
            predicted_label=self.classes_[pred],
            probability=P[rows, pred],
            detections=D,
            component_index=order,
            detection=np.take_along_axis(D, order, axis=1),
            contribution=np.take_along_axis(contrib, order, axis=1),
            positive_contribution=np.take_along_axis(plus, order, axis=1),
            negative_contribution=np.take_along_axis(minus, order, axis=1),
            reasoning=table[pred[:, None], order],
        )
        return bunch_like(explanation, like)


_COMMON_PARAMS_DOC = """
    detection : {"exponential", "gaussian"}, default="exponential"
        Detection ``exp(-|x - w_k| / sigma)`` ("exponential": euclidean distance, the
        robust-CBC choice) or ``exp(-|x - w_k|^2 / sigma)`` ("gaussian": the classical
        RBF kernel with ``sigma = 2 s^2``).
    sigma : "auto" or float, default="auto"
        Initial (positive) temperature of the detections.  "auto" is the authors'
        recommendation ``(mean + std of the sample-component distances) / log(100)``
        at the initial components (a typical sample detects a typical component with
        probability ~0.01).
    learn_sigma : bool, default=True
        Train ``sigma`` with the other parameters.
    loss : {"margin", "robust"}, default="margin"
        "margin": ``max(0, max_{c != y} p_c - p_y + margin)`` (the CBC paper's loss).
        "robust": ``max(0, robust_margin - r(x, y))`` with ``r`` the signed certified
        radius of the true class (Saralajew et al., 2024): it enlarges the radius
        that :meth:`certified_radius` reports.  The model is first fitted with the
        margin loss and the robust loss starts from there (see :meth:`fit`).  Prefer
        ``detection="exponential"`` with it: through the squared-distance conversion
        the "gaussian" bound favours ever larger ``sigma`` (a nearly linear model).
    margin : float, default=0.1
        Margin (>= 0) of the "margin" loss, in probability units: training pushes the true
        class's probability this far above every other class's.
    robust_margin : "auto" or float, default="auto"
        The L2 radius (>= 0) (input units) at which the "robust" loss asks every training
        sample to be certified. The hinge stops pushing at the margin, so many training
        samples end just below it: to certify a radius ``r``, set
        ``robust_margin=2 * r``. "auto": the median over (at most 500) training samples
        of half the distance to the nearest training sample of another class (the
        largest radius a classifier correct on the training data could certify there);
        stored in ``robust_margin_``.
    max_iter : int, default=200
        Most iterations (L-BFGS quasi-Newton steps, or Adam epochs).
    tol : float, default=1e-5
        Smallest loss improvement that counts as progress (see ``n_iter_no_change``;
        L-BFGS: per step of an epoch).
    optimizer : {"lbfgs", "adam"}, default="lbfgs"
        Full-batch L-BFGS (``torch.optim.LBFGS``, strong-Wolfe line search, skorch
        epochs of ``n_iter_no_change`` steps) or mini-batch Adam.
    lr : float, default=0.01
        Adam learning rate.
    batch_size : int or "auto", default="auto"
        Adam mini-batch size ("auto": ``min(200, n_samples)``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified) and stop
        when its accuracy stalls; the best parameters are kept.
    validation_fraction : float, default=0.1
        Share of the training data in (0, 1) held out by ``early_stopping``.
    n_iter_no_change : int, default=10
        Adam: epochs without progress before stopping; L-BFGS: steps per epoch
        (training stops after one epoch without progress).
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means++ initialisation, the reasoning initialisation, the
        validation split and the mini-batch order.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where training runs ("auto": the input tensor's CUDA device, else CUDA when
        available, else CPU).  Fitted attributes are numpy arrays.
    verbose : int, default=0
        Print skorch's epoch table.
"""

_COMMON_ATTRS_DOC = """
    components_ : ndarray of shape (n_components, n_features)
        The trained components.
    sigma_ : float
        Trained detection temperature.
    robust_margin_ : float or None
        The radius the robust loss asked for (None for ``loss="margin"``).
    classes_ : ndarray of shape (n_classes,)
    n_iter_ : int
    loss_curve_ : list of float
    best_loss_ : float
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
"""


class RBFClassifier(_ComponentClassifier):
    __doc__ = (
        """Radial-basis-function network: component detections, learned class weights.

    The class probability is a convex combination of detections,
    ``p_c(x) = sum_k w_ck d_k(x)`` with ``w_ck >= 0``, ``sum_k w_ck = 1`` (``softmax``
    over learned logits, the layer normalisation of the authors' RobustRBF), which
    makes the network a stable CBC with positive reasoning only and gives it the
    certified radius ``sigma_ / 2 * log(p_y / p_c)`` (Saralajew et al., 2024).
    Components are initialised as class-balanced k-means centres and trained with
    the class weights and ``sigma`` by torch autograd.

    Detections depend on euclidean distances in the features' units: standardise
    first (``make_pipeline(StandardScaler(), RBFClassifier())``).

    Read more in the :ref:`User Guide <prototype_classifiers>`.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components (RBF centres); None means two per class.
"""
        + _COMMON_PARAMS_DOC
        + """
    Attributes
    ----------
    class_weights_ : ndarray of shape (n_classes, n_components)
        Non-negative weights of each class on the components (rows sum to 1).
"""
        + _COMMON_ATTRS_DOC
        + """
    See Also
    --------
    CBCClassifier : adds negative (and indefinite) reasoning.

    References
    ----------
    .. [1] Saralajew, Rana, Villmann, Shaker. "A Robust Prototype-Based Network with
       Interpretable RBF Classifier Foundations." AAAI, 2025 (arXiv:2412.15499).
    .. [2] Broomhead, Lowe. "Multivariable functional interpolation and adaptive
       networks." Complex Systems, 1988.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.classification import RBFClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = RBFClassifier(n_components=6, random_state=0).fit(X, y)
    >>> clf.class_weights_.shape
    (3, 6)
    >>> float(clf.score(X, y)) > 0.9
    True
    >>> bool((clf.certified_radius(X[:5]) >= 0).all())
    True
    """
    )

    def __init__(
        self,
        *,
        n_components=None,
        detection="exponential",
        sigma="auto",
        learn_sigma=True,
        loss="margin",
        margin=0.1,
        robust_margin="auto",
        max_iter=200,
        tol=1e-5,
        optimizer="lbfgs",
        lr=0.01,
        batch_size="auto",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.n_components = n_components
        self.detection = detection
        self.sigma = sigma
        self.learn_sigma = learn_sigma
        self.loss = loss
        self.margin = margin
        self.robust_margin = robust_margin
        self.max_iter = max_iter
        self.tol = tol
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _init_combination(self, origin, n_classes, rng, X):
        return _reasoning.initial_rbf_logits(origin, n_classes, rng)

    def _layer_reasoning(self):
        return "rbf"

    def _store_combination(self, logits, dtype):
        self.class_weights_ = _reasoning.decode_rbf_weights(logits).astype(dtype)

    def _fitted_combination(self):
        return self.class_weights_, None

    def _combination_logits(self):
        return _reasoning.encode_rbf_weights(self.class_weights_)

    def _reasoning_table(self):
        W = self.class_weights_
        return np.stack([W, np.zeros_like(W), np.zeros_like(W)], axis=-1)


class CBCClassifier(_ComponentClassifier):
    __doc__ = (
        """Classification-by-Components: reasoning over detected components.

    Each class reasons over the detections ``d_k(x)`` of shared components: a
    component's presence can support the class (positive reasoning ``r+``), its
    absence can (negative reasoning ``r-``), or, in the original model, it can be
    irrelevant (indefinite ``r0``).  The class probability is

    ``p_c(x) = sum_k (r+_ck d_k(x) + r-_ck (1 - d_k(x))) / sum_k (r+_ck + r-_ck)``

    (Saralajew et al., 2019).  ``reasoning="stable"`` is the 2024 model: no
    indefinite state, one probability vector per class over the 2K (component, sign)
    pairs, which removes the contradicting explanations of the original and relates
    CBC to RBF networks; :meth:`certified_radius` gives its provable robustness
    radius and ``loss="robust"`` trains for it (Saralajew et al., 2024).  Components
    live in feature space ("shallow" CBC) and start as class-balanced k-means
    centres; a component seeded from class ``c`` starts with positive reasoning for
    ``c`` and negative reasoning for the other classes.

    Detections depend on euclidean distances in the features' units: standardise
    first (``make_pipeline(StandardScaler(), CBCClassifier())``).

    Read more in the :ref:`User Guide <prototype_classifiers>`.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components shared by all classes; None means two per class.
    reasoning : {"stable", "original"}, default="stable"
        "stable": the robust CBC of 2024 (positive / negative reasoning, softmax
        parametrisation).  "original": the 2019 model with positive, negative and
        indefinite reasoning (``r+ = q0``, ``r- = (1 - q0) q1``,
        ``q = sigmoid(logits)``).
"""
        + _COMMON_PARAMS_DOC
        + """
    Attributes
    ----------
    reasoning_ : ndarray of shape (n_classes, n_components, 3)
        ``reasoning_[c, k]`` = (positive, negative, indefinite) reasoning of class c on
        component k, such that ``p_c`` is the formula above.  Original: per (c, k)
        probabilities summing to 1.  Stable: indefinite is 0 and each class's
        positive and negative entries together sum to 1 over all components.
"""
        + _COMMON_ATTRS_DOC
        + """
    See Also
    --------
    RBFClassifier : positive reasoning only.
    plot_reasoning : draws ``reasoning_``.

    References
    ----------
    .. [1] Saralajew, Holdijk, Rees, Villmann. "Classification-by-Components:
       Probabilistic Modeling of Reasoning over a Set of Components." NeurIPS, 2019.
    .. [2] Saralajew, Rana, Villmann, Shaker. "A Robust Prototype-Based Network with
       Interpretable RBF Classifier Foundations." AAAI, 2025 (arXiv:2412.15499).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.classification import CBCClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = CBCClassifier(n_components=6, random_state=0).fit(X, y)
    >>> clf.reasoning_.shape
    (3, 6, 3)
    >>> float(clf.score(X, y)) > 0.9
    True
    >>> clf.explain(X[:1], n_components=2).component_index.shape
    (1, 2)
    """
    )

    _parameter_constraints = {
        **_ComponentClassifier._parameter_constraints,
        "reasoning": [StrOptions({"stable", "original"})],
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
        robust_margin="auto",
        max_iter=200,
        tol=1e-5,
        optimizer="lbfgs",
        lr=0.01,
        batch_size="auto",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=None,
        device="auto",
        verbose=0,
    ):
        self.n_components = n_components
        self.reasoning = reasoning
        self.detection = detection
        self.sigma = sigma
        self.learn_sigma = learn_sigma
        self.loss = loss
        self.margin = margin
        self.robust_margin = robust_margin
        self.max_iter = max_iter
        self.tol = tol
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _init_combination(self, origin, n_classes, rng, X):
        return _reasoning.initial_reasoning_logits(
            origin, n_classes, rng, self.reasoning
        )

    def _layer_reasoning(self):
        return self.reasoning

    def _decode(self, logits):
        if self.reasoning == "original":
            pos, neg, ind = _reasoning.decode_original_reasoning(logits)
            return pos, neg, ind
        pos, neg = _reasoning.decode_stable_reasoning(logits)
        return pos, neg, None

    def _store_combination(self, logits, dtype):
        pos, neg, ind = self._decode(logits)
        if ind is None:
            ind = np.zeros_like(pos)
        self.reasoning_ = np.stack([pos, neg, ind], axis=-1).astype(dtype)

    def _fitted_combination(self):
        return self.reasoning_[..., 0], self.reasoning_[..., 1]

    def _combination_logits(self):
        """Logits that decode to the fitted reasoning (inverse of ``_decode``)."""
        pos, neg = self.reasoning_[..., 0], self.reasoning_[..., 1]
        if self.reasoning == "stable":
            return _reasoning.encode_stable_reasoning(pos, neg)
        return _reasoning.encode_original_reasoning(pos, neg)

    def _reasoning_table(self):
        return self.reasoning_
