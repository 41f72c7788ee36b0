"""What every command group shares: the global state, the workspace, output, progress, errors."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.errors import WorkbenchError


class _State:
    json: bool = False
    out = None  # where JSON goes; with --json, everything else printed goes to stderr


state = _State()


def run(app: typer.Typer) -> None:
    """Run the app: a WorkbenchError is one line on stderr and exit code 1 (the only place
    that turns one into output)."""
    try:
        app()
    except WorkbenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted; a job left running resumes with `workbench worker`", err=True)
        sys.exit(130)


def open_workspace():
    from workbench import Workbench

    return Workbench.open()


def jsonable(value: Any) -> Any:
    if is_dataclass(value):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def emit(data: Any, human: str) -> None:
    if state.json:
        typer.echo(json.dumps(jsonable(data), indent=2), file=state.out)
    else:
        typer.echo(human)


@contextmanager
def job_progress(description: str):
    """A rich progress bar fed by job updates (silent with --json)."""
    if state.json:
        yield lambda job: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[message]}"), TimeElapsedColumn(), transient=False,
    ) as bar:
        task = bar.add_task(description, total=None, message="")

        def update(job) -> None:
            bar.update(task, completed=job.progress_done, total=job.progress_total or None,
                       message=job.message)

        yield update


def parse_meta(pairs: list[str]) -> dict[str, str]:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise WorkbenchError(f"--meta {pair!r} should look like key=value")
        meta[key.strip()] = value
    return meta


def json_option(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"{what} is not JSON ({exc}): {text!r}") from None


def read_json_file(path: Path, what: str) -> Any:
    """A JSON file named by an option; unreadable or not JSON is one WorkbenchError line."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"cannot read {what} from {path}: {exc}") from None


def option(owner: type, name: str, *flags: str, help: str | None = None) -> Any:
    """A typer option for one run parameter, documented (help, bounds, choices) by the
    dataclass that defines it; write its default beside it as ``= Owner.field``."""
    from workbench.params import spec

    s = spec(owner, name)
    text = help or s.help[0].upper() + s.help[1:]
    bounded = s.choices or s.min is not None or s.max is not None
    return typer.Option(*flags, help=f"{text} ({s.bounds_text()})." if bounded else f"{text}.")


# the export options' flags → their ExportOptions fields (``export`` and ``train`` take them)
EXPORT_FLAGS = {"unreviewed": "unreviewed", "fill_threshold": "fill_threshold",
                "val": "val_fraction", "holdout": "holdout_fraction", "seed": "seed",
                "pseudo_label": "pseudo_label"}


def with_export_options(command):
    """Give a command the export options (``--unreviewed``, ``--val``, …, defaulted and
    documented by ExportOptions, placed before ``--queue``); it receives them as one
    ``options: ExportOptions`` argument."""
    from workbench.params import ExportOptions, specs

    fields = specs(ExportOptions)
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "options"]
    added = [inspect.Parameter(flag, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               default=fields[field].default,
                               annotation=Annotated[fields[field].kind,
                                                    option(ExportOptions, field)])
             for flag, field in EXPORT_FLAGS.items()]
    at = next((i for i, p in enumerate(own) if p.name == "queue"), len(own))

    @functools.wraps(command)
    def with_options(*args, **kwargs):
        values = {field: kwargs.pop(flag) for flag, field in EXPORT_FLAGS.items()}
        return command(*args, options=ExportOptions(**values), **kwargs)

    parameters = own[:at] + added + own[at:]
    with_options.__signature__ = signature.replace(parameters=parameters)
    with_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_options


def hit_line(hit) -> str:
    score = f"  score {hit.score:.3f}" if hit.score is not None else ""
    return f"{hit.detection_id:28} {hit.class_name:12} conf {hit.confidence:.3f}{score}"
