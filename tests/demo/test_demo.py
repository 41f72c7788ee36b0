"""The demo workspace: generated scenes land in the shapeworld bucket with their metadata."""

from workbench.demo import DEMO_BUCKET, demo_parts
from workbench.jobs import Worker


def test_load_demo_ingests_every_part_with_metadata(wb):
    steps = []
    report = wb.demo.load(scale=0.1, progress=lambda d, n, m: steps.append((d, n)))
    expected = sum(p.count for p in demo_parts(0.1))
    assert report.accepted == expected and report.rejected == 0
    objects = wb.buckets.objects(wb.buckets.get(DEMO_BUCKET), limit=1000)
    assert {o.metadata["scenario"] for o in objects} == {p.name for p in demo_parts()}
    assert {o.metadata["lighting"] for o in objects} == {"day", "night"}
    assert steps[-1][0] == steps[-1][1]  # progress reaches the end
    # Loading again is idempotent: nothing new, everything a duplicate.
    again = wb.demo.load(scale=0.1)
    assert again.accepted == 0 and again.duplicates == expected


def test_the_demo_runs_as_a_job_in_the_worker(wb):
    job = wb.jobs.submit("demo", {"scale": 0.05})
    Worker(wb).run(exit_when_idle=True)
    done = wb.jobs.get(job.id)
    assert done.status == "done", done.error
    assert done.result["accepted"] == wb.summary()["images"] > 0
