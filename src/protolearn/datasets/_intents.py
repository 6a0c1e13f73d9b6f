"""A 2,000-utterance sample of CLINC150 (raw text) that ships with protolearn."""

import csv
import gzip
import io
from importlib import resources

import numpy as np
from sklearn.utils import Bunch

_FILE = "intents_sample.csv.gz"
_SUBSETS = ("train", "val", "test", "all")
OOS = "oos"


def load_intents_sample(*, subset="all", include_oos=True, return_X_y=False):
    """Raw CLINC150 utterances with their intents: 50 intents and out-of-scope queries.

    A sample that ships with the package (CC BY 3.0, Larson et al., EMNLP 2019; see
    ``protolearn/datasets/data/README.md``): the first 20 train and 10 test utterances
    of every third of the 150 intents (1,500 rows) and 500 out-of-scope queries
    (100 train, 100 val, 300 test) that belong to none of them.  These are the texts
    behind the vectors of :func:`load_clinc150`, for pipelines that start from raw
    text (:class:`~protolearn.embed.SentenceEmbedder`).

    Parameters
    ----------
    subset : {"train", "val", "test", "all"}, default="all"
        The source's split (in-scope rows have no "val" rows).
    include_oos : bool, default=True
        Keep the out-of-scope rows (``target == -1``, ``intent == "oos"``).
    return_X_y : bool, default=False
        Return ``(texts, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch` with ``data`` (n,) str texts, ``target`` (n,)
        int64 (index into ``target_names``; -1 = out-of-scope), ``intent`` (n,) str
        (the intent name, ``"oos"`` for out-of-scope), ``split`` (n,) str,
        ``target_names`` (50,) str (sorted), ``DESCR``.

    Examples
    --------
    >>> from protolearn.datasets import load_intents_sample
    >>> d = load_intents_sample(subset="train", include_oos=False)
    >>> d.data.shape, d.target_names.shape, str(d.data[0])
    ((1000,), (50,), 'can i make a reservation for redrobin')
    >>> str(d.target_names[d.target[0]])
    'accept_reservations'
    """
    if subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {_SUBSETS}; got {subset!r}.")
    raw = resources.files("protolearn.datasets").joinpath("data", _FILE).read_bytes()
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw)), "utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    text, intent, split = (np.asarray(c, dtype=str) for c in zip(*rows))
    names = np.unique(intent[intent != OOS])
    target = np.full(intent.shape, -1, dtype=np.int64)
    known = intent != OOS
    target[known] = np.searchsorted(names, intent[known])
    mask = np.ones(target.shape, bool) if subset == "all" else split == subset
    if not include_oos:
        mask &= known
    if return_X_y:
        return text[mask], target[mask]
    return Bunch(
        data=text[mask],
        target=target[mask],
        intent=intent[mask],
        split=split[mask],
        target_names=names,
        DESCR=(
            "A 2,000-utterance sample of CLINC150 (Larson et al., EMNLP 2019; CC BY "
            "3.0): 50 intents (20 train + 10 test utterances each) and 500 "
            "out-of-scope queries (target -1, intent 'oos'). Raw lower-cased text."
        ),
    )
