"""Plots of fitted component models (matplotlib is imported lazily)."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

_KINDS = ("positive", "negative", "indefinite")


class ReasoningAxes(list):
    """The panels drawn by :func:`plot_reasoning` (a list of Axes) and their Figure.

    ``figure`` is the Figure holding them, so ``plot_reasoning(clf).figure.savefig(
    path)`` works as with a scikit-learn display's ``figure_``.
    """

    @property
    def figure(self):
        return self[0].figure

    figure_ = figure


def plot_reasoning(clf, *, classes=None, components=None, axes=None, cmap="viridis"):
    """Draw the reasoning matrices of a fitted CBC (or the weights of an RBF network).

    One heat map per kind of reasoning -- positive (the component's presence supports
    the class), negative (its absence does) and, for the original CBC, indefinite --
    with one row per class and one column per component, as in the figures of
    Saralajew et al. (2019, 2024).

    Read more in the :ref:`User Guide <prototype_classifiers>`.

    Parameters
    ----------
    clf : fitted :class:`CBCClassifier` or :class:`RBFClassifier`
    classes : array-like of labels, default=None
        Rows to draw (labels from ``clf.classes_``); None draws every class.
    components : array-like of int, default=None
        Columns to draw (indices into ``clf.components_``); None draws all.
    axes : sequence of matplotlib Axes, default=None
        One per panel (3 for original CBC, 2 for stable CBC, 1 for RBF); None creates
        a new figure.
    cmap : str, default="viridis"
        The matplotlib colormap of the heat maps.

    Returns
    -------
    axes : ReasoningAxes
        A list of the panels' Axes, with ``.figure`` (also ``.figure_``, as in
        scikit-learn's displays): the Figure to save or show.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from protolearn.classification import CBCClassifier, plot_reasoning
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = CBCClassifier(n_components=6, random_state=0).fit(X, y)
    >>> axes = plot_reasoning(clf)
    >>> len(axes), axes.figure is axes[0].figure
    (2, True)
    """
    check_is_fitted(clf)
    if hasattr(clf, "reasoning_"):
        table = clf.reasoning_
        kinds = list(_KINDS) if clf.reasoning == "original" else list(_KINDS[:2])
        title = "reasoning"
    elif hasattr(clf, "class_weights_"):
        table = clf.class_weights_[..., None]
        kinds = ["weight"]
        title = "class weights"
    else:
        raise ValueError(
            f"{type(clf).__name__} has no reasoning_ or class_weights_ to plot; pass a "
            "fitted CBCClassifier or RBFClassifier."
        )
    rows = np.arange(len(clf.classes_))
    if classes is not None:
        classes = np.asarray(classes)
        unknown = classes[~np.isin(classes, clf.classes_)]
        if unknown.size:
            raise ValueError(f"classes {unknown.tolist()} are not in clf.classes_.")
        rows = np.searchsorted(clf.classes_, classes)
    cols = np.arange(table.shape[1])
    if components is not None:
        cols = np.asarray(components, dtype=int)
        if cols.size and (cols.min() < 0 or cols.max() >= table.shape[1]):
            raise ValueError(
                f"components must be indices in [0, {table.shape[1]}); got "
                f"{cols.tolist()}."
            )
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(
            1,
            len(kinds),
            figsize=(min(2 + 0.25 * cols.size, 7) * len(kinds), 1.2 + 0.3 * rows.size),
            squeeze=False,
        )
        axes = list(axes[0])
    axes = list(np.atleast_1d(axes))
    if len(axes) != len(kinds):
        raise ValueError(
            f"axes must hold {len(kinds)} Axes for {kinds}; got {len(axes)}."
        )
    for i, (ax, kind) in enumerate(zip(axes, kinds)):
        M = table[np.ix_(rows, cols)][..., i]
        # one colour scale per panel: stable CBC's negative reasoning is often much
        # smaller than its positive reasoning and would vanish on a shared scale
        im = ax.imshow(M, cmap=cmap, vmin=0, vmax=float(M.max()) or 1.0, aspect="auto")
        ax.set_title(f"{kind} {title}" if kind != "weight" else title)
        ax.set_xlabel("component")
        ax.set_xticks(np.arange(cols.size), [str(c) for c in cols])
        ax.set_yticks(np.arange(rows.size), [str(c) for c in clf.classes_[rows]])
        if i == 0:
            ax.set_ylabel("class")
        ax.figure.colorbar(im, ax=ax)
    return ReasoningAxes(axes)
