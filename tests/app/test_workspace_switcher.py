"""The sidebar's workspace switcher: open another workspace or create one by path, come back
to a recent one, all in the running app; a bad path is a one-line error and the current
workspace stays."""

from __future__ import annotations

import json

import pytest

from tests.app.conftest import run_page
from workbench import Workbench
from workbench.errors import ValidationError
from workbench.ui import workspaces


@pytest.fixture
def config(tmp_path, monkeypatch):
    """The user's config folder, in the test's own folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "flywheel-workbench"


@pytest.fixture
def other(tmp_path):
    """A second workspace, with one bucket (the first has none)."""
    wb = Workbench.open(tmp_path / "other")
    wb.buckets.create("elsewhere")
    wb.close()
    return (tmp_path / "other").resolve()


def buckets_shown(at) -> str:
    return {m.label: m.value for m in at.metric}["Buckets"]


def workspace_shown(at) -> str:
    (caption,) = [c.value for c in at.sidebar.caption if c.value.startswith("Workspace ")]
    return caption.replace("\\", "")


def switch(at, path, button="ws_open"):
    at.sidebar.text_input(key="ws_path").input(str(path))
    return at.sidebar.button(key=button).click().run()


def test_open_another_workspace_then_come_back_to_a_recent_one(workspace, config, other):
    home = workspace.home.resolve()
    at = run_page("app.py")
    assert buckets_shown(at) == "0" and workspace_shown(at) == f"Workspace {home}"
    at = switch(at, other)
    assert not at.exception, [e.message for e in at.exception]
    assert buckets_shown(at) == "1" and workspace_shown(at) == f"Workspace {other}"
    assert json.loads((config / "recent_workspaces.json").read_text()) == [str(other),
                                                                          str(home)]
    at.switch_page("pages/1_Ingest.py").run()  # another page, the same session's workspace
    assert not at.exception, [e.message for e in at.exception]
    assert workspace_shown(at) == f"Workspace {other}"

    at.switch_page("app.py").run()
    assert at.sidebar.selectbox(key="ws_recent").options == [str(home)]
    at.sidebar.button(key="ws_open_recent").click().run()
    assert buckets_shown(at) == "0" and workspace_shown(at) == f"Workspace {home}"


def test_create_a_workspace_by_path(workspace, config, tmp_path):
    at = run_page("app.py")
    target = tmp_path / "fresh" / "cameras"
    at = switch(at, target, "ws_create")
    assert not at.exception, [e.message for e in at.exception]
    assert workspace_shown(at) == f"Workspace {target.resolve()}"
    assert (target / "workbench.db").is_file()
    assert buckets_shown(at) == "0"
    assert at.button(key="load_demo"), "an empty workspace offers the demo"


@pytest.mark.parametrize(("typed", "button", "error"), [
    ("missing", "ws_open", "there is no folder"),
    ("a-file.txt", "ws_open", "is a file, not a workspace folder"),
    ("not-a-workspace", "ws_open", "is not a workspace (it has no workbench.db)"),
    ("other", "ws_create", "is already a workspace; press Open"),
    ("not-a-workspace", "ws_create", "already holds other files"),
    ("", "ws_open", "type the folder of a workspace"),
    ("relative/path", "ws_open", "is a relative path"),
])
def test_a_bad_path_is_a_clear_error_and_the_workspace_stays(workspace, config, other,
                                                             tmp_path, typed, button, error):
    (tmp_path / "a-file.txt").write_text("not a folder")
    (tmp_path / "not-a-workspace").mkdir()
    (tmp_path / "not-a-workspace" / "notes.txt").write_text("mine")
    home = workspace.home.resolve()
    at = run_page("app.py")
    path = typed if typed in ("", "relative/path") else tmp_path / typed
    at = switch(at, path, button)
    assert not at.exception, [e.message for e in at.exception]
    (shown,) = at.sidebar.error
    assert error in shown.value.replace("\\", "")
    assert workspace_shown(at) == f"Workspace {home}" and buckets_shown(at) == "0"
    assert not (tmp_path / "missing").exists(), "opening never creates"
    assert not (tmp_path / "not-a-workspace" / "workbench.db").exists()
    assert not (config / "recent_workspaces.json").exists()


def test_the_recent_list_survives_a_foreign_file_and_forgets_removed_folders(config, tmp_path):
    config.mkdir(parents=True)
    (config / "recent_workspaces.json").write_text("{not json")
    assert workspaces.recent() == []
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.mkdir()
    gone.mkdir()
    workspaces.remember(gone, kept)
    gone.rmdir()
    assert workspaces.recent() == [str(kept)]
    workspaces.remember(*(tmp_path / f"w{i}" for i in range(15)))
    assert len(json.loads((config / "recent_workspaces.json").read_text())) == \
        workspaces.RECENT_LIMIT


def test_check_path_accepts_a_workspace_and_a_new_folder(tmp_path):
    Workbench.open(tmp_path / "ws").close()
    assert workspaces.check_path(str(tmp_path / "ws"), create=False) == \
        (tmp_path / "ws").resolve()
    assert workspaces.check_path(f"  {tmp_path / 'new'}  ", create=True) == \
        (tmp_path / "new").resolve()
    with pytest.raises(ValidationError, match="press Create"):
        workspaces.check_path(str(tmp_path / "new"), create=False)
