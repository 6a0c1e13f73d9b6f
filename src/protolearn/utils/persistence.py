"""Saving and loading fitted estimators: safely with skops, or with pickle / joblib.

`skops <https://skops.readthedocs.io>`_ stores a model without pickle, and loading it
runs no code from the file: only types on a trusted list can be rebuilt.  :func:`load`
trusts what ``skops.io.load`` trusts by default (Python built-ins, numpy, scipy,
scikit-learn) plus protolearn's own estimators (:func:`trusted_types`), and nothing
else.  ``skops`` is an optional dependency (``pip install protolearn[persist]``).

Every protolearn estimator also records the protolearn version it was saved with
(pickle, joblib or skops); loading it into an incompatible version raises
:class:`IncompatibleVersionError` instead of returning an estimator that may compute
the wrong thing.  Versions are compatible when their ``major.minor`` agree.

Examples
--------
>>> import io
>>> from sklearn.datasets import load_iris
>>> from protolearn.classification import NearestPrototypeClassifier
>>> from protolearn.utils import persistence
>>> X, y = load_iris(return_X_y=True)
>>> clf = NearestPrototypeClassifier().fit(X, y)
>>> data = persistence.dumps(clf)
>>> restored = persistence.loads(data)
>>> bool((restored.predict(X) == clf.predict(X)).all())
True
"""

from .. import __version__

__all__ = [
    "IncompatibleVersionError",
    "check_saved_version",
    "dump",
    "dumps",
    "load",
    "loads",
    "trusted_types",
]


class IncompatibleVersionError(ValueError):
    """A saved estimator comes from a protolearn version this one cannot load."""


def _series(version):
    parts = str(version).split(".")
    return tuple(parts[:2])


def check_saved_version(saved, cls_name):
    """Raise :class:`IncompatibleVersionError` unless `saved` (the protolearn version
    stored with a ``cls_name`` estimator, None when absent) has the ``major.minor`` of
    the installed protolearn."""
    if saved is not None and _series(saved) == _series(__version__):
        return
    if saved is None:
        raise IncompatibleVersionError(
            f"This {cls_name} was saved without a protolearn version (by a version "
            f"older than the version check, or not by protolearn) and cannot be "
            f"loaded with protolearn {__version__}; refit it."
        )
    raise IncompatibleVersionError(
        f"This {cls_name} was saved with protolearn {saved} and cannot be loaded with "
        f"protolearn {__version__} (only the same major.minor version is "
        f"compatible: fitted attributes may differ between versions). Refit it with "
        f"protolearn {__version__}, or load it with protolearn=={saved}."
    )


def trusted_types():
    """Fully qualified names of the protolearn types that :func:`load` trusts.

    Every public estimator class (:func:`protolearn.utils.all_estimators`); pass the
    list as ``trusted=`` to :func:`skops.io.load` to load with skops directly.

    Returns
    -------
    names : list of str
    """
    from .discovery import all_estimators

    return sorted(f"{cls.__module__}.{cls.__qualname__}" for _, cls in all_estimators())


def _skops_io():
    try:
        import skops.io as sio
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Saving and loading with skops needs the skops package: "
            "pip install 'protolearn[persist]' (or pip install skops)."
        ) from exc
    return sio


def dump(estimator, file):
    """Save `estimator` to `file` (a path or a binary file object) in skops format.

    Parameters
    ----------
    estimator : object
        A (fitted) protolearn estimator, or a scikit-learn pipeline holding some.
    file : str, path or binary file object
    """
    _skops_io().dump(estimator, file)


def dumps(estimator):
    """`estimator` in skops format, as bytes."""
    return _skops_io().dumps(estimator)


def _trusted(trusted):
    return trusted_types() + [
        t if isinstance(t, str) else f"{t.__module__}.{t.__qualname__}"
        for t in (trusted or [])
    ]


def load(file, trusted=None):
    """Load an estimator saved by :func:`dump` (or ``skops.io.dump``).

    Only skops' default-trusted types and protolearn's own (:func:`trusted_types`)
    are rebuilt; a file holding any other type raises
    ``skops.io.exceptions.UntrustedTypesFoundException`` (inspect such a file with
    ``skops.io.get_untrusted_types`` and pass the types you trust as `trusted`).

    Parameters
    ----------
    file : str, path or binary file object
    trusted : list of str or type, default=None
        More types to trust (e.g. a custom transformer in the same pipeline).

    Returns
    -------
    estimator : object

    Raises
    ------
    IncompatibleVersionError
        The file was saved by an incompatible protolearn version.
    """
    return _skops_io().load(file, trusted=_trusted(trusted))


def loads(data, trusted=None):
    """:func:`load` from bytes (as returned by :func:`dumps`)."""
    return _skops_io().loads(data, trusted=_trusted(trusted))
