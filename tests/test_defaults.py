"""Issue 23: defaults that hold on data they were not tuned on.

Scale-free shrinkage (the same model on X and on X times a diagonal scaling), the
data-adaptive defaults' rules, and the demo / plot fixes.
"""

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import cross_val_score

from protolearn.classification import GaussianPrototypeClassifier


@pytest.fixture(scope="module")
def wine():
    return load_wine(return_X_y=True)


# "spherical" (one variance for all features) depends on the scales by construction
@pytest.mark.parametrize("covariance_type", ["tied", "full", "diag"])
@pytest.mark.parametrize("shrinkage", ["auto", "oas", 0.3])
def test_gaussian_prototypes_are_scale_free(wine, covariance_type, shrinkage):
    X, y = wine
    D = np.logspace(-3, 3, X.shape[1])
    # reg_covar is added in the features' own units (as GaussianMixture): 0 here
    kw = dict(
        covariance_type=covariance_type, shrinkage=shrinkage, relative=True, reg_covar=0
    )
    a = GaussianPrototypeClassifier(**kw).fit(X, y)
    b = GaussianPrototypeClassifier(**kw).fit(X * D, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X * D))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X * D), atol=1e-9)
    np.testing.assert_allclose(a.shrinkage_, b.shrinkage_, rtol=1e-9)
    np.testing.assert_allclose(b.means_, a.means_ * D, rtol=1e-9)
    want = a.covariances_ * D**2 if covariance_type == "diag" else D * a.covariances_
    if covariance_type != "diag":
        want = want * D[:, None]
    np.testing.assert_allclose(b.covariances_, want, rtol=1e-7)
    # scores (relative log-likelihood ratios) are unchanged
    np.testing.assert_allclose(
        a.score_samples(X), b.score_samples(X * D), rtol=1e-7, atol=1e-7
    )


def test_unscaled_wine_matches_lda(wine):
    """Issue 23: on unscaled wine "full" scored 0.50 and "tied" 0.80 (5-fold CV)."""
    X, y = wine
    lda = cross_val_score(
        LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y
    ).mean()
    for ct in ("tied", "full"):
        acc = cross_val_score(GaussianPrototypeClassifier(covariance_type=ct), X, y)
        assert acc.mean() >= lda - 0.01, (ct, acc.mean(), lda)


# ------------------------------------------------------------ adaptive defaults
def test_knn_rank_rule():
    from protolearn._core._defaults import knn_rank

    # 0.1% of the training set, at least 5, at most 100, below n
    assert [knn_rank(n) for n in (3, 6, 200, 4999, 15_000, 50_000, 10**7)] == [
        2,
        5,
        5,
        5,
        15,
        50,
        100,
    ]


def test_knn_detector_auto_rank(rng):
    from protolearn.ood import KNNDetector

    X = rng.normal(size=(300, 4))
    det = KNNDetector().fit(X)
    assert det.n_neighbors_ == 5
    ref = KNNDetector(n_neighbors=5).fit(X)
    np.testing.assert_array_equal(det.score_samples(X), ref.score_samples(X))
    assert ref.n_neighbors_ == 5 and KNNDetector().fit(X[:4]).n_neighbors_ == 3


def test_mixture_size_rule():
    from protolearn._core._defaults import mixture_size

    # unlabelled: one prototype per 25 samples in [6, 1000], at most n // 2;
    # labelled: min count // 10 in [1, 6] per class
    sizes = [mixture_size(n) for n in (3, 10, 35, 300, 15_000, 10**6)]
    assert sizes == [1, 5, 6, 12, 600, 1000]
    assert mixture_size(15_000, [100] * 150) == 6
    assert mixture_size(178, [59, 71, 48]) == 4
    assert mixture_size(20, [3, 17]) == 1


def test_mixture_detector_auto_size(rng):
    from protolearn.ood import PrototypeMixtureDetector

    X = rng.normal(size=(260, 5)) + 4 * np.eye(5)[rng.integers(0, 5, 260)]
    y = np.repeat([0, 1], [250, 10])
    det = PrototypeMixtureDetector(random_state=0, max_iter=5).fit(X)
    assert det.n_prototypes_ == 10 and det.prototypes_.shape == (10, 5)
    det = PrototypeMixtureDetector(random_state=0, max_iter=5).fit(X, y)
    # the smallest class (10 samples) sets one prototype per class
    assert det.n_prototypes_ == 1 and det.prototypes_.shape == (2, 5)


# ---------------------------------------------------------- demo and plots fixes
def test_demo_open_set_rows_never_reference_themselves(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from protolearn.demo import _open_set

    # the two modes the table and plot need (the others only add fitting time)
    modes = {k: _open_set.MODES[k] for k in ("nota='global'", "nota='adaptive'")}
    monkeypatch.setattr(_open_set, "MODES", modes)
    rows = _open_set.run(tmp_path)
    assert rows and all(r["reference"] != r["estimator"] for r in rows)
    # the global threshold is the others' reference and has none itself
    glob = [r for r in rows if r["estimator"] == "GPC nota='global'"]
    assert glob and all(r["reference"] == "" and r["ref_score"] is None for r in glob)
    assert (tmp_path / "open_set_digits.png").stat().st_size > 0


def test_plot_reasoning_figure_saves(tmp_path, rng):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from protolearn.classification import CBCClassifier, plot_reasoning

    X = np.concatenate([rng.normal(size=(20, 3)) + 4 * c for c in range(3)])
    y = np.repeat([0, 1, 2], 20)
    clf = CBCClassifier(n_components=3, max_iter=5, random_state=0).fit(X, y)
    axes = plot_reasoning(clf)
    assert len(axes) == 2 and axes.figure is axes[0].figure is axes.figure_
    assert [ax.get_xlabel() for ax in axes] == ["component"] * 2
    assert axes[0].get_ylabel() == "class"
    axes.figure.savefig(tmp_path / "reasoning.png")
    assert (tmp_path / "reasoning.png").stat().st_size > 0
    plt.close(axes.figure)
