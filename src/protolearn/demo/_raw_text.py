"""Demo: from raw utterances to prototype predictions in one Pipeline.

The bundled CLINC150 sample (50 intents, 20 training utterances each; a test split of
500 in-scope and 300 out-of-scope queries) goes through ``SentenceEmbedder``
(all-MiniLM-L6-v2, shipped as a package, offline) into

- ``GaussianPrototypeClassifier(nota=...)``: intent or "none of the above";
- ``LaplacianFewShotClassifier``: 50-way 1- and 5-shot, the 500 in-scope test queries
  labelled transductively (``y == -1``).

Embeddings are cached in ``<output-dir>/embed_cache``: each text is embedded once
across every pipeline below (and across runs).
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import Pipeline

from ..classification import GaussianPrototypeClassifier, NearestPrototypeClassifier
from ..datasets import load_intents_sample
from ..embed import SentenceEmbedder
from ..metrics import open_set_report
from ..transductive import LaplacianFewShotClassifier
from ._table import row, timer

FAMILY = "raw text -> embeddings"
DATA = "CLINC150 sample, 50 intents"


def _embedder(out_dir):
    return SentenceEmbedder(memory=out_dir / "embed_cache", show_progress=False)


def run(out_dir):
    d = load_intents_sample()
    train = (d.split == "train") & (d.target >= 0)
    test = d.split == "test"
    X_train, y_train = d.data[train], d.intent[train]
    X_test = d.data[test]
    y_true = np.where(d.target[test] >= 0, d.intent[test], "NOTA")
    known = y_true != "NOTA"
    rows = [_embedding_row(out_dir, X_train, X_test)]
    open_set_rows, pipe = _open_set(out_dir, X_train, y_train, X_test, y_true)
    rows += open_set_rows
    # the 500 in-scope test texts are the queries of the few-shot tasks
    q_text, q_lab = X_test[known], d.target[test][known]
    accs = {}
    for n_shot in (1, 5):
        support = np.concatenate(
            [np.flatnonzero(train & (d.target == c))[:n_shot] for c in range(50)]
        )
        few_shot_row, accs[n_shot] = _few_shot(
            out_dir, d.data[support], d.target[support], q_text, q_lab, n_shot
        )
        rows.append(few_shot_row)
    rows.append(_closed_set_row(out_dir, X_train, y_train, X_test, y_true, known))
    _plot(pipe, X_test, known, accs, out_dir)
    return rows


def _embedding_row(out_dir, X_train, X_test):
    """The embedder alone: every text of the two splits, cold cache or not."""
    cold = not (out_dir / "embed_cache").exists()
    t0 = time.perf_counter()
    n_texts = np.unique(np.r_[X_train, X_test]).size
    _embedder(out_dir).fit_transform(np.r_[X_train, X_test])
    embed_s = time.perf_counter() - t0
    return row(
        FAMILY,
        "SentenceEmbedder (all-MiniLM-L6-v2)",
        f"{n_texts} utterances",
        f"texts/s ({'cold' if cold else 'warm'} cache, with model load)",
        n_texts / embed_s,
        fit_s=embed_s,
    )


def _open_set(out_dir, X_train, y_train, X_test, y_true):
    """Open set: intent or none of the above, adaptive against global thresholds.
    Returns the rows and the fitted adaptive pipeline."""
    fitted = {}
    for mode in ("adaptive", "global"):
        gpc = GaussianPrototypeClassifier(
            covariance_type="tied", nota=mode, nota_rate=0.3, random_state=0
        )
        pipe = Pipeline([("embed", _embedder(out_dir)), ("gpc", gpc)])
        box = {}
        with timer(box):
            pipe.fit(X_train, y_train)
        fitted[mode] = (pipe, open_set_report(y_true, pipe.predict(X_test)), box["s"])
    pipe, rep, s = fitted["adaptive"]
    ref = fitted["global"][1]
    data = f"{DATA} + 300 out-of-scope"
    label = "embed + GaussianPrototypeClassifier(nota='adaptive')"
    ref_label = "nota='global'"
    rows = [
        row(FAMILY, label, data, "NOTA F1", rep.nota_f1, ref_label, ref.nota_f1, s),
        row(
            FAMILY,
            label,
            data,
            "in-scope acc. (rejection = error)",
            rep.in_scope_accuracy,
            ref_label,
            ref.in_scope_accuracy,
        ),
    ]
    return rows, pipe


def _few_shot(out_dir, X_support, y_support, q_text, q_lab, n_shot):
    """Transductive few-shot: the support texts labelled, the queries ``y == -1``;
    against the nearest prototype of the support alone.  Returns the row and the
    (nearest prototype, Laplacian) accuracies."""
    X_fit = np.r_[X_support, q_text]
    y_fit = np.r_[y_support, np.full(q_text.size, -1)]
    lap = Pipeline(
        [
            ("embed", _embedder(out_dir)),
            # the test queries are class-balanced (10 per intent)
            ("lap", LaplacianFewShotClassifier(balance="auto")),
        ]
    )
    box = {}
    with timer(box), warnings.catch_warnings():
        # 1-shot: as many classes as labelled rows, which scikit-learn flags
        warnings.filterwarnings("ignore", "The number of unique classes")
        lap.fit(X_fit, y_fit)
    acc = float((lap[-1].transduction_[y_support.size :] == q_lab).mean())
    npc = Pipeline(
        [
            ("embed", _embedder(out_dir)),
            ("npc", NearestPrototypeClassifier(metric="cosine")),
        ]
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The number of unique classes")
        npc.fit(X_support, y_support)
    ref_acc = float((npc.predict(q_text) == q_lab).mean())
    few_shot_row = row(
        FAMILY,
        "embed + LaplacianFewShotClassifier(balance='auto')",
        f"{DATA}, 50-way {n_shot}-shot, 500 queries",
        "accuracy",
        acc,
        "embed + NearestPrototypeClassifier",
        ref_acc,
        box["s"],
    )
    return few_shot_row, (ref_acc, acc)


def _closed_set_row(out_dir, X_train, y_train, X_test, y_true, known):
    """scikit-learn's NearestCentroid on the embeddings, in-scope queries only."""
    closed = Pipeline([("embed", _embedder(out_dir)), ("nc", NearestCentroid())])
    closed.fit(X_train, y_train)
    nc_acc = float((closed.predict(X_test[known]) == y_true[known]).mean())
    return row(
        FAMILY,
        "embed + NearestCentroid (scikit-learn)",
        f"{DATA}, 20-shot, closed set",
        "in-scope acc.",
        nc_acc,
    )


def _plot(pipe, X_test, known, accs, out_dir):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    s = pipe.score_samples(X_test)
    lo, hi = np.percentile(s, [1, 99])
    bins = np.linspace(lo, hi, 40)
    axes[0].hist(s[known], bins=bins, alpha=0.6, label="in-scope intents")
    axes[0].hist(s[~known], bins=bins, alpha=0.6, label="out-of-scope queries")
    axes[0].axvline(0, color="k", lw=1)
    axes[0].set_xlabel("score_samples (log-density minus class margin)")
    axes[0].set_title("raw text -> MiniLM -> Gaussian prototypes: rejected left of 0")
    axes[0].title.set_fontsize(9)
    axes[0].legend(fontsize=8)
    shots = sorted(accs)
    x = np.arange(len(shots))
    axes[1].bar(x - 0.2, [accs[k][0] for k in shots], 0.4, label="nearest prototype")
    axes[1].bar(x + 0.2, [accs[k][1] for k in shots], 0.4, label="Laplacian (transd.)")
    axes[1].set_xticks(x, [f"50-way {k}-shot" for k in shots])
    axes[1].set_ylabel("query accuracy")
    axes[1].set_ylim(0, 1)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "raw_text_clinc.png", dpi=80)
    plt.close(fig)
