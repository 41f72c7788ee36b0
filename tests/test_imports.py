"""`import workbench` must stay light: no heavy library is loaded until a service needs it."""

import subprocess
import sys
from pathlib import Path

import workbench

HEAVY = ("torch", "ultralytics", "chromadb", "fiftyone", "umap", "hdbscan", "streamlit", "cv2")
ROOT = Path(workbench.__file__).parent


def _core_modules() -> list[str]:
    """Every module of the package but the pages' helpers (``workbench.ui``, which is
    Streamlit) and the migration scripts."""
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith("workbench.ui") and "migrations" not in parts \
                and parts[-1] != "__main__":
            names.append(name)
    return names


def test_importing_every_core_module_loads_no_heavy_library():
    modules = _core_modules()
    assert {"workbench.clusters", "workbench.taxonomies", "workbench.evaluation",
            "workbench.fiftyone_sync", "workbench.training", "workbench.rules",
            "workbench.stats", "workbench.references", "workbench.export",
            "workbench.retrievers", "workbench.annotations", "workbench.webhooks",
            "workbench.cli"} <= set(modules)
    code = (
        f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by the core: {out.stdout.strip()}"


def test_opening_a_workspace_loads_no_heavy_library(tmp_path):
    code = (
        "import sys\nfrom workbench import Workbench\n"
        f"wb = Workbench.open({str(tmp_path / 'ws')!r})\nwb.summary()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
