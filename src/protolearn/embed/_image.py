"""Image embeddings from a CLIP-style vision model (Hugging Face transformers)."""

import os
from pathlib import Path

import numpy as np

from ..utils._sklearn_compat import StrOptions
from ._base import (
    BaseEmbedder,
    _is_pil,
    as_list,
    hub_load_error,
    hub_offline_mode,
    import_backend,
)
from ._cache import content_digest

DEFAULT_IMAGE_MODEL = "openai/clip-vit-base-patch32"
AUTO_PROGRESS = 256


def _open_rgb(x):
    Image = import_backend("PIL.Image", "ImageEmbedder")
    if _is_pil(x):
        return x.convert("RGB")
    with Image.open(x) as im:
        return im.convert("RGB")


class ImageEmbedder(BaseEmbedder):
    """Embed images with a frozen CLIP-style vision model (transformers backend).

    A scikit-learn transformer: ``transform`` takes a list, array or pandas Series of
    image file paths or PIL images and returns an (n_samples, dim) float array.  The
    model runs through Hugging Face ``transformers`` (``AutoModel`` and
    ``AutoImageProcessor``; the processor falls back to its PIL implementation when
    torchvision is absent), which imports beside the CPU ``torch==2.13.0``.  CLIP
    models give their projected image embedding (``get_image_features``); other vision
    models (ViT, DINOv2, ...) their pooled output, else the first token.  The
    ``open_clip`` and ``timm`` backends are not wrapped: both need torchvision, whose
    wheels need torch 2.14.1.  Needs ``pip install 'protolearn[embed]'``.

    Read more in the :ref:`User Guide <embed>`.

    Parameters
    ----------
    model : str, path or transformers model, default="openai/clip-vit-base-patch32"
        A Hugging Face hub name (from the local hub cache, or downloaded unless
        ``HF_HUB_OFFLINE=1``), a folder saved with ``save_pretrained``, or a loaded
        ``transformers`` vision model, used as it is (identified for the cache by a
        digest of its weights; copied by ``clone``; cannot be saved with
        ``skops.io``, which fails on torch modules: prefer a name or a folder).
    processor : None or image processor, default=None
        Turns images into ``pixel_values``.  None loads the one saved with ``model``
        (for a model object: a CLIP processor at the model's image size).
    device : str, default=None
        Torch device; None picks CUDA when available, else the CPU.
    batch_size : int, default=32
        Images per forward pass.
    normalize : bool, default=True
        L2-normalise the embeddings.
    dtype : {"float32", "float64"}, default="float32"
        Output dtype.
    memory : None, str, path or joblib.Memory, default=None
        Folder of a disk cache keyed by the model id and each image's content (file
        bytes, or a PIL image's pixels).
    show_progress : bool or "auto", default="auto"
        Progress bar while embedding; "auto" shows it from 256 new images on.

    Attributes
    ----------
    model_id_ : str
        What the embeddings of this model are cached under.

    See Also
    --------
    SentenceEmbedder : the same for texts.

    References
    ----------
    A. Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", ICML 2021.

    Examples
    --------
    A tiny randomly initialised CLIP (a real one is named by its hub id or folder):

    >>> from PIL import Image
    >>> from transformers import CLIPConfig, CLIPModel
    >>> from protolearn.embed import ImageEmbedder
    >>> cfg = CLIPConfig(
    ...     text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    ...                      num_attention_heads=2),
    ...     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    ...                        num_attention_heads=2, image_size=32, patch_size=8),
    ...     projection_dim=8)
    >>> images = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    >>> Z = ImageEmbedder(CLIPModel(cfg), device="cpu").fit_transform(images)
    >>> Z.shape, Z.dtype
    ((2, 8), dtype('float32'))
    """

    _parameter_constraints = {
        **BaseEmbedder._parameter_constraints,
        "processor": "no_validation",
        "show_progress": ["boolean", StrOptions({"auto"})],
    }
    _kind = "image"

    def __init__(
        self,
        model=DEFAULT_IMAGE_MODEL,
        *,
        processor=None,
        device=None,
        batch_size=32,
        normalize=True,
        dtype="float32",
        memory=None,
        show_progress="auto",
    ):
        self.model = model
        self.processor = processor
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self.dtype = dtype
        self.memory = memory
        self.show_progress = show_progress

    def _check_inputs(self, X):
        items = as_list(X, self._kind)
        for i, x in enumerate(items):
            if _is_pil(x):
                continue
            if not isinstance(x, (str, os.PathLike)):
                raise ValueError(
                    "ImageEmbedder expects image file paths or PIL images; the input "
                    f"at position {i} is of type {type(x).__name__}."
                )
            if not Path(x).is_file():
                raise ValueError(f"Image file {str(x)!r} (position {i}) not found.")
        return items

    def _digest(self, x):
        if _is_pil(x):
            head = f"{x.mode}:{x.size}".encode()
            return content_digest(head + x.tobytes())
        return content_digest(Path(x).read_bytes())

    def _is_object(self):
        return not isinstance(self.model, (str, os.PathLike))

    def _resolve(self):
        model = self.model
        proc = ""
        if self.processor is not None:
            to_json = getattr(self.processor, "to_json_string", None)
            proc = "|processor:" + (to_json() if to_json else repr(self.processor))
            proc = content_digest(proc.encode()).hex()
        if not self._is_object():
            path = Path(model).expanduser()
            if path.is_dir():
                path = path.resolve()
                from ._text import _folder_digest

                return f"folder:{path}:{_folder_digest(path)}{proc}", path
            if not isinstance(model, str) or model.startswith((".", "/", "~")):
                raise ValueError(f"model folder {str(model)!r} does not exist.")
            return f"hub:{model}{proc}", model
        if not hasattr(model, "state_dict"):
            raise TypeError(
                "model must be a hub name, a folder or a loaded transformers vision "
                f"model; got {type(model).__name__}."
            )
        return f"object:{self._hash_module(model)}{proc}", model

    def fit(self, X, y=None):
        import_backend("transformers", "ImageEmbedder")
        import_backend("PIL.Image", "ImageEmbedder")
        return super().fit(X, y)

    fit.__doc__ = BaseEmbedder.fit.__doc__

    def _load(self, device):
        transformers = import_backend("transformers", "ImageEmbedder")
        if self._is_object():
            model = self.model
            processor = self.processor
            if processor is None:
                size = _image_size(model.config)
                processor = transformers.CLIPImageProcessorPil(
                    size={"shortest_edge": size},
                    crop_size={"height": size, "width": size},
                )
            if self.device is not None:
                model.to(device)
        else:
            source = self._resolve()[1]
            try:
                with hub_offline_mode() as local:
                    model = transformers.AutoModel.from_pretrained(
                        str(source), local_files_only=local
                    ).to(device)
                    processor = self.processor
                    if processor is None:
                        processor = transformers.AutoImageProcessor.from_pretrained(
                            str(source), local_files_only=local
                        )
            except OSError as exc:
                if isinstance(source, Path):
                    raise
                raise hub_load_error(source, exc) from exc
        model.eval()
        return model, processor

    def _embed(self, loaded, items, device):
        import torch

        model, processor = loaded
        show = self.show_progress
        if show == "auto":
            show = len(items) >= AUTO_PROGRESS
        starts = range(0, len(items), self.batch_size)
        if show:
            tqdm = import_backend("tqdm", "show_progress")
            starts = tqdm.tqdm(starts, desc="images", unit="batch")
        dev = next(model.parameters()).device
        dt = next(model.parameters()).dtype
        out = []
        with torch.inference_mode():
            for a in starts:
                batch = [_open_rgb(x) for x in items[a : a + self.batch_size]]
                pixels = processor(images=batch, return_tensors="pt")["pixel_values"]
                feats = _image_features(model, pixels.to(device=dev, dtype=dt))
                out.append(feats.float().cpu().numpy())
        return np.concatenate(out)

    @staticmethod
    def _model_dim(loaded):
        model, _ = loaded
        cfg = model.config
        for name in ("projection_dim", "hidden_size"):
            if getattr(cfg, name, None):
                return int(getattr(cfg, name))
        return int(cfg.vision_config.hidden_size)


def _image_size(config):
    vision = getattr(config, "vision_config", config)
    return int(getattr(vision, "image_size", 224))


def _image_features(model, pixels):
    if hasattr(model, "get_image_features"):
        out = model.get_image_features(pixel_values=pixels)
        if not hasattr(out, "shape"):  # transformers >= 5 returns an output object
            out = out.pooler_output
        return out
    out = model(pixel_values=pixels)
    for name in ("image_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    return out.last_hidden_state[:, 0]
