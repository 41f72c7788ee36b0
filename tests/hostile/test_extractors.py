"""Custom extractors that misbehave while they are checked: each is refused with its reason,
nothing is registered and no copy of its code is left in the workspace."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from tests.extractors.test_custom import GOOD_CODE, SPEC
from tests.hostile.conftest import Snapshot
from tests.hostile.test_weights import RunsCommand
from workbench import Workbench
from workbench.errors import ValidationError


def _zip(tmp: Path, files: dict[str, bytes | str], name="ext.zip") -> Path:
    archive = tmp / name
    with zipfile.ZipFile(archive, "w") as zf:
        for file, data in files.items():
            zf.writestr(file, data)
    return archive


def _manifest(entrypoint="colour:ColourStats", spec=SPEC) -> str:
    return json.dumps({"spec": spec, "entrypoint": entrypoint})


def _with_marker(code: str, marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()\n" + code


def _evil_weights(tmp: Path, marker: Path) -> bytes:
    path = tmp / "evil.pt"
    torch.save({"model": RunsCommand(marker)}, path)
    return path.read_bytes()


# (id, the zip's files given a marker path, the error's first line)
ROWS = [
    ("sys-exit-at-import", lambda tmp, m: {"e/extractor.json": _manifest(), "e/colour.py":
                                           "import sys\nsys.exit(3)\n" + GOOD_CODE},
     "it called sys.exit(3)"),
    ("sys-exit-in-load", lambda tmp, m: {"e/extractor.json": _manifest(), "e/colour.py":
                                         GOOD_CODE.replace("self.loaded = True",
                                                           "import sys; sys.exit('bye')")},
     "it called sys.exit('bye')"),
    ("raises-in-process", lambda tmp, m: {"e/extractor.json": _manifest(), "e/colour.py":
                                          GOOD_CODE.replace("out = []", "1 / 0")},
     "failed its test run and was not registered"),
    ("pickled-code-in-its-weights", lambda tmp, m: {
        "e/extractor.json": _manifest(), "e/colour.py": _with_marker(GOOD_CODE, m),
        "e/weights/model.pt": _evil_weights(tmp, m)},
     "weights/model.pt refers to 'posix.system'"),
    ("no-manifest", lambda tmp, m: {"e/colour.py": GOOD_CODE},
     "must hold exactly one extractor.json, found 0"),
    ("two-manifests", lambda tmp, m: {"a/extractor.json": _manifest(),
                                      "b/extractor.json": _manifest()},
     "must hold exactly one extractor.json, found 2"),
    ("manifest-not-json", lambda tmp, m: {"e/extractor.json": "{spec:"},
     "extractor.json is not valid JSON"),
    ("entrypoint-without-colon", lambda tmp, m: {"e/extractor.json": _manifest("colour"),
                                                 "e/colour.py": GOOD_CODE},
     "'entrypoint' must look like 'module:Class'"),
    ("entrypoint-a-number", lambda tmp, m: {"e/extractor.json": _manifest(7),
                                            "e/colour.py": GOOD_CODE},
     "'entrypoint' must look like 'module:Class'"),
    ("entrypoint-module-missing", lambda tmp, m: {"e/extractor.json": _manifest("nope:X")},
     "entrypoint module 'nope' not found"),
    ("entrypoint-class-missing", lambda tmp, m: {"e/extractor.json": _manifest("colour:Nope"),
                                                 "e/colour.py": GOOD_CODE},
     "defines no class 'Nope'"),
    ("zip-slip", lambda tmp, m: {"../extractor.json": _manifest()}, "unsafe path"),
    ("not-a-zip", None, "is neither a folder nor a zip archive"),
]


@pytest.mark.parametrize(("files", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_refused_and_nothing_left_behind(cli, loaded_home, tmp_path, files, message):
    marker = tmp_path / "pwned"
    if files is None:
        archive = tmp_path / "ext.zip"
        archive.write_text("not a zip")
    else:
        archive = _zip(tmp_path, files(tmp_path, marker))
    before = Snapshot.of(loaded_home)
    outcome = cli(loaded_home, "extractors", "add", archive)
    assert outcome.code == 1, outcome.out
    first = outcome.err.splitlines()[0]
    assert first.startswith("error: ") and message in outcome.err, outcome.err
    assert before.changes(Snapshot.of(loaded_home)) == {}
    wb = Workbench.open(loaded_home)
    assert not (wb.home / "models" / "colour_stats").exists()
    assert [v.key for v in wb.registry.list()] == ["yolo_detector@1.0.0"]
    # (the row with pickled weights writes the marker when its code is imported)
    assert not marker.exists(), "the extractor's code ran before its weights were checked"


def test_sys_exit_reaches_the_cli_as_one_message(tmp_path, loaded_home):
    """Before, the CLI ended silently with the extractor's exit code."""
    import subprocess
    import sys

    from tests.conftest import REPO

    archive = _zip(tmp_path, {"e/extractor.json": _manifest(),
                              "e/colour.py": "import sys\nsys.exit(0)\n"})
    result = subprocess.run([sys.executable, "-m", "workbench", "--home", str(loaded_home),
                             "extractors", "add", str(archive)], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.startswith("error: custom extractor colour_stats@0.1.0 failed its "
                                    "test run and was not registered")
    assert "it called sys.exit(0)" in result.stderr


def test_the_python_api_raises_a_validation_error(tmp_path):
    wb = Workbench.open(tmp_path / "ws")
    archive = _zip(tmp_path, {"e/extractor.json": _manifest(),
                              "e/colour.py": "raise SystemExit(5)\n"})
    with pytest.raises(ValidationError, match=r"it called sys.exit\(5\)"):
        wb.registry.register_custom(archive)
    assert not (wb.home / "models" / "colour_stats").exists()
