"""Text → normalised vectors with a sentence-transformers model (packaged MiniLM by default)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmrec.config import EncoderConfig
from llmrec.data.assets import resolve_model
from llmrec.errors import AssetError


def pick_device(requested: str = "auto") -> str:
    """'auto' → cuda if present, else mps, else cpu; an explicit device must exist here."""
    import torch

    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise AssetError(f"encoder.device={requested} but torch sees no CUDA device here: use auto or cpu")
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Encoder:
    """Batched, L2-normalised embeddings; cosine similarity is then an inner product."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.config = config or EncoderConfig()
        self.device = pick_device(self.config.device)
        self.model_id = self.config.model
        import torch

        self.model = SentenceTransformer(resolve_model(self.config.model), device=self.device)
        self.model.to(getattr(torch, self.config.dtype))
        self.model.max_seq_length = min(self.config.max_seq_length, self.model.max_seq_length or 512)
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Encode texts into a float32 array of shape (len(texts), dim), rows of unit length."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed(self, text: str) -> np.ndarray:
        """One request's vector (the Serve deployment batches concurrent calls into one `encode`)."""
        return self.encode([text])[0]
