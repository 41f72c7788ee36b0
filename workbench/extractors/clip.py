"""Optional CLIP embedder (open-clip-torch): image embeddings that text can be searched against.

CLIP is used only when its weights are on this machine: a checkpoint file named by
``WORKBENCH_CLIP_WEIGHTS``, or an open_clip pretrained tag already in the Hugging Face cache
(``WORKBENCH_CLIP_PRETRAINED``). Without them, choosing CLIP is an error that says what to
do — never a silently random model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.errors import ConfigError
from workbench.extractors.base import Extractor, LoadContext
from workbench.extractors.spec import ExtractorSpec, parse_spec

NAME = "clip_embedder"


def clip_spec(version: str, dim: int, model_name: str) -> ExtractorSpec:
    """The spec of one registered CLIP version: one image embedding of ``dim`` values."""
    return parse_spec({
        "feature_extractor_name": NAME,
        "version": version,
        "description": f"open_clip {model_name} image embeddings (text-searchable)",
        "dependencies": ["open-clip-torch", "torch"],
        "features": [{"feature_type": "embedding", "feature_name": "image_embedding",
                      "embedding_dim": dim, "distance_metric": "cosine"}],
        "compute_profile": {"resource_type": "gpu", "fallback": "cpu"},
    })


def open_clip_model(model_name: str, weights: Path | str | None, device: str = "cpu"):
    """(model, preprocess, tokenizer) from a local checkpoint or a cached pretrained tag."""
    import open_clip

    if weights is None:
        raise ConfigError(
            f"CLIP ({model_name}) has no weights on this machine. Set WORKBENCH_CLIP_WEIGHTS "
            "to a local open_clip checkpoint (.pt/.bin/.safetensors), or "
            "WORKBENCH_CLIP_PRETRAINED to a pretrained tag already in the Hugging Face cache "
            "(e.g. 'laion2b_s34b_b79k' after downloading it on a machine with a network)"
        )
    if isinstance(weights, Path) and not weights.is_file():
        raise ConfigError(f"CLIP weights file {weights} does not exist")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(weights), device=device)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"could not load CLIP {model_name} from {weights} ({first}); check that the "
            "checkpoint matches WORKBENCH_CLIP_MODEL and, for a pretrained tag, that it is in "
            "the local cache (this machine may be offline)"
        ) from None
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(model_name)


class ClipEmbedder(Extractor):
    """The optional CLIP image embedder; text is embedded into the same space."""

    def __init__(self, spec: ExtractorSpec | None = None):
        if spec is not None:
            self.spec = spec

    def load(self, context: LoadContext) -> None:
        """Load open_clip from the version's weights file or cached pretrained tag."""
        self.spec = context.spec
        self.device = context.device
        weights = context.weights or context.params.get("pretrained")
        self.model, self.preprocess, self.tokenizer = open_clip_model(
            context.params["model"], weights, context.device)

    def process(self, images: list[Any]) -> list[dict[str, Any]]:
        """One L2-normalised ``image_embedding`` per image."""
        import torch
        from PIL import Image

        if not images:
            return []
        batch = torch.stack([self.preprocess(Image.fromarray(im)) for im in images])
        with torch.inference_mode():
            vectors = self.model.encode_image(batch.to(self.device))
            vectors = torch.nn.functional.normalize(vectors.float(), dim=1)
        return [{"image_embedding": row} for row in vectors.cpu().numpy()]

    def embed_text(self, texts: list[str]):
        """Unit vectors for text queries, in the same space as the image embeddings."""
        import torch

        with torch.inference_mode():
            vectors = self.model.encode_text(self.tokenizer(texts).to(self.device))
            return torch.nn.functional.normalize(vectors.float(), dim=1).cpu().numpy()
