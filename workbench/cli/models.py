"""``workbench extractors`` and ``workbench models``: the registry of versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace

extractors_app = typer.Typer(help="List extractors; register a custom one.",
                             invoke_without_command=True)
models_app = typer.Typer(help="The model registry: list versions, add weights.",
                         invoke_without_command=True)


def _version_line(v) -> str:
    metrics = ", ".join(f"{k} {val}" for k, val in v.metrics.items() if "mAP" in k)
    return (f"{v.key:26} {v.kind:6} {len(v.classes):>3} classes  parent "
            f"{v.parent_version or '-':8} {metrics}")


@extractors_app.callback()
def extractors_list(ctx: typer.Context) -> None:
    """List registered extractor versions with their feature URIs."""
    if ctx.invoked_subcommand is not None:
        return
    versions = open_workspace().registry.list()
    rows = [{"extractor": v.key, "kind": v.kind,
             "features": [v.feature_uri(f.feature_name) for f in v.spec.features]}
            for v in versions]
    human = "\n".join(f"{r['extractor']:26} {r['kind']:6} " + "  ".join(r["features"])
                      for r in rows)
    emit(rows, human or "no extractors yet: `workbench models add FILE.pt` or `workbench demo`")


@extractors_app.command("add")
def extractors_add(
    path: Annotated[Path, typer.Argument(help="Folder or zip with extractor.json and code.")],
) -> None:
    """Register a custom extractor (its code runs with your permissions)."""
    version = open_workspace().registry.register_custom(path)
    emit({"extractor": version.key, "spec": version.spec.to_dict()},
         f"registered {version.key}")


@models_app.callback()
def models_list(ctx: typer.Context) -> None:
    """List model versions with lineage and metrics."""
    if ctx.invoked_subcommand is not None:
        return
    versions = open_workspace().registry.list()
    emit(versions, "\n".join(_version_line(v) for v in versions) or "no models yet")


@models_app.command("add")
def models_add(
    weights: Annotated[str, typer.Argument(help="A YOLO .pt file (or a hub name with a network).")],
    version: Annotated[str | None, typer.Option(help="Semantic version (default: next major).")] = None,
    notes: str = "",
) -> None:
    """Check a YOLO weights file and register it as the next yolo_detector version."""
    registered = open_workspace().registry.register_yolo(weights, version=version, notes=notes)
    emit(registered, f"registered {registered.key} with classes {', '.join(registered.classes)}")
