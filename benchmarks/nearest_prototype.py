"""NearestPrototypeClassifier vs scikit-learn NearestCentroid, KNeighborsClassifier and
LogisticRegression: accuracy, fit and predict time on CLINC150 and digits, in one run.

Also times ``predict`` on 100,000 x 384 float32 queries against
``NearestCentroid.predict`` (same 150 centroids).

Run: ``python benchmarks/nearest_prototype.py`` (needs ../shared/data or $PROTOLEARN_DATA
for CLINC150).  Writes ``benchmarks/results/nearest_prototype.md``.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (
    best_time,
    machine_line,
    markdown_table,
    versions_line,
    write_results,
)

from protolearn.classification import NearestPrototypeClassifier
from protolearn.datasets import load_clinc150, load_demo_data

warnings.filterwarnings(
    "ignore", category=UserWarning
)  # NearestCentroid's zero-std note

MODELS = {
    "ours: NPC euclidean (1/class)": lambda: NearestPrototypeClassifier(),
    "ours: NPC cosine (1/class)": lambda: NearestPrototypeClassifier(metric="cosine"),
    "ours: NPC cosine (3/class)": lambda: NearestPrototypeClassifier(
        metric="cosine", n_prototypes=3, random_state=0
    ),
    "ours: NPC euclidean (5/class)": lambda: NearestPrototypeClassifier(
        n_prototypes=5, random_state=0
    ),
    "ours: NPC mahalanobis (OAS)": lambda: NearestPrototypeClassifier(
        metric="mahalanobis"
    ),
    "sklearn NearestCentroid": lambda: NearestCentroid(),
    "sklearn KNeighborsClassifier (k=10, cosine)": lambda: KNeighborsClassifier(
        10, metric="cosine"
    ),
    "sklearn LogisticRegression (C=10)": lambda: LogisticRegression(
        C=10, max_iter=2000
    ),
}
REFERENCE = "sklearn NearestCentroid"


def datasets():
    tr = load_clinc150(subset="train", include_oos=False)
    te = load_clinc150(subset="test", include_oos=False)
    yield "CLINC150 (in-scope, train -> test)", tr.data, tr.target, te.data, te.target
    d = load_demo_data("digits")
    yield "digits (70/30 split, standardised)", d.X_train, d.y_train, d.X_test, d.y_test


def run_quality():
    sections = []
    for name, Xtr, ytr, Xte, yte in datasets():
        res = {}
        for label, make in MODELS.items():
            fit_s, model = best_time(lambda m=make: m().fit(Xtr, ytr), repeat=3)  # noqa: B023
            pred_s, pred = best_time(model.predict, Xte, repeat=3)
            res[label] = (float(np.mean(pred == yte)), fit_s, pred_s)
            print(f"{name[:8]} {label}: acc {res[label][0]:.4f}", flush=True)
        ref = res[REFERENCE]
        rows = [
            [label, acc, acc - ref[0], f, f / ref[1], p, p / ref[2]]
            for label, (acc, f, p) in res.items()
        ]
        sections.append(
            f"### {name}: {len(ytr)} train / {len(yte)} test rows\n\n"
            + markdown_table(
                [
                    "model",
                    "accuracy",
                    "Δ acc vs NearestCentroid",
                    "fit s",
                    "fit ratio",
                    "predict s",
                    "predict ratio",
                ],
                rows,
            )
        )
    return sections


def run_predict_speed():
    tr = load_clinc150(subset="train", include_oos=False)
    Q = np.random.default_rng(0).standard_normal((100_000, 384)).astype(np.float32)
    ours = NearestPrototypeClassifier().fit(tr.data, tr.target)
    ref = NearestCentroid().fit(tr.data, tr.target)
    rows, agree = [], None
    t_ref, p_ref = best_time(ref.predict, Q, repeat=5)
    t_ours, p_ours = best_time(ours.predict, Q, repeat=5)
    agree = float(np.mean(p_ours == p_ref))
    rows.append(["ours: NearestPrototypeClassifier.predict", t_ours, t_ours / t_ref])
    rows.append(["sklearn NearestCentroid.predict", t_ref, 1.0])
    return (
        "### predict on 100,000 x 384 float32 queries (150 prototypes)\n\n"
        + markdown_table(
            ["model", "best of 5 (s)", "time ratio vs NearestCentroid"], rows
        )
        + f"\n\nSame predictions on {agree:.5%} of the random queries (the rest are ties "
        "at float32 precision: NearestCentroid compares in float64). "
        f"Speed-up: **{t_ref / t_ours:.2f}x**."
    )


def main():
    parts = [
        "# Nearest prototypes vs scikit-learn\n",
        f"Machine: {machine_line()}. Libraries: "
        f"{versions_line('protolearn', 'sklearn', 'numpy', 'torch')}.\n",
        "Each fit and predict is timed 3 times (5 for the 100k predict) and the best time "
        "kept; ratios are to NearestCentroid in the same run (these machines are shared "
        "and noisy: compare ratios, not seconds). No hyperparameter was tuned: defaults "
        "and the values in the model names; LogisticRegression C=10 as in the data "
        "README.\n",
        run_predict_speed(),
        *run_quality(),
    ]
    write_results("nearest_prototype", "\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
