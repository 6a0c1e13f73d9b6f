"""Demo: trained prototype classifiers (GLVQ, GMLVQ; RBF, CBC) vs NearestCentroid.

Each model family adds a function ``(out_dir) -> rows`` to ``SECTIONS``.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestCentroid

from ..classification import GLVQClassifier, GMLVQClassifier
from ..datasets import load_demo_data
from ._table import row, timer

FAMILY = "trained prototypes"
DATASETS = ("digits", "wine", "breast_cancer")


def _reference(d):
    with warnings.catch_warnings():
        # sklearn warns about constant pixels in digits; irrelevant here
        warnings.simplefilter("ignore", UserWarning)
        ref = NearestCentroid().fit(d.X_train, d.y_train)
    return ref.score(d.X_test, d.y_test)


def _fit_rows(configs, out_dir):
    """Accuracy and median certified radius of each config on every data set."""
    rows = []
    for name in DATASETS:
        d = load_demo_data(name)
        ref_acc = _reference(d)
        for label, make in configs.items():
            box = {}
            with timer(box), warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = make().fit(d.X_train, d.y_train)
            rows.append(
                row(
                    FAMILY,
                    label,
                    name,
                    "accuracy",
                    clf.score(d.X_test, d.y_test),
                    "NearestCentroid",
                    ref_acc,
                    box["s"],
                )
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
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    Z = d.X_test @ low.omega_.T
    P = low.prototypes_ @ low.omega_.T
    sc = axes[1].scatter(Z[:, 0], Z[:, 1], c=d.y_test, cmap="tab10", s=6)
    axes[1].scatter(P[:, 0], P[:, 1], c="k", marker="*", s=120)
    axes[1].set_title("rank-2 GMLVQ projection (test), prototypes *", fontsize=9)
    fig.colorbar(sc, ax=axes[1], fraction=0.046)
    fig.tight_layout()
    fig.savefig(out_dir / "gmlvq_digits_relevances.png", dpi=80)
    plt.close(fig)


# One entry per model family (the RBF / CBC rows are added here).
SECTIONS = [_glvq_rows]


def run(out_dir):
    rows = []
    for section in SECTIONS:
        rows.extend(section(out_dir))
    return rows
