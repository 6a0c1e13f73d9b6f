"""The base of the trained classifiers (classification._trained) on the skorch engine,
through a minimal subclass: the hook contract, the optimisers against a known optimum,
stopping rules."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from protolearn.classification._trained import BaseTrainedPrototypeClassifier

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny problems: thread pools only oversubscribe the shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(n)


class _Linear(torch.nn.Module):
    """Class scores ``X @ coef.T + intercept`` (a head's layer)."""

    def __init__(self, coef, intercept):
        super().__init__()
        self.coef = torch.nn.Parameter(coef)
        self.intercept = torch.nn.Parameter(intercept)

    def forward(self, X):
        return {"scores": X @ self.coef.T + self.intercept, "coef": self.coef}


class _SoftmaxRegression(BaseTrainedPrototypeClassifier):
    """L2-penalised multinomial logistic regression written on the hooks."""

    def __init__(
        self,
        *,
        C=1.0,
        max_iter=200,
        tol=1e-10,
        optimizer="lbfgs",
        lr=0.05,
        batch_size="auto",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=None,
        device="cpu",
        verbose=0,
    ):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    _parameter_constraints = {
        **BaseTrainedPrototypeClassifier._parameter_constraints,
        "C": [float],
    }

    def _build_head(self, X, y, rng):
        self.seen_init_ = (type(X), X.dtype, y.dtype, X.shape[0])
        k = self.classes_.size
        layer = _Linear(
            torch.zeros(k, X.shape[1]), torch.as_tensor(rng.normal(scale=1e-3, size=k))
        )
        return layer, self._loss, {}

    def _loss(self, out, y):
        ce = torch.nn.functional.cross_entropy(out["scores"], y)
        return ce + (out["coef"] ** 2).sum() / (2 * self.C * self._n)

    def fit(self, X, y):
        self._n = len(X)
        return super().fit(X, y)

    def _store(self, state):
        self.seen_store_ = {k: (type(v), v.dtype) for k, v in state.items()}
        self.coef_, self.intercept_ = state["coef"], state["intercept"]

    def _class_scores(self, X):
        return X @ self.coef_.T + self.intercept_


@pytest.fixture
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_lbfgs_reaches_the_known_optimum(iris):
    X, y = iris
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000).fit(X, y)
    est = _SoftmaxRegression(C=1.0, random_state=0).fit(X, y)
    # same objective (up to the factor C n): the same minimiser (to scipy's ftol)
    np.testing.assert_allclose(
        est.coef_ - est.coef_.mean(0), ref.coef_ - ref.coef_.mean(0), atol=1e-3
    )
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X), atol=1e-4)
    np.testing.assert_array_equal(est.predict(X), ref.predict(X))
    # hook contract: tensors in the input dtype into _build_head, numpy into _store
    assert est.seen_init_[:3] == (torch.Tensor, torch.float64, torch.int64)
    assert est.seen_store_ == {
        "coef": (np.ndarray, np.float64),
        "intercept": (np.ndarray, np.float64),
    }
    est32 = _SoftmaxRegression(random_state=0).fit(X.astype(np.float32), y)
    assert est32.seen_init_[1] == torch.float32 and est32.coef_.dtype == np.float32


def test_adam_approaches_the_optimum(iris):
    X, y = iris
    lbfgs = _SoftmaxRegression(random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adam = _SoftmaxRegression(
            optimizer="adam", batch_size=32, max_iter=150, random_state=0
        ).fit(X, y)
    assert adam.loss_curve_[-1] < adam.loss_curve_[0]
    assert adam.best_loss_ == pytest.approx(lbfgs.best_loss_, abs=2e-3)


def test_stopping_rules_and_split(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning):
        est = _SoftmaxRegression(max_iter=3).fit(X, y)
    # L-BFGS: n_iter_ quasi-Newton steps, in skorch epochs of n_iter_no_change steps
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 1
    with pytest.warns(ConvergenceWarning):
        est = _SoftmaxRegression(max_iter=6, n_iter_no_change=2).fit(X, y)
    assert est.n_iter_ == 6 and len(est.loss_curve_) == 3
    # a coarse tol: the first epoch sets the best value, an epoch without a
    # tol-sized gain per step stops training
    est = _SoftmaxRegression(tol=10.0, n_iter_no_change=4).fit(X, y)
    assert len(est.loss_curve_) == 2 and est.n_iter_ <= 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = _SoftmaxRegression(
            optimizer="adam", tol=10.0, n_iter_no_change=4, random_state=0
        ).fit(X, y)
    assert est.n_iter_ == 5 == len(est.loss_curve_)
    # early stopping trains on the stratified 80%, validates on the rest
    est = _SoftmaxRegression(
        early_stopping=True, validation_fraction=0.2, random_state=0
    ).fit(X, y)
    assert est.seen_init_[3] == 120
    assert len(est.validation_scores_) == len(est.loss_curve_)
    assert est.best_validation_score_ == max(est.validation_scores_)
    with pytest.raises(ValueError, match="leaves 2 of 6 samples for training"):
        _SoftmaxRegression(early_stopping=True, validation_fraction=0.6).fit(
            X[::25], y[::25]
        )


def test_small_problems_train_single_threaded_and_restore(iris):
    X, y = iris
    seen = []

    class _Spy(_SoftmaxRegression):
        def _loss(self, out, y):
            seen.append(torch.get_num_threads())
            return super()._loss(out, y)

    torch.set_num_threads(2)  # (the autouse fixture restores the original count)
    with pytest.warns(ConvergenceWarning):
        _Spy(max_iter=3, random_state=0).fit(X, y)
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_verbose_prints_each_iteration(iris, capsys):
    X, y = iris
    est = _SoftmaxRegression(
        max_iter=4, tol=0.0, verbose=1, early_stopping=True, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    out = capsys.readouterr().out
    # skorch's epoch table: one row per epoch, with the validation accuracy
    assert "train_loss" in out and "valid_acc" in out


def test_early_stopping_split_keeps_every_class_in_training(iris):
    """A class too small for the stratified split (or one stratification hands to
    the validation part whole) still gets a training row."""
    X, y = iris
    seen = []

    class _Spy(_SoftmaxRegression):
        def _build_head(self, X, y, rng):
            seen.append(np.bincount(y.numpy(), minlength=self.classes_.size))
            return super()._build_head(X, y, rng)

    # 48 / 50 / 2 samples at validation_fraction=0.9: stratification sends both
    # samples of the small class to validation (every seed)
    rows = np.r_[0:48, 50:100, 100:102]
    for seed in range(5):
        est = _Spy(
            early_stopping=True, validation_fraction=0.9, max_iter=5, random_state=seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X[rows], y[rows])
        assert seen[-1].min() >= 1 and seen[-1].sum() == 10
    # a singleton class cannot be stratified at all: it stays in training
    rows = np.r_[0:50, 50:100, 100:101]
    for seed in range(10):
        _Spy(early_stopping=True, random_state=seed).fit(X[rows], y[rows])
        assert seen[-1][2] == 1 and seen[-1].sum() == 101 - 11
