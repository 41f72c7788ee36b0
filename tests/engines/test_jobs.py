"""tests/test_jobs.py on Postgres."""

from __future__ import annotations

import pytest

from tests.test_jobs import *  # noqa: F403

pytestmark = pytest.mark.postgres
