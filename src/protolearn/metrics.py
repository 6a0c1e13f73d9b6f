"""Evaluation metrics for few-shot, open-set (NOTA) and out-of-distribution problems.

Conventions: for OOD metrics ``y_true`` is 1 for in-distribution (the positive class) and
0 for out-of-distribution, and ``y_score`` is higher for more in-distribution, the
convention of scikit-learn's novelty detectors (``score_samples``).

Inputs may be array-likes or torch tensors on any device (such as the scores and
predictions of an estimator given tensors); they are copied to numpy first.
"""

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve
from sklearn.utils import Bunch, column_or_1d

from .utils import _array_api as xp
from .utils._validation import resolve_nota_label

__all__ = [
    "aupr_in",
    "aupr_out",
    "auroc",
    "fpr_at_tpr",
    "nearest_prototype_certified_radius",
    "mean_confidence_interval",
    "open_set_report",
    "ood_report",
    "reasoning_certified_radius",
]


_BINARY_PARAMETERS = """    y_true : array-like or torch tensor of shape (n_samples,)
        1 for in-distribution samples, 0 for out-of-distribution ones.
    y_score : array-like or torch tensor of shape (n_samples,)
        Higher for more in-distribution (a detector's ``score_samples``).
"""


def _binary_doc(func):
    """Fill the shared ``y_true`` / ``y_score`` parameters into `func`'s docstring."""
    func.__doc__ = func.__doc__.replace("    BINARY_PARAMETERS\n", _BINARY_PARAMETERS)
    return func


def _column(a):
    """``column_or_1d`` that also takes torch tensors (any device, autograd or not)."""
    # only tensors are converted first: column_or_1d keeps its own handling of
    # lists, pandas and other array-likes
    return column_or_1d(xp.to_numpy(a) if xp.is_torch(a) else a)


def mean_confidence_interval(values, *, z=1.96):
    """Mean and half-width of its normal-approximation confidence interval.

    ``half_width = z * std(values) / sqrt(n)`` with the population standard deviation,
    the convention of the few-shot literature (95% for ``z=1.96``).

    Read more in the :ref:`User Guide <transductive>`.

    Parameters
    ----------
    values : array-like or torch tensor
        The per-episode scores (flattened).
    z : float, default=1.96
        The normal quantile of the interval.

    Returns
    -------
    mean : float
        The mean of `values`.
    half_width : float
        The half-width of the interval.

    Examples
    --------
    >>> from protolearn.metrics import mean_confidence_interval
    >>> mean, ci = mean_confidence_interval([0.8, 0.9, 1.0, 0.9])
    >>> round(mean, 3), round(ci, 3)
    (0.9, 0.069)
    """
    v = np.asarray(xp.to_numpy(values), dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("values is empty.")
    if not np.all(np.isfinite(v)):
        raise ValueError("values contains NaN or infinity.")
    return float(v.mean()), float(z * v.std() / np.sqrt(v.size))


def _check_binary(y_true, y_score):
    y_true = _column(y_true)
    y_score = _column(y_score).astype(np.float64)
    if y_true.shape != y_score.shape:
        raise ValueError(
            f"y_true and y_score have different lengths: {y_true.shape[0]} and "
            f"{y_score.shape[0]}."
        )
    values = set(np.unique(y_true).tolist())
    if not values <= {0, 1} or len(values) < 2:
        raise ValueError(
            "y_true must hold both 1 (in-distribution) and 0 (out-of-distribution); "
            f"got values {sorted(values)}."
        )
    if not np.all(np.isfinite(y_score)):
        raise ValueError("y_score contains NaN or infinity.")
    return y_true.astype(int), y_score


@_binary_doc
def auroc(y_true, y_score):
    """Area under the ROC curve with in-distribution (1) as the positive class.

    Read more in the :ref:`User Guide <ood>`.

    Parameters
    ----------
    BINARY_PARAMETERS

    Returns
    -------
    score : float
        The score (higher is better).

    Examples
    --------
    >>> from protolearn.metrics import auroc
    >>> auroc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    0.75
    """
    y_true, y_score = _check_binary(y_true, y_score)
    return float(roc_auc_score(y_true, y_score))


@_binary_doc
def aupr_in(y_true, y_score):
    """Average precision with in-distribution (1) as the positive class.

    Read more in the :ref:`User Guide <ood>`.

    Parameters
    ----------
    BINARY_PARAMETERS

    Returns
    -------
    score : float
        The score (higher is better).

    Examples
    --------
    >>> from protolearn.metrics import aupr_in
    >>> aupr_in([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    0.8333333333333333
    """
    y_true, y_score = _check_binary(y_true, y_score)
    return float(average_precision_score(y_true, y_score))


@_binary_doc
def aupr_out(y_true, y_score):
    """Average precision with out-of-distribution (0) as the positive class.

    Read more in the :ref:`User Guide <ood>`.

    Parameters
    ----------
    BINARY_PARAMETERS

    Returns
    -------
    score : float
        The score (higher is better).

    Examples
    --------
    >>> from protolearn.metrics import aupr_out
    >>> aupr_out([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    0.8333333333333333
    """
    y_true, y_score = _check_binary(y_true, y_score)
    return float(average_precision_score(1 - y_true, -y_score))


@_binary_doc
def fpr_at_tpr(y_true, y_score, *, tpr=0.95):
    """False-positive rate of OOD samples at the first threshold reaching ``tpr``.

    The share of out-of-distribution samples accepted (scored at or above the
    threshold) when the threshold is the highest one that accepts at least `tpr` of the
    in-distribution samples ("FPR95" for ``tpr=0.95``; lower is better).

    Read more in the :ref:`User Guide <ood>`.

    Parameters
    ----------
    BINARY_PARAMETERS
    tpr : float, default=0.95
        The true-positive rate in (0, 1] that sets the threshold.

    Returns
    -------
    fpr : float
        The false-positive rate at that threshold (lower is better).

    Examples
    --------
    >>> from protolearn.metrics import fpr_at_tpr
    >>> fpr_at_tpr([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])  # 0.5 is accepted with 0.4
    0.5
    """
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1]; got {tpr}.")
    y_true, y_score = _check_binary(y_true, y_score)
    fpr, tprs, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    return float(fpr[np.searchsorted(tprs, tpr, side="left")])


def ood_report(scores_in, scores_out, *, tpr=0.95):
    """AUROC, AUPR-in, AUPR-out and FPR at `tpr` from in- and out-of-distribution scores.

    Read more in the :ref:`User Guide <ood>`.

    Parameters
    ----------
    scores_in : array-like or torch tensor of shape (n_in,)
        Scores of in-distribution samples (higher = more in-distribution).
    scores_out : array-like or torch tensor of shape (n_out,)
        Scores of out-of-distribution samples.
    tpr : float, default=0.95
        The true-positive rate of :func:`fpr_at_tpr`.

    Returns
    -------
    report : :class:`~sklearn.utils.Bunch` with ``auroc``, ``aupr_in``, ``aupr_out``,
        ``fpr95`` (named for the default ``tpr``).

    Examples
    --------
    >>> from protolearn.metrics import ood_report
    >>> r = ood_report([0.9, 0.4], [0.5, 0.1])
    >>> r.auroc, r.fpr95
    (0.75, 0.5)
    """
    s_in = _column(scores_in)
    s_out = _column(scores_out)
    y = np.r_[np.ones(s_in.size, int), np.zeros(s_out.size, int)]
    s = np.r_[s_in, s_out]
    return Bunch(
        auroc=auroc(y, s),
        aupr_in=aupr_in(y, s),
        aupr_out=aupr_out(y, s),
        fpr95=fpr_at_tpr(y, s, tpr=tpr),
    )


def open_set_report(y_true, y_pred, *, nota_label="auto"):
    """Open-set (none-of-the-above) scores.

    Read more in the :ref:`User Guide <open_set>`.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Labels, where `nota_label` marks "none of the above" / out-of-scope.
    nota_label : scalar or "auto", default="auto"
        "auto": -1 for numeric labels, "NOTA" for string labels (as
        :class:`~protolearn.classification.GaussianPrototypeClassifier` predicts).  A
        label of the other kind raises.

    Returns
    -------
    report : :class:`~sklearn.utils.Bunch` with
        ``in_scope_accuracy`` (accuracy on rows whose true label is known; rejecting one
        of them counts as an error), ``nota_precision``, ``nota_recall``, ``nota_f1``
        (the NOTA label as the positive class), ``accuracy`` (NOTA counted as one more
        class), ``macro_f1`` (macro F1 over the known classes and NOTA, the open-intent
        protocol's score), ``known_macro_f1`` (macro F1 over the known classes only).

    Examples
    --------
    >>> from protolearn.metrics import open_set_report
    >>> r = open_set_report([0, 1, -1, -1], [0, -1, -1, 1])
    >>> r.in_scope_accuracy, r.nota_precision, r.nota_recall
    (0.5, 0.5, 0.5)
    """
    y_true = _column(y_true)
    y_pred = _column(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred have different lengths: {y_true.shape[0]} and "
            f"{y_pred.shape[0]}."
        )
    nota_label = resolve_nota_label(nota_label, y_true)
    is_nota_true = y_true == nota_label
    is_nota_pred = y_pred == nota_label
    tp = np.sum(is_nota_true & is_nota_pred)
    precision = tp / is_nota_pred.sum() if is_nota_pred.any() else 0.0
    recall = tp / is_nota_true.sum() if is_nota_true.any() else 0.0
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    known = ~is_nota_true
    in_acc = float(np.mean(y_true[known] == y_pred[known])) if known.any() else np.nan
    known_labels = np.unique(y_true[known])
    labels_all = (
        np.unique(np.r_[known_labels, [nota_label]])
        if is_nota_true.any() or (is_nota_pred.any())
        else known_labels
    )
    return Bunch(
        in_scope_accuracy=in_acc,
        nota_precision=float(precision),
        nota_recall=float(recall),
        nota_f1=float(f1),
        accuracy=float(np.mean(y_true == y_pred)),
        macro_f1=float(
            f1_score(
                y_true, y_pred, labels=labels_all, average="macro", zero_division=0
            )
        ),
        known_macro_f1=float(
            f1_score(
                y_true, y_pred, labels=known_labels, average="macro", zero_division=0
            )
        ),
    )


def _check_certificate_inputs(X, components, n_rows_other, other_name):
    """2-D ``X`` and ``components`` with the same number of features, and
    ``n_rows_other`` (the rows of the reasoning or the labels) matching the components."""
    for name, a in (("X", X), ("prototypes", components)):
        if len(a.shape) != 2:
            raise ValueError(f"{name} must be 2-D; got shape {tuple(a.shape)}.")
    if X.shape[1] != components.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but the prototypes have {components.shape[1]}."
        )
    if n_rows_other != components.shape[0]:
        raise ValueError(
            f"{other_name} has {n_rows_other} entries for {components.shape[0]} prototypes."
        )


def _as_array(a, like):
    """numpy float input stays as it is (ints become float64); torch stays torch."""
    if xp.is_torch(like):  # torch follows X's dtype; numpy keeps its own float dtype
        return xp.asarray_like(a, like)
    a = xp.to_numpy(a)
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def nearest_prototype_certified_radius(
    X, prototypes, prototype_labels, *, metric="euclidean", omega=None
):
    """Certified L2 radius of a nearest-prototype classifier at each row of ``X``.

    The classifier assigns a row the label of its nearest prototype. The radius is the
    L2 norm below which no perturbation of the row changes the predicted class: the
    distance to the nearest decision boundary between the winning class's prototypes and
    the others' (exact with one prototype per class, a lower bound otherwise). It
    certifies any nearest-prototype model given its prototypes, such as nearest
    centroids or a GLVQ / GMLVQ model trained by another library; the fitted
    classifiers of :mod:`protolearn.classification` have their own
    ``certified_radius`` method.

    Read more in the :ref:`User Guide <prototype_classifiers>`.

    Parameters
    ----------
    X : {array-like, torch.Tensor} of shape (n_samples, n_features)
        The rows to certify.
    prototypes : array-like of shape (n_prototypes, n_features)
        The prototypes.
    prototype_labels : array-like of shape (n_prototypes,)
        The class of each prototype.
    metric : {"euclidean", "sqeuclidean", "cosine", "mahalanobis"}, default="euclidean"
        The distance the classifier compares. "mahalanobis" measures
        ``|omega (x - w)|``, GMLVQ's adaptive metric, and needs ``omega``.
    omega : array-like of shape (n_components, n_features), default=None
        The projection of the "mahalanobis" metric (GMLVQ's ``omega_``).

    Returns
    -------
    radius : ndarray or torch.Tensor of shape (n_samples,)
        The certified radius of each row (``inf`` with a single class); a tensor on
        ``X``'s device when ``X`` is a tensor.

    See Also
    --------
    reasoning_certified_radius : The certificate of RBF networks and CBC.
    protolearn.classification.NearestPrototypeClassifier.certified_radius

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.metrics import nearest_prototype_certified_radius
    >>> prototypes = np.array([[0.0, 0.0], [2.0, 0.0]])
    >>> nearest_prototype_certified_radius([[0.5, 0.0], [1.5, 3.0]], prototypes, [0, 1])
    array([0.5, 0.5])
    """
    from ._core import nearest_prototype_radius

    X = _as_array(X, X)
    W = _as_array(prototypes, X)
    labels = xp.to_numpy(prototype_labels)
    _check_certificate_inputs(X, W, labels.shape[0], "prototype_labels")
    if metric == "mahalanobis":
        if omega is None:
            raise ValueError('metric="mahalanobis" needs omega.')
        omega = _as_array(omega, X)
        if omega.shape[1] != X.shape[1]:
            raise ValueError(
                f"omega has {omega.shape[1]} columns for {X.shape[1]} features."
            )
        omega = omega.T
    elif metric not in ("euclidean", "sqeuclidean", "cosine"):
        raise ValueError(
            "metric must be 'euclidean', 'sqeuclidean', 'cosine' or 'mahalanobis'; "
            f"got {metric!r}."
        )
    return nearest_prototype_radius(
        X, W, labels, metric=metric, precision_cholesky=omega
    )


def reasoning_certified_radius(
    X, components, positive, negative=None, *, sigma, detection="exponential"
):
    """Certified L2 radius of an RBF network or a CBC model at each row of ``X``.

    The model detects each component with probability ``exp(-|x - w_k| / sigma)``
    ("exponential") or ``exp(-|x - w_k|^2 / sigma)`` ("gaussian") and scores class
    ``c`` from the detections with positive and negative reasoning (Saralajew et al.,
    2019). The radius is a lower bound on the L2 norm of a perturbation that changes
    the predicted class (Saralajew et al., 2024, Theorem 1). It certifies a CBC or RBF
    model given its components and reasoning, such as one trained by another library;
    :class:`~protolearn.classification.CBCClassifier` and
    :class:`~protolearn.classification.RBFClassifier` have their own
    ``certified_radius`` method.

    Read more in the :ref:`User Guide <prototype_classifiers>`.

    Parameters
    ----------
    X : {array-like, torch.Tensor} of shape (n_samples, n_features)
        The rows to certify.
    components : array-like of shape (n_components, n_features)
        The components (RBF centres).
    positive : array-like of shape (n_classes, n_components)
        The positive reasoning: how much detecting component ``k`` speaks for class
        ``c``; for an RBF network, the class weights.
    negative : array-like of shape (n_classes, n_components), default=None
        The negative reasoning: how much *not* detecting component ``k`` speaks for
        class ``c``. None for an RBF network.
    sigma : float > 0
        The detection temperature.
    detection : {"exponential", "gaussian"}, default="exponential"
        The detection function (euclidean or squared euclidean distance).

    Returns
    -------
    radius : ndarray or torch.Tensor of shape (n_samples,)
        The certified radius of each row at its predicted class.

    See Also
    --------
    nearest_prototype_certified_radius : The certificate of nearest-prototype rules.
    protolearn.classification.CBCClassifier.certified_radius

    Examples
    --------
    >>> import numpy as np
    >>> from protolearn.metrics import reasoning_certified_radius
    >>> components = np.array([[0.0, 0.0], [2.0, 0.0]])
    >>> positive = np.eye(2)  # class c is detected by component c
    >>> r = reasoning_certified_radius([[0.0, 0.0]], components, positive, sigma=1.0)
    >>> bool(0 < r[0] <= 1.0)
    True
    """
    from ._core import reasoning_radius

    if detection not in ("exponential", "gaussian"):
        raise ValueError(
            f"detection must be 'exponential' or 'gaussian'; got {detection!r}."
        )
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0; got {sigma!r}.")
    X = _as_array(X, X)
    W = _as_array(components, X)
    pos = _as_array(positive, X)
    neg = None if negative is None else _as_array(negative, X)
    _check_certificate_inputs(X, W, pos.shape[1], "positive's second axis")
    if neg is not None and tuple(neg.shape) != tuple(pos.shape):
        raise ValueError(
            f"negative has shape {tuple(neg.shape)}; positive has {tuple(pos.shape)}."
        )
    return reasoning_radius(X, W, float(sigma), pos, neg, detection=detection)
