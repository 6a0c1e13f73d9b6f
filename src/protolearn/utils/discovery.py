"""Find every public protolearn estimator (so common tests cover new ones automatically)."""

import importlib
import inspect
import pkgutil
from operator import itemgetter

from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClusterMixin,
    OutlierMixin,
    TransformerMixin,
)

# (nn holds torch layers and the skorch engine, whose net is a BaseEstimator)
_SKIP_PACKAGES = {"protolearn.demo", "protolearn.nn"}
_TYPES = {
    "classifier": ClassifierMixin,
    "cluster": ClusterMixin,
    "outlier_detector": OutlierMixin,
    "transformer": TransformerMixin,
}


def _public_subpackages():
    import protolearn

    for info in pkgutil.iter_modules(protolearn.__path__, "protolearn."):
        if (
            info.ispkg
            and info.name not in _SKIP_PACKAGES
            and not info.name.rsplit(".", 1)[1].startswith("_")
        ):
            yield info.name


def all_estimators(type_filter=None):
    """Every public estimator class exported by a protolearn subpackage.

    Parameters
    ----------
    type_filter : {"classifier", "cluster", "outlier_detector", "transformer"} or list
        of them, default=None (all).

    Returns
    -------
    estimators : list of (name, class) tuples, sorted by name.

    Subpackages whose optional dependencies are missing (e.g. :mod:`protolearn.embed`
    without sentence-transformers) are skipped.
    """
    found = {}
    for modname in _public_subpackages():
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseEstimator)
                and not name.startswith("_")
                and not inspect.isabstract(obj)
            ):
                found[name] = obj
    items = sorted(found.items(), key=itemgetter(0))
    if type_filter is None:
        return items
    filters = [type_filter] if isinstance(type_filter, str) else list(type_filter)
    unknown = set(filters) - set(_TYPES)
    if unknown:
        raise ValueError(
            f"type_filter must be among {sorted(_TYPES)}; got {sorted(unknown)}."
        )
    return [(n, c) for n, c in items if any(issubclass(c, _TYPES[f]) for f in filters)]
