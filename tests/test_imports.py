"""`import workbench` must stay light: no heavy library is loaded until a service needs it."""

import subprocess
import sys

HEAVY = ("torch", "ultralytics", "chromadb", "fiftyone", "umap", "hdbscan", "streamlit", "cv2")


def test_importing_the_core_loads_no_heavy_library():
    code = (
        "import sys, workbench, workbench.cli, workbench.ingest, workbench.jobs, "
        "workbench.buckets, workbench.demo, workbench.store.vectors, workbench.detection, "
        "workbench.registry, workbench.extractors.yolo, workbench.extractors.clip, "
        "workbench.extractors.spec, workbench.demo.train_starter\n"
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
