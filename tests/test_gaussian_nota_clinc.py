"""NOTA rejection on real data: CLINC150 (MiniLM embeddings) out-of-scope detection,
split-conformal acceptance, and FewRel-2.0-style NOTA episodes."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from protolearn.classification import GaussianPrototypeClassifier
from protolearn.metrics import auroc, open_set_report
from protolearn.model_selection import evaluate_episodes, sample_episodes


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # Many small (384 x 384) factorisations: with pytest-xdist workers on 2 cores a
    # multi-threaded BLAS oversubscribes the machine and runs 10-30x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _report(clf, data):
    return open_set_report(data["y_test"], clf.predict(data["X_test"]))


def test_adaptive_margins_beat_global_threshold_on_clinc(clinc150):
    # Train on in-scope train only (negatives: held-out intents), test on the test
    # split with its 1,000 out-of-scope queries.
    X, y = clinc150["X_train_in"], clinc150["y_train_in"]
    kw = dict(covariance_type="tied", random_state=0)
    glob = GaussianPrototypeClassifier(nota="global", **kw).fit(X, y)
    adap = GaussianPrototypeClassifier(nota="adaptive", **kw).fit(X, y)
    rg, ra = _report(glob, clinc150), _report(adap, clinc150)
    print(f"global: {rg}\nadaptive: {ra}")
    assert ra.nota_f1 > rg.nota_f1
    assert ra.in_scope_accuracy >= rg.in_scope_accuracy - 0.01
    assert ra.nota_f1 > 0.7  # a real detector, not a trivial one
    assert np.ptp(adap.margins_) > 0 and np.ptp(glob.margins_) == 0
    # score_samples is an out-of-scope scorer (AUROC in-scope vs out-of-scope)
    is_in = (clinc150["y_test"] >= 0).astype(int)
    assert auroc(is_in, adap.score_samples(clinc150["X_test"])) > 0.93


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_quantile_acceptance_meets_one_minus_alpha(clinc150, alpha):
    X, y = clinc150["X_train_in"], clinc150["y_train_in"]
    clf = GaussianPrototypeClassifier(
        nota="quantile", alpha=alpha, calibration_size=0.3, random_state=0
    ).fit(X, y)
    accepted = clf.predict(clinc150["X_test_in"]) != -1
    n_test, n_cal = accepted.size, int(round(0.3 * y.size))
    # sampling error of the test share and of the calibration quantiles
    tol = 3 * np.sqrt(alpha * (1 - alpha) * (1 / n_test + 1 / n_cal))
    rate = accepted.mean()
    print(f"alpha={alpha}: in-class acceptance {rate:.4f} (tolerance {tol:.4f})")
    assert rate >= 1 - alpha - tol
    assert rate <= 1 - alpha / 3  # it does reject: the margins are not vacuous
    # and the out-of-scope queries are mostly rejected
    oos = clinc150["X_test"][clinc150["y_test"] == -1]
    assert np.mean(clf.predict(oos) == -1) > 0.6


def test_nota_episodes_with_evaluate_episodes(clinc150):
    # FewRel-2.0 style: 5-way 5-shot episodes, half the queries from other intents or
    # out-of-scope, accuracy counting NOTA as a class.
    X, y = clinc150["X_test"], clinc150["y_test"]
    episodes = sample_episodes(
        y, n_way=5, n_shot=5, n_query=10, n_episodes=40, nota_rate=0.5, random_state=0
    )
    assert all(np.sum(ep.query_labels == -1) == 50 for ep in episodes)
    closed = evaluate_episodes(GaussianPrototypeClassifier(), X, episodes)
    nota = evaluate_episodes(
        GaussianPrototypeClassifier(nota="adaptive", nota_rate=0.5, random_state=0),
        X,
        episodes,
    )
    print(f"closed {closed.mean:.3f}, adaptive {nota.mean:.3f} +- {nota.ci95:.3f}")
    assert closed.mean <= 0.5  # a closed-set model gets every NOTA query wrong
    assert nota.mean > 0.75


def test_nota_episodes_with_string_labels(digits):
    # string class names shorter than the NOTA label must not truncate it
    names = np.array(list("abcdefghij"))
    y = names[digits.y_train]
    episodes = sample_episodes(
        y,
        n_way=3,
        n_shot=5,
        n_query=5,
        n_episodes=5,
        nota_rate=0.5,
        nota_label="NOTA",
        random_state=0,
    )
    assert all(np.sum(ep.query_labels == "NOTA") == 15 for ep in episodes)
    clf = GaussianPrototypeClassifier(
        covariance_type="spherical",
        pooling=0.5,
        nota="adaptive",
        nota_rate=0.5,
        random_state=0,
    )
    res = evaluate_episodes(clf, digits.X_train, episodes)
    assert res.mean > 0.6  # closed-set would be at most 0.5
    # the default nota_label follows the classifier's "auto": "NOTA" for strings, so
    # the same episodes come out and its rejections are scored as right
    auto = sample_episodes(
        y, n_way=3, n_shot=5, n_query=5, n_episodes=5, nota_rate=0.5, random_state=0
    )
    for a, b in zip(auto, episodes):
        np.testing.assert_array_equal(a.query_labels, b.query_labels)
    assert evaluate_episodes(clf, digits.X_train, auto).mean == res.mean
    # an integer label for string classes would become the string "-1"
    with pytest.raises(ValueError, match="does not match the string class labels"):
        sample_episodes(y, n_way=3, nota_rate=0.5, nota_label=-1, random_state=0)
