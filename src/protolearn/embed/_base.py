"""The transformer skeleton shared by the embedders: raw inputs in, float vectors out.

Subclasses implement ``_check_inputs`` (raw input -> list), ``_digest`` (one input ->
bytes naming its content), ``_resolve`` (-> model id and what ``_load`` needs),
``_load`` (-> a loaded model) and ``_embed`` (model, list -> (n, d) float32 array,
not normalised).
"""

import contextlib
import importlib
import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..base import VersionedStateMixin
from ..utils._sklearn_compat import HasMethods, Interval, StrOptions, _fit_context
from ._cache import cache_location, open_store

_INSTALL = "pip install 'protolearn[embed]'"


def import_backend(module, what):
    """Import ``module`` or raise an ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the package {module!r}, which could not be imported "
            f"({exc}). Install the embedding extra: {_INSTALL}"
        ) from exc


def hub_offline():
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no downloads.

    Read from the environment at each load, so that setting it after
    ``huggingface_hub`` was imported (which reads it once) is honoured too.
    """
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import is_offline_mode
    except ImportError:  # pragma: no cover - a dependency of both backends
        return False
    return bool(is_offline_mode())


@contextlib.contextmanager
def hub_offline_mode():
    """While loading: ``local_files_only`` for the loaders, and, when
    ``HF_HUB_OFFLINE`` was set after ``huggingface_hub`` was imported, the library's own
    offline flag too (restored afterwards), which its background requests (such as
    the user-agent registry) check."""
    offline = hub_offline()
    constants = None
    if offline:
        try:
            from huggingface_hub import constants
        except ImportError:  # pragma: no cover
            constants = None
    before = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield offline
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = before


def hub_load_error(source, exc):
    """An OSError saying why the hub model ``source`` could not be loaded."""
    why = (
        "HF_HUB_OFFLINE is set, so nothing is downloaded"
        if hub_offline()
        else "downloading it failed"
    )
    return OSError(
        f"Could not load the model {source!r}: it is not in the local Hugging Face "
        f"cache and {why} ({type(exc).__name__}: {str(exc).splitlines()[0]}). Pass a "
        "folder holding the model instead."
    )


def as_list(X, kind):
    """A list from a list, tuple, 1-d array, pandas Series or one-column DataFrame."""
    if isinstance(X, (str, bytes)) or (kind == "image" and _is_pil(X)):
        raise ValueError(
            f"Expected an iterable of {kind}s (list, array or pandas Series); got a "
            f"single {type(X).__name__}. Wrap it in a list."
        )
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"Expected one column of {kind}s; got a DataFrame with {X.shape[1]} "
                "columns. Select the column first (df['text'])."
            )
        X = X.iloc[:, 0]
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"Expected a 1-d array of {kind}s; got an array of shape {X.shape}."
            )
        out = X.tolist()
    else:
        try:
            out = list(X)
        except TypeError:
            raise ValueError(
                f"Expected an iterable of {kind}s; got {type(X).__name__}."
            ) from None
    if not out:
        raise ValueError(f"Found 0 {kind}s (n_samples=0); at least 1 is required.")
    return out


def _is_pil(x):
    cls = type(x)
    return any(c.__module__.startswith("PIL.") for c in cls.__mro__)


class BaseEmbedder(TransformerMixin, VersionedStateMixin, BaseEstimator):
    """Frozen-model embedder: ``transform`` maps raw inputs to (n, d) vectors.

    The model is named by the ``model`` parameter and loaded on first use into a private
    attribute that pickling drops (a loaded model object passed as ``model`` stays a
    parameter and is pickled with the estimator).
    """

    _parameter_constraints = {
        "model": "no_validation",
        "device": [str, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
        "dtype": [StrOptions({"float32", "float64"}), type],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "show_progress": ["boolean"],
    }
    _kind = "input"

    # ---- hooks -----------------------------------------------------------------
    def _check_inputs(self, X):  # pragma: no cover - abstract hooks
        raise NotImplementedError

    def _digest(self, x):  # pragma: no cover
        raise NotImplementedError

    def _resolve(self):  # pragma: no cover
        raise NotImplementedError

    def _load(self, device):  # pragma: no cover
        raise NotImplementedError

    def _embed(self, model, items, device):  # pragma: no cover
        raise NotImplementedError

    # ---- sklearn API -----------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Raw inputs, not a numeric 2-d array: scikit-learn's numeric checks skip the
        # estimator (as they do for its text vectorizers).
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the inputs and the backend, and name the model (loaded lazily).

        Parameters
        ----------
        X : list, array or pandas Series of raw inputs
        y : ignored

        Returns
        -------
        self
        """
        self._check_inputs(X)
        self.model_id_ = self._model_id()
        self._check_dtype()
        return self

    def transform(self, X):
        """Embed ``X``: an (n_samples, n_features) array of ``dtype``.

        Inputs already in the ``memory`` cache are not embedded again.
        """
        check_is_fitted(self)
        items = self._check_inputs(X)
        store = self._store()
        if store is None:
            raw = self._embed_all(items)
        else:
            digests = [self._digest(x) for x in items]
            vectors, missing = store.lookup(digests)
            if missing:
                # each distinct new input once
                first = {}
                for i in missing:
                    first.setdefault(digests[i], i)
                new = self._embed_all([items[i] for i in first.values()])
                store.add(list(first), new)
                by_digest = dict(zip(first, new))
                for i in missing:
                    vectors[i] = by_digest[digests[i]]
            raw = np.stack(vectors).astype(np.float32, copy=False)
        return self._finish(raw)

    def get_feature_names_out(self, input_features=None):
        """``<classname><i>`` for each output dimension (loads the model if needed)."""
        check_is_fitted(self)
        n = self._model_dim(self._model())
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(n)], dtype=object)

    # ---- internals -------------------------------------------------------------
    def _check_dtype(self):
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}.")
        return dtype

    def _model_id(self):
        return self._resolve()[0]

    def _store(self):
        location = cache_location(self.memory)
        if location is None:
            return None
        return open_store(location, self.model_id_)

    def _device(self):
        if self.device is not None:
            return self.device
        torch = importlib.import_module("torch")
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _model(self):
        """The loaded model: the ``model`` parameter when it is a model object, else
        loaded from its name or path once and kept in a private attribute."""
        device = self._device()
        key = (self.model_id_, device)
        loaded = getattr(self, "_loaded", None)
        if loaded is None or loaded[0] != key:
            self._loaded = loaded = (key, self._load(device))
        return loaded[1]

    def _embed_all(self, items):
        model = self._model()
        out = self._embed(model, items, self._device())
        return np.asarray(out, dtype=np.float32)

    def _finish(self, raw):
        if self.normalize:
            norms = np.linalg.norm(raw, axis=1, keepdims=True)
            raw = raw / np.maximum(norms, np.finfo(np.float32).tiny)
        return raw.astype(self._check_dtype(), copy=False)

    def __getstate__(self):
        state = super().__getstate__()
        # the loaded model is reloaded on demand
        state.pop("_loaded", None)
        return state

    @staticmethod
    def _hash_module(module):
        """Digest of a torch module's class and weights (the id of a model object)."""
        import hashlib

        import torch

        h = hashlib.blake2b(digest_size=16)
        h.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        return h.hexdigest()
