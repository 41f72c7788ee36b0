"""Custom extractors from a folder or zip: good ones register and run, broken ones don't."""

import json
import zipfile

import pytest

from workbench.errors import ValidationError

SPEC = {
    "feature_extractor_name": "colour_stats",
    "version": "0.1.0",
    "features": [
        {"feature_type": "json", "feature_name": "mean_colour"},
        {"feature_type": "embedding", "feature_name": "colour_embedding", "embedding_dim": 3,
         "distance_metric": "cosine"},
    ],
    "output_schema": {"mean_colour": {"type": "array", "items": {"type": "number"},
                                      "minItems": 3, "maxItems": 3}},
}

GOOD_CODE = '''
import numpy as np
from workbench.extractors.base import Extractor


class ColourStats(Extractor):
    def load(self, context):
        self.loaded = True

    def process(self, images):
        out = []
        for image in images:
            mean = image.reshape(-1, 3).mean(axis=0)
            out.append({"mean_colour": [float(v) for v in mean],
                        "colour_embedding": (mean + 1) / np.linalg.norm(mean + 1)})
        return out
'''

BROKEN_CODE = GOOD_CODE.replace("self.loaded = True",
                                "raise RuntimeError('weights for colour_stats are missing')")


def make_extractor(tmp_path, code=GOOD_CODE, spec=SPEC, as_zip=True, name="ext"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "extractor.json").write_text(json.dumps(
        {"spec": spec, "entrypoint": "colour:ColourStats"}))
    (folder / "colour.py").write_text(code)
    if not as_zip:
        return folder
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in folder.iterdir():
            zf.write(file, f"colour_stats/{file.name}")
    return archive


def test_a_good_zip_registers_and_runs_in_a_batch(wb, tmp_path, shapeworld_images):
    version = wb.registry.register_custom(make_extractor(tmp_path))
    assert version.key == "colour_stats@0.1.0" and version.kind == "custom"
    wb.buckets.create("b")
    wb.ingest.run("b", [shapeworld_images])
    wb.collections.create("colours", ["b"], "colour_stats")
    job = wb.detection.run("colours")
    assert job.result["documents"] == 6
    uri = version.feature_uri("colour_embedding")
    assert wb.vectors.count(uri) == 6


def test_a_folder_works_too(wb, tmp_path):
    assert wb.registry.register_custom(make_extractor(tmp_path, as_zip=False)).kind == "custom"


def test_a_broken_extractor_shows_its_traceback_and_is_not_registered(wb, tmp_path):
    with pytest.raises(ValidationError) as info:
        wb.registry.register_custom(make_extractor(tmp_path, code=BROKEN_CODE))
    message = str(info.value)
    assert "failed its test run and was not registered" in message
    assert "weights for colour_stats are missing" in message and "Traceback" in message
    assert wb.registry.list() == []


def test_outputs_that_break_the_spec_are_refused(wb, tmp_path):
    code = GOOD_CODE.replace("(mean + 1) / np.linalg.norm(mean + 1)", "np.ones(5)")
    with pytest.raises(ValidationError, match=r"shape \(5,\); the spec declares \(3,\)"):
        wb.registry.register_custom(make_extractor(tmp_path, code=code))


def test_a_misspelled_spec_key_names_the_right_one(wb, tmp_path):
    spec = json.loads(json.dumps(SPEC))
    spec["features"][1]["dimensions"] = spec["features"][1].pop("embedding_dim")
    with pytest.raises(ValidationError, match="did you mean 'embedding_dim'"):
        wb.registry.register_custom(make_extractor(tmp_path, spec=spec))


def test_a_zip_with_an_unsafe_path_is_refused(wb, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../extractor.json", "{}")
    with pytest.raises(ValidationError, match="unsafe path"):
        wb.registry.register_custom(archive)
