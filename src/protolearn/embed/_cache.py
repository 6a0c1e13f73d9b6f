"""A disk cache of embeddings keyed by model id and input content.

One folder per model id under ``<location>/protolearn_embed/``; each call that embeds
new inputs adds one shard (``keys``: 16-byte content digests, ``vectors``: float32 raw
model outputs), written to a temporary name and renamed, so that concurrent writers
(``GridSearchCV(n_jobs=...)``) never see half a file. A lookup reads the shards it has
not read yet. Inputs are cached one by one, so the cross-validation folds of a search,
which embed different subsets of the same texts, embed each text once.
"""

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np

_DIGEST = 16


def content_digest(data):
    """16-byte BLAKE2b digest of ``data`` (bytes)."""
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


def cache_location(memory):
    """The folder of a ``memory`` parameter: None, a path, or a ``joblib.Memory``."""
    if memory is None:
        return None
    if isinstance(memory, (str, os.PathLike)):
        return Path(memory).expanduser()
    location = getattr(memory, "location", None)  # joblib.Memory
    if location is None:
        return None
    return Path(location).expanduser()


class EmbeddingStore:
    """Shards of embeddings for one model id in one folder."""

    def __init__(self, location, model_id):
        key = hashlib.blake2b(model_id.encode("utf-8"), digest_size=10).hexdigest()
        self.folder = Path(location) / "protolearn_embed" / key
        self.model_id = model_id
        self._index = {}  # digest -> (shard number, row)
        self._shards = []  # arrays of vectors
        self._seen = set()  # shard file names read

    def _refresh(self):
        if not self.folder.is_dir():
            return
        for name in sorted(os.listdir(self.folder)):
            if not name.endswith(".npz") or name in self._seen:
                continue
            with np.load(self.folder / name) as f:
                keys, vectors = f["keys"], f["vectors"]
            n = len(self._shards)
            self._shards.append(vectors)
            for i, k in enumerate(keys):
                self._index[k.tobytes()] = (n, i)
            self._seen.add(name)

    def lookup(self, digests):
        """``(vectors, missing)``: a list holding each cached vector or None, and the
        positions of the digests not in the cache."""
        self._refresh()
        found = [self._index.get(d) for d in digests]
        vectors = [None if f is None else self._shards[f[0]][f[1]] for f in found]
        missing = [i for i, f in enumerate(found) if f is None]
        return vectors, missing

    def add(self, digests, vectors):
        """Store ``vectors`` (n, d) float32 under ``digests`` (n 16-byte strings)."""
        if not len(digests):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        model_file = self.folder / "MODEL_ID.txt"
        if not model_file.exists():
            model_file.write_text(self.model_id + "\n")
        keys = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, _DIGEST)
        name = f"{uuid.uuid4().hex}.npz"
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=keys, vectors=np.asarray(vectors, dtype=np.float32))
        os.replace(tmp, self.folder / name)


_OPEN = {}  # (folder, model id) -> EmbeddingStore, shared by the clones in a process
_MAX_OPEN = 4


def open_store(location, model_id):
    """The store of ``model_id`` under ``location``, shared within the process, so that
    the clones a ``GridSearchCV`` makes read each shard once."""
    key = (str(Path(location).resolve()), model_id)
    store = _OPEN.pop(key, None)
    if store is None:
        store = EmbeddingStore(location, model_id)
    _OPEN[key] = store  # most recently used last
    while len(_OPEN) > _MAX_OPEN:
        _OPEN.pop(next(iter(_OPEN)))
    return store
