"""Video ingest: frames sampled at a rate, near-identical ones skipped, each frame an image
object with video, frame_index and timestamp; bad videos get a report line; re-runs add nothing."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, write_images
from workbench import Workbench
from workbench.demo.clip import render_clip
from workbench.errors import ValidationError
from workbench.video import creation_time

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s at 10 fps, 320×240; frames 10-14 repeat frame 10."""
    return render_clip(tmp_path_factory.mktemp("clip") / "shapes.mp4")


def _frames(wb, bucket="footage"):
    objects = wb.buckets.objects(wb.buckets.get(bucket), 0, 1000)
    frames = [o for o in objects if "frame_index" in o.metadata]
    return sorted(frames, key=lambda o: o.metadata["frame_index"])


@pytest.mark.parametrize(
    ("fps", "indices", "near_identical"),
    [
        (1.0, [0, 10, 20], 0),
        # every frame is sampled; 11-14 repeat 10 and are skipped
        (10.0, [*range(11), *range(15, 30)], 4),
        (30.0, [*range(11), *range(15, 30)], 4),
        # 0, 3.3→4, 6.7→7, 10, 13.3→14 (a repeat of 10: skipped), 17, 20, 24, 27
        (3.0, [0, 4, 7, 10, 17, 20, 24, 27], 1),
    ],
)
def test_frames_sampled_at_the_rate_and_repeats_skipped(wb, clip, fps, indices, near_identical):
    wb.buckets.create("footage")
    report = wb.ingest.run("footage", [clip.path], fps=fps)
    (line,) = report.items
    assert line.status == "accepted", line.reason
    assert f"{near_identical} near-identical skipped, {len(indices)} new" in line.reason
    frames = _frames(wb)
    assert [f.metadata["frame_index"] for f in frames] == indices
    assert line.object_id == frames[0].id


def test_frame_metadata_and_objects(wb, clip):
    wb.buckets.create("footage")
    wb.ingest.run("footage", [clip.path], fps=2)
    frames = _frames(wb)
    assert [f.metadata["frame_index"] for f in frames] == [0, 5, 10, 15, 20, 25]
    for frame in frames:
        meta = frame.metadata
        assert meta["video"] == str(clip.path)
        # the generated clip records no creation time: the timestamp is the offset in seconds
        assert meta["timestamp"] == pytest.approx(meta["frame_index"] / clip.fps)
        assert (frame.width, frame.height, frame.format) == (320, 240, "JPEG")
        assert frame.source == f"{clip.path}#frame={meta['frame_index']}"
        assert wb.blobs.path_for(frame.sha256, ".jpg").is_file()


def test_declared_fields_follow_the_schema_and_batch_metadata_is_kept(wb, clip):
    wb.buckets.create("footage", {"properties": {
        "image": {"type": "image", "required": True}, "camera_id": {"type": "text"},
        "timestamp": {"type": "text"}, "frame_index": {"type": "integer"}}})
    wb.ingest.run("footage", [clip.path], metadata={"camera_id": "cam1"}, fps=1)
    first = _frames(wb)[1]
    assert first.metadata == {"camera_id": "cam1", "frame_index": 10, "timestamp": "1.0",
                              "video": str(clip.path)}


def test_datetime_timestamp_field_needs_a_creation_time(wb, clip):
    wb.buckets.create("footage", {"properties": {
        "image": {"type": "image", "required": True}, "timestamp": {"type": "datetime"}}})
    (line,) = wb.ingest.run("footage", [clip.path], fps=1).items
    assert line.status == "rejected"
    assert "records no creation time" in line.reason and "declare 'timestamp' as number" in (
        line.reason)
    assert wb.buckets.count_objects() == 0


def test_rerun_ingests_nothing_new(wb, clip):
    wb.buckets.create("footage")
    wb.ingest.run("footage", [clip.path], fps=5)
    count = wb.buckets.count_objects()
    again = wb.ingest.run("footage", [clip.path], fps=5)
    (line,) = again.items
    assert line.status == "duplicate"
    assert "0 new" in line.reason and f"{count} already in the bucket" in line.reason
    assert wb.buckets.count_objects() == count
    # a higher rate adds only the frames the first run did not sample
    wb.ingest.run("footage", [clip.path], fps=10)
    assert wb.buckets.count_objects() == 26


def test_killed_mid_video_then_resumed_stores_each_frame_once(home, clip):
    """SIGKILL after the first batch of frames is committed; the worker resumes the job,
    samples the video again and stores only the frames it had not."""
    base = [sys.executable, "-m", "workbench", "--home", str(home)]
    env = dict(os.environ, WORKBENCH_INGEST_BATCH_SIZE="4")
    killed = subprocess.run([*base, "ingest", str(clip.path), "-b", "cams", "--fps", "10"],
                            check=False, cwd=REPO, capture_output=True, text=True,
                            env=dict(env, WORKBENCH_CRASH_AT="ingest.video_frames"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = subprocess.run([*base, "worker", "--exit-when-idle"], check=False, cwd=REPO,
                             capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    wb = Workbench.open(home)
    try:
        (job,) = wb.jobs.list()
        assert job.status == "done", job.error
        (line,) = wb.ingest.report(job.id).items
        assert line.status == "accepted"
        assert "22 new, 4 already in the bucket" in line.reason
        frames = _frames(wb, "cams")
        assert len(frames) == 26 == len({f.sha256 for f in frames})
    finally:
        wb.close()


def test_corrupt_video_gets_a_report_line_and_the_rest_goes_in(wb, clip, tmp_path):
    folder = tmp_path / "mixed"
    write_images(folder, 2)
    (folder / "broken.mp4").write_bytes(bytes(range(256)) * 40)
    (folder / "empty.mov").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(clip.path.read_bytes()[: clip.path.stat().st_size // 2])
    (folder / "clip.mkv").write_bytes(clip.path.read_bytes())  # an mp4 under another name
    wb.buckets.create("footage")
    report = wb.ingest.run("footage", [folder], fps=1)
    lines = {item.source.rsplit("/", 1)[-1]: item for item in report.items}
    assert lines["broken.mp4"].status == "rejected"
    assert "not a readable video" in lines["broken.mp4"].reason
    assert lines["empty.mov"].status == "rejected"
    assert lines["truncated.mp4"].status == "rejected"  # its index (moov) was at the end
    assert lines["clip.mkv"].status == "accepted"
    assert sum(1 for item in report.items if item.status == "accepted") == 3
    assert wb.buckets.count_objects() == 2 + 3


def test_video_in_a_zip(wb, clip, tmp_path):
    archive = tmp_path / "videos.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.write(clip.path, "cams/shapes.mp4")
    wb.buckets.create("footage")
    report = wb.ingest.run("footage", [archive], fps=1)
    (line,) = report.items
    assert line.status == "accepted", line.reason
    assert [f.metadata["video"] for f in _frames(wb)] == [f"{archive}!cams/shapes.mp4"] * 3


@pytest.mark.parametrize("fps", [0, -1, float("nan"), "fast"])
def test_non_positive_rate_refused(wb, clip, fps):
    wb.buckets.create("footage")
    with pytest.raises(ValidationError, match="positive number|number of frames"):
        wb.ingest.run("footage", [clip.path], fps=fps)


def test_creation_time_gives_iso_timestamps(wb, clip, tmp_path):
    """An MP4 that records its creation time: timestamps are that time plus the offset."""
    data = bytearray(clip.path.read_bytes())
    at = data.index(b"mvhd") + 4  # version (1 byte), flags (3), creation time (4)
    assert data[at] == 0
    created = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    seconds = int((created - datetime(1904, 1, 1, tzinfo=UTC)).total_seconds())
    data[at + 4 : at + 8] = struct.pack(">I", seconds)
    dated = tmp_path / "dated.mp4"
    dated.write_bytes(bytes(data))
    assert creation_time(dated) == created
    wb.buckets.create("footage")
    wb.ingest.run("footage", [dated], fps=1)
    stamps = [f.metadata["timestamp"] for f in _frames(wb)]
    assert stamps == ["2024-05-01T12:00:00+00:00", "2024-05-01T12:00:01+00:00",
                      "2024-05-01T12:00:02+00:00"]


def test_cli_ingest_with_fps(home, clip):
    from workbench.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(home), "ingest", str(clip.path), "--bucket",
                                 "cams", "--fps", "2"])
    assert result.exit_code == 0, result.output
    assert "accepted  " in result.output and "6 new" in result.output
    assert "1 accepted, 0 duplicate, 0 rejected (of 1)" in result.output
    listed = json.loads(runner.invoke(app, ["--home", str(home), "--json", "buckets"]).output)
    assert listed[0]["images"] == 6


def test_cli_refuses_a_non_positive_rate(home, clip):
    base = [sys.executable, "-m", "workbench", "--home", str(home)]
    result = subprocess.run([*base, "ingest", str(clip.path), "-b", "cams", "--fps", "0"],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        ("error: video sampling rate must be a positive number of frames per second "
         "(e.g. 1 or 0.5), got 0.0")]
    listed = subprocess.run([*base, "--json", "buckets"], check=True, capture_output=True,
                            text=True)
    assert json.loads(listed.stdout) == []  # no bucket made for an ingest that cannot start


def test_frame_neighbours_in_frame_order_within_the_video(wb, clip, tmp_path):
    other = render_clip(tmp_path / "other.mp4", seconds=1.0, seed=1)
    write_images(tmp_path / "stills", 2)
    wb.buckets.create("footage")
    wb.ingest.run("footage", [clip.path, tmp_path / "stills", other.path], fps=10)
    by_index = {f.metadata["frame_index"]: f for f in _frames(wb)
                if f.metadata["video"] == str(clip.path)}

    def indices(frame, count=3):
        return [n.metadata["frame_index"] for n in wb.ingest.frame_neighbours(frame, count)]

    assert indices(by_index[16]) == [9, 10, 15, 16, 17, 18, 19]  # 11-14 were repeats
    assert indices(by_index[0]) == [0, 1, 2, 3]
    assert indices(by_index[29], count=1) == [28, 29]
    still = next(o for o in wb.buckets.objects(wb.buckets.get("footage"), 0, 100)
                 if "video" not in o.metadata)
    assert wb.ingest.frame_neighbours(still) == []


def test_frame_strip_renders_the_neighbours(home, clip):
    from streamlit.testing.v1 import AppTest

    wb = Workbench.open(home)
    try:
        wb.buckets.create("footage")
        wb.ingest.run("footage", [clip.path], fps=10)
        frame = next(f for f in _frames(wb) if f.metadata["frame_index"] == 5)
    finally:
        wb.close()
    script = (
        "from workbench import Workbench\n"
        "from workbench.ui.video import frame_strip\n"
        f"wb = Workbench.open({str(home)!r})\n"
        f"frame_strip(wb, wb.buckets.get_object({frame.id!r}), count=2)\n"
    )
    at = AppTest.from_string(script, default_timeout=60).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert captions[1:] == ["frame 3 · 0.30 s", "frame 4 · 0.40 s", "**▶ frame 5 · 0.50 s**",
                            "frame 6 · 0.60 s", "frame 7 · 0.70 s"]
