"""Bad input, fed to every public estimator of ``all_estimators()``.

Each case ends in one of two outcomes: a ``ValueError`` / ``TypeError`` whose message
names the problem, or a documented result that the case asserts (e.g. an unsupervised
estimator ignores ``y``; float16 and integer ``X`` are computed in float32 / float64).
Never an internal traceback, never NaN output.

Estimators whose tags say their input is not a numeric 2-D array (raw-text / image
transformers: ``input_tags.two_d_array`` False) skip the numeric-X cases by their
tags; every other exception is listed, with its reason, in ``EXPECTED``.
"""

import copy
import re

import numpy as np
import pytest
import scipy.sparse as sp
from _estimators import FAST_PARAMS
from _inputs import raw_inputs, takes_numeric_array
from sklearn.base import clone, is_classifier
from sklearn.datasets import load_iris
from sklearn.utils import get_tags

from protolearn.utils import all_estimators

# {estimator name: {case: reason}}: cases an estimator is exempt from.
EXPECTED = {}

OUTPUTS = (
    "predict",
    "predict_proba",
    "decision_function",
    "score_samples",
    "transform",
)

_X, _Y = load_iris(return_X_y=True)
_ROWS = np.r_[0:12, 50:62, 100:112]
X32, Y = _X[_ROWS].astype(np.float32), _Y[_ROWS]


def _make(cls):
    est = cls(**FAST_PARAMS.get(cls.__name__, {}))
    if "max_iter" in est.get_params():
        # what is checked here is input handling, not convergence
        est.set_params(max_iter=min(est.max_iter, 3))
    return est


def _fit(est, X, y=Y):
    return clone(est).fit(X, y)


_FITTED = {}


def _fitted(est, dtype=np.float32):
    """`est` fitted on the clean data (cached per class and dtype; never mutated)."""
    key = (type(est).__name__, np.dtype(dtype).name)
    if key not in _FITTED:
        _FITTED[key] = _fit(est, X32.astype(dtype))
    return _FITTED[key]


def _outputs(est, X):
    """Every output method on X; each must be finite (no NaN, no inf)."""
    out = {}
    for method in OUTPUTS:
        if hasattr(est, method):
            value = np.asarray(getattr(est, method)(X))
            if value.dtype.kind == "f":
                assert np.isfinite(value).all(), f"{method} is not finite"
            assert value.shape[0] == len(X), method
            out[method] = value
    return out


def _predictors(est):
    return [m for m in OUTPUTS if hasattr(est, m)]


def _raises(match, exc=(ValueError, TypeError)):
    return pytest.raises(exc, match=match)


def _y_case(est, y_bad, match):
    """A bad y: a clear error, or (unsupervised estimators only) y is ignored."""
    try:
        model = _fit(est, X32, y_bad)
    except (ValueError, TypeError) as e:
        assert re.search(match, str(e)), str(e)
        return
    assert not is_classifier(est), "a classifier accepted it"
    # documented for unsupervised estimators (y : ignored): the same model as no y
    reference = _fit(est, X32, None)
    for method, value in _outputs(model, X32).items():
        np.testing.assert_array_equal(value, getattr(reference, method)(X32))


# ----------------------------------------------------------------------------- cases
def case_nan(est):
    X = X32.copy()
    X[3, 1] = np.nan
    with _raises("NaN"):
        _fit(est, X)
    model = _fitted(est)
    for method in _predictors(model):
        with _raises("NaN"):
            getattr(model, method)(X)


def case_inf(est):
    X = X32.copy()
    X[3, 1] = -np.inf
    with _raises("infinity"):
        _fit(est, X)
    model = _fitted(est)
    for method in _predictors(model):
        with _raises("infinity"):
            getattr(model, method)(X)


def case_empty(est):
    with _raises("0 sample"):
        _fit(est, X32[:0], Y[:0])
    model = _fitted(est)
    for method in _predictors(model):
        with _raises("0 sample"):
            getattr(model, method)(X32[:0])


def case_one_row(est):
    with _raises(r"1 sample|n_samples=1|at least 2 classes"):
        _fit(est, X32[:1], Y[:1])
    # predicting one row is fine
    _outputs(_fitted(est), X32[:1])


def case_one_class(est):
    y = np.zeros_like(Y)
    if is_classifier(est):
        with _raises("at least 2 classes"):
            _fit(est, X32, y)
    else:
        # documented: detectors and clusterers model unlabelled data (one class)
        _outputs(_fit(est, X32, y), X32)


def case_wrong_feature_count(est):
    model = _fitted(est)
    for method in _predictors(model):
        with _raises("X has 3 features, but .* is expecting 4 features"):
            getattr(model, method)(X32[:, :3])


def case_mismatched_lengths(est):
    _y_case(est, Y[:-1], "inconsistent numbers of samples")


def case_string_X(est):
    X = X32.astype(str)
    X[0, 0] = "abc"
    with _raises("could not convert string to float"):
        _fit(est, X)
    model = _fitted(est)
    for method in _predictors(model):
        with _raises("could not convert string to float"):
            getattr(model, method)(X)


def case_complex_X(est):
    with _raises("Complex data not supported"):
        _fit(est, X32 + 1j)
    model = _fitted(est)
    for method in _predictors(model):
        with _raises("Complex data not supported"):
            getattr(model, method)(X32 + 1j)


def case_3d_X(est):
    X = X32.reshape(len(X32), 2, 2)
    with _raises("dim 3"):
        _fit(est, X)
    model = _fitted(est)
    for method in _predictors(model):
        with _raises("dim 3"):
            getattr(model, method)(X)


def case_sparse_X(est):
    Xs = sp.csr_matrix(X32)
    if get_tags(est).input_tags.sparse:
        dense = _fitted(est)
        for method, value in _outputs(_fit(est, Xs), Xs).items():
            np.testing.assert_allclose(value, getattr(dense, method)(X32), rtol=1e-5)
        return
    with _raises("Sparse data was passed .* dense data is required", TypeError):
        _fit(est, Xs)
    model = _fitted(est)
    for method in _predictors(model):
        with _raises("Sparse data was passed", TypeError):
            getattr(model, method)(Xs)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def case_huge_values(est):
    # rows whose squared distances overflow: float32 near 1e30, float64 near 1e200
    for X in (X32 * np.float32(1e30), X32.astype(np.float64) * 1e200):
        with _raises(f"too large in magnitude.*overflow {X.dtype}"):
            _fit(est, X)
        model = _fitted(est, X.dtype)
        for method in _predictors(model):
            with _raises("too large in magnitude"):
                getattr(model, method)(X)
    # large but representable: finite outputs
    _outputs(_fit(est, X32 * np.float32(1e15)), X32 * np.float32(1e15))


def case_float16_and_int_X(est):
    # documented: float16 is computed in float32, integers in float64
    model = _fit(est, X32.astype(np.float16))
    _outputs(model, X32.astype(np.float16))
    Xi = np.rint(X32 * 10).astype(np.int64)
    model_i = _fit(est, Xi)
    reference = _fit(est, Xi.astype(np.float64))
    for method, value in _outputs(model_i, Xi).items():
        np.testing.assert_array_equal(value, getattr(reference, method)(Xi))


def case_y_with_nan(est):
    y = Y.astype(float)
    y[4] = np.nan
    _y_case(est, y, "y contains NaN|Input y contains NaN")


def case_y_with_none(est):
    y = np.array(["a", "b", "c"], dtype=object)[Y]
    y[5] = None
    _y_case(est, y, r"y contains None.*row\(s\) \[5\]")


def case_continuous_y(est):
    y = np.linspace(0, 1, len(Y))
    if is_classifier(est):
        with _raises("Unknown label type: continuous"):
            _fit(est, X32, y)
    else:
        _y_case(est, y, "Unknown label type: continuous")


# Classifiers whose partial_fit keeps the classes of the stream's first call (a head
# with one output per class, as MLPClassifier.partial_fit).
FIXED_OUTPUT_STREAMS = {"DeepGaussianPrototypeClassifier", "DeepCBCClassifier"}


def case_unseen_labels(est):
    if not is_classifier(est):
        pytest.skip("no labels at predict time (not a classifier)")
    model = _fitted(est)
    y_test = Y.copy()
    y_test[::4] = 99  # a label never seen in fit
    # documented: scored as errors (the prediction is always a fitted class)
    pred = model.predict(X32)
    assert set(np.unique(pred)) <= set(model.classes_)
    assert model.score(X32, y_test) == pytest.approx(np.mean(pred == y_test))
    if hasattr(model, "partial_fit"):
        model = copy.deepcopy(model)
        if type(model).__name__ in FIXED_OUTPUT_STREAMS:
            # documented: a deep head's output size is fixed by the classes of its
            # stream (MLPClassifier's convention), so a new label is an error
            with pytest.raises(ValueError, match=r"\[99\] that are not in the classes"):
                model.partial_fit(X32[:3], np.full(3, 99))
            return
        # documented for partial_fit: a new label becomes a new class
        model.partial_fit(X32[:3], np.full(3, 99))
        assert 99 in model.classes_


def case_nota_label_collides_with_class(est):
    params = est.get_params()
    if "nota_label" not in params:
        pytest.skip("no nota_label parameter")
    # documented: rows labelled nota_label are known-unknowns, never a class, even
    # when the label is also a "real" class of y
    est = clone(est).set_params(
        nota_label=2, **({"nota": "global"} if "nota" in params else {})
    )
    model = _fit(est, X32)
    assert 2 not in model.classes_
    assert set(np.unique(model.predict(X32))) <= set(model.classes_) | {2}
    _outputs(model, X32)


CASES = {
    name[5:]: fn for name, fn in list(globals().items()) if name.startswith("case_")
}
Y_CASES = {"mismatched_lengths", "y_with_nan", "y_with_none", "continuous_y"}


def _params():
    for name, cls in all_estimators():
        for case in CASES:
            marks = []
            reason = EXPECTED.get(name, {}).get(case)
            if reason:
                marks = [pytest.mark.skip(reason=reason)]
            yield pytest.param(cls, case, id=f"{name}-{case}", marks=marks)


@pytest.mark.parametrize("cls, case", list(_params()))
def test_bad_input(cls, case):
    est = _make(cls)
    if not takes_numeric_array(est) and case not in Y_CASES:
        pytest.skip("raw-input estimator (input_tags.two_d_array is False)")
    if not takes_numeric_array(est):
        _raw_y_case(est, case)
        return
    CASES[case](est)


def _raw_y_case(est, case):
    """The y cases for raw-input estimators: a clear error, or y is ignored (the
    same fitted state as without y)."""
    X = raw_inputs(est, len(Y))
    y = {
        "mismatched_lengths": Y[:-1],
        "y_with_nan": Y * np.nan,
        "y_with_none": np.full(len(Y), None, dtype=object),
        "continuous_y": np.linspace(0, 1, len(Y)),
    }[case]
    try:
        model = clone(est).fit(X, y)
    except (ValueError, TypeError) as e:
        assert "y" in str(e), str(e)
        return
    reference = clone(est).fit(X)
    state = {k: v for k, v in vars(model).items() if k.endswith("_")}
    assert state.keys() == {k for k in vars(reference) if k.endswith("_")}
    for key, value in state.items():
        np.testing.assert_equal(value, getattr(reference, key), err_msg=key)


def test_torch_input_is_checked_like_numpy():
    torch = pytest.importorskip("torch")
    from protolearn.classification import NearestPrototypeClassifier

    clf = NearestPrototypeClassifier().fit(X32, Y)
    huge = torch.as_tensor(X32) * 1e30
    for method in ("predict", "predict_proba", "certified_radius"):
        with _raises("too large in magnitude.*overflow float32"):
            getattr(clf, method)(huge)
    with _raises("too large in magnitude"):
        NearestPrototypeClassifier().fit(huge, Y)
    out = clf.predict_proba(torch.as_tensor(X32) * 1e15)
    assert bool(torch.isfinite(out).all())


def test_non_finite_scores_raise_instead_of_nan(monkeypatch):
    """The last guard of the base classes: a score that still overflows (here forced)
    raises a ValueError naming the rows, for classifiers and detectors alike."""
    from protolearn.classification import NearestPrototypeClassifier
    from protolearn.ood import KNNDetector

    clf = NearestPrototypeClassifier().fit(X32, Y)
    det = KNNDetector(n_neighbors=3).fit(X32)

    def scores(X):
        S = np.zeros((len(X), 3), dtype=X.dtype)
        S[2] = -np.inf
        return S

    monkeypatch.setattr(clf, "_class_scores", scores)
    monkeypatch.setattr(det, "_score_samples", lambda X: scores(X)[:, 0])
    for method in ("predict_proba", "predict_log_proba", "decision_function"):
        with _raises(r"scores are not finite for row\(s\) \[2\].*rescale X"):
            getattr(clf, method)(X32)
    for method in ("score_samples", "decision_function", "predict"):
        with _raises(r"scores are not finite for row\(s\) \[2\]"):
            getattr(det, method)(X32)


@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_threaded_extremes_of_large_input(monkeypatch, thread_chunks, bad):
    # a large X is validated by threads over row chunks: the same maximum and
    # minimum as numpy's (NaN when any entry is NaN), so the same errors
    from protolearn.utils import _validation

    monkeypatch.setattr(_validation, "EXTREMES_THREADED_BYTES", 0)
    thread_chunks(1000, threads=2)  # chunks of 19 rows on two threads
    X = np.random.default_rng(0).normal(size=(997, 13)).astype(np.float32)
    X[630, 7] = 9.5  # the maximum, in chunk 33
    if bad is not None:
        X[803, 2] = bad
    hi, lo = _validation._extremes(X)
    np.testing.assert_array_equal([hi, lo], [X.max(), X.min()])
    from protolearn.classification import NearestPrototypeClassifier

    est = NearestPrototypeClassifier().fit(X[:500], np.arange(500) % 3)
    if bad is None:
        assert est.predict(X).shape == (997,)
    else:
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            est.predict(X)
