"""Every page renders without exception, empty and populated; key widgets do their job."""

from __future__ import annotations

import pytest

from tests.app.conftest import populate, run_page
from tests.conftest import REPO, write_images
from workbench.jobs import Worker

PAGES = ["app.py", *sorted(str(p.relative_to(REPO)) for p in (REPO / "pages").glob("*.py"))]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("state", ["empty", "populated"])
def test_every_page_renders(workspace, tmp_path, page, state):
    if state == "populated":
        populate(workspace, tmp_path)
    at = run_page(page)
    assert not at.exception, [e.message for e in at.exception]
    assert at.title, "every page has a title"


def test_home_offers_the_demo_on_an_empty_workspace(workspace):
    at = run_page("app.py")
    at.button(key="load_demo").click().run()
    assert not at.exception
    (job,) = workspace.jobs.active()
    assert job.kind == "demo"
    # While the demo loads, the button is not offered twice.
    assert not [b for b in run_page("app.py").button if b.key == "load_demo"]


def test_home_shows_counts(workspace, tmp_path):
    populate(workspace, tmp_path)
    at = run_page("app.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "8" and metrics["Buckets"] == "1"


def test_ingest_page_creates_a_bucket(workspace):
    at = run_page("pages/1_Ingest.py")
    at.text_input(key="bucket_name").input("footage")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception
    bucket = workspace.buckets.get("footage")
    assert [f.name for f in bucket.metadata_fields] == ["camera_id"]


def test_ingest_page_reports_a_bad_bucket_name(workspace):
    at = run_page("pages/1_Ingest.py")
    at.text_input(key="bucket_name").input("no spaces allowed")
    at.button[0].click().run()
    assert any("not valid" in e.value for e in at.error)
    assert workspace.buckets.list() == []


def test_ingest_page_queues_a_server_folder_and_shows_the_grid(workspace, tmp_path):
    workspace.buckets.create("cams", {"properties": {"image": {"type": "image"},
                                                     "camera_id": {"type": "text"}}})
    folder = tmp_path / "frames"
    write_images(folder, 5)
    at = run_page("pages/1_Ingest.py")
    at.text_area(key="server_sources").input(str(folder))
    at.text_input(key="server_meta_camera_id").input("cam_lobby").run()
    at.button(key="queue_ingest").click().run()
    assert not at.exception
    (job,) = workspace.jobs.active()
    Worker(workspace).run(exit_when_idle=True)
    at.run()
    assert any("5 accepted" in s.value for s in at.success)
    assert any("5 images" in c.value for c in at.caption)
    objects = workspace.buckets.objects(workspace.buckets.get("cams"))
    assert {o.metadata["camera_id"] for o in objects} == {"cam_lobby"}
    assert len(at.get("image")) == 5


def test_detect_page_shows_boxes_and_the_detail_of_an_image(workspace, tmp_path):
    populate(workspace, tmp_path)
    at = run_page("pages/2_Detect.py")
    assert not at.exception
    assert any("8 of 8 images processed" in p.proto.text for p in at.get("progress"))
    grid = at.get("image")
    assert len(grid) >= 2  # result thumbnails with boxes, and the detail image
    at.selectbox(key="detail_image").select_index(1).run()
    assert not at.exception
    assert at.dataframe, "the detail view lists the detections"


def test_detect_page_starts_a_run_for_a_new_version(workspace, tmp_path):
    from tests.conftest import STARTER

    populate(workspace, tmp_path)
    workspace.registry.register_yolo(STARTER, parent_version="1.0.0")
    at = run_page("pages/2_Detect.py")
    at.selectbox(key="version").select("2.0.0").run()
    at.button(key="run").click().run()
    assert not at.exception
    (job,) = [j for j in workspace.jobs.active() if j.kind == "detect"]
    assert job.params["version"] == "2.0.0"

