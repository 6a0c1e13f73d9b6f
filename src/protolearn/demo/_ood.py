"""Demo: out-of-distribution detectors on digits (0-4 known, 5-9 unseen)."""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from ..datasets import load_demo_data
from ..metrics import auroc
from ..ood import KNNDetector, MahalanobisDetector, PrototypeMixtureDetector
from ._table import row, timer

FAMILY = "ood"
CONFIGS = {
    "PrototypeMixture 3/class": (
        lambda: PrototypeMixtureDetector(n_prototypes=3, random_state=0),
        True,
    ),
    "PrototypeMixture 1/class": (
        lambda: PrototypeMixtureDetector(n_prototypes=1, random_state=0),
        True,
    ),
    "Mahalanobis relative": (lambda: MahalanobisDetector(method="relative"), True),
    "KNNDetector k=10": (lambda: KNNDetector(n_neighbors=10), False),
}


def run(out_dir):
    d = load_demo_data("digits")
    known = d.y_train < 5
    X_fit, y_fit = d.X_train[known], d.y_train[known]
    is_in = (d.y_test < 5).astype(int)
    ref = LocalOutlierFactor(novelty=True).fit(X_fit)
    ref_auc = auroc(is_in, ref.score_samples(d.X_test))
    iso = IsolationForest(random_state=0).fit(X_fit)
    rows = [
        row(
            FAMILY,
            "IsolationForest (sklearn)",
            "digits 0-4 vs 5-9",
            "AUROC",
            auroc(is_in, iso.score_samples(d.X_test)),
        )
    ]
    scores = {}
    for label, (make, labelled) in CONFIGS.items():
        box = {}
        with timer(box):
            det = make().fit(X_fit, y_fit if labelled else None)
        scores[label] = det.score_samples(d.X_test)
        rows.append(
            row(
                FAMILY,
                label,
                "digits 0-4 vs 5-9",
                "AUROC",
                auroc(is_in, scores[label]),
                "LocalOutlierFactor",
                ref_auc,
                box["s"],
            )
        )
    _plot(scores["PrototypeMixture 3/class"], is_in, out_dir)
    return rows


def _plot(s, is_in, out_dir):
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = np.linspace(np.percentile(s, 1), s.max(), 40)
    ax.hist(s[is_in == 1], bins=bins, alpha=0.6, density=True, label="digits 0-4")
    ax.hist(s[is_in == 0], bins=bins, alpha=0.6, density=True, label="digits 5-9")
    ax.set_xlabel("PrototypeMixtureDetector.score_samples")
    ax.set_ylabel("density")
    ax.set_title("Known vs unseen digits")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "ood_digits_scores.png", dpi=80)
    plt.close(fig)
