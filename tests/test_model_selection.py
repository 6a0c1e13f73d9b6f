"""Episode sampler, class pools and episode evaluation (protolearn.model_selection):
the episode contract row by row, seeding, Dirichlet query counts, NOTA queries, the
evaluation helper against a brute-force loop, and EpisodeSplit as a ``cv=``."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import NearestCentroid

from protolearn.classification import NearestPrototypeClassifier
from protolearn.model_selection import (
    EpisodeSplit,
    evaluate_episodes,
    sample_episodes,
    split_classes,
)

# a pool of 20 classes with 12-30 rows each, plus 15 unlabelled (-1) rows
_SIZES = np.arange(20) % 10 + 12 + np.arange(20) // 2


@pytest.fixture
def pool():
    y = np.concatenate([np.repeat(np.arange(20), _SIZES), np.full(15, -1)])
    return np.random.default_rng(0).permutation(y)


def _check_episode(ep, y, n_way, n_shot, classes=None):
    assert ep.classes.size == n_way == np.unique(ep.classes).size
    if classes is not None:
        assert np.isin(ep.classes, classes).all()
    np.testing.assert_array_equal(y[ep.support_index], ep.support_labels)
    np.testing.assert_array_equal(y[ep.query_index], ep.query_labels)
    for c in ep.classes:
        assert np.sum(ep.support_labels == c) == n_shot
    assert set(ep.support_labels) == set(ep.classes)
    rows = np.concatenate([ep.support_index, ep.query_index])
    assert np.unique(rows).size == rows.size  # no row twice, support or query


def test_balanced_episodes_follow_the_contract(pool):
    eps = sample_episodes(
        pool, n_way=5, n_shot=2, n_query=7, n_episodes=50, random_state=0
    )
    assert len(eps) == 50
    for ep in eps:
        _check_episode(ep, pool, 5, 2)
        assert -1 not in ep.classes  # -1 rows never form a class
        np.testing.assert_array_equal(
            np.sort(ep.query_labels), np.repeat(np.sort(ep.classes), 7)
        )
    # every eligible class is drawn at some point
    drawn = np.unique(np.concatenate([ep.classes for ep in eps]))
    np.testing.assert_array_equal(drawn, np.arange(20))


def test_seeding(pool):
    kw = dict(n_way=5, n_shot=1, n_query=5, n_episodes=10, imbalance=2.0)
    a = sample_episodes(pool, random_state=3, **kw)
    b = sample_episodes(pool, random_state=np.random.RandomState(3), **kw)
    c = sample_episodes(pool, random_state=4, **kw)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(x.query_index, z.query_index) for x, z in zip(a, c))


def test_dirichlet_query_counts(pool):
    # 1-shot: a class has 11-28 rows for queries, 5 x 15 = 75 queries to place
    n_way, n_shot, n_query = 5, 1, 15
    eps = sample_episodes(pool, n_way=n_way, n_shot=n_shot, n_query=n_query,
                          n_episodes=300, imbalance=2.0, random_state=0)  # fmt: skip
    sizes = dict(zip(range(20), _SIZES))
    spread = []
    for ep in eps:
        _check_episode(ep, pool, n_way, n_shot)
        counts = np.array([np.sum(ep.query_labels == c) for c in ep.classes])
        assert counts.sum() == n_way * n_query
        # capped by each class's rows left after its supports
        assert all(k <= sizes[c] - n_shot for c, k in zip(ep.classes, counts))
        spread.append(counts.max() - counts.min())
    # Dirichlet(2) proportions: rarely near-equal, often far apart
    assert np.mean(np.array(spread) >= 10) > 0.5
    # a stronger concentration gives more even query sets
    even = sample_episodes(pool, n_way=n_way, n_shot=n_shot, n_query=n_query,
                           n_episodes=300, imbalance=200.0, random_state=0)  # fmt: skip
    spread_even = [
        np.ptp([np.sum(ep.query_labels == c) for c in ep.classes]) for ep in even
    ]
    assert np.mean(spread_even) < np.mean(spread) / 3


def test_classes_restrict_the_pool_and_split_is_disjoint(pool):
    tune, test = split_classes(pool, test_size=0.25, random_state=0)
    assert tune.size == 15 and test.size == 5
    assert np.intersect1d(tune, test).size == 0
    np.testing.assert_array_equal(np.union1d(tune, test), np.arange(20))  # -1 excluded
    again = split_classes(pool, test_size=0.25, random_state=0)
    np.testing.assert_array_equal(again[1], test)
    assert split_classes(pool, test_size=5, random_state=0)[1].size == 5
    for cls in (tune, test):
        eps = sample_episodes(pool, n_way=5, n_shot=1, n_query=3, n_episodes=20,
                              classes=cls, random_state=1)  # fmt: skip
        for ep in eps:
            _check_episode(ep, pool, 5, 1, classes=cls)
    # string labels: "auto" excludes "NOTA", as sample_episodes' default does
    names = np.array([f"c{v:02d}" for v in range(20)] + ["NOTA"])
    s_tune, s_test = split_classes(names[pool], test_size=0.25, random_state=0)
    assert "NOTA" not in s_tune and "NOTA" not in s_test
    np.testing.assert_array_equal(s_test, names[test])


def test_nota_queries_come_from_outside(pool):
    eps = sample_episodes(pool, n_way=5, n_shot=1, n_query=4, n_episodes=40,
                          nota_rate=0.2, random_state=0)  # fmt: skip
    n_nota = round(0.2 / 0.8 * 5 * 4)
    saw_unlabelled = False
    for ep in eps:
        nota = ep.query_labels == -1
        assert nota.sum() == n_nota and ep.query_labels.size == 20 + n_nota
        rows = ep.query_index[nota]
        assert not np.isin(pool[rows], ep.classes).any()
        saw_unlabelled |= bool((pool[rows] == -1).any())
        # the in-class queries are still balanced
        counts = [np.sum(ep.query_labels == c) for c in ep.classes]
        assert counts == [4] * 5
    assert saw_unlabelled  # NOTA queries also come from the -1 rows


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_way=21, n_query=5), "Only 20 classes"),
        (dict(n_way=5, n_shot=10, n_query=20), "have at least 30 samples"),
        (dict(n_way=0), "n_way must be an int >= 1"),
        (dict(n_episodes=2.5), "n_episodes must be an int >= 1"),
        (dict(imbalance=0), "imbalance must be None or a float > 0"),
        (dict(nota_rate=1.0), r"nota_rate must be in \[0, 1\)"),
        (dict(classes=[0, 1, 99]), r"classes not present in y: \[99\]"),
        (dict(classes=[-1, 0, 1, 2, 3]), "contains the nota_label -1"),
        (dict(nota_label="NOTA"), "does not match the numeric class labels"),
    ],
)
def test_bad_input(pool, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_episodes(pool, **{"n_episodes": 3, "random_state": 0, **kwargs})


def test_split_classes_bad_input(pool):
    with pytest.raises(ValueError, match="empty pool"):
        split_classes(pool, test_size=20)
    with pytest.raises(ValueError, match="empty pool"):
        split_classes(np.zeros(5, dtype=int))


@pytest.mark.filterwarnings("ignore:self.within_class_std_dev_")  # constant pixels
def test_evaluate_episodes_equals_a_brute_force_loop():
    X, y = load_digits(return_X_y=True)
    eps = sample_episodes(y, n_way=5, n_shot=3, n_query=6, n_episodes=40,
                          random_state=0)  # fmt: skip
    res = evaluate_episodes(NearestCentroid(), X, eps)
    scores = []
    for ep in eps:
        pred = NearestCentroid().fit(X[ep.support_index], ep.support_labels)
        scores.append(np.mean(pred.predict(X[ep.query_index]) == ep.query_labels))
    np.testing.assert_array_equal(res.scores, scores)
    assert res.mean == pytest.approx(np.mean(scores))
    assert res.ci95 == pytest.approx(1.96 * np.std(scores) / np.sqrt(len(scores)))
    assert 0.8 < res.mean < 1  # 5-way 3-shot digits: clearly learnable, not trivial


def test_episode_split_yields_the_sampler_episodes(pool):
    X = np.zeros((pool.size, 2))
    kw = dict(n_way=4, n_shot=3, n_query=5, n_episodes=30, imbalance=2.0)
    cv = EpisodeSplit(**kw, random_state=7)
    assert cv.get_n_splits() == 30
    splits = list(cv.split(X, pool))
    eps = sample_episodes(pool, **kw, random_state=7)
    assert len(splits) == len(eps) == 30
    for (train, test), ep in zip(splits, eps):
        np.testing.assert_array_equal(train, ep.support_index)
        np.testing.assert_array_equal(test, ep.query_index)
        assert train.size == 4 * 3 and test.size == 4 * 5
        assert np.intersect1d(train, test).size == 0
        assert set(pool[test]) <= set(pool[train])  # queries only of support classes
    # an int seed gives the same episodes on every call (as ShuffleSplit); a
    # RandomState instance moves on between calls
    again = list(cv.split(X, pool))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(splits, again))
    cv_rng = EpisodeSplit(**kw, random_state=np.random.RandomState(7))
    first, second = list(cv_rng.split(X, pool)), list(cv_rng.split(X, pool))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, second))
    restored = pickle.loads(pickle.dumps(cv))
    assert all(
        np.array_equal(a[1], b[1]) for a, b in zip(splits, restored.split(X, pool))
    )


def test_episode_split_classes_and_bad_input(pool):
    X = np.zeros((pool.size, 2))
    tune, test = split_classes(pool, random_state=0)
    for train_idx, test_idx in EpisodeSplit(
        n_way=3, n_query=4, n_episodes=20, classes=test, random_state=0
    ).split(X, pool):
        assert np.isin(pool[np.r_[train_idx, test_idx]], test).all()
    with pytest.raises(ValueError, match="needs y"):
        next(EpisodeSplit().split(X))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        next(EpisodeSplit().split(X[:-1], pool))
    with pytest.raises(ValueError, match="n_episodes must be an int"):
        EpisodeSplit(n_episodes=0).get_n_splits()
    with pytest.raises(ValueError, match="n_way=25 needs 25"):
        next(EpisodeSplit(n_way=25).split(X, pool))


def test_episode_split_as_cv_equals_evaluate_episodes():
    X, y = load_digits(return_X_y=True)
    kw = dict(n_way=5, n_shot=1, n_query=15, n_episodes=40)
    cv = EpisodeSplit(**kw, random_state=0)
    scores = cross_val_score(NearestPrototypeClassifier(), X, y, cv=cv)
    ref = evaluate_episodes(
        NearestPrototypeClassifier(), X, sample_episodes(y, **kw, random_state=0)
    )
    np.testing.assert_array_equal(scores, ref.scores)
    assert scores.mean() > 0.6  # 1-shot 5-way digits, nearest support (chance 0.2)
    # GridSearchCV compares the candidates on the same episodes
    grid = {"metric": ["euclidean", "cosine"]}
    search = GridSearchCV(NearestPrototypeClassifier(), grid, cv=cv).fit(X, y)
    for i, params in enumerate(search.cv_results_["params"]):
        est = NearestPrototypeClassifier(**params)
        expected = cross_val_score(est, X, y, cv=cv).mean()
        assert search.cv_results_["mean_test_score"][i] == pytest.approx(expected)


def test_evaluate_episodes_on_a_torch_pool_equals_numpy():
    # a tensor pool stays a tensor (on its device: a GPU pool is solved there);
    # the scores are those of the numpy pool, inductive and transductive alike
    torch = pytest.importorskip("torch")
    from protolearn.transductive import LaplacianFewShotClassifier

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    eps = sample_episodes(y, n_way=3, n_shot=1, n_query=5, n_episodes=20,
                          random_state=0)  # fmt: skip
    Xt = torch.from_numpy(X)
    for est, kw in [
        (NearestPrototypeClassifier(), {}),
        (LaplacianFewShotClassifier(), {"transductive": True}),
        (LaplacianFewShotClassifier(), {"transductive": True, "batched": True}),
    ]:
        ref = evaluate_episodes(est, X, eps, **kw).scores
        np.testing.assert_array_equal(evaluate_episodes(est, Xt, eps, **kw).scores, ref)


@pytest.mark.cuda
def test_evaluate_episodes_on_a_cuda_pool():
    torch = pytest.importorskip("torch")
    from protolearn.transductive import LaplacianFewShotClassifier

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    eps = sample_episodes(y, n_way=3, n_shot=1, n_query=5, n_episodes=50,
                          random_state=0)  # fmt: skip
    kw = {"transductive": True, "batched": True}
    ref = evaluate_episodes(LaplacianFewShotClassifier(), X, eps, **kw).scores
    Xg = torch.from_numpy(X).cuda()
    got = evaluate_episodes(LaplacianFewShotClassifier(), Xg, eps, **kw).scores
    assert np.mean(got == ref) > 0.95  # GPU float32 rounding may flip rare ties
