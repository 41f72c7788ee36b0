"""The Annotations page (browse, filter, edit, delete, export) and the Review page's confidence
input for a verdict."""

import pytest

from tests.app.conftest import populate, run_page


@pytest.fixture
def populated(workspace, tmp_path):
    populate(workspace, tmp_path)
    return workspace


def test_review_sets_the_verdicts_confidence(populated):
    """The reviewer's confidence goes with the verdict; left empty, the verdict has none."""
    wb = populated
    at = run_page("pages/3_Review.py")
    at.selectbox(key="review_retriever").select("cams:review").run()
    at.button(key="confirm").click().run()
    assert wb.annotations.list(label="confirmed").items[0].confidence is None
    (box,) = [n for n in at.number_input if n.key.startswith("verdict_confidence_")]
    box.set_value(0.8).run()
    at.button(key="false_positive").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert wb.annotations.list(label="false_positive").items[0].confidence == 0.8
