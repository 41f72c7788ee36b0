"""``workbench jobs`` (list, show, cancel background jobs) and ``workbench worker``."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace, state

jobs_app = typer.Typer(help="List, show and cancel background jobs.", invoke_without_command=True)


def _job_line(job) -> str:
    progress = f"{job.progress_done}/{job.progress_total}" if job.progress_total else "-"
    return f"{job.id}  {job.kind:8} {job.status:9} {progress:>11}  {job.message}"


@jobs_app.callback()
def jobs_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Include finished jobs.")] = False,
    cursor: Annotated[str | None, typer.Option(help="The next page: the cursor the previous "
                                                    "page printed.")] = None,
    limit: int = 50,
) -> None:
    """List active jobs (or all of them), newest first, with how many there are."""
    if ctx.invoked_subcommand is not None:
        return
    from workbench.jobs import ACTIVE_STATUSES

    page = open_workspace().jobs.page(None if show_all else ACTIVE_STATUSES, cursor, limit)
    human = "\n".join(_job_line(j) for j in page.items) or (
        "no jobs" if show_all else "no active jobs (see finished ones with --all)")
    emit(page.items, human)
    if footer := page.footer("jobs" if show_all else "active jobs", only_if_more=state.json):
        typer.echo(footer, err=state.json)  # --json: on stderr, beside the rows


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """Show one job, with its error if it failed."""
    job = open_workspace().jobs.get(job_id)
    emit(job, _job_line(job) + (f"\n{job.error}" if job.error else ""))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    job = open_workspace().jobs.cancel(job_id)
    emit(job, _job_line(job))


def worker(
    exit_when_idle: Annotated[bool, typer.Option(help="Stop when no job is left.")] = False,
    idle_exit: Annotated[float | None, typer.Option(help="Stop after this many idle seconds.")] = None,
) -> None:
    """Run background jobs for this workspace (one worker per workspace)."""
    import logging

    from workbench.jobs import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    wb = open_workspace()
    runner = Worker(wb)
    if not runner.acquire_lock():
        typer.echo("a worker is already running for this workspace", err=True)
        raise typer.Exit(0)
    typer.echo(f"worker {runner.worker_id} on {wb.home.resolve()}", err=True)
    ran = runner.run(exit_when_idle=exit_when_idle, idle_exit_s=idle_exit)
    typer.echo(f"worker stopped after {ran} job(s)", err=True)
