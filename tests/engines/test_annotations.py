"""tests/test_annotations.py on Postgres."""

from __future__ import annotations

import pytest

from tests.test_annotations import *  # noqa: F403

pytestmark = pytest.mark.postgres
