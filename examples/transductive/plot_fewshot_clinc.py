"""
=================================================================
Transductive few-shot intent classification on CLINC150
=================================================================

5-way 1-shot episodes of CLINC150 sentence embeddings (all-MiniLM-L6-v2): the inductive
nearest-prototype rule (SimpleShot: CL2N features, nearest support mean) against
:class:`~protolearn.transductive.LaplacianFewShotClassifier`, which labels all queries
of an episode together (K-means prototypes refined by the queries plus a kNN-graph
Laplacian term), with balanced and with Dirichlet-imbalanced query sets.  Many episodes
are solved as one batched computation with
:func:`~protolearn.transductive.laplacian_fewshot_episodes`.  Then one episode in
2-D: the support points, the prototypes before and after transduction, and the graph.

The embeddings are read from the shared data folder (see
:func:`protolearn.datasets.load_clinc150`); without it, the digits data is used.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

from protolearn.model_selection import sample_episodes, split_classes
from protolearn.transductive import (
    LaplacianFewShotClassifier,
    laplacian_fewshot_episodes,
)

try:
    from protolearn.datasets import load_clinc150

    data = load_clinc150(subset="test", include_oos=False)
    X, y, name = data.data, data.target, "CLINC150 test split"
except FileNotFoundError:  # no shared data folder: fall back to bundled digits
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, name = X.astype(np.float32), "digits"

# Evaluate on classes that were not used to choose the defaults (the tuning pool).
_, test_classes = split_classes(y, random_state=0)
keep = np.isin(y, test_classes)
X, y = X[keep], y[keep]


def stack(episodes):
    """Episodes -> (T, n_support, d), support class indices, (T, n_query, d), truth."""

    def index(e, labels):
        return np.argmax(labels[:, None] == e.classes[None, :], axis=1)

    S = np.stack([X[e.support_index] for e in episodes])
    Q = np.stack([X[e.query_index] for e in episodes])
    return (
        S,
        np.stack([index(e, e.support_labels) for e in episodes]),
        Q,
        np.stack([index(e, e.query_labels) for e in episodes]),
    )


def cl2n(A, center):
    """Centre on `center`, then L2-normalise each row (SimpleShot's CL2N)."""
    A = A - center
    return A / np.linalg.norm(A, axis=-1, keepdims=True)


def nearest_mean(S, s_lab, Q):
    """Inductive SimpleShot baseline: CL2N features (centred on the data set's mean,
    not the episode's), nearest support mean."""
    Zs, Zq = cl2n(S, X.mean(0)), cl2n(Q, X.mean(0))
    onehot = np.eye(s_lab.max() + 1)[s_lab]
    M = (onehot.transpose(0, 2, 1) @ Zs) / onehot.sum(1)[:, :, None]
    d = ((Zq[:, :, None, :] - M[:, None]) ** 2).sum(-1)
    return d.argmin(-1)


# %%
# 300 episodes per setting, balanced and Dirichlet(2)-imbalanced query sets.
# ``balance="auto"`` also solves each episode with equal query class sizes and keeps
# that solution where it cuts (almost) no more of the kNN graph than the free one: it
# gains on balanced query sets and leaves imbalanced ones (nearly) alone.
rows = []
for imbalance in (None, 2.0):
    eps = sample_episodes(
        y, n_way=5, n_shot=1, n_query=15, n_episodes=300, imbalance=imbalance,
        random_state=0,
    )  # fmt: skip
    S, s_lab, Q, truth = stack(eps)
    out = laplacian_fewshot_episodes(S, s_lab, Q)
    lam0 = laplacian_fewshot_episodes(S, s_lab, Q, lam=0.0)
    auto = laplacian_fewshot_episodes(S, s_lab, Q, balance="auto")
    rows.append(
        (
            "balanced" if imbalance is None else "Dirichlet(2)",
            (nearest_mean(S, s_lab, Q) == truth).mean(),
            (lam0.labels == truth).mean(),
            (out.labels == truth).mean(),
            (auto.labels == truth).mean(),
        )
    )
labels = [
    "inductive nearest mean",
    "transductive, lam=0",
    "transductive (default)",
    'transductive, balance="auto"',
]
fig, ax = plt.subplots(figsize=(7, 3.5))
width = 0.2
for j, lab in enumerate(labels):
    vals = [r[j + 1] for r in rows]
    ax.bar(np.arange(len(rows)) + (j - 1.5) * width, vals, width, label=lab)
    for i, v in enumerate(vals):
        ax.text(i + (j - 1.5) * width, v + 0.002, f"{v:.3f}", ha="center", fontsize=6)
ax.set_xticks(range(len(rows)), [r[0] for r in rows])
ax.set_ylim(min(min(r[1:]) for r in rows) - 0.03, 1.0)
ax.set_ylabel("query accuracy")
ax.set_title(f"5-way 1-shot, 300 episodes per setting ({name})")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %%
# One episode in 2-D (PCA of the CL2N features): the transduction moves each
# prototype from its single support towards its queries.  With the default
# ``temperature=0.1`` the assignments end up nearly hard (in this episode every
# query's largest label probability is above 0.99), so each refined prototype is
# close to the mean of its support and the queries assigned to it.
ep = sample_episodes(y, n_way=5, n_shot=1, n_query=15, n_episodes=1, random_state=3)[0]
Xe = np.vstack([X[ep.support_index], X[ep.query_index]])
ye = np.r_[ep.support_labels, np.full(ep.query_index.size, -1)]
clf = LaplacianFewShotClassifier().fit(Xe, ye)
Z = cl2n(Xe, clf.center_)  # the features the classifier works on
pca = PCA(2).fit(Z)
P2 = pca.transform(Z)
ns = ep.support_index.size
fig, ax = plt.subplots(figsize=(6, 5))
colors = plt.cm.tab10(np.searchsorted(clf.classes_, clf.transduction_))
ax.scatter(P2[ns:, 0], P2[ns:, 1], c=colors[ns:], s=20, alpha=0.7, label="queries")
ax.scatter(P2[:ns, 0], P2[:ns, 1], c=colors[:ns], s=160, marker="s", edgecolor="k",
           label="supports (= initial prototypes)")  # fmt: skip
M2 = pca.transform(clf.prototypes_)
ax.scatter(M2[:, 0], M2[:, 1], c=plt.cm.tab10(np.arange(5)), s=300, marker="*",
           edgecolor="k", label="refined prototypes")  # fmt: skip
acc = np.mean(clf.transduction_[ns:] == ep.query_labels)
ax.set_title(f"one episode: transductive accuracy {acc:.2f}, {clf.n_iter_} iterations")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
