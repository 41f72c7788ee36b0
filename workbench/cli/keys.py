"""``workbench keys``: API keys for ``workbench serve`` (create, list, revoke)."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace

keys_app = typer.Typer(help="API keys for `workbench serve`: create, list, revoke.",
                       no_args_is_help=True)


def _service():
    from workbench.api.keys import KeyService

    return KeyService(open_workspace().db)


def _line(key) -> str:
    revoked = f"  revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else ""
    return f"{key.id}  {key.name:20} {key.role:8} created {key.created_at:%Y-%m-%d %H:%M}{revoked}"


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who uses it: the author of its annotations.")],
    role: Annotated[str, typer.Option(help="reviewer (read and annotate) or admin.")] = "reviewer",
) -> None:
    """Make a key; its secret is printed this once and never stored."""
    key, token = _service().create(name, role)
    emit({"id": key.id, "name": key.name, "role": key.role, "key": token},
         f"{_line(key)}\nkey (shown once, store it now): {token}")


@keys_app.command("list")
def keys_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List keys (never their secrets)."""
    keys = _service().list(include_revoked=show_all)
    emit(keys, "\n".join(_line(k) for k in keys) or "no API keys (make one with `workbench "
         "keys create --name NAME`)")


@keys_app.command("revoke")
def keys_revoke(id_or_name: str) -> None:
    """Revoke a key by id, or every active key of a name."""
    revoked = _service().revoke(id_or_name)
    emit(revoked, "\n".join(f"revoked {_line(k)}" for k in revoked))
