"""Agreement of ``LaplacianFewShotClassifier`` with easyfsl's ``LaplacianShot``.

Runs only where easyfsl is installed (the benchmark environment)::

    PYTHONPATH=src .venv-bench/bin/python -m pytest tests/test_transductive_easyfsl.py

and skips elsewhere (CI).  The same comparison, with timings, is in
``benchmarks/transductive.py`` (``benchmarks/results/transductive.md``).

What easyfsl 1.5.0 ``LaplacianShot`` computes (``easyfsl/methods/laplacian_shot.py``,
``bd_cspn.py``, ``utils.py``), and the settings of ours that reproduce it:

- **Preprocessing**: ``x - feature_centering`` then L2 normalisation, both off by default.
  Here both sides get the same already-CL2N features (centred on the mean of the
  CLINC150 train split, L2-normalised): easyfsl with no centring/normalisation, ours
  with ``preprocessing=None``.
- **Graph**: over the *query* points only (``graph="query"``).  easyfsl's
  ``k_nearest_neighbours`` takes the ``knn`` nearest points *including the point
  itself* and drops the first column, so a point has ``knn - 1`` neighbours (2 for the
  default ``knn=3``); ours counts neighbours excluding the point, so
  ``n_neighbors = knn - 1``.  Binary weights, and the graph is *directed*:
  ``W[i, j] = 1`` iff ``j`` is among ``i``'s neighbours, never symmetrised
  (``affinity="binary", symmetric=False``), although easyfsl's docstring says
  "and vice versa".
- **Unary term**: squared euclidean distance to the prototypes, no temperature
  (``temperature=1.0``).
- **Prototypes**: support means rectified once, BD-CSPN style, then *fixed* during the
  bound updates (``update_prototypes=False``): queries are shifted by
  ``mean(S) - mean(Q)``, each support point weighs ``exp(cos(x, m_y))`` and each query
  ``exp(cos(x, m_k))`` for its arg-max class ``k`` (hard pseudo-labels, cosine to the
  support means, no scale: ``rectify_scale=1.0``), and each prototype is the weighted
  mean of its supports and (shifted) pseudo-labelled queries (``rectify=True``).
  With ``rectify=False`` the easyfsl side is ``LaplacianShot`` with the rectification
  step turned into a no-op (a subclass below), i.e. plain support means.
- **Bound updates**: ``Y0 = softmax(-a)``, then ``Y <- softmax(-a + lam W Y)`` for at
  most ``inference_steps=20`` iterations (``max_iter=20``), stopping once the relative
  change of ``E = sum(Y log Y + a Y - lam (W Y) Y)`` is ``<= 1e-6`` (``tol=1e-6``;
  easyfsl checks only from the third update on, which moves no prediction here).
- Default ``lambda_regularization=0.7`` (``lam=0.7``).
"""

import numpy as np
import pytest

easyfsl = pytest.importorskip("easyfsl")
torch = pytest.importorskip("torch")

from easyfsl.methods import LaplacianShot  # noqa: E402
from torch import nn  # noqa: E402

from protolearn.model_selection import sample_episodes, split_classes  # noqa: E402
from protolearn.transductive import (  # noqa: E402
    LaplacianFewShotClassifier,
    laplacian_fewshot_episodes,
)

N_EPISODES = 100


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """easyfsl's many tiny per-episode ops are ~30x slower with two torch threads on a
    busy 2-core machine; one thread, restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class LaplacianShotNoRectification(LaplacianShot):
    """easyfsl LaplacianShot on the plain support means (rectification off)."""

    def rectify_prototypes(self, query_features):
        return None


def _ours_params(lam, knn, rectify):
    return dict(
        lam=lam,
        n_neighbors=knn - 1,
        affinity="binary",
        symmetric=False,
        graph="query",
        prototype="kmeans",
        update_prototypes=False,
        temperature=1.0,
        preprocessing=None,
        rectify=rectify,
        rectify_scale=1.0,
        max_iter=20,
        tol=1e-6,
    )


@pytest.fixture(scope="module")
def episodes(clinc150):
    """CL2N CLINC150 test-split episodes of the test classes: (Xs, ys, Xq, yq) stacked,
    labels 0..4; 1-shot and 5-shot, balanced and Dirichlet(2) queries."""
    X_train = clinc150["X_train_in"]
    X, y = clinc150["X_test_in"], clinc150["y_test_in"]
    _, test_classes = split_classes(y, test_size=0.5, random_state=0)
    center = X_train.mean(0)
    Z = X - center
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    out = {}
    for shot in (1, 5):
        for imbalance in (None, 2.0):
            eps = sample_episodes(
                y,
                n_way=5,
                n_shot=shot,
                n_query=15,
                n_episodes=N_EPISODES,
                imbalance=imbalance,
                classes=test_classes,
                random_state=shot * 10 + (imbalance is not None),
            )

            def local(ep, labels):
                return np.argmax(labels[:, None] == ep.classes[None, :], axis=1)

            out[shot, imbalance] = (
                np.stack([Z[e.support_index] for e in eps]),
                np.stack([local(e, e.support_labels) for e in eps]),
                np.stack([Z[e.query_index] for e in eps]),
                np.stack([local(e, e.query_labels) for e in eps]),
            )
    return out


def _easyfsl_soft_assignments(Xs, ys, Xq, *, lam, knn, rectify):
    """easyfsl's output per episode: LaplacianShot returns its soft assignments Y."""
    cls = LaplacianShot if rectify else LaplacianShotNoRectification
    model = cls(nn.Identity(), lambda_regularization=lam, knn=knn, inference_steps=20)
    out = []
    with torch.no_grad():
        for s, ls, q in zip(Xs, ys, Xq):
            model.process_support_set(torch.from_numpy(s), torch.from_numpy(ls))
            out.append(model(torch.from_numpy(q)).numpy())
    return np.stack(out)


def _easyfsl_predictions(Xs, ys, Xq, **kw):
    return _easyfsl_soft_assignments(Xs, ys, Xq, **kw).argmax(2)


CONFIGS = [
    pytest.param(0.7, 3, True, id="defaults-rectified"),
    pytest.param(0.7, 3, False, id="defaults-unrectified"),
    pytest.param(0.3, 5, True, id="lam0.3-knn5-rectified"),
    pytest.param(1.5, 5, False, id="lam1.5-knn5-unrectified"),
]


@pytest.mark.parametrize("lam, knn, rectify", CONFIGS)
def test_batched_agrees_with_easyfsl_laplacianshot(episodes, lam, knn, rectify):
    """>= 99% of the predictions agree (the issue's bar), and so do the soft
    assignments themselves: a single wrong setting (neighbour count off by one, a
    symmetrised graph, the graph over supports + queries, prototype updates, another
    rectification scale) still agrees on 97-99.95% of the predictions, but moves the
    soft assignments by 0.1-0.5 in every episode (temperature 0.9 instead of 1: 0.05),
    while the exact setting stays within 1e-4 in 99% of episodes (measured)."""
    for (shot, imbalance), (Xs, ys, Xq, yq) in episodes.items():
        P = _easyfsl_soft_assignments(Xs, ys, Xq, lam=lam, knn=knn, rectify=rectify)
        theirs = P.argmax(2)
        res = laplacian_fewshot_episodes(Xs, ys, Xq, **_ours_params(lam, knn, rectify))
        ours = np.asarray(res.labels)
        assert ours.shape == theirs.shape
        agree = np.mean(ours == theirs)
        where = f"{shot}-shot imbalance={imbalance}"
        assert agree >= 0.99, (
            f"{where}: ours and easyfsl agree on {agree:.2%} of queries"
        )
        # per-episode largest gap between the two soft assignments (float32 on both
        # sides; a task may stop one iteration apart, hence a quantile, not the max)
        gap = np.abs(np.asarray(res.label_distributions) - P).max(axis=(1, 2))
        assert np.quantile(gap, 0.95) < 1e-3, f"{where}: soft-assignment gaps {gap}"
        # both are far above chance: the comparison is between working methods
        assert np.mean(theirs == yq) > 0.9


def test_estimator_agrees_with_easyfsl_laplacianshot(episodes):
    """The sklearn-API path (support + query rows, y=-1 for queries) agrees too."""
    Xs, ys, Xq, _ = episodes[1, 2.0]
    n = 30
    theirs = _easyfsl_predictions(Xs[:n], ys[:n], Xq[:n], lam=0.7, knn=3, rectify=True)
    ours = []
    for s, ls, q in zip(Xs[:n], ys[:n], Xq[:n]):
        est = LaplacianFewShotClassifier(**_ours_params(0.7, 3, True))
        est.fit(np.vstack([s, q]), np.r_[ls, np.full(len(q), -1)])
        ours.append(np.asarray(est.transduction_)[len(s) :])
    agree = np.mean(np.stack(ours) == theirs)
    assert agree >= 0.99, f"estimator and easyfsl agree on {agree:.2%} of queries"
