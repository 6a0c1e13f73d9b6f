"""CLINC150 sentence embeddings (all-MiniLM-L6-v2) from the shared data folder."""

import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

DATA_ENV_VAR = "PROTOLEARN_DATA"
_FILE = "clinc150_minilm.npz"
_SUBSETS = ("train", "val", "test", "all")


def _candidate_dirs(data_home):
    # "~" expanded, as scikit-learn's get_data_home does
    if data_home is not None:
        return [Path(data_home).expanduser()], f"data_home={str(data_home)!r}"
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return [Path(env).expanduser()], f"${DATA_ENV_VAR}={env!r}"
    # A source checkout beside the shared folder: <repo>/../shared/data.
    here = Path(__file__).resolve()
    guesses = [p.parent / "shared" / "data" for p in here.parents[2:5]]
    guesses.append(Path.cwd().parent / "shared" / "data")
    return guesses, f"neither data_home nor ${DATA_ENV_VAR} was set"


def find_data_file(name, data_home=None):
    """Path of file `name` in the data folder.

    The folder is `data_home` if given, else the environment variable
    ``PROTOLEARN_DATA``, else ``../shared/data`` beside a source checkout (a leading
    ``~`` is expanded to the home folder).  The error names both ways to point at it.
    """
    dirs, how = _candidate_dirs(data_home)
    for d in dirs:
        for cand in (d / name, d / "data" / name):
            if cand.is_file():
                return cand
    looked = ", ".join(str(d) for d in dirs)
    raise FileNotFoundError(
        f"{name} not found ({how}; looked in: {looked}). Pass data_home=<folder "
        f"holding {name}> or set the environment variable {DATA_ENV_VAR} to that folder."
    )


def load_clinc150(data_home=None, *, subset="all", include_oos=True, return_X_y=False):
    """CLINC150 intents as frozen all-MiniLM-L6-v2 sentence embeddings (384-d).

    150 in-scope intents plus out-of-scope ("oos") queries labelled ``-1``
    (Larson et al., EMNLP 2019; CC BY 3.0).  The file is not shipped with protolearn: it
    is read from the shared data folder (see :func:`find_data_file`).

    Parameters
    ----------
    data_home : str or path, default=None
        Folder holding ``clinc150_minilm.npz``; defaults to ``$PROTOLEARN_DATA``.
    subset : {"train", "val", "test", "all"}, default="all"
    include_oos : bool, default=True
        Keep the out-of-scope rows (``target == -1``).
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch` with ``data`` (n, 384) float32 (unit norm),
        ``target`` (n,) int64 (-1 = out-of-scope), ``split`` (n,) str, ``text`` (n,) str,
        ``target_names`` (150,) str, ``DESCR``.

    Examples
    --------
    With the data file present (the example is not run by the test suite, which may
    not have it)::

        >>> from protolearn.datasets import load_clinc150
        >>> X, y = load_clinc150(subset="test", return_X_y=True)  # doctest: +SKIP
        >>> X.shape, X.dtype                                       # doctest: +SKIP
        ((5500, 384), dtype('float32'))
    """
    if subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {_SUBSETS}; got {subset!r}.")
    path = find_data_file(_FILE, data_home)
    with np.load(path) as f:
        X, y, split, text, names = (
            f[k] for k in ("X", "y", "split", "text", "label_names")
        )
    mask = np.ones(y.shape, dtype=bool) if subset == "all" else split == subset
    if not include_oos:
        mask &= y >= 0
    X = X[mask].astype(np.float32)
    y = y[mask].astype(np.int64)
    if return_X_y:
        return X, y
    return Bunch(
        data=X,
        target=y,
        split=split[mask],
        text=text[mask],
        target_names=names,
        DESCR=(
            "CLINC150 (Larson et al., 2019, CC BY 3.0) utterances embedded with "
            "sentence-transformers all-MiniLM-L6-v2 (L2-normalised). target -1 marks "
            f"out-of-scope queries. Loaded from {path}."
        ),
    )
