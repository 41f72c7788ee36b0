"""``workbench rules``: the built-in automation rules, their switches and their runs."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.common import emit, open_workspace, state

rules_app = typer.Typer(help="Automation rules: list, enable, disable, runs, process.",
                        invoke_without_command=True)


def _rule_line(rule) -> str:
    params = " ".join(f"{k}={v}" for k, v in rule.params.items()) or "(no parameters)"
    last = rule.last_run
    ran = (f"last run {last['created_at']:%Y-%m-%d %H:%M:%S} {last['status']}: "
           f"{last['message']}" if last else "no runs yet")
    return f"{rule.name:24} {'on ' if rule.enabled else 'off'} {params}\n{'':28}{ran}"


def _run_line(run) -> str:
    return (f"{run['created_at']:%Y-%m-%d %H:%M:%S}  {run['rule']:24} {run['status']:9} "
            f"{run['message']}" + (f"  [job {run['job_id']}]" if run["job_id"] else ""))


@rules_app.callback()
def rules_list(ctx: typer.Context) -> None:
    """List the built-in rules: on or off, parameters, last run."""
    if ctx.invoked_subcommand is not None:
        return
    rules = open_workspace().rules.list()
    emit(rules, "\n".join(_rule_line(r) for r in rules))


@rules_app.command("enable")
def rules_enable(
    name: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeat)."
                                                    )] = None,
) -> None:
    """Switch a rule on (it reacts to events from now on), optionally setting parameters."""
    wb = open_workspace()
    rule = wb.rules.configure(name, enabled=True, params=wb.rules.parse_params(name, param or []))
    emit(rule, _rule_line(rule))


@rules_app.command("disable")
def rules_disable(name: str) -> None:
    """Switch a rule off (its parameters are kept)."""
    rule = open_workspace().rules.configure(name, enabled=False)
    emit(rule, _rule_line(rule))


@rules_app.command("runs")
def rules_runs(
    name: Annotated[str | None, typer.Argument(help="Rule (default: all).")] = None,
    limit: int = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page: the cursor the previous "
                                                    "page printed.")] = None,
) -> None:
    """The rules' runs, newest first, with how many there are."""
    page = open_workspace().rules.runs_page(name, cursor, limit)
    emit(page.items, "\n".join(_run_line(r) for r in page.items) or "no runs yet")
    if footer := page.footer("runs", only_if_more=state.json):
        typer.echo(footer, err=state.json)  # --json: on stderr, beside the rows


@rules_app.command("process")
def rules_process() -> None:
    """Let the rules react to every event not consumed yet (the worker does this itself)."""
    done = open_workspace().rules.process_pending()
    emit(done, f"{done['events']} event(s) consumed: {done['runs']} run(s), "
               f"{done['jobs']} job(s) queued, {done['failed']} failed")
