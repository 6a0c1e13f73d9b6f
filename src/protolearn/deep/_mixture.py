"""Deep mixture-of-prototypes detector: PALM's head trained on frozen embeddings."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if

from .._core import _mixture
from ..base import BaseOutlierDetector
from ..ood import PrototypeMixtureDetector
from ..ood._mixture import SINKHORN_ITER
from ..utils._array_api import is_torch
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import check_class_sizes, validate_optional_labels
from ._base import DeepHeadMixin, training_doc
from ._streaming import detector_partial_fit, stochastic


class DeepPrototypeMixtureDetector(DeepHeadMixin, BaseOutlierDetector):
    __doc__ = (
        """Out-of-distribution detector: PALM's mixture of prototypes, learned.

    The deep form of :class:`~protolearn.ood.PrototypeMixtureDetector` (PALM, Lu et
    al., ICLR 2024), trained on frozen features such as sentence embeddings.  A
    projection (linear map or MLP) maps the features onto the unit sphere, where each
    class has ``n_prototypes`` prototypes (a von Mises-Fisher mixture of
    concentration ``1 / temperature``).  Each training sample is softly assigned to
    the prototypes of its class by Sinkhorn iterations, keeping its ``top_k`` largest
    weights; the prototypes follow exponential moving averages (``momentum``) of
    their assigned embeddings, not gradients.  The projection is trained with PALM's
    two losses (:func:`protolearn.nn.palm_loss`): the maximum-likelihood term pulls
    each embedding towards its assigned prototypes against all prototypes, and the
    prototype-contrastive term (weight ``contrast_weight``, temperature
    ``proto_temperature``) pulls the prototypes of a class together and pushes other
    classes' away.

    Scores are the shallow detector's in the learned space: after training, a
    :class:`~protolearn.ood.PrototypeMixtureDetector` (``n_prototypes``, ``top_k``,
    ``score_type``, learned concentrations) is fitted by EM on the embedding of the
    training data (``detector_``), and ``score_samples(X)`` is its score of
    ``transform(X)`` (higher = more in-distribution).

    Without labels (``fit(X)``), every sample is of one class with ``n_prototypes``
    prototypes: the Sinkhorn assignment then clusters the data (PALM's unlabelled
    variant).  Labels are what makes the learned space useful for near-OOD: give them
    when you have them.

    Read more in the :ref:`User Guide <deep_heads>`.

    Parameters
    ----------
    n_prototypes : int, default=6
        Prototypes per class (PALM's default); in total when fitted without labels.
    top_k : int or None, default=5
        Each sample keeps its ``top_k`` largest assignment weights (PALM's 5); None
        keeps all.  Also the scoring detector's ``top_k``.
    temperature : float, default=0.1
        vMF temperature of the maximum-likelihood term (``kappa = 1 / temperature``;
        PALM's 0.1).
    proto_temperature : float, default=0.5
        Temperature of the prototype-contrastive term (PALM's 0.5).
    contrast_weight : float, default=1.0
        Weight of the prototype-contrastive term (PALM's ``lambda_pcon``).
    momentum : float, default=0.99
        EMA momentum of the prototypes, in [0, 1) (PALM's ``proto_m`` is 0.999 over
        500 epochs; 0.99 lets the prototypes follow a head trained for a few).
    epsilon : float, default=0.05
        Entropic regularisation of the Sinkhorn assignment (3 iterations, PALM's).
    score_type : {"mixture", "max_similarity", "knn", "ssd"}, \
default="max_similarity"
        The scoring detector's score (see
        :class:`~protolearn.ood.PrototypeMixtureDetector`); "max_similarity" is the
        cosine similarity to the nearest prototype.
    contamination : "auto" or float, default="auto"
        Share of training samples, in (0, 0.5], taken as outliers to set
        ``offset_`` ("auto": 5%).
"""
        + training_doc("None", alpha=1e-4, lr=1e-3, max_iter=10)
        .replace("tuple of int, default", "tuple of int or None, default")
        .replace(
            "(the last size is the learned dimension).",
            "(the last size is the learned dimension).  None (the default) is a "
            "linear map\n        of the input's own dimension initialised at the "
            "identity: training starts\n        from the input space and refines it.",
        )
        + """
    Attributes
    ----------
    prototypes_ : ndarray of shape (n_classes * n_prototypes, n_dims)
        The learned (EMA) prototypes in the learned space, unit norm, grouped by class.
    prototype_labels_ : ndarray of shape (n_classes * n_prototypes,)
        Class of each prototype (all 0 when fitted without labels).  Like
        scikit-learn's detectors, there is no ``classes_``: ``predict`` is in
        {-1, +1}.
    detector_ : PrototypeMixtureDetector
        The scoring detector, fitted on the learned embedding of the training data.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    net_ : skorch ``NeuralNet``
        The trained net (its ``module_`` is a :class:`protolearn.nn.PrototypeHead`
        with a :class:`protolearn.nn.VMFMixtureLayer`).
    loss_curve_ : list of float
        Training loss per epoch.
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    protolearn.ood.PrototypeMixtureDetector : the shallow model (EM on the features).

    References
    ----------
    .. [1] Lu, Wang, Wang, Yu, Lin. "Learning with Mixture of Prototypes for
       Out-of-Distribution Detection." ICLR, 2024 (PALM; github.com/jeff024/PALM).

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.deep import DeepPrototypeMixtureDetector
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300)
    >>> X = rng.normal(size=(300, 8)) + 4 * np.eye(8)[y]
    >>> det = DeepPrototypeMixtureDetector(
    ...     n_prototypes=2, top_k=None, hidden_layer_sizes=(8,), max_iter=5,
    ...     random_state=0).fit(X, y)
    >>> det.prototypes_.shape
    (6, 8)
    >>> bool(det.score_samples(X).mean() > det.score_samples(-X).mean())
    True
    """
    )

    _parameter_constraints = {
        **BaseOutlierDetector._parameter_constraints,
        **DeepHeadMixin._parameter_constraints,
        "hidden_layer_sizes": [None, "array-like"],
        "n_prototypes": [Interval(Integral, 1, None, closed="left")],
        "top_k": [None, Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "proto_temperature": [Interval(Real, 0, None, closed="neither")],
        "contrast_weight": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "score_type": [StrOptions({"mixture", "max_similarity", "knn", "ssd"})],
    }

    def __init__(
        self,
        *,
        n_prototypes=6,
        top_k=5,
        temperature=0.1,
        proto_temperature=0.5,
        contrast_weight=1.0,
        momentum=0.99,
        epsilon=0.05,
        score_type="max_similarity",
        contamination="auto",
        hidden_layer_sizes=None,
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-3,
        max_iter=10,
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
        self.n_prototypes = n_prototypes
        self.top_k = top_k
        self.temperature = temperature
        self.proto_temperature = proto_temperature
        self.contrast_weight = contrast_weight
        self.momentum = momentum
        self.epsilon = epsilon
        self.score_type = score_type
        self.contamination = contamination
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

    partial_fit = available_if(stochastic)(detector_partial_fit)

    def _fitted_classes(self):
        return getattr(self, "_classes", None)

    # ------------------------------------------------------------------ hooks
    def _head_spec(self, n_features, n_classes):
        return {
            "n_features": int(n_features),
            "hidden_layer_sizes": self._check_hidden(n_features),
            "activation": self.activation,
            "normalize": True,
            "layer": "vmf_mixture",
            "layer_params": {
                "n_classes": int(n_classes),
                "n_prototypes": int(self.n_prototypes),
                "kappa": 1.0 / float(self.temperature),
                "momentum": float(self.momentum),
            },
        }

    def _loss_spec(self):
        return "palm", {
            "epsilon": float(self.epsilon),
            "n_sinkhorn": SINKHORN_ITER,
            "top_k": self.top_k,
            "temperature": float(self.proto_temperature),
            "weight": float(self.contrast_weight),
        }

    def _init_head(self, head, X, y_idx, rng):
        """A square linear projection starts at the identity; the prototypes at a few
        balanced EM rounds of each class's vMF mixture in the initial embedding
        (instead of random directions)."""
        import torch

        lin = head.projection.linears()
        if len(lin) == 1 and lin[0].weight.shape[0] == lin[0].weight.shape[1]:
            # a square linear map starts at the identity: training refines the
            # input space (which the shallow detector already scores well)
            with torch.no_grad():
                lin[0].weight.copy_(torch.eye(lin[0].weight.shape[0]))
                lin[0].bias.zero_()
        with torch.no_grad():
            Z = head.projection(torch.as_tensor(X)).numpy()
        res = _mixture.fit_vmf_mixtures(
            Z,
            y_idx,
            head.layer.n_classes,
            head.layer.n_prototypes,
            kappa=head.layer.kappa,
            top_k=self.top_k,
            balance=True,
            epsilon=self.epsilon,
            sinkhorn_iter=SINKHORN_ITER,
            max_iter=5,
            random_state=rng,
        )
        with torch.no_grad():
            head.layer.prototypes_.copy_(
                torch.as_tensor(res.means, dtype=torch.float32)
            )

    # -------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the projection and prototypes, then fit the scoring detector.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
            In-distribution samples.
        y : array-like of shape (n_samples,), default=None
            Class labels (``n_prototypes`` prototypes per class); None: one class.

        Returns
        -------
        self : object
        """
        device = self._device(X)
        X, classes, y_idx = validate_optional_labels(self, X, y, ensure_min_samples=2)
        self._check_hidden(X.shape[1])
        counts = np.bincount(y_idx, minlength=classes.size)
        check_class_sizes(classes, counts, self.n_prototypes, "n_prototypes")
        rng = check_random_state(self.random_state)
        Xf, y_idx = self._cast(X, y_idx)
        warm = self._can_warm_start(Xf, classes)
        self._fit_final(Xf, y_idx, classes.size, rng, device, warm)
        self._classes = classes
        self.prototype_labels_ = np.repeat(classes, self.n_prototypes)
        Z = self._outputs(Xf, ["z"])["z"]
        self.detector_ = PrototypeMixtureDetector(
            n_prototypes=self.n_prototypes,
            top_k=self.top_k,
            epsilon=self.epsilon,
            score_type=self.score_type,
            contamination=self.contamination,
            random_state=int(rng.randint(np.iinfo(np.int32).max)),
        ).fit(Z, None if y is None else y_idx)
        self._set_offset(X)
        return self

    def _score_samples(self, X):
        # The head trains in float32; float64 input is embedded by a float64 copy
        # of it (so a row's score does not depend on the other rows of the batch,
        # which float32 matrix products do in their last bits) and scored in float64.
        # (a numpy-only path: torch input keeps its own dtype and device)
        if not is_torch(X) and X.dtype == np.float64:
            import copy

            from ..nn import head_outputs

            module = copy.deepcopy(self.net_.module_).double()
            return self.detector_.score_samples(head_outputs(module, X, ["z"])["z"])
        return self.detector_.score_samples(self._outputs(X, ["z"])["z"])
