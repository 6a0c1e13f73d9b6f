"""
=================================================================
None-of-the-above: adaptive margins on CLINC150 intent embeddings
=================================================================

:class:`~protolearn.classification.GaussianPrototypeClassifier` models each of the 150
CLINC150 intents as a Gaussian over frozen sentence embeddings (all-MiniLM-L6-v2) and
rejects a query as "out of scope" when its log-density under its predicted intent is
below that intent's margin.

We compare one global threshold with per-class adaptive margins, both fitted on the
in-scope training data only (held-out intents play the unknowns), and the
split-conformal margins of ``nota="quantile"``; then draw the ROC curve of
``score_samples`` with each model's operating point, and the per-intent margins.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from protolearn.classification import GaussianPrototypeClassifier
from protolearn.datasets import load_clinc150
from protolearn.metrics import auroc, open_set_report

train = load_clinc150(subset="train", include_oos=False)
test = load_clinc150(subset="test")  # 4,500 in-scope + 1,000 out-of-scope queries
X, y = train.data, train.target
is_in = (test.target >= 0).astype(int)

# %%
# Fit the three margin modes.  ``nota_rate`` is the out-of-scope share the F1 of the
# margins is tuned for; ``alpha`` the in-scope rejection rate the conformal margins
# allow.
models = {
    "global threshold": GaussianPrototypeClassifier(nota="global", random_state=0),
    "adaptive margins": GaussianPrototypeClassifier(nota="adaptive", random_state=0),
    "conformal (alpha=0.1)": GaussianPrototypeClassifier(
        nota="quantile", alpha=0.1, random_state=0
    ),
}
reports = {}
for name, model in models.items():
    model.fit(X, y)
    reports[name] = open_set_report(test.target, model.predict(test.data))
    r = reports[name]
    print(
        f"{name:22s} in-scope acc {r.in_scope_accuracy:.3f}  out-of-scope "
        f"P {r.nota_precision:.3f} R {r.nota_recall:.3f} F1 {r.nota_f1:.3f}"
    )

# %%
# ROC curve of ``score_samples`` (in-scope is the positive class): the global model's
# score is the log-density minus one shared margin (so its ROC is the plain
# log-density's), the adaptive one subtracts each intent's own margin.
# The dots are the operating points ``predict`` uses (score < 0 is rejected).
fig, ax = plt.subplots(figsize=(5.5, 4.5))
for name, color in (("global threshold", "tab:red"), ("adaptive margins", "tab:blue")):
    s = models[name].score_samples(test.data)
    fpr, tpr, _ = roc_curve(is_in, s)
    ax.plot(fpr, tpr, color=color, label=f"{name} (AUROC {auroc(is_in, s):.3f})")
    accepted = s >= 0
    ax.plot(accepted[is_in == 0].mean(), accepted[is_in == 1].mean(), "o", color=color)
ax.set_xlim(0, 0.5)
ax.set_ylim(0.5, 1.0)
ax.set_xlabel("out-of-scope queries accepted (FPR)")
ax.set_ylabel("in-scope queries accepted (TPR)")
ax.legend(loc="lower right", fontsize=8)
ax.set_title("CLINC150 test: in-scope vs out-of-scope")
fig.tight_layout()

# %%
# Per-intent margins: adaptive margins rise for intents whose neighbours are often
# confused with them and fall for isolated ones; the global model uses one value.
adaptive = models["adaptive margins"]
order = np.argsort(adaptive.margins_)
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.plot(adaptive.margins_[order], ".", color="tab:blue", label="adaptive (per intent)")
ax.axhline(
    models["global threshold"].margins_[0], color="tab:red", label="global threshold"
)
names = train.target_names[adaptive.classes_[order]]
for i, dx, dy in (
    (0, 6, -2),
    (1, 6, 4),
    (len(order) - 2, -95, 6),
    (len(order) - 1, -95, -12),
):
    ax.annotate(
        names[i],
        (i, adaptive.margins_[order][i]),
        fontsize=7,
        textcoords="offset points",
        xytext=(dx, dy),
    )
ax.set_xlabel("intent (sorted by margin)")
ax.set_ylabel("margin (log-density)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
