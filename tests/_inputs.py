"""Fit data for the test modules that loop over every estimator of ``all_estimators()``
(persistence, bad input), chosen from the estimator's scikit-learn tags so that new
estimators need no entry here when their tags describe their input:

- a numeric 2-D array (``input_tags.two_d_array``, the default): iris, or digits for
  the estimators that model directions only;
- raw strings (``input_tags.string`` without ``two_d_array``, e.g. ``SentenceEmbedder``):
  short sentences;
- anything else: an entry in ``RAW_INPUTS`` (name -> function returning n inputs).
"""

import numpy as np
from sklearn.datasets import load_digits, load_iris
from sklearn.utils import get_tags

# Estimators that model directions only (they L2-normalise their input): iris's four
# features do not separate its classes by direction alone (see tests/test_common.py).
DIRECTIONAL = {"PrototypeMixtureDetector"}

SENTENCES = [
    "book a table for two tonight",
    "what is the weather in paris",
    "transfer fifty dollars to my savings",
    "play some jazz music",
    "set an alarm for seven am",
    "how many calories are in an apple",
]


def _images(n):
    from PIL import Image

    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        for _ in range(n)
    ]


# Raw inputs that the tags alone do not describe: {estimator name: n -> inputs}.
RAW_INPUTS = {"ImageEmbedder": _images}


def takes_numeric_array(estimator):
    """True when the estimator's input is a numeric 2-D array (its tags say so)."""
    return get_tags(estimator).input_tags.two_d_array


def numeric_estimators():
    """``all_estimators()`` less those whose tags say their input is raw (text,
    images): the modules that feed numeric arrays loop over these; the raw-input
    embedders have their own tests (tests/test_embed.py)."""
    from protolearn.utils import all_estimators

    return [(n, c) for n, c in all_estimators() if takes_numeric_array(c())]


def raw_inputs(estimator, n):
    """`n` raw inputs for an estimator whose input is not a numeric 2-D array."""
    name = type(estimator).__name__
    if name in RAW_INPUTS:
        return RAW_INPUTS[name](n)
    if get_tags(estimator).input_tags.string:
        return [SENTENCES[i % len(SENTENCES)] for i in range(n)]
    raise AssertionError(
        f"{name} takes neither a numeric 2-D array nor strings (its input_tags); add "
        "an entry to RAW_INPUTS in tests/_inputs.py"
    )


def fit_data(estimator):
    """``(X, y)`` to fit `estimator` on (float32 numeric X, or raw inputs)."""
    if not takes_numeric_array(estimator):
        X = raw_inputs(estimator, 6)
        return X, np.arange(len(X)) % 2
    if type(estimator).__name__ in DIRECTIONAL:
        X, y = load_digits(return_X_y=True)
        return X.astype(np.float32), y
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y
