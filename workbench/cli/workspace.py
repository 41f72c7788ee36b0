"""``workbench init``: create (or open and migrate) the workspace."""

from __future__ import annotations

from workbench.cli.common import emit, open_workspace


def init() -> None:
    """Create (or open and migrate) the workspace and show what it holds."""
    wb = open_workspace()
    summary = wb.summary()
    emit(
        {"home": str(wb.home.resolve()), "schema_version": wb.schema_version, **summary},
        f"workspace {wb.home.resolve()} (schema {wb.schema_version}): "
        f"{summary['buckets']} buckets, {summary['images']} images, "
        f"{summary['jobs_active']} active jobs",
    )
