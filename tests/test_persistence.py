"""Every estimator of ``all_estimators()`` saves and loads with skops (trusting only
skops' default types and protolearn's own), pickle and joblib, and refuses to load a
model saved by an incompatible protolearn version."""

import io
import pickle

import joblib
import numpy as np
import pytest
from _estimators import FAST_PARAMS
from _inputs import fit_data, takes_numeric_array
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import protolearn.base
from protolearn.base import VersionedStateMixin
from protolearn.utils import all_estimators, persistence

sio = pytest.importorskip("skops.io")

CLASSES = [cls for _, cls in all_estimators()]
OUTPUTS = (
    "predict",
    "predict_proba",
    "decision_function",
    "score_samples",
    "transform",
)


@pytest.fixture(scope="module", params=CLASSES, ids=lambda c: c.__name__)
def fitted(request):
    cls = request.param
    est = cls(**FAST_PARAMS.get(cls.__name__, {}))
    X, y = fit_data(est)
    return est.fit(X, y), X


def _fitted_attributes(est):
    """The public fitted attributes as the estimator saves them (``__getstate__``):
    a deep head saves its skorch net ``net_`` as plain numpy state (``_net_state``),
    compared here in place of the net object."""
    state = est.__getstate__()
    return {
        k: v
        for k, v in state.items()
        if (k.endswith("_") and k[0] != "_") or k == "_net_state"
    }


def _assert_same_state(restored, est):
    assert type(restored) is type(est)
    assert restored.get_params() == est.get_params()
    a, b = _fitted_attributes(restored), _fitted_attributes(est)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(b[key], BaseEstimator):  # a fitted sub-estimator: its own state
            _assert_same_state(a[key], b[key])
        else:
            np.testing.assert_equal(a[key], b[key], err_msg=key)
    return a, b


def _assert_same_model(restored, est, X):
    _assert_same_state(restored, est)
    if not takes_numeric_array(est):
        # raw-input transformers compute with a frozen model loaded by name (the same
        # before and after loading): their fitted state, compared above, is the model
        return
    for method in OUTPUTS:
        if hasattr(est, method):
            np.testing.assert_array_equal(
                getattr(restored, method)(X), getattr(est, method)(X), err_msg=method
            )


def test_every_estimator_records_its_version():
    missing = [c.__name__ for c in CLASSES if not issubclass(c, VersionedStateMixin)]
    assert not missing, f"inherit protolearn.base.VersionedStateMixin: {missing}"


def test_skops_round_trip_trusts_only_default_and_protolearn_types(fitted):
    est, X = fitted
    data = persistence.dumps(est)
    # nothing in the fitted state is a torch object, a function or any other type
    # that skops would not load without being told to trust it
    untrusted = set(sio.get_untrusted_types(data=data))
    assert untrusted <= set(persistence.trusted_types()), untrusted
    _assert_same_model(persistence.loads(data), est, X)
    # skops itself, given the trusted list
    _assert_same_model(sio.loads(data, trusted=persistence.trusted_types()), est, X)


def test_pickle_and_joblib_round_trip(fitted, tmp_path):
    est, X = fitted
    _assert_same_model(pickle.loads(pickle.dumps(est)), est, X)
    joblib.dump(est, tmp_path / "model.joblib")
    _assert_same_model(joblib.load(tmp_path / "model.joblib"), est, X)


def test_file_round_trip_of_a_pipeline(tmp_path):
    from sklearn.datasets import load_iris

    from protolearn.classification import NearestPrototypeClassifier

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), NearestPrototypeClassifier()).fit(X, y)
    persistence.dump(pipe, tmp_path / "pipe.skops")
    restored = persistence.load(tmp_path / "pipe.skops")
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))


def test_untrusted_type_is_refused():
    from sklearn.datasets import load_iris

    from protolearn.classification import NearestPrototypeClassifier

    X, y = load_iris(return_X_y=True)
    clf = NearestPrototypeClassifier().fit(X, y)
    clf.hook_ = io.BytesIO  # a type nobody registered as trusted
    data = persistence.dumps(clf)
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException, match="BytesIO"):
        persistence.loads(data)
    restored = persistence.loads(data, trusted=[io.BytesIO])
    assert restored.hook_ is io.BytesIO


@pytest.mark.parametrize("how", ["pickle", "skops"])
def test_incompatible_version_is_refused(fitted, how, monkeypatch):
    est, _ = fitted
    # save as a (hypothetical) later protolearn would
    monkeypatch.setattr(protolearn.base, "__version__", "99.1.0")
    data = pickle.dumps(est) if how == "pickle" else persistence.dumps(est)
    monkeypatch.undo()
    # the estimator or, where it holds one (DeepPrototypeMixtureDetector.detector_), a
    # fitted sub-estimator, which loads first
    names = [type(est).__name__] + [
        type(v).__name__
        for k, v in vars(est).items()
        if k.endswith("_") and isinstance(v, VersionedStateMixin)
    ]
    with pytest.raises(
        persistence.IncompatibleVersionError,
        match=f"({'|'.join(names)}) was saved with protolearn 99.1.0 .*Refit it",
    ):
        pickle.loads(data) if how == "pickle" else persistence.loads(data)


def test_compatible_versions_and_missing_stamp(monkeypatch):
    from sklearn.datasets import load_iris

    from protolearn.classification import NearestPrototypeClassifier

    X, y = load_iris(return_X_y=True)
    clf = NearestPrototypeClassifier().fit(X, y)
    series = ".".join(protolearn.__version__.split(".")[:2])
    monkeypatch.setattr(protolearn.base, "__version__", series + ".7")
    data = pickle.dumps(clf)
    monkeypatch.undo()
    assert pickle.loads(data).n_features_in_ == 4  # same major.minor: loads
    state = clf.__getstate__()
    del state["_protolearn_version"]
    blank = NearestPrototypeClassifier.__new__(NearestPrototypeClassifier)
    with pytest.raises(persistence.IncompatibleVersionError, match="without a"):
        blank.__setstate__(state)


def test_clone_keeps_no_version_attribute():
    est = clone(CLASSES[0]())
    restored = pickle.loads(pickle.dumps(est))
    assert not hasattr(restored, "_protolearn_version")
