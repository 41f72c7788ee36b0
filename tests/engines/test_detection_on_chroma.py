"""tests/test_detection.py with the vectors on a Chroma server: batch runs, versions side by
side, and a run killed with SIGKILL that resumes with one vector per detection."""

from __future__ import annotations

import pytest

from tests.test_detection import *  # noqa: F403

pytestmark = pytest.mark.chroma_server
