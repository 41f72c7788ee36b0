"""The optional CLIP embedder loads only real local weights, and embeds images and text."""

import json

import numpy as np
import pytest

from workbench.errors import ConfigError

TINY = {  # a small open_clip architecture, so the test builds a real checkpoint in a second
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4,
                 "layers": 2},
}


@pytest.fixture
def tiny_clip_checkpoint(tmp_path):
    import open_clip
    import torch

    config = tmp_path / "tiny-clip-test.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    model = open_clip.create_model("tiny-clip-test")
    path = tmp_path / "tiny_clip.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def test_choosing_clip_without_weights_is_a_clear_error(wb):
    with pytest.raises(ConfigError, match="WORKBENCH_CLIP_WEIGHTS"):
        wb.registry.register_clip()
    assert wb.registry.list() == []


def test_a_missing_weights_file_is_named(wb, tmp_path):
    wb.settings.clip_weights = tmp_path / "nope.pt"
    with pytest.raises(ConfigError, match="nope.pt does not exist"):
        wb.registry.register_clip()


def test_clip_from_a_local_checkpoint_embeds_images_and_text(wb, tiny_clip_checkpoint):
    wb.settings.clip_model = "tiny-clip-test"
    wb.settings.clip_weights = tiny_clip_checkpoint
    version = wb.registry.register_clip()
    assert version.key == "clip_embedder@1.0.0"
    assert version.spec.feature("image_embedding").embedding_dim == 32
    extractor = wb.registry.load_extractor(version)
    images = [np.full((48, 64, 3), v, dtype=np.uint8) for v in (20, 200)]
    out = extractor.process(images)
    assert [o["image_embedding"].shape for o in out] == [(32,), (32,)]
    text = extractor.embed_text(["a red circle", "a star"])
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    # The same checkpoint gives the same vectors: the weights were really loaded.
    again = wb.registry.load_extractor(version).process(images[:1])[0]["image_embedding"]
    np.testing.assert_allclose(again, out[0]["image_embedding"], rtol=1e-5, atol=1e-6)
