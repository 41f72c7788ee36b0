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
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", "app.py",
                              "--server.address", "127.0.0.1", "--server.port", str(port)])
