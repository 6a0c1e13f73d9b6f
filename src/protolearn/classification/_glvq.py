"""Generalized Learning Vector Quantization: GLVQ and GMLVQ (learned metric)."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from .._core import _lvq, _prototypes
from ..base import NearestPrototypeMixin
from ..utils import _array_api as xp
from ..utils._sklearn_compat import Interval, StrOptions
from ..utils._validation import bunch_like, check_class_sizes, validate_predict_data
from ._trained import BaseTrainedPrototypeClassifier

_TRAINING_DOC = """    max_iter : int, default=100
        Most training iterations (L-BFGS quasi-Newton steps, or Adam epochs).
    tol : float, default=1e-4
        An epoch improves when the loss (or, with ``early_stopping``, the
        validation accuracy) beats the best so far by more than ``tol`` (L-BFGS:
        ``tol`` per step of the epoch).
    optimizer : {"lbfgs", "adam"}, default="lbfgs"
        Full-batch L-BFGS with a strong-Wolfe line search (``torch.optim.LBFGS``,
        skorch epochs of ``n_iter_no_change`` steps), or mini-batch Adam.
    lr : float, default=0.01
        Adam learning rate (ignored by L-BFGS).
    batch_size : int or "auto", default="auto"
        Adam mini-batch size; "auto" is ``min(200, n_samples)``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified), stop when
        its accuracy stops improving and keep the best parameters.
    validation_fraction : float, default=0.1
        Share of the training data in (0, 1) held out by ``early_stopping``.
    n_iter_no_change : int, default=10
        Adam: epochs without improvement before stopping; L-BFGS: steps per epoch
        (training stops after one epoch without improvement).
    random_state : int, RandomState instance or None, default=None
        Seeds k-means++ initialisation, the validation split and mini-batch shuffling
        (a ``torch.Generator`` of its own; the global torch seed is never touched).
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where training runs ("auto": the input tensor's CUDA device, else CUDA when
        available, else CPU).  Fitted attributes are numpy arrays either way.
    verbose : int, default=0
        Print skorch's epoch table."""

_TRAINING_ATTRS_DOC = """    n_iter_ : int
        Training iterations run (L-BFGS steps, or Adam epochs).
    loss_curve_ : list of float
        Training loss after each skorch epoch (epoch mean for Adam).
    best_loss_ : float
    validation_scores_ : list of float or None
        Validation accuracy after each epoch (``early_stopping`` only).
    best_validation_score_ : float or None"""


class GLVQClassifier(NearestPrototypeMixin, BaseTrainedPrototypeClassifier):
    """Generalized Learning Vector Quantization (GLVQ).

    Labelled prototypes ``w_j`` classify by the nearest one (squared euclidean
    distance).  Training minimises the mean of ``f(mu(x))`` with the relative distance
    difference

        mu(x) = (d+(x) - d-(x)) / (d+(x) + d-(x))  in [-1, 1],

    ``d+`` the distance to the nearest prototype of the sample's class, ``d-`` to the
    nearest of another class (``mu < 0`` iff the sample is classified correctly), and
    ``f`` the identity or a sigmoid ``1 / (1 + exp(-beta mu))`` (Sato & Yamada, 1996).
    Prototypes start at the class means (one per class) or per-class k-means centres
    and are trained with torch autograd (L-BFGS by default).

    Distances are euclidean in the features' own units, so a feature with a large
    range dominates them: standardise first, e.g.
    ``make_pipeline(StandardScaler(), GLVQClassifier())``.

    Read more in the :ref:`User Guide <prototype_classifiers>`.

    Parameters
    ----------
    n_prototypes : int or dict, default=1
        Prototypes per class; a dict maps class labels to counts (absent classes get 1).
    activation : {"sigmoid", "identity"}, default="sigmoid"
        ``f`` applied to ``mu``; the sigmoid (sklvq's default) weights samples near
        the decision boundary most (prototorch and nec-research/enlaight default to the
        identity).
    beta : float, default=10.0
        Positive slope of the sigmoid: larger values concentrate the loss on the samples near
        the decision boundary (1, sklvq's default, is almost linear on ``mu`` in
        [-1, 1]). A steep sigmoid can overfit very small training sets: lower it
        there. Ignored for "identity".
    temperature : float, default=1.0
        Positive; ``predict_proba`` is the softmax of ``-distance / temperature`` over classes
        (squared distance to each class's nearest prototype).
    TRAINING_PARAMETERS

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_prototypes_total, n_features)
        Trained prototypes, grouped by class in the order of ``classes_``.
    prototype_labels_ : ndarray of shape (n_prototypes_total,)
        Class label of each prototype.
    TRAINING_ATTRIBUTES
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    GMLVQClassifier : GLVQ with a learned (relevance) metric.
    NearestPrototypeClassifier : untrained prototypes (class means / k-means).

    Notes
    -----
    Training runs in the input's dtype (float32 stays float32) on the skorch
    training engine of :mod:`protolearn.nn` (a prototype head with the identity
    projection); see :mod:`protolearn.classification._trained`.
    :meth:`certified_radius` is exact with one prototype per class (the distance to the
    nearest decision hyperplane) and a sound lower bound with several.

    References
    ----------
    .. [1] Sato, Yamada. "Generalized learning vector quantization." Advances in
       Neural Information Processing Systems 8 (NIPS 1995), 1996.
    .. [2] Saralajew, Holdijk, Villmann. "Fast adversarial robustness certification of
       nearest prototype classifiers for arbitrary seminorms." NeurIPS, 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.classification import GLVQClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GLVQClassifier(n_prototypes=2, random_state=0).fit(X, y)
    >>> clf.prototypes_.shape
    (6, 4)
    >>> float(clf.score(X, y)) > 0.9
    True
    >>> clf.certified_radius(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **BaseTrainedPrototypeClassifier._parameter_constraints,
        "n_prototypes": [Interval(Integral, 1, None, closed="left"), dict],
        "activation": [StrOptions({"sigmoid", "identity"})],
        "beta": [Interval(Real, 0, None, closed="neither")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        n_prototypes=1,
        activation="sigmoid",
        beta=10.0,
        temperature=1.0,
        max_iter=100,
        tol=1e-4,
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
        self.n_prototypes = n_prototypes
        self.activation = activation
        self.beta = beta
        self.temperature = temperature
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

    # ------------------------------------------------------------- prototypes
    def _prototypes_per_class(self):
        classes = self.classes_
        spec = self.n_prototypes
        if not isinstance(spec, dict):
            return np.full(len(classes), spec, dtype=np.intp)
        known = set(classes.tolist())
        unknown = [k for k in spec if k not in known]
        if unknown:
            raise ValueError(
                f"n_prototypes names labels that are not in y: {unknown}; "
                f"the classes are {classes.tolist()}."
            )
        if not all(
            isinstance(v, (Integral, np.integer)) and not isinstance(v, bool) and v >= 1
            for v in spec.values()
        ):
            raise ValueError(f"n_prototypes values must be ints >= 1; got {spec}.")
        return np.array([spec.get(c, 1) for c in classes.tolist()], dtype=np.intp)

    def _initial_prototypes(self, X, y, rng):
        """Class means / per-class k-means centres (their class indices are kept in
        ``_proto_cls``)."""
        n_per_class = self._prototypes_per_class()
        counts = np.bincount(xp.to_numpy(y), minlength=self.classes_.size)
        check_class_sizes(
            self.classes_,
            counts,
            n_per_class,
            "n_prototypes",
            where=(
                " in the training part left by early_stopping's validation_fraction="
                f"{self.validation_fraction}"
                if self.early_stopping
                else ""
            ),
            remedy=" or validation_fraction" if self.early_stopping else "",
        )
        W, proto_cls, _ = _prototypes.class_prototypes(
            X, y, self.classes_.size, n_per_class, metric="euclidean", random_state=rng
        )
        self._proto_cls = proto_cls
        return W

    # ------------------------------------------------------------------ hooks
    def _layer(self, X, y, rng, metric_rank=None):
        """The :class:`protolearn.nn.PrototypeLayer` at its initial prototypes."""
        from .. import nn

        W = self._initial_prototypes(X, y, rng)
        layer = nn.PrototypeLayer(
            self._proto_cls,
            X.shape[1],
            metric_rank=metric_rank,
            # (the GLVQ loss reads the distances only)
            training_scores=False,
        )
        layer.prototypes_.data = W.detach().to(layer.prototypes_.dtype).cpu().clone()
        return layer

    def _loss_params(self):
        return {"activation": self.activation, "beta": self.beta}

    def _build_head(self, X, y, rng):
        return self._layer(X, y, rng), "glvq", self._loss_params()

    def _store(self, state):
        self.prototypes_ = state["prototypes_"]
        self.prototype_labels_ = self.classes_[self._proto_cls]

    # -------------------------------------------------------------- inference
    def _proba_logits(self, scores):
        return scores / self.temperature

    def _metric_times(self, R):
        """``M r`` for residuals ``r`` (rows of R); the identity metric here."""
        return R

    def explain(self, X, n_prototypes=3):
        """Why each sample got its label: nearest prototypes and feature contributions.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        n_prototypes : int, default=3
            Nearest prototypes to return per sample.

        Returns
        -------
        explanation : :class:`~sklearn.utils.Bunch` of numpy arrays (tensors on X's
            device for a tensor ``X``; string labels stay numpy) with
            ``prototype_index`` (n_samples, n_prototypes) indices into ``prototypes_``,
            nearest first; ``prototype_label``; ``prototype_distance`` (squared, in the
            model's metric); ``mu`` (n_samples,), the GLVQ relative distance
            difference of the prediction ``(d_win - d_other) / (d_win + d_other)``
            with ``d_other`` the distance to the nearest prototype of another class
            (in [-1, 0]; nearer -1 = clearer decision); ``feature_contribution``
            (n_samples, n_features), each feature's term of the squared distance to
            the winning prototype (rows sum to ``prototype_distance[:, 0]``; for GMLVQ
            ``(x - w)_j (Lambda (x - w))_j``).
        """
        check_is_fitted(self)
        if not (
            isinstance(n_prototypes, (Integral, np.integer))
            and not isinstance(n_prototypes, bool)
            and n_prototypes >= 1
        ):
            raise ValueError(f"n_prototypes must be an int >= 1; got {n_prototypes!r}.")
        like = X
        X = xp.to_numpy(validate_predict_data(self, X))
        D = xp.to_numpy(self._prototype_distances(X))
        k = min(n_prototypes, D.shape[1])
        order = np.argsort(D, axis=1, kind="stable")
        win = order[:, 0]
        cls = self._prototype_class_index()
        _, d_other = _lvq.nearest_correct_and_wrong(D, cls[win], cls)
        mu = _lvq.relative_difference(D[np.arange(D.shape[0]), win], d_other)
        R = X - self.prototypes_[win]
        explanation = Bunch(
            prototype_index=order[:, :k],
            prototype_label=self.prototype_labels_[order[:, :k]],
            prototype_distance=np.take_along_axis(D, order[:, :k], axis=1),
            mu=mu,
            feature_contribution=R * self._metric_times(R),
        )
        return bunch_like(explanation, like)


class GMLVQClassifier(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, GLVQClassifier
):
    """Generalized Matrix LVQ (GMLVQ): GLVQ with a learned relevance metric.

    The distance is ``d(x, w) = (x - w)^T Lambda (x - w) = ||Omega (x - w)||^2`` with a
    learned ``Omega`` of shape (n_components, n_features), trained jointly with the
    prototypes on the GLVQ cost (see :class:`GLVQClassifier`) plus the log-determinant
    regulariser of Schneider et al. (2010).  ``Omega`` is used
    normalised to unit Frobenius norm, so the relevance matrix
    ``Lambda = Omega^T Omega`` has trace 1 (Schneider et al., 2009); its diagonal says
    how much each feature matters, and ``n_components < n_features`` learns a
    low-rank metric (a discriminative projection).

    The learned metric can reweight features, but it starts from the euclidean one
    and its regulariser and trace normalisation act in the features' units:
    standardise first (``make_pipeline(StandardScaler(), GMLVQClassifier())``).

    Read more in the :ref:`User Guide <prototype_classifiers>`.

    Parameters
    ----------
    n_prototypes : int or dict, default=1
        Prototypes per class; a dict maps class labels to counts (absent classes get 1).
    n_components : int or None, default=None
        Rank of ``Omega`` (rows); None is ``n_features``.  ``Omega`` starts as the
        identity (full rank) or as the top principal directions of the training data.
    regularization : float, default=0.01
        ``mu >= 0`` of the penalty ``-mu/2 log det(Omega Omega^T)`` added to the cost
        (Schneider et al., 2010), which keeps the relevance matrix from collapsing
        onto a few directions (an over-peaked metric overfits and shrinks the
        certified radii).  Needs ``Omega`` of full row rank.
    activation : {"sigmoid", "identity"}, default="sigmoid"
        ``f`` applied to ``mu`` (see :class:`GLVQClassifier`).
    beta : float, default=10.0
        Positive slope of the sigmoid (see :class:`GLVQClassifier`).
    temperature : float, default=1.0
        Positive; ``predict_proba`` is the softmax of ``-distance / temperature``.
    TRAINING_PARAMETERS

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_prototypes_total, n_features)
    prototype_labels_ : ndarray of shape (n_prototypes_total,)
    omega_ : ndarray of shape (n_components, n_features)
        The learned projection, normalised so that ``sum(omega_**2) == 1``;
        :meth:`transform` applies it.
    relevance_matrix_ : ndarray of shape (n_features, n_features)
        ``omega_.T @ omega_`` (positive semi-definite, trace 1).
    TRAINING_ATTRIBUTES
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    GLVQClassifier : the same cost with the euclidean distance.

    Notes
    -----
    **Certified radius.**  :meth:`certified_radius` is an L2 radius in the *input*
    space.  For prototypes ``w_i`` (winning) and ``w_j`` (another class),

        d_j(x) - d_i(x) = 2 (w_i - w_j)^T Lambda x + w_j^T Lambda w_j - w_i^T Lambda w_i

    is affine in ``x`` with normal ``a_ij = 2 Lambda (w_i - w_j)``, so no perturbation
    with ``||delta||_2 < (d_j(x) - d_i(x)) / ||a_ij||`` can make ``w_j`` win over
    ``w_i`` (the change of an affine function is at most ``||a_ij|| ||delta||`` by
    Cauchy-Schwarz).  The radius is the minimum over wrong prototypes ``j`` (with
    several prototypes per class, of the maximum over the winning class's ``i``), which
    is sound, and exact with one prototype per class, where the decision region is the
    polytope these hyperplanes cut.  It is never smaller than the bound obtained from
    the projected space: there the radius is ``r_z = (d_j - d_i) / (2 ||Omega (w_i -
    w_j)||)``, and since ``||Lambda v|| = ||Omega^T (Omega v)|| <= s_max ||Omega v||``
    (``s_max`` the largest singular value of ``Omega``), ``r_x >= r_z / s_max``.

    References
    ----------
    .. [1] Schneider, Biehl, Hammer. "Adaptive relevance matrices in learning vector
       quantization." Neural Computation, 2009.
    .. [2] Schneider, Bunte, Stiekema, Hammer, Villmann, Biehl. "Regularization in
       matrix relevance learning." IEEE Transactions on Neural Networks, 2010.
    .. [3] Bunte et al. "Limited rank matrix learning, discriminative dimension
       reduction and visualization." Neural Networks, 2012.
    .. [4] Saralajew, Holdijk, Villmann. "Fast adversarial robustness certification of
       nearest prototype classifiers for arbitrary seminorms." NeurIPS, 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.classification import GMLVQClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GMLVQClassifier(random_state=0).fit(X, y)
    >>> clf.relevance_matrix_.shape
    (4, 4)
    >>> round(float(clf.relevance_matrix_.trace()), 6)
    1.0
    >>> float(clf.score(X, y)) > 0.9
    True
    """

    _parameter_constraints = {
        **GLVQClassifier._parameter_constraints,
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "regularization": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        n_prototypes=1,
        n_components=None,
        regularization=0.01,
        activation="sigmoid",
        beta=10.0,
        temperature=1.0,
        max_iter=100,
        tol=1e-4,
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
        super().__init__(
            n_prototypes=n_prototypes,
            activation=activation,
            beta=beta,
            temperature=temperature,
            max_iter=max_iter,
            tol=tol,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            random_state=random_state,
            device=device,
            verbose=verbose,
        )
        self.n_components = n_components
        self.regularization = regularization

    def _build_head(self, X, y, rng):
        omega = _lvq.initial_omega(X, self.n_components)
        layer = self._layer(X, y, rng, metric_rank=omega.shape[0])
        layer.omega.data = omega.detach().to(layer.omega.dtype).cpu().clone()
        params = {**self._loss_params(), "regularization": self.regularization}
        return layer, "glvq", params

    @staticmethod
    def _normalized(omega):
        return omega / xp.sqrt((omega * omega).sum())

    def _store(self, state):
        super()._store(state)
        self.omega_ = self._normalized(state["omega"])
        self.relevance_matrix_ = self.omega_.T @ self.omega_

    @property
    def _n_features_out(self):
        return self.omega_.shape[0]

    def transform(self, X):
        """Project onto the learned metric's space: ``X @ omega_.T``.

        Euclidean distances between projected points are the model's distances, so
        the projection (e.g. with ``n_components=2``) shows what the classifier sees,
        like :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis`'s.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)

        Returns
        -------
        X_new : ndarray (or tensor on X's device) of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        X = validate_predict_data(self, X)
        return X @ xp.asarray_like(self.omega_, X).T

    def _distance_spec(self):
        return "mahalanobis", self.omega_.T

    def _metric_times(self, R):
        return R @ self.relevance_matrix_


def _fill_doc(cls):
    cls.__doc__ = cls.__doc__.replace(
        "    TRAINING_PARAMETERS\n", _TRAINING_DOC + "\n"
    ).replace("    TRAINING_ATTRIBUTES\n", _TRAINING_ATTRS_DOC + "\n")


_fill_doc(GLVQClassifier)
_fill_doc(GMLVQClassifier)
