"""Demo: Gaussian prototypes with none-of-the-above rejection on digits.

Digits 0-6 are the known classes; the test digits 7, 8 and 9 (30 % of the test set)
must be rejected as "none of the above".  Each margin mode against a single global
threshold fitted the same way (held-out digits as pseudo-unknowns, F1 at a 30 % NOTA
share, or the same target in-class recall).
"""

import matplotlib.pyplot as plt
import numpy as np

from ..classification import GaussianPrototypeClassifier
from ..datasets import load_demo_data
from ..metrics import auroc, open_set_report
from ._table import row, timer

FAMILY = "Gaussian prototypes (NOTA)"
KNOWN = 7  # digits 0..6 are known
MODES = {
    "nota='global'": dict(nota="global", nota_rate=0.3),
    "nota='adaptive'": dict(nota="adaptive", nota_rate=0.3),
    "nota='quantile' (alpha=0.1)": dict(
        nota="quantile", alpha=0.1, calibration_size=0.3
    ),
    "nota='global', target_recall=0.95": dict(nota="global", target_recall=0.95),
    "nota='adaptive', target_recall=0.95": dict(nota="adaptive", target_recall=0.95),
}
REFERENCE = {  # the global threshold each mode is compared with
    "nota='adaptive', target_recall=0.95": "nota='global', target_recall=0.95",
}


def run(out_dir):
    d = load_demo_data("digits")
    known = d.y_train < KNOWN
    X, y = d.X_train[known], d.y_train[known]
    y_true = np.where(d.y_test < KNOWN, d.y_test, -1)
    data = f"digits (0-{KNOWN - 1} known, {KNOWN}-9 NOTA)"
    rows, fitted = [], {}
    for label, params in MODES.items():
        box = {}
        with timer(box):
            clf = GaussianPrototypeClassifier(
                covariance_type="full", pooling=0.5, random_state=0, **params
            ).fit(X, y)
        fitted[label] = clf
        r = open_set_report(y_true, clf.predict(d.X_test))
        fitted[label + " report"] = r
        fitted[label + " s"] = box["s"]
    for label in MODES:
        ref_label = REFERENCE.get(label, "nota='global'")
        r = fitted[label + " report"]
        # the global threshold is the reference of the others, not its own
        ref = None if ref_label == label else fitted[ref_label + " report"]
        ref_name = "" if ref is None else f"GPC {ref_label}"
        for metric, attr, fit_s in (
            ("NOTA F1", "nota_f1", fitted[label + " s"]),
            ("in-scope acc.", "in_scope_accuracy", None),
        ):
            rows.append(
                row(
                    FAMILY,
                    f"GPC {label}",
                    data,
                    metric,
                    getattr(r, attr),
                    ref_name,
                    None if ref is None else getattr(ref, attr),
                    fit_s,
                )
            )
    clf = fitted["nota='adaptive'"]
    s = clf.score_samples(d.X_test)
    rows.append(
        row(
            FAMILY,
            "GPC score_samples",
            data,
            "AUROC known vs NOTA",
            auroc((y_true >= 0).astype(int), s),
        )
    )
    _plot(clf, fitted["nota='global'"], d, y_true, out_dir)
    return rows


def _plot(adaptive, glob, d, y_true, out_dir):
    """Score histograms (known vs NOTA) and the per-class margins."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    s = adaptive.score_samples(d.X_test)
    lo, hi = np.percentile(s, [1, 99])
    bins = np.linspace(lo, hi, 40)
    axes[0].hist(s[y_true >= 0], bins=bins, alpha=0.6, label="known digits 0-6")
    axes[0].hist(s[y_true < 0], bins=bins, alpha=0.6, label="NOTA digits 7-9")
    axes[0].axvline(0, color="k", lw=1)
    axes[0].set_xlabel("score_samples (log-density minus class margin)")
    axes[0].set_ylabel("test queries")
    axes[0].set_title("adaptive margins: rejected left of 0", fontsize=9)
    axes[0].legend(fontsize=8)
    k = np.arange(adaptive.classes_.size)
    axes[1].plot(
        k, adaptive.margins_, "o", color="tab:blue", label="adaptive (per class)"
    )
    axes[1].axhline(glob.margins_[0], color="tab:red", lw=2, label="global")
    axes[1].set_xticks(k, [str(c) for c in adaptive.classes_])
    axes[1].set_xlabel("class")
    axes[1].set_ylabel("margin (log-density)")
    lo = min(adaptive.margins_.min(), glob.margins_[0])
    hi = max(adaptive.margins_.max(), glob.margins_[0])
    pad = max(1.0, 0.2 * (hi - lo))
    axes[1].set_ylim(lo - pad, hi + pad)
    axes[1].legend(fontsize=8, loc="best")
    axes[1].set_title("per-class margins", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "open_set_digits.png", dpi=80)
    plt.close(fig)
