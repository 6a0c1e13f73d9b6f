"""
=============================================================
Nearest prototypes: decision regions and certified radii
=============================================================

:class:`~protolearn.classification.NearestPrototypeClassifier` with one and with three
prototypes per class on two features of the wine data, the decision regions they draw,
and each training point's certified L2 radius (no perturbation smaller than it changes
the prediction).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

from protolearn.classification import NearestPrototypeClassifier

X, y = load_wine(return_X_y=True)
X = StandardScaler().fit_transform(X[:, [0, 6]]).astype(np.float32)

# %%
# Fit with one and three prototypes per class and draw the regions.
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
xx, yy = np.meshgrid(np.linspace(-3, 3, 300), np.linspace(-3, 3, 300))
grid = np.c_[xx.ravel(), yy.ravel()].astype(np.float32)
for ax, k in zip(axes, (1, 3)):
    clf = NearestPrototypeClassifier(n_prototypes=k, random_state=0).fit(X, y)
    ax.contourf(
        xx,
        yy,
        clf.predict(grid).reshape(xx.shape),
        alpha=0.25,
        cmap="tab10",
        levels=[-0.5, 0.5, 1.5, 2.5],
    )
    r = clf.certified_radius(X)
    sc = ax.scatter(
        X[:, 0], X[:, 1], c=r, cmap="viridis", s=18, edgecolor="k", linewidth=0.3
    )
    P = clf.prototypes_
    ax.scatter(P[:, 0], P[:, 1], marker="*", s=250, c="red", edgecolor="k")
    ax.set_title(f"{k} prototype(s) per class, accuracy {clf.score(X, y):.2f}")
    ax.set_xlabel("alcohol (standardised)")
axes[0].set_ylabel("flavanoids (standardised)")
fig.colorbar(sc, ax=axes, label="certified L2 radius")
plt.show()

# %%
# Explanations: nearest prototypes and the training exemplars behind them.
clf = NearestPrototypeClassifier(n_prototypes=3, random_state=0).fit(X, y)
e = clf.explain(X[:2], n_exemplars=3)
print("nearest prototypes:", e.prototype_label, "\nexemplar rows:", e.exemplar_index)
