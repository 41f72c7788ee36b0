"""``workbench webhooks`` (subscriptions and their deliveries) and ``workbench events``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace, state
from workbench.errors import WorkbenchError

webhooks_app = typer.Typer(help="Webhooks: list, create, enable, disable, delete, ping, "
                                "deliveries, redeliver.",
                           invoke_without_command=True)


@webhooks_app.callback()
def webhooks_list(ctx: typer.Context) -> None:
    """List webhooks (secrets masked)."""
    if ctx.invoked_subcommand is not None:
        return
    hooks = open_workspace().webhooks.list()
    emit(hooks, "\n".join(f"{h.name:20} {'on ' if h.active else 'off'} {h.url}  "
                          f"{','.join(h.events)}  secret {h.secret_hint}" for h in hooks)
         or "no webhooks yet: `workbench webhooks create NAME URL`")


@webhooks_app.command("create")
def webhooks_create(
    name: str,
    url: str,
    event: Annotated[list[str] | None, typer.Option("--event", "-e", help="Event type (repeat); "
                                                    "default every event.")] = None,
) -> None:
    """Register a webhook; its signing secret is printed this once."""
    hook, secret = open_workspace().webhooks.create(name, url, event or ["*"])
    emit({**asdict(hook), "secret": secret},
         f"webhook {hook.name!r} → {hook.url}\nsecret (shown once, keep it): {secret}")


@webhooks_app.command("disable")
def webhooks_disable(name: str) -> None:
    """Stop sending to a webhook; its waiting deliveries wait until it is enabled again."""
    hook = open_workspace().webhooks.set_active(name, False)
    emit(hook, f"webhook {hook.name!r} disabled")


@webhooks_app.command("enable")
def webhooks_enable(name: str) -> None:
    """Send to a webhook again, starting with what waited while it was disabled."""
    hook = open_workspace().webhooks.set_active(name, True)
    emit(hook, f"webhook {hook.name!r} enabled")


@webhooks_app.command("delete")
def webhooks_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete it, with its delivery log."
                                      )] = False,
) -> None:
    """Delete a webhook with its deliveries and their attempts (events are kept)."""
    wb = open_workspace()
    hook = wb.webhooks.get(name)
    if not yes:
        raise WorkbenchError(f"deleting webhook {hook.name!r} also deletes its delivery log; "
                             "add --yes to do it (or `workbench webhooks disable` to pause it)")
    removed = wb.webhooks.delete(hook.id)
    emit({"webhook": hook.name, **removed},
         f"deleted webhook {hook.name!r} ({removed['deliveries']} deliveries, "
         f"{removed['attempts']} attempts)")


@webhooks_app.command("ping")
def webhooks_ping(name: str) -> None:
    """Queue a ping event to one webhook (the worker sends it)."""
    delivery = open_workspace().webhooks.ping(name)
    emit({"delivery_id": delivery}, f"ping queued as delivery {delivery}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    name: Annotated[str | None, typer.Argument(help="Webhook (default: all).")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivering, delivered, failed."
                                               )] = None,
    limit: int = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page: the cursor the previous "
                                                    "page printed.")] = None,
) -> None:
    """Deliveries, newest first, with their status, attempts and last error, and how many
    there are."""
    page = open_workspace().webhooks.deliveries_page(name, status, cursor, limit)
    rows = page.items

    def due(row) -> str:
        return (f"next attempt {row['next_attempt_at']:%Y-%m-%d %H:%M:%S} UTC  "
                if row["status"] == "pending" and row["attempts"] else "")

    emit(rows, "\n".join(
        f"{r['id']}  {r['event_type']:22} {r['status']:10} attempts {r['attempts']}  "
        f"{due(r)}{r['last_status_code'] or ''} {r['last_error'] or ''}" for r in rows)
        or "no deliveries")
    if footer := page.footer("deliveries", only_if_more=state.json):
        typer.echo(footer, err=state.json)  # --json: on stderr, beside the rows


@webhooks_app.command("redeliver")
def webhooks_redeliver(delivery_id: str) -> None:
    """Send a delivery again (same delivery id)."""
    open_workspace().webhooks.redeliver(delivery_id)
    emit({"delivery_id": delivery_id}, f"{delivery_id} queued again")


def events(
    kind: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    limit: int = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page: the cursor the previous "
                                                    "page printed.")] = None,
) -> None:
    """Events, newest first, with how many there are."""
    page = open_workspace().events.page(kind, cursor, limit)
    emit(page.items, "\n".join(f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {r['type']:22} {r['id']}"
                               for r in page.items) or "no events yet")
    if footer := page.footer("events", only_if_more=state.json):
        typer.echo(footer, err=state.json)  # --json: on stderr, beside the rows
