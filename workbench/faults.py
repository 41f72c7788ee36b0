"""A test hook that kills this process at a named commit point.

With ``WORKBENCH_CRASH_AT=train.registered`` (say), the process sends itself SIGKILL when it
reaches that point: the crash-point tests use it to check that a job killed at any commit
point resumes without losing or repeating work. Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Die here, as a power cut would, if the environment asks for it."""
    if os.environ.get("WORKBENCH_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
