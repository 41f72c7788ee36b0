"""Weights files that would run code when loaded: refused before anything in them runs, with
the offending global named; real checkpoints still load."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import STARTER
from tests.hostile.conftest import Snapshot, assert_refused
from workbench.errors import ValidationError
from workbench.extractors.weights import check_weights


class RunsCommand:
    """Unpickling this runs a shell command (``os.system``)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Evals:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


class Popens:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return subprocess.Popen, (["touch", str(self.marker)],)


class DownloadsThings:
    """A torch function, not a layer: torch.hub could fetch and run code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return torch.hub.load, (str(self.marker), "model")


def _starter_with(extra) -> dict:
    checkpoint = torch.load(STARTER, map_location="cpu", weights_only=False)  # ours: trusted
    checkpoint["extra"] = extra
    return checkpoint


# (id, what the file holds, the global named in the error)
ROWS = [
    ("os-system", lambda m: {"model": RunsCommand(m)}, "posix.system"),
    ("os-system-legacy-format", lambda m: {"model": RunsCommand(m)},
     "not in the zip format that torch.save has written"),
    ("eval", lambda m: Evals(m), "builtins.eval"),
    ("subprocess", lambda m: [Popens(m)], "commands.Popen"),  # pickle's Python 2 name
    ("torch-function", lambda m: {"model": DownloadsThings(m)}, "torch.hub.load"),
    ("yolo-checkpoint-with-a-payload", lambda m: _starter_with(RunsCommand(m)), "posix.system"),
]


@pytest.mark.parametrize(("make", "named"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_models_add_refuses_code_in_a_checkpoint_before_it_runs(cli, loaded_home, tmp_path,
                                                                make, named, request):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    legacy = "legacy" in request.node.callspec.id
    torch.save(make(marker), path, _use_new_zipfile_serialization=not legacy)
    before = Snapshot.of(loaded_home)
    outcome = cli(loaded_home, "models", "add", path)
    assert_refused(outcome, named if legacy else f"refers to '{named}'")
    assert legacy or "loading it could run code, so it was not loaded" in outcome.err
    assert not marker.exists(), "the checkpoint's code ran"
    assert before.changes(Snapshot.of(loaded_home)) == {}


def test_a_plain_pickle_is_not_a_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(RunsCommand(marker)))
    with pytest.raises(ValidationError, match="is not a loadable PyTorch checkpoint"):
        check_weights(path)
    assert not marker.exists()


def test_real_checkpoints_pass(tmp_path):
    check_weights(STARTER)
    torch.save({"weight": torch.zeros(3)}, tmp_path / "state.pt")  # a plain state dict
    check_weights(tmp_path / "state.pt")
