"""
==========================================================
Out-of-scope intents with a learned mixture of prototypes
==========================================================

:class:`~protolearn.deep.DeepPrototypeMixtureDetector` trains PALM's head (Lu et al.,
ICLR 2024) on frozen sentence embeddings: a linear projection onto the unit sphere,
several prototypes per intent moved by exponential moving averages, and PALM's
likelihood + prototype-contrastive losses.  It then scores queries by their cosine
similarity to the nearest prototype in the learned space.

Here it is fitted on 20 CLINC150 intents (50 training queries each), next to the
shallow :class:`~protolearn.ood.PrototypeMixtureDetector` on the raw embeddings.  The
plots show the training curve, the learned prototypes and embeddings of a few intents
(a 2-D PCA of the learned space), and the score distributions of in-scope and
out-of-scope test queries.  The embeddings (all-MiniLM-L6-v2, 384-d) come from the
shared data folder (``$PROTOLEARN_DATA``); see
:func:`protolearn.datasets.load_clinc150`.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

from protolearn.datasets import load_clinc150
from protolearn.deep import DeepPrototypeMixtureDetector
from protolearn.metrics import ood_report
from protolearn.ood import PrototypeMixtureDetector

data = load_clinc150()
rng = np.random.default_rng(0)
intents = rng.choice(150, 20, replace=False)
rows = np.flatnonzero((data.split == "train") & np.isin(data.target, intents))
train = np.concatenate(
    [rng.choice(rows[data.target[rows] == c], 50, replace=False) for c in intents]
)
X_train, y_train = data.data[train], data.target[train]
test = (data.split == "test") & (np.isin(data.target, intents) | (data.target == -1))
X_test, is_in = data.data[test], data.target[test] >= 0

# %%
# Train the head (10 epochs) and the shallow detector, and compare their AUROC.
deep = DeepPrototypeMixtureDetector(n_prototypes=3, random_state=0)
deep.fit(X_train, y_train)
shallow = PrototypeMixtureDetector(n_prototypes=3, random_state=0)
shallow.fit(X_train, y_train)
for name, det in [("deep (PALM head)", deep), ("shallow (EM)", shallow)]:
    s = det.score_samples(X_test)
    r = ood_report(s[is_in], s[~is_in])
    print(f"{name:18s} AUROC {r.auroc:.4f}  FPR95 {r.fpr95:.3f}")

# %%
# The training curve, the learned space and the scores.
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
axes[0].plot(np.arange(1, deep.n_iter_ + 1), deep.loss_curve_, marker="o")
axes[0].set(xlabel="epoch", ylabel="PALM loss (MLE + contrastive)", title="Training")

shown = intents[:5]
Z = deep.transform(X_train)
pca = PCA(2).fit(Z[np.isin(y_train, shown)])
for i, c in enumerate(shown):
    color = f"C{i}"
    z = pca.transform(Z[y_train == c])
    axes[1].scatter(z[:, 0], z[:, 1], s=8, alpha=0.4, color=color)
    p = pca.transform(deep.prototypes_[deep.prototype_labels_ == c])
    axes[1].scatter(p[:, 0], p[:, 1], s=160, marker="*", color=color, edgecolor="k")
axes[1].set(title="Learned space: 5 intents and their prototypes (*)", xticks=[],
            yticks=[])  # fmt: skip

s = deep.score_samples(X_test)
bins = np.linspace(s.min(), s.max(), 40)
axes[2].hist(s[is_in], bins=bins, alpha=0.6, density=True, label="in-scope")
axes[2].hist(s[~is_in], bins=bins, alpha=0.6, density=True, label="out-of-scope")
axes[2].axvline(deep.offset_, color="k", ls="--", label="offset_")
axes[2].set(xlabel="score_samples (max prototype similarity)", title="Test scores")
axes[2].legend()
fig.tight_layout()
plt.show()
