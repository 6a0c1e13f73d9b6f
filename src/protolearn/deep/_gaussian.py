"""Deep Gaussian prototypes: a learned projection, one Gaussian per class, NOTA."""

from numbers import Real

import numpy as np
from sklearn.utils import check_random_state

from .._core import _margins, _prototypes
from ..classification._nota import (
    NOTA_CONSTRAINTS,
    NotaRejectionMixin,
    split_nota_rows,
    warn_open_classes,
)
from ..utils._array_api import device, get_namespace
from ..utils._sklearn_compat import Interval, StrOptions
from ._base import BaseDeepPrototypeClassifier, training_doc


def class_odds(S):
    """Predicted class ``c = argmax_j S_j`` of each row and its log-odds against the
    average other class, ``S_c - log(mean_{j != c} exp(S_j))`` (numpy or torch).

    The class-fit score :class:`DeepGaussianPrototypeClassifier`'s ``nota_score="odds"``
    margins apply to.  Adding a constant to a row leaves it unchanged, so ``S`` may
    be the head's scores or its ``predict_log_proba``.
    """
    xp = get_namespace(S)
    n_classes = S.shape[1]
    a = xp.argmax(S, axis=1)
    top = xp.take_along_axis(S, a[:, None], axis=1)
    others = xp.exp(S - top)
    best = xp.arange(n_classes, device=device(a))[None, :] == a[:, None]
    others = xp.where(best, 0, others)
    return a, -xp.log(xp.sum(others, axis=1) / (n_classes - 1))


class DeepGaussianPrototypeClassifier(NotaRejectionMixin, BaseDeepPrototypeClassifier):
    __doc__ = (
        """Gaussian prototypes in a learned space, with none-of-the-above rejection.

    A projection (identity, linear or MLP) maps the features (e.g. frozen sentence
    embeddings) onto the unit sphere, where each class is a Gaussian prototype with a
    shared spherical precision ``scale``: the class score is the log-density
    ``-scale / 2 |z - mu_c|^2`` (a cosine-prototype head, ``scale * cos(z, mu_c)``
    up to a constant).  Projection and means are trained with the GPAM / CosFace
    additive-margin loss: the true class's squared distance is enlarged by
    ``margin`` inside the softmax, so samples settle well inside their own class.

    Rejection (``nota``) works as in
    :class:`~protolearn.classification.GaussianPrototypeClassifier`, with margins
    fitted by the shared margin code (:mod:`protolearn._core._margins`) on a
    class-fit score of the predicted class ``c`` (``nota_score``): by default its
    log-odds against the average other class,
    ``S_c - log(mean_{j != c} exp(S_j))`` (a maximum-softmax-probability rule), or
    its learned-space log-density ``S_c``; from scores of rows the scoring head did
    not train on:

    - ``"global"`` / ``"adaptive"``: cross-fitting, ``n_splits`` extra heads, each
      trained without a fold of classes (pseudo-unknowns, no open samples needed) and
      without a fold of samples (held-out in-class scores); or, when ``y`` holds rows
      labelled ``nota_label``, those rows are the negatives.  One margin ("global")
      or one per class ("adaptive", offsets shrunk by ``margin_shrinkage``)
      maximising the NOTA F1 at ``nota_rate`` (or meeting ``target_recall``).  The
      predicting head is then trained on all known rows.
    - ``"quantile"``: split-conformal per-class margins at rejection rate
      ``conformal_alpha`` from a held-out ``calibration_size`` share of each class
      (the head is trained on the rest).

    Read more in the :ref:`User Guide <deep_heads>`.

    Parameters
    ----------
    scale : float, default=16.0
        Positive precision of the Gaussian prototypes on the sphere (the cosine logit scale).
    margin : float, default=0.2
        Non-negative additive margin of the loss, in squared learned-space distance.
    outlier_exposure : float, default=1.0
        Non-negative weight of an outlier-exposure term in the loss: convex
        combinations of two training rows of different classes, taken in the learned
        space (:func:`protolearn.nn.between_class_points`), are trained towards
        equal probability for every class
        (:func:`protolearn.nn.outlier_exposure_loss`), so that the space between the
        classes scores as none of them.  No open samples are needed; it sharpens
        the rejection (``nota``) and costs a second scoring of each batch.  With
        the default projection it leaves the closed-set accuracy as it is; in a
        narrow learned space it competes with separating the classes, so set 0
        for a small closed-set head (``benchmarks/results/outlier_exposure.md``).
    nota : {"global", "quantile", "adaptive"} or None, default=None
        Rejection mode; None is the closed-set classifier.  Without open samples,
        "global" scored the higher open-set macro-F1 in this head's benchmarks (see
        ``margin_shrinkage``).
    nota_label : "auto" or scalar, default="auto"
        Label of rejected queries and of known-unknown rows in ``y`` ("auto": -1
        for numeric labels, "NOTA" for strings); never in ``classes_``.
    conformal_alpha : float, default=0.05
        "quantile": the in-class rejection rate allowed, in (0, 1) (the ``alpha`` of
        :class:`~protolearn.classification.GaussianPrototypeClassifier`, renamed
        here because ``alpha`` is the L2 penalty, as in MLPClassifier).
    target_recall : float or None, default=None
        Accept at least this share, in (0, 1), of held-out in-class rows, rejecting as many
        negatives as possible; None maximises the NOTA F1.
    nota_rate : float or None, default=None
        The NOTA share, in (0, 1), the F1 is computed at; None weighs the
        cross-fitted negatives as they come (each class is the pseudo-unknown
        of one of the ``n_splits`` folds).
    nota_score : {"odds", "density"}, default="odds"
        The class-fit score the margins apply to: the learned-space log-density
        of the predicted class, or the log-odds of its softmax probability
        against the average other class (a maximum-softmax-probability rule that
        does not depend on the number of classes, so that margins cross-fitted
        on heads knowing part of the classes carry over to the final head).
        "odds" needs fold heads that know at least 2 classes.
    margin_shrinkage : float, default=0.5
        "adaptive": shrink each class's margin offset from the global margin by
        this factor, in [0, 1] (1 gives the "global" margin).  One margin
        ("global") scored a higher open-set macro-F1 than these per-class offsets
        on CLINC150's open-intent protocol, digits with 5 of 10 classes known and a
        synthetic set, and level on digits with 7 known
        (``benchmarks/results/margin_shrinkage.md``).
    n_splits : int, default=3
        Cross-fitting folds (at least 2) ("global" / "adaptive"): each costs one extra head
        (trained on ``1 - 1/n_splits`` of the classes and of their rows).  3 scored
        a higher open-set macro-F1 than 2 on CLINC150's validation draws, digits and
        a synthetic set (``benchmarks/results/n_splits.md``), at one more head.
    calibration_size : float, default=0.3
        "quantile": share of each class held out for calibration, in (0, 1).
"""
        + training_doc("(256, 128)", alpha=1e-4, lr=1e-3, max_iter=30)
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_classes, n_dims)
        Class means in the learned space (unit norm).
    margins_ : ndarray of shape (n_classes,) or None
        Rejection margin of each class on its class-fit score (``nota_score``).
    nota_label_ : scalar or None
    net_ : skorch ``NeuralNet``
        The trained net (its ``module_`` is a :class:`protolearn.nn.PrototypeHead`;
        ``history`` is skorch's).
    loss_curve_ : list of float
        Training loss per epoch.
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    See Also
    --------
    protolearn.classification.GaussianPrototypeClassifier : the shallow model.

    References
    ----------
    .. [1] GPAM: "Few-shot Open Relation Extraction with Gaussian Prototype and
       Adaptive Margin", 2024.
    .. [2] Wang et al. "CosFace: Large Margin Cosine Loss for Deep Face
       Recognition." CVPR, 2018.
    .. [3] Zhang, Xu, Lin. "Deep Open Intent Classification with Adaptive Decision
       Boundary." AAAI, 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.deep import DeepGaussianPrototypeClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DeepGaussianPrototypeClassifier(
    ...     hidden_layer_sizes=(16, 8), max_iter=60, learning_rate_init=0.01,
    ...     random_state=0).fit(X, y)
    >>> float(clf.score(X, y)) > 0.9
    True
    >>> clf.transform(X[:2]).shape, clf.prototypes_.shape
    ((2, 8), (3, 8))
    """
    )

    _parameter_constraints = {
        **BaseDeepPrototypeClassifier._parameter_constraints,
        "scale": [Interval(Real, 0, None, closed="neither")],
        "margin": [Interval(Real, 0, None, closed="left")],
        "outlier_exposure": [Interval(Real, 0, None, closed="left")],
        **NOTA_CONSTRAINTS,
        "nota_score": [StrOptions({"density", "odds"})],
        "conformal_alpha": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        *,
        scale=16.0,
        margin=0.2,
        outlier_exposure=1.0,
        nota=None,
        nota_label="auto",
        conformal_alpha=0.05,
        target_recall=None,
        nota_rate=None,
        nota_score="odds",
        margin_shrinkage=0.5,
        n_splits=3,
        calibration_size=0.3,
        hidden_layer_sizes=(256, 128),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-3,
        max_iter=30,
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
        self.scale = scale
        self.margin = margin
        self.outlier_exposure = outlier_exposure
        self.nota = nota
        self.nota_label = nota_label
        self.conformal_alpha = conformal_alpha
        self.target_recall = target_recall
        self.nota_rate = nota_rate
        self.nota_score = nota_score
        self.margin_shrinkage = margin_shrinkage
        self.n_splits = n_splits
        self.calibration_size = calibration_size
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
    def _head_spec(self, n_features, n_classes):
        return {
            "n_features": int(n_features),
            "hidden_layer_sizes": self._check_hidden(),
            "activation": self.activation,
            "normalize": True,
            "layer": "gaussian",
            "layer_params": {
                "n_classes": int(n_classes),
                "covariance": "tied",
                "scale": float(self.scale),
                "learn_scale": False,
                "normalize": True,
            },
        }

    def _loss_spec(self):
        return "gpam_margin", {
            "margin": float(self.margin),
            "outlier_exposure": float(self.outlier_exposure),
        }

    def _init_head(self, head, X, y_idx, rng):
        import torch

        with torch.no_grad():
            Z = head.projection(torch.as_tensor(X))
            M = _prototypes.class_means(Z, y_idx, head.layer.n_classes)
            head.layer.means.copy_(M)

    # -------------------------------------------------------------------- fit
    def _fit_head(self, X, y, device):
        nota_label, unknown, classes, y_idx, counts = split_nota_rows(self, y)
        warm = self._can_warm_start(X, classes)
        self.classes_ = classes
        self.nota_label_ = nota_label
        rng = check_random_state(self.random_state)
        Xk, y_idx = self._cast(X[~unknown], y_idx)
        margins = None
        if self.nota == "quantile":
            margins, proper = self._fit_quantile(Xk, y_idx, counts, rng, device)
            Xk, y_idx = Xk[proper], y_idx[proper]
        elif self.nota is not None and not warm:
            margins = self._fit_cross(
                Xk, y_idx, self._cast(X[unknown], [])[0], rng, device
            )
        elif self.nota is not None:
            margins = self.margins_
        self._fit_final(Xk, y_idx, classes.size, rng, device, warm)
        self.margins_ = margins
        return self

    def _best_and_fit(self, S):
        """(predicted class index, its class-fit score) from the head's scores
        ``S``: the log-density, or with ``nota_score="odds"`` the log-odds of the
        predicted class against the average other class,
        ``S_c - log(mean_{j != c} exp(S_j))`` (:func:`class_odds`)."""
        if self.nota_score == "density":
            xp = get_namespace(S)
            a = xp.argmax(S, axis=1)
            return a, xp.take_along_axis(S, a[:, None], axis=1)[:, 0]
        return class_odds(S)

    def _assign(self, net, X):
        """(predicted class index, its class-fit score) of each row, numpy float64."""
        from ..nn import head_outputs

        S = head_outputs(net.module_, X, ["scores"])["scores"].astype(np.float64)
        return self._best_and_fit(S)

    def _fit_quantile(self, X, y_idx, counts, rng, device):
        calib = _margins.calibration_split(
            y_idx, counts.size, self.calibration_size, rng
        )
        proper = ~calib
        net, _, _, _ = self._train_head(
            X[proper], y_idx[proper], counts.size, rng, device
        )
        a, s = self._assign(net, X[calib])
        margins = _margins.grouped_conformal_thresholds(
            s, a, counts.size, self.conformal_alpha
        )
        warn_open_classes(
            margins, self.classes_, "conformal_alpha", self.conformal_alpha
        )
        return margins, proper

    def _fit_cross(self, X, y_idx, X_unknown, rng, device):
        def fit(Xt, yt, known):
            return self._train_head(Xt, yt, known.size, rng, device)[0]

        def skip(train, heldout, pseudo, known):
            # log-odds need a second class to compare with
            return train.size == 0 or (self.nota_score == "odds" and known.size < 2)

        return self._cross_fitted_margins(
            X,
            y_idx,
            X_unknown,
            rng,
            fit=fit,
            score=lambda net, Xe, known: self._assign(net, Xe),
            skip_fold=skip,
        )

    # ---------------------------------------------------------------- predict
    def _fit_scores(self, X):
        a, fit = self._best_and_fit(self._class_scores(X))
        return a, self._minus_margin(a, fit)
