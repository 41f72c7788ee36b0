"""``workbench app``: serve the Streamlit app."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from workbench.errors import WorkbenchError


def run_app(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501,
) -> None:
    """Serve the Streamlit app on 127.0.0.1."""
    root = Path(__file__).resolve().parents[2]  # the folder that holds the workbench package
    if not (root / "app.py").exists():
        raise WorkbenchError(f"app.py not found beside the workbench package in {root}")
    os.chdir(root)
    # Streamlit, with the pages' libraries imported before it serves (workbench.app_server):
    # a user's first visit to a page does not wait for them.
    os.execv(sys.executable, [sys.executable, "-m", "workbench.app_server",
                              "--server.address", "127.0.0.1", "--server.port", str(port)])
