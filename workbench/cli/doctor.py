"""``workbench doctor``: check this host against the deployment's settings."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from workbench.cli.common import state


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check what the settings name, from this host: the metadata database (reachable,
    version, migrations current), Chroma (embedded or server), the blob root (writable),
    the executor and the device. One line per check; exit code 1 if any fails."""
    from workbench.config import load_settings
    from workbench.doctor import Check, run_checks
    from workbench.errors import ConfigError

    try:
        checks = run_checks(load_settings())
    except ConfigError as exc:  # nothing else can be checked without the settings
        checks = [Check("settings", False, " ".join(str(exc).split()),
                        "fix that WORKBENCH_* variable")]
    healthy = all(c.ok for c in checks)
    if as_json or state.json:
        report = {"ok": healthy, "checks": [c.to_dict() for c in checks]}
        typer.echo(json.dumps(report, indent=2), file=state.out)
    else:
        for check in checks:
            typer.echo(check.line())
        typer.echo("all checks passed" if healthy else
                   f"{sum(not c.ok for c in checks)} check(s) failed")
    if not healthy:
        raise typer.Exit(1)
