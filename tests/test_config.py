from pathlib import Path

import pytest

from workbench.config import load_settings, resolve_device
from workbench.errors import ConfigError


def test_defaults_put_everything_in_the_workspace(monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    settings = load_settings()
    assert settings.home == Path("data/workspace")
    assert settings.db_url.endswith("data/workspace/workbench.db")
    assert settings.db_url.startswith("sqlite:///")
    assert settings.device == "auto"


def test_environment_variables_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", "sqlite:////elsewhere/meta.db")
    monkeypatch.setenv("WORKBENCH_MAX_IMAGE_PIXELS", "1234")
    settings = load_settings()
    assert settings.home == tmp_path
    assert settings.db_url == "sqlite:////elsewhere/meta.db"
    assert settings.max_image_pixels == 1234


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), ("CPU", "cpu"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1"),
     ("gpu", ConfigError), ("cuda:x", ConfigError), ("tpu:0", ConfigError)],
)
def test_device_syntax(value, expected):
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="'auto', 'cpu' or 'cuda:N'"):
            load_settings(device=value)
    else:
        assert load_settings(device=value).device == expected


def test_bad_numbers_are_explained(monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="max_image_pixels"):
        load_settings()


def test_impossible_device_says_what_exists():
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match="cuda:7") as info:
        resolve_device("cuda:7")
    assert ("no CUDA device" in str(info.value)) if count == 0 else ("cuda:0" in str(info.value))
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda:0" if count else "cpu")


def test_environment_switches_keep_libraries_offline_and_inside_the_workspace(
    monkeypatch, tmp_path
):
    for name in ("YOLO_CONFIG_DIR", "YOLO_OFFLINE", "FIFTYONE_DATABASE_DIR",
                 "FIFTYONE_DO_NOT_TRACK", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    load_settings(home=tmp_path).apply_environment()
    import os

    assert os.environ["YOLO_OFFLINE"] == "1"
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["FIFTYONE_DO_NOT_TRACK"] == "true"
    assert os.environ["YOLO_CONFIG_DIR"].startswith(str(tmp_path.resolve()))
    assert os.environ["FIFTYONE_DATABASE_DIR"].startswith(str(tmp_path.resolve()))
