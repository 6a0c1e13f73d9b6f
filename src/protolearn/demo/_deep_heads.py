"""Demo: deep prototype heads (protolearn.deep, trained with skorch) on digits.

A linear projection + Gaussian prototypes (closed set and none-of-the-above: digits 0-6
known, 7-9 to reject) against the shallow GaussianPrototypeClassifier, and a linear
projection + CBC against the shallow CBCClassifier with its input-space certified
radius.  Small heads and few epochs keep the section short on a CPU.
"""

import matplotlib.pyplot as plt
import numpy as np

from ..classification import CBCClassifier, GaussianPrototypeClassifier
from ..datasets import load_demo_data
from ..deep import DeepCBCClassifier, DeepGaussianPrototypeClassifier
from ..metrics import open_set_report
from ._table import accuracy_row, row, timed_fit

FAMILY = "deep heads (skorch)"
KNOWN = 7
HEAD = dict(
    hidden_layer_sizes=(32,), max_iter=15, learning_rate_init=0.02, random_state=0
)


def run(out_dir):
    d = load_demo_data("digits")
    rows = []
    deep, s = timed_fit(
        lambda: DeepGaussianPrototypeClassifier(**HEAD), d.X_train, d.y_train
    )
    ref, _ = timed_fit(GaussianPrototypeClassifier, d.X_train, d.y_train)
    ref_acc = ref.score(d.X_test, d.y_test)
    name = "DeepGaussianPrototypeClassifier"
    reference = "GaussianPrototypeClassifier"
    rows.append(accuracy_row(FAMILY, name, "digits", deep, d, reference, ref_acc, s))
    known = d.y_train < KNOWN
    y_true = np.where(d.y_test < KNOWN, d.y_test, -1)
    kw = dict(nota="adaptive", nota_rate=0.3)
    nota, s = timed_fit(
        lambda: DeepGaussianPrototypeClassifier(**HEAD, **kw),
        d.X_train[known],
        d.y_train[known],
    )
    ref_nota, _ = timed_fit(
        lambda: GaussianPrototypeClassifier(random_state=0, **kw),
        d.X_train[known],
        d.y_train[known],
    )
    rows.append(
        row(
            FAMILY,
            "DeepGaussianPrototypeClassifier nota='adaptive'",
            f"digits (0-{KNOWN - 1} known)",
            "open-set macro-F1",
            open_set_report(y_true, nota.predict(d.X_test)).macro_f1,
            "GaussianPrototypeClassifier nota='adaptive'",
            open_set_report(y_true, ref_nota.predict(d.X_test)).macro_f1,
            s,
        )
    )
    cbc, s = timed_fit(lambda: DeepCBCClassifier(**HEAD), d.X_train, d.y_train)
    ref_cbc, _ = timed_fit(lambda: CBCClassifier(random_state=0), d.X_train, d.y_train)
    ref_acc = ref_cbc.score(d.X_test, d.y_test)
    rows.append(
        accuracy_row(
            FAMILY, "DeepCBCClassifier", "digits", cbc, d, "CBCClassifier", ref_acc, s
        )
    )
    radius = cbc.certified_radius(d.X_test)
    ok = cbc.predict(d.X_test) == d.y_test
    rows.append(
        row(
            FAMILY,
            "DeepCBCClassifier",
            "digits",
            "median certified radius (correct rows)",
            float(np.median(radius[ok])),
            "CBCClassifier",
            float(np.median(ref_cbc.certified_radius(d.X_test)[ok])),
            None,
        )
    )
    _plot(deep, cbc, d, out_dir)
    return rows


def _plot(deep, cbc, d, out_dir):
    """Training curves and the learned embedding with its prototypes."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(deep.loss_curve_, label="DeepGaussian (GPAM margin loss)")
    axes[0].plot(cbc.loss_curve_, label="DeepCBC (margin loss)")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    Z = deep.transform(d.X_test)
    # the two leading principal directions of the learned space
    mu = Z.mean(0)
    _, _, Vt = np.linalg.svd(Z - mu, full_matrices=False)
    P = (Z - mu) @ Vt[:2].T
    C = (deep.prototypes_ - mu) @ Vt[:2].T
    axes[1].scatter(P[:, 0], P[:, 1], c=d.y_test, s=6, cmap="tab10", alpha=0.6)
    axes[1].scatter(C[:, 0], C[:, 1], c=np.arange(10), cmap="tab10", marker="*",
                    s=220, edgecolor="k")  # fmt: skip
    axes[1].set_title("learned space (PCA): test digits and prototypes", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "deep_heads_digits.png", dpi=80)
    plt.close(fig)
