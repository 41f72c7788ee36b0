"""The interface every extractor implements, built in or custom.

An extractor is loaded once per batch run and then given batches of decoded images::

    class MyExtractor(Extractor):
        def load(self, context: LoadContext) -> None:
            self.model = ...                  # weights at context.weights, on context.device

        def process(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
            return [{"my_feature": ...} for image in images]   # one dict per image

Images are RGB ``uint8`` arrays of shape ``(height, width, 3)`` with EXIF orientation
applied. Each dict holds every feature the spec declares. A detector also returns a json
feature named ``detections``: a list of ``{"class", "confidence", "bbox": {"x", "y", "w",
"h"}}`` (pixel centre and size); an embedding feature with ``granularity: detection`` then
holds one row per detection, in the same order.

A custom extractor is code that you choose to run: the workbench imports and executes it
with your permissions, exactly like any Python package you install.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.extractors.spec import ExtractorSpec


@dataclass(frozen=True)
class LoadContext:
    """What ``load`` gets: the spec, the weights (if the version has any) and where to run."""

    spec: ExtractorSpec
    weights: Path | None
    device: str
    params: dict[str, Any] = field(default_factory=dict)


class Extractor:
    """Base class of extractors; see the module docstring for the contract."""

    spec: ExtractorSpec

    def load(self, context: LoadContext) -> None:
        """Load models once. Called before the first ``process``."""

    def process(self, images: list[Any]) -> list[dict[str, Any]]:
        """Turn a batch of RGB images into one dict of features per image."""
        raise NotImplementedError
