"""Demo: nearest-prototype classifiers vs scikit-learn's NearestCentroid."""

import matplotlib.pyplot as plt
import numpy as np

from ..classification import NearestPrototypeClassifier
from ..datasets import load_demo_data
from ._table import accuracy_row, nearest_centroid_accuracy, timer

FAMILY = "nearest prototype"
CONFIGS = {
    "NPC euclidean": dict(metric="euclidean"),
    "NPC cosine, 3/class": dict(metric="cosine", n_prototypes=3, random_state=0),
    "NPC euclidean, 3/class": dict(metric="euclidean", n_prototypes=3, random_state=0),
    "NPC mahalanobis": dict(metric="mahalanobis"),
}


def run(out_dir):
    rows = []
    for name in ("digits", "wine", "breast_cancer"):
        d = load_demo_data(name)
        ref_acc = nearest_centroid_accuracy(d)
        for label, params in CONFIGS.items():
            box = {}
            with timer(box):
                clf = NearestPrototypeClassifier(**params).fit(d.X_train, d.y_train)
            rows.append(
                accuracy_row(
                    FAMILY, label, name, clf, d, "NearestCentroid", ref_acc, box["s"]
                )
            )
        if name == "digits":
            _plot_digits(d, out_dir)
    return rows


def _plot_digits(d, out_dir):
    """Prototypes of each digit with their nearest training exemplars; radii."""
    clf = NearestPrototypeClassifier(
        n_prototypes=2, random_state=0, exemplars_per_prototype=4
    )
    # Unscaled pixels look like digits: refit on the raw-scale data for the picture.
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    clf.fit(X.astype(np.float32), y)
    P = clf.prototypes_
    fig, axes = plt.subplots(P.shape[0], 5, figsize=(5, P.shape[0] * 0.9))
    for p in range(P.shape[0]):
        axes[p, 0].imshow(P[p].reshape(8, 8), cmap="gray_r")
        axes[p, 0].set_ylabel(str(clf.prototype_labels_[p]), rotation=0, labelpad=10)
        for j in range(4):
            i = clf.exemplar_indices_[p, j]
            if i >= 0:
                axes[p, j + 1].imshow(X[i].reshape(8, 8), cmap="gray_r")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("prototype", fontsize=8)
    axes[0, 2].set_title("nearest training exemplars", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "nearest_prototype_digits.png", dpi=80)
    plt.close(fig)

    radius = clf.certified_radius(X.astype(np.float32))
    correct = clf.predict(X) == y
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(radius[correct], bins=40, alpha=0.7, label="correct")
    ax.hist(radius[~correct], bins=40, alpha=0.7, label="wrong")
    ax.set_xlabel("certified L2 radius (pixel units)")
    ax.set_ylabel("samples")
    ax.set_title(
        "NearestPrototypeClassifier: certified radii\n(digits, its training samples)",
        fontsize=9,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "nearest_prototype_radius.png", dpi=80)
    plt.close(fig)
