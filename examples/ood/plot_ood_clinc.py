"""
=================================================================
Out-of-scope intents: mixture of prototypes vs Mahalanobis scores
=================================================================

Fit :class:`~protolearn.ood.PrototypeMixtureDetector` (a von Mises-Fisher mixture of 3
prototypes per intent, PALM-style) and two baselines on the in-scope training
embeddings of CLINC150, then score the test split: in-scope queries should score high,
out-of-scope queries low.  The histograms show the two score distributions and the
``offset_`` threshold (``contamination="auto"`` keeps 95% of the training data); the
ROC curves compare the detectors.

The embeddings (all-MiniLM-L6-v2, 384-d) are read from the shared data folder
(``$PROTOLEARN_DATA``); see :func:`protolearn.datasets.load_clinc150`.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from protolearn.datasets import load_clinc150
from protolearn.metrics import ood_report
from protolearn.ood import MahalanobisDetector, PrototypeMixtureDetector

data = load_clinc150()
train = (data.split == "train") & (data.target >= 0)
test = data.split == "test"
X_train, y_train = data.data[train], data.target[train]
X_test, is_in = data.data[test], data.target[test] >= 0

# %%
# Fit the detectors on in-scope training data (with intent labels).
detectors = {
    "prototype mixture (3 per intent)": PrototypeMixtureDetector(
        n_prototypes=3, random_state=0
    ),
    "one prototype per intent": PrototypeMixtureDetector(
        n_prototypes=1, random_state=0
    ),
    "relative Mahalanobis": MahalanobisDetector(method="relative"),
    "Mahalanobis": MahalanobisDetector(),
}
scores = {}
for name, det in detectors.items():
    det.fit(X_train, y_train)
    scores[name] = det.score_samples(X_test)
    r = ood_report(scores[name][is_in], scores[name][~is_in])
    print(f"{name:34s} AUROC {r.auroc:.3f}  FPR95 {r.fpr95:.3f}")

# %%
# Score histograms of the mixture: in-scope vs out-of-scope, with the threshold.
det = detectors["prototype mixture (3 per intent)"]
s = scores["prototype mixture (3 per intent)"]
fig, ax = plt.subplots(figsize=(6, 3.5))
bins = np.linspace(np.percentile(s, 0.5), s.max(), 60)
ax.hist(s[is_in], bins=bins, alpha=0.6, density=True, label="in-scope")
ax.hist(s[~is_in], bins=bins, alpha=0.6, density=True, label="out-of-scope")
ax.axvline(det.offset_, color="k", ls="--", label="offset_ (predict = -1 left)")
ax.set_xlabel("score_samples: log-density of the vMF mixture")
ax.set_ylabel("density")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# ROC curves (in-scope is the positive class).
fig, ax = plt.subplots(figsize=(5, 4.5))
for name, sc in scores.items():
    fpr, tpr, _ = roc_curve(is_in, sc)
    ax.plot(fpr, tpr, label=name)
ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
ax.set_xlabel("out-of-scope accepted (FPR)")
ax.set_ylabel("in-scope accepted (TPR)")
ax.set_xlim(0, 0.5)
ax.set_ylim(0.5, 1.0)
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()

# %%
# The same detector predicts -1 / +1 with the training-set threshold.
pred = det.predict(X_test)
print(
    f"in-scope kept: {np.mean(pred[is_in] == 1):.3f}, "
    f"out-of-scope rejected: {np.mean(pred[~is_in] == -1):.3f}"
)
