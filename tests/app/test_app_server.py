"""`workbench app` serves through workbench.app_server, which imports the pages' libraries
before Streamlit serves, so that a user's first visit to a page does not wait for them."""

from __future__ import annotations

import sys

from typer.testing import CliRunner


def test_workbench_app_execs_the_warming_server(monkeypatch):
    from workbench.cli import app

    calls = []
    monkeypatch.setattr("os.execv", lambda path, argv: calls.append(argv))
    monkeypatch.setattr("os.chdir", lambda path: None)
    result = CliRunner().invoke(app, ["app", "--port", "8765"])
    assert result.exit_code == 0, result.output
    (argv,) = calls
    assert argv[:3] == [sys.executable, "-m", "workbench.app_server"]
    assert argv[3:] == ["--server.address", "127.0.0.1", "--server.port", "8765"]


def test_the_warm_up_imports_every_page_module_and_library():
    from workbench.app_server import LIBRARIES, warm_imports

    assert warm_imports() == []
    assert all(name in sys.modules for name in LIBRARIES)
    assert "workbench.ui.stats" in sys.modules and "polars" in sys.modules
