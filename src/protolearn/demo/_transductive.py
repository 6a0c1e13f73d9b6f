"""Demo: transductive few-shot episodes and Laplacian K-means clustering on digits."""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import normalized_mutual_info_score

from ..model_selection import sample_episodes
from ..transductive import LaplacianKMeans, laplacian_fewshot_episodes
from ._table import row, timer

FAMILY = "transductive"


def _stack(X, episodes):
    def index(e, labels):
        return np.argmax(labels[:, None] == e.classes[None, :], axis=1)

    S = np.stack([X[e.support_index] for e in episodes])
    Q = np.stack([X[e.query_index] for e in episodes])
    s_lab = np.stack([index(e, e.support_labels) for e in episodes])
    q_lab = np.stack([index(e, e.query_labels) for e in episodes])
    return S, s_lab, Q, q_lab


def _cl2n(X, center):
    """Centre on ``center`` and divide each row by its L2 norm (CL2N)."""
    Z = X - center
    norms = np.sqrt(np.einsum("...d,...d->...", Z, Z))[..., None]
    return Z / np.where(norms == 0, 1, norms)


def _nearest_mean(S, s_lab, Q, center):
    """Inductive reference: nearest support mean on CL2N features."""
    Zs, Zq = _cl2n(S, center), _cl2n(Q, center)
    onehot = np.eye(s_lab.max() + 1)[s_lab]
    M = (onehot.transpose(0, 2, 1) @ Zs) / onehot.sum(1)[:, :, None]
    return (((Zq[:, :, None, :] - M[:, None]) ** 2).sum(-1)).argmin(-1)


def run(out_dir):
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    rows = []
    accs = {}
    for n_shot in (1, 5):
        eps = sample_episodes(
            y, n_way=5, n_shot=n_shot, n_query=15, n_episodes=300, random_state=0
        )
        S, s_lab, Q, q_lab = _stack(X, eps)
        ref = float((_nearest_mean(S, s_lab, Q, X.mean(0)) == q_lab).mean())
        box = {}
        with timer(box):
            out = laplacian_fewshot_episodes(S, s_lab, Q)
        acc = float((out.labels == q_lab).mean())
        accs[n_shot] = (ref, acc)
        rows.append(
            row(
                FAMILY,
                "laplacian_fewshot_episodes (300 episodes)",
                f"digits 5-way {n_shot}-shot",
                "accuracy",
                acc,
                "nearest support mean (CL2N)",
                ref,
                box["s"],
            )
        )
        box = {}
        with timer(box):  # balanced queries here: the balanced solution should win
            auto = laplacian_fewshot_episodes(S, s_lab, Q, balance="auto")
        rows.append(
            row(
                FAMILY,
                "laplacian_fewshot_episodes balance='auto'",
                f"digits 5-way {n_shot}-shot",
                "accuracy",
                float((auto.labels == q_lab).mean()),
                "balance='none' (above)",
                acc,
                box["s"],
            )
        )
    km = KMeans(10, n_init=3, random_state=0).fit(X)
    box = {}
    with timer(box):
        lap = LaplacianKMeans(n_clusters=10, n_init=3, random_state=0).fit(X)
    rows.append(
        row(
            FAMILY,
            "LaplacianKMeans",
            "digits (10 clusters)",
            "NMI",
            normalized_mutual_info_score(y, lap.labels_),
            "KMeans (sklearn)",
            normalized_mutual_info_score(y, km.labels_),
            box["s"],
        )
    )
    _plot(X, lap, km, accs, out_dir)
    return rows


def _plot(X, lap, km, accs, out_dir):
    """Cluster centres of both methods, and few-shot accuracies."""
    fig, axes = plt.subplots(3, 10, figsize=(10, 3.6))
    for k in range(10):
        axes[0, k].imshow(lap.cluster_centers_[k].reshape(8, 8), cmap="gray_r")
        axes[1, k].imshow(km.cluster_centers_[k].reshape(8, 8), cmap="gray_r")
    for ax in axes[:2].ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("Laplacian", fontsize=7)
    axes[1, 0].set_ylabel("KMeans", fontsize=7)
    for ax in axes[2]:
        ax.remove()
    ax = fig.add_subplot(3, 1, 3)
    shots = sorted(accs)
    ax.bar(np.arange(2) - 0.2, [accs[s][0] for s in shots], 0.4, label="inductive")
    ax.bar(np.arange(2) + 0.2, [accs[s][1] for s in shots], 0.4, label="transductive")
    ax.set_xticks(range(2), [f"5-way {s}-shot" for s in shots])
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("query accuracy", fontsize=7)
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("digits: cluster centres; few-shot query accuracy", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "transductive_digits.png", dpi=80)
    plt.close(fig)
