"""Writing a folder that a user named, without destroying one they meant to keep.

A command that writes a folder (``workbench export --out``) builds it in a new hidden folder
beside the target and renames it into place once it is complete, so a crash or a kill leaves
the previous folder whole (and at worst a hidden ``.NAME.partial-…`` folder beside it). It
replaces an existing folder only when that folder is empty or is one it wrote before (its
marker file says so). It refuses a file, any other folder, the workspace, anything inside
the workspace and anything that contains it, with a message that says what to do instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import ValidationError
from workbench.faults import crash_point


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_output_folder(target: Path | str, workspace: Path, is_previous: Callable[[Path], bool],
                        what: str, allow_under: Path | None = None) -> Path:
    """The resolved folder to write ``what`` to, or a :class:`ValidationError` saying why not.

    ``allow_under`` is the one place inside the workspace where the workbench keeps such
    folders of its own (``exports/`` for training runs); a user's path never lies there.
    """
    text = str(target)
    if not text.strip():
        raise ValidationError(f"no folder given for {what}")
    if any(ord(c) < 32 for c in text):
        raise ValidationError(f"the folder name {text!r} holds control characters")
    resolved = Path(text).expanduser().resolve()
    home = Path(workspace).resolve()
    own_area = allow_under is not None and _inside(resolved, Path(allow_under).resolve()) \
        and resolved != Path(allow_under).resolve()
    if not own_area:
        if _inside(resolved, home):
            raise ValidationError(
                f"{text} is inside the workspace ({home}); write {what} to a folder outside it")
        if _inside(home, resolved):
            raise ValidationError(
                f"{text} contains the workspace ({home}); replacing it would delete the "
                f"workspace. Write {what} to a new folder, e.g. {resolved / 'export'}")
    if resolved.exists() or resolved.is_symlink():
        if not resolved.is_dir():
            raise ValidationError(f"{text} is a file, not a folder; give a folder path for "
                                  f"{what}")
        if any(resolved.iterdir()) and not is_previous(resolved):
            raise ValidationError(
                f"{text} exists and is not {what} written by the workbench (its marker file is "
                "missing), so it is left alone; give a new folder or an empty one")
    return resolved


@contextmanager
def replace_folder(resolved: Path, is_previous: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``resolved``; when the block ends without an error,
    it takes the place of ``resolved`` (checked with :func:`check_output_folder` first)."""
    parent = resolved.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        partial = parent / f".{resolved.name}.partial-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
    except OSError as exc:
        raise ValidationError(f"cannot write into {parent}: {exc.strerror or exc}") from None
    try:
        yield partial
        crash_point("outdir.complete")
        if resolved.exists():
            # Checked again: something may have been written there meanwhile.
            if any(resolved.iterdir()) and not is_previous(resolved):
                raise ValidationError(f"{resolved} changed while it was being written and is "
                                      "no longer a previous export; it is left alone")
            old = parent / f".{resolved.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(resolved, old)
            os.rename(partial, resolved)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(partial, resolved)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
