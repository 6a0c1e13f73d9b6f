"""protolearn: scikit-learn-compatible prototype methods for tabular and embedding data.

Subpackages are imported lazily, so ``import protolearn`` is fast and never imports torch:

- :mod:`protolearn.classification` -- nearest-prototype, Gaussian-prototype (NOTA),
  RBF / CBC and GLVQ classifiers
- :mod:`protolearn.transductive` -- transductive few-shot classification and clustering
- :mod:`protolearn.ood` -- out-of-distribution (novelty) detectors
- :mod:`protolearn.embed` -- raw text / images -> frozen-model embeddings (extra
  ``protolearn[embed]``)
- :mod:`protolearn.deep` -- deep prototype heads trained with skorch (imports torch)
- :mod:`protolearn.nn` -- their torch layers, losses and training engine
- :mod:`protolearn.datasets`, :mod:`protolearn.metrics`, :mod:`protolearn.model_selection`
- :mod:`protolearn.parallel` -- dask: blockwise prediction, episodes on a cluster
  (the ``protolearn[dask]`` extra)
"""

import importlib

__version__ = "0.1.0.dev0"

_SUBMODULES = {
    "classification",
    "transductive",
    "ood",
    "embed",
    "deep",
    "nn",
    "datasets",
    "metrics",
    "model_selection",
    "parallel",
    "utils",
    "base",
}

__all__ = sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
