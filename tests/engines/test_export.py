"""tests/test_export.py on Postgres."""

from __future__ import annotations

import pytest

from tests.test_export import *  # noqa: F403

pytestmark = pytest.mark.postgres
