"""Which workspace the app works in: the recently used ones, remembered in a small file in
the user's config folder, and the checks that keep a mistyped path from becoming a workspace.

The sidebar's switcher (``workbench.ui.workspace_switcher``) uses these; nothing here imports
streamlit, so that the checks are tested on their own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from workbench.errors import ValidationError

RECENT_LIMIT = 10
DATABASE_FILE = "workbench.db"


def config_dir() -> Path:
    """The user's config folder for the app (``$XDG_CONFIG_HOME`` or ``~/.config``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "flywheel-workbench"


def recent_file() -> Path:
    return config_dir() / "recent_workspaces.json"


def recent() -> list[str]:
    """The workspaces opened last, most recent first (those whose folder has gone are left
    out); an unreadable or foreign file counts as none rather than breaking the sidebar."""
    try:
        saved = json.loads(recent_file().read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(saved, list):
        return []
    return [p for p in saved if isinstance(p, str) and Path(p).is_dir()][:RECENT_LIMIT]


def remember(*homes: Path | str) -> None:
    """Put ``homes`` first in the recent list (the first given first); written whole to a
    temporary file and renamed, so that two app sessions never leave half a file."""
    ordered = [str(h) for h in homes]
    ordered += [p for p in recent() if p not in ordered]
    target = recent_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(ordered[:RECENT_LIMIT], indent=1))
    partial.replace(target)


def is_workspace(folder: Path) -> bool:
    return (folder / DATABASE_FILE).is_file()


def check_path(text: str, create: bool, shared_database: bool = False) -> Path:
    """The folder ``text`` names, resolved, if it can be opened (``create`` false: it must
    be a workspace already) or made a new workspace (``create`` true: it must be new or
    empty); otherwise a one-line error saying what is wrong and what to do.

    ``shared_database``: the metadata lives in a database server (``WORKBENCH_DATABASE_URL``),
    so a workspace folder holds no database file to recognise it by."""
    text = text.strip()
    if not text:
        raise ValidationError("type the folder of a workspace, such as ~/workspaces/cameras")
    folder = Path(text).expanduser()
    if not folder.is_absolute():
        raise ValidationError(f"{text!r} is a relative path; type the whole path, such as "
                              f"{str(Path.home() / text)!r}")
    folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"{folder} is a file, not a workspace folder; choose a folder")
    if not create:
        if not folder.exists():
            raise ValidationError(f"there is no folder {folder}; check the path, or press "
                                  "Create to start a new workspace there")
        if not shared_database and not is_workspace(folder):
            raise ValidationError(f"{folder} is not a workspace (it has no {DATABASE_FILE}); "
                                  "choose the folder that holds one, or press Create to start "
                                  "a new workspace in an empty folder")
        return folder
    if folder.exists() and (is_workspace(folder) or (shared_database and any(folder.iterdir()))):
        raise ValidationError(f"{folder} is already a workspace; press Open to work in it")
    if folder.exists() and any(folder.iterdir()):
        raise ValidationError(f"{folder} already holds other files; choose a new or empty "
                              "folder for a new workspace")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise ValidationError(f"cannot create a workspace in {folder}: {existing} is not "
                              "writable for you; choose a folder you can write to")
    return folder
