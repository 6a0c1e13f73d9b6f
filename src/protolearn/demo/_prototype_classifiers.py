"""Demo: trained prototype classifiers (GLVQ, GMLVQ; RBF, CBC) vs NearestCentroid.

Each model family adds a function ``(out_dir) -> rows`` to ``SECTIONS``.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..classification import (
    CBCClassifier,
    GLVQClassifier,
    GMLVQClassifier,
    RBFClassifier,
    plot_reasoning,
)
from ..datasets import load_demo_data
from ._table import accuracy_row, nearest_centroid_accuracy, row, timed_fit

FAMILY = "trained prototypes"
DATASETS = ("digits", "wine", "breast_cancer")


def _fit_rows(configs, out_dir):
    """Test accuracy (vs NearestCentroid) and certified accuracy at L2 radius 0.5
    (correct and certified) of each config on every data set."""
    rows = []
    for name in DATASETS:
        d = load_demo_data(name)
        ref_acc = nearest_centroid_accuracy(d)
        for label, make in configs.items():
            clf, s = timed_fit(make, d.X_train, d.y_train)
            rows.append(
                accuracy_row(FAMILY, label, name, clf, d, "NearestCentroid", ref_acc, s)
            )
            radius = clf.certified_radius(d.X_test)
            correct = clf.predict(d.X_test) == d.y_test
            rows.append(
                row(
                    FAMILY,
                    label,
                    name,
                    "certified acc. r=0.5",
                    float(np.mean(correct & (radius >= 0.5))),
                )
            )
    return rows


GLVQ_CONFIGS = {
    "GLVQ": lambda: GLVQClassifier(random_state=0),
    "GLVQ, 3/class": lambda: GLVQClassifier(n_prototypes=3, random_state=0),
    "GMLVQ": lambda: GMLVQClassifier(random_state=0),
    "GMLVQ, rank 2": lambda: GMLVQClassifier(n_components=2, random_state=0),
}


def _glvq_rows(out_dir):
    rows = _fit_rows(GLVQ_CONFIGS, out_dir)
    _plot_relevances(out_dir)
    return rows


def _plot_relevances(out_dir):
    """GMLVQ on digits: learned pixel relevances and the rank-2 projection."""
    d = load_demo_data("digits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full = GMLVQClassifier(random_state=0).fit(d.X_train, d.y_train)
        low = GMLVQClassifier(n_components=2, random_state=0).fit(d.X_train, d.y_train)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    im = axes[0].imshow(np.diag(full.relevance_matrix_).reshape(8, 8), cmap="viridis")
    axes[0].set_title("GMLVQ pixel relevances (diag of Lambda)", fontsize=9)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    axes[0].set_xlabel("pixel column")
    axes[0].set_ylabel("pixel row")
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    Z = low.transform(d.X_test)
    P = low.transform(low.prototypes_)
    sc = axes[1].scatter(Z[:, 0], Z[:, 1], c=d.y_test, cmap="tab10", s=6)
    axes[1].scatter(P[:, 0], P[:, 1], c="k", marker="*", s=120)
    axes[1].set_title("rank-2 GMLVQ projection (test), prototypes *", fontsize=9)
    axes[1].set_xlabel("projected dimension 1")
    axes[1].set_ylabel("projected dimension 2")
    fig.colorbar(sc, ax=axes[1], fraction=0.046)
    fig.tight_layout()
    fig.savefig(out_dir / "gmlvq_digits_relevances.png", dpi=80)
    plt.close(fig)


CBC_CONFIGS = {
    "RBF": lambda: RBFClassifier(random_state=0),
    "RBF, robust loss": lambda: RBFClassifier(loss="robust", random_state=0),
    "CBC (original)": lambda: CBCClassifier(reasoning="original", random_state=0),
    "CBC (stable)": lambda: CBCClassifier(random_state=0),
    "CBC (stable), robust loss": lambda: CBCClassifier(loss="robust", random_state=0),
}


def _cbc_rows(out_dir):
    rows = _fit_rows(CBC_CONFIGS, out_dir)
    _plot_cbc(out_dir)
    return rows


def _plot_cbc(out_dir):
    """Stable CBC on digits: components as images and the reasoning matrices."""
    d = load_demo_data("digits", standardize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = CBCClassifier(n_components=20, random_state=0).fit(
            d.X_train / 16, d.y_train
        )
    fig, axes = plt.subplots(2, 10, figsize=(10, 2.4))
    for k, ax in enumerate(axes.ravel()):
        ax.imshow(clf.components_[k].reshape(8, 8), cmap="gray_r")
        ax.set_title(f"{k}", fontsize=7)
        ax.axis("off")
    fig.suptitle("CBC components (digits)", fontsize=9)
    fig.savefig(out_dir / "cbc_digits_components.png", dpi=80)
    plt.close(fig)
    fig = plot_reasoning(clf).figure
    fig.tight_layout()
    fig.savefig(out_dir / "cbc_digits_reasoning.png", dpi=80)
    plt.close(fig)


# One entry per model family.
SECTIONS = [_glvq_rows, _cbc_rows]


def run(out_dir):
    rows = []
    for section in SECTIONS:
        rows.extend(section(out_dir))
    return rows
