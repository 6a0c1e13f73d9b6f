"""The bundled CLINC150 sample (raw text) and its data README."""

from importlib import resources

import numpy as np
import pytest

from protolearn.datasets import load_intents_sample


def test_intents_sample_content():
    d = load_intents_sample()
    assert d.data.shape == d.target.shape == d.intent.shape == d.split.shape == (2000,)
    assert d.target_names.shape == (50,) and list(d.target_names) == sorted(
        d.target_names
    )
    known = d.target >= 0
    np.testing.assert_array_equal(d.target_names[d.target[known]], d.intent[known])
    assert set(d.intent[~known]) == {"oos"}
    counts = {
        s: (int((known & (d.split == s)).sum()), int((~known & (d.split == s)).sum()))
        for s in ("train", "val", "test")
    }
    assert counts == {"train": (1000, 100), "val": (0, 100), "test": (500, 300)}
    # 20 train and 10 test utterances per intent
    assert set(np.bincount(d.target[known & (d.split == "train")])) == {20}
    assert set(np.bincount(d.target[known & (d.split == "test")])) == {10}
    X, y = load_intents_sample(subset="test", include_oos=False, return_X_y=True)
    assert X.shape == y.shape == (500,) and (y >= 0).all()
    assert all(isinstance(t, str) and t for t in X)
    with pytest.raises(ValueError, match="subset"):
        load_intents_sample(subset="dev")


def test_intents_sample_matches_clinc150_texts(clinc150):
    # every utterance is a CLINC150 utterance with the same intent and split
    from protolearn.datasets import load_clinc150

    full = load_clinc150()
    names = np.r_[full.target_names, ["oos"]]
    source = set(zip(full.text, names[full.target], full.split))
    d = load_intents_sample()
    assert set(zip(d.data, d.intent, d.split)) <= source


def test_data_readme_carries_attribution():
    text = (
        resources.files("protolearn.datasets").joinpath("data", "README.md").read_text()
    )
    for needle in ("CC BY 3.0", "Larson", "D19-1131", "Changes made"):
        assert needle in text
