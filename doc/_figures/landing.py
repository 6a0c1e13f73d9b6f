"""The landing page's figure: three estimator families on two features of the wine data."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

from protolearn.classification import (
    GaussianPrototypeClassifier,
    NearestPrototypeClassifier,
)
from protolearn.ood import MahalanobisDetector

X, y = load_wine(return_X_y=True)
X = StandardScaler().fit_transform(X[:, [0, 6]]).astype(np.float32)
xx, yy = np.meshgrid(np.linspace(-3.5, 3.5, 250), np.linspace(-3.5, 3.5, 250))
grid = np.c_[xx.ravel(), yy.ravel()].astype(np.float32)
colors = ["#1b9e77", "#d95f02", "#7570b3"]
regions = ListedColormap(colors + ["#bbbbbb"])

fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True, layout="constrained")

ax = axes[0]
clf = NearestPrototypeClassifier(n_prototypes=3, random_state=0).fit(X, y)
ax.contourf(
    xx,
    yy,
    clf.predict(grid).reshape(xx.shape),
    levels=[-0.5, 0.5, 1.5, 2.5],
    cmap=ListedColormap(colors),
    alpha=0.25,
)
P = clf.prototypes_
ax.scatter(
    P[:, 0],
    P[:, 1],
    marker="*",
    s=260,
    c=[colors[c] for c in clf.prototype_labels_],
    edgecolor="k",
    zorder=3,
)
ax.set_title("NearestPrototypeClassifier\n3 prototypes per class")

ax = axes[1]
clf = GaussianPrototypeClassifier(nota="quantile", alpha=0.1, random_state=0).fit(X, y)
pred = clf.predict(grid).reshape(xx.shape)
ax.contourf(
    xx,
    yy,
    np.where(pred == -1, 3, pred),
    levels=[-0.5, 0.5, 1.5, 2.5, 3.5],
    cmap=regions,
    alpha=0.3,
)
ax.set_title("GaussianPrototypeClassifier\nnone-of-the-above rejection (grey)")

ax = axes[2]
det = MahalanobisDetector().fit(X, y)
s = det.score_samples(grid).reshape(xx.shape)
ax.contourf(xx, yy, s, levels=12, cmap="Blues", alpha=0.5)
ax.contour(
    xx, yy, det.decision_function(grid).reshape(xx.shape), levels=[0], colors="k"
)
ax.set_title("MahalanobisDetector\nscore; the line is the inlier boundary")

for ax in axes:
    ax.scatter(
        X[:, 0], X[:, 1], c=[colors[c] for c in y], s=12, edgecolor="k", linewidth=0.3
    )
    ax.set_xlabel("alcohol (standardised)")
axes[0].set_ylabel("flavanoids (standardised)")
