"""tests/test_retrievers.py with the vectors on a Chroma server: feature search by example
detection and image, diversity, review queues."""

from __future__ import annotations

import pytest

from tests.test_retrievers import *  # noqa: F403
from tests.test_retrievers import test_ties_in_a_queue_go_to_the_image_content_not_to_random_ids

# It opens two workspaces and compares them; here both would keep their vectors in the one
# Chroma database of the test.
del test_ties_in_a_queue_go_to_the_image_content_not_to_random_ids

pytestmark = pytest.mark.chroma_server
