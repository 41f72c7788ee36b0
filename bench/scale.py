"""Scale benchmark (issue 15, "fast at a million detections"): workspaces of 10k, 100k and
1M detections (1,024-d), built through the real vector write path, and every path a user
touches measured on them.

Per size, each section on its own (a failure prints "failed: <reason>" and the run goes on;
``--skip`` leaves sections out): build (vectors/s through ``wb.vectors.upsert``, build time;
then every image gets a JPEG blob, hard links to four small scenes), index (Chroma's index
built behind the writes, vectors/s; a nearest-neighbour query before and after), disk,
annotate (``--complete`` images made complete through ``wb.annotations.bulk``), taxonomy (a
retroactive apply, detections/s), queries (review-queue and filtered-retriever p95
in-process and through the CLI; ``review-queue``, ``annotate``, ``stats`` and ``jobs``
start-up and answer), export (images/s),
fiftyone (first sync samples/s, no-change re-sync) and pages (each page in a fresh process:
cold render with streamlit and AppTest imported and the installed components scanned (as a
server does when it starts) before the clock; the first visit in a process that imported what
``workbench app`` imports before it serves (workbench.app_server); warm median of --runs,
peak RSS; then all pages in one process, as one app server renders them).

Prints every figure beside its target, writes bench/results/scale_<n>.json, and when results
for 100k and 1M both exist prints each figure's growth from 100k to 1M. The 1M size may be
run by hand; ``--keep DIR`` keeps (and reuses) the built workspaces. With ``--postgres URL``
each size is run twice in the one run, on SQLite and then with the metadata on that Postgres
server (issue 18), and the queue, bulk-annotation and taxonomy figures are printed side by
side.

    .venv/bin/python bench/scale.py [--sizes 10000,100000] [--dim 1024] [--runs 5]
        [--complete 500] [--keep DIR] [--skip index,fiftyone,...]
"""

from __future__ import annotations

import argparse
import compileall
import fnmatch
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from review import KEY, build, pct  # noqa: E402  (the same synthetic workspace)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORKBENCH = REPO / ".venv" / "bin" / "workbench"
PAGES = ["app.py"] + sorted(str(p.relative_to(REPO)) for p in (REPO / "pages").glob("*.py"))
SECTIONS = ("index", "disk", "annotate", "taxonomy", "queries", "export", "fiftyone", "pages")
FILTER = "scale-uncertain-triangles"
CHILD_ENV = {"WORKBENCH_AUTOSTART_WORKER": "false"}  # no indexer racing the clock
JSON_LINE = "SCALE-JSON "
# (figure, comparison, target, where the issue sets it)
TARGETS = [("vectors_per_s", ">=", 5000, ""),
           ("taxonomy_retro_det_per_s", ">=", 10_000, ""),
           ("queue_p95_ms", "<=", 20, " at 1M"),
           ("page.*.cold_s", "<=", 1.5, " at 1M"),
           ("page.*.first_visit_s", "<=", 1.5, " at 1M"),
           ("page.*.warm_s", "<=", 1.5, " at 1M"),
           ("app_peak_rss_mb", "<=", 1536, " at 1M"),
           ("cli_*_s", "<=", 0.6, ", warm machine")]


def page_name(page: str) -> str:
    return "Home" if page == "app.py" else Path(page).stem.split("_", 1)[1]


def ms_since(began: float) -> float:
    return (time.perf_counter() - began) * 1000


def timed_ms(call, runs: int) -> list[float]:
    """Milliseconds of ``runs`` calls, after one that warms caches up."""
    call()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append(ms_since(began))
    return times


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: a child's ru_maxrss starts
    at its parent's peak (Linux carries it across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cli_seconds(ws: Path, argv: list[str], runs: int) -> list[float]:
    """Wall seconds of ``workbench --home WS ...`` in a new process, ``runs`` times."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run([str(WORKBENCH), "--home", str(ws), *argv], capture_output=True,
                              text=True, env={**os.environ, **CHILD_ENV})
        times.append(time.perf_counter() - began)
        if done.returncode:
            raise RuntimeError(f"`workbench {' '.join(argv)}` exited {done.returncode}: "
                               f"{(done.stderr or done.stdout).strip()[-300:]}")
    return times


def child(mode: str, ws: Path, runs: int, page: str = "", timeout: float = 1800) -> dict:
    """Run this script's ``--child MODE`` in a fresh process; its JSON answer."""
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--home", str(ws),
                           "--runs", str(runs), "--page", page], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, **CHILD_ENV, "WORKBENCH_HOME": str(ws)})
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(JSON_LINE):
            return json.loads(line[len(JSON_LINE):])
    raise RuntimeError(f"--child {mode} {page} exited {done.returncode} without an answer: "
                       f"{done.stderr.strip()[-400:]}")


# -- sections: each returns figures (and may raise; the caller reports it) ----------------
def build_workspace(ctx) -> dict:
    """Build (or reuse, with --keep) the workspace; vectors/s through the store's upsert."""
    record = ctx.record_path
    if record.exists():
        saved = json.loads(record.read_text())
        if saved.get("dim") != ctx.dim:
            raise SystemExit(f"{ctx.ws} was built with {saved.get('dim')}-d vectors, not "
                             f"{ctx.dim}: remove it or pass --dim {saved.get('dim')}")
        print(f"reusing {ctx.ws} (built {saved['built_at']})")
        ctx.reused, ctx.built_at = True, saved["built_at"]
        return saved["figures"]
    store, spent, upsert = ctx.wb.vectors, [0.0], ctx.wb.vectors.upsert

    def timed_upsert(*args, **kwargs):
        began = time.perf_counter()
        try:
            return upsert(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - began

    store.upsert = timed_upsert
    began = time.perf_counter()
    try:
        build(ctx.wb, ctx.n, ctx.dim)
        written = ctx.n + write_image_embeddings(ctx.wb, ctx.n // 5, ctx.dim)
    finally:
        store.upsert = upsert
    return {"build_s": round(time.perf_counter() - began, 1), "vectors_written": written,
            "upsert_s": round(spent[0], 1), "vectors_per_s": round(written / spent[0])}


def write_image_embeddings(wb, images: int, dim: int) -> int:
    """The image embedding a detection run writes per image (the builder writes only the
    detections'): without it the image-review ranking falls back to Chroma."""
    import numpy as np

    rng = np.random.default_rng(1)
    for start in range(0, images, 10_000):
        ids = [f"doc_{i:07d}" for i in range(start, min(images, start + 10_000))]
        vectors = rng.normal(size=(len(ids), dim)).astype("float32")
        wb.vectors.upsert(f"workbench://{KEY}/image_embedding", ids,
                          vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return images


def measure_index(ctx) -> dict:
    """Chroma's index built behind the writes (every feature, as the idle worker does), with
    a detection nearest-neighbour query before and after it."""
    behind = ctx.wb.vectors.unindexed()
    if not behind:
        print("  index: nothing behind (indexed in an earlier run: figures from it)")
        return {k: v for k, v in ctx.saved.items() if k.startswith(("index", "knn"))}
    queries = ctx.wb.vectors.get(ctx.uri, [f"doc_{i:07d}_0" for i in
                                           range(0, ctx.n // 5, max(1, ctx.n // 50))][:10])

    def knn() -> list[float]:
        first = time.perf_counter()
        ctx.wb.vectors.query(ctx.uri, queries[0], 20)
        cold = ms_since(first)
        times = []
        for vector in queries:
            began = time.perf_counter()
            ctx.wb.vectors.query(ctx.uri, vector, 20)
            times.append(ms_since(began))
        return [round(cold, 1), round(statistics.median(times), 1)]

    from tqdm import tqdm

    before = knn()
    bar = tqdm(total=sum(behind.values()), desc="index", unit="vec")
    began, indexed = time.perf_counter(), 0
    for uri in behind:
        indexed += ctx.wb.vectors.index(uri, progress=lambda done, total, base=bar.n:
                                        bar.update(base + done - bar.n))
    seconds = time.perf_counter() - began
    bar.close()
    after = knn()
    return {"index_s": round(seconds, 1), "index_vectors_per_s": round(indexed / seconds),
            "knn_unindexed_first_ms": before[0], "knn_unindexed_p50_ms": before[1],
            "knn_indexed_first_ms": after[0], "knn_indexed_p50_ms": after[1]}


def disk_mb(path: Path) -> float:
    files = [path] if path.is_file() else path.rglob("*") if path.exists() else []
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def measure_disk(ctx) -> dict:
    vectors, copies = ctx.ws / "vectors", ctx.ws / "vectors" / "copies"
    return {"disk_db_mb": round(sum(disk_mb(p) for p in ctx.ws.glob("workbench.db*")), 1),
            "disk_vector_copies_mb": round(disk_mb(copies), 1),
            "disk_chroma_mb": round(disk_mb(vectors) - disk_mb(copies), 1),
            "disk_total_mb": round(disk_mb(ctx.ws), 1)}


def give_blobs(ctx) -> None:
    """A JPEG blob for every image (hard links to four small scenes): the builder writes
    rows only, and the pages, the export and FiftyOne read the images' files."""
    import io

    import sqlalchemy as sa
    from PIL import Image, ImageDraw

    from workbench.store import tables as t

    scenes = []
    for shade in range(4):
        image = Image.new("RGB", (640, 480), (40 * shade, 90, 200 - 40 * shade))
        ImageDraw.Draw(image).rectangle((100 + 50 * shade, 100, 300 + 50 * shade, 260),
                                        fill="white")
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        scenes.append(ctx.ws / f"scene-{shade}.jpg")
        scenes[-1].write_bytes(buffer.getvalue())
    with ctx.wb.db.read() as conn:
        objects = conn.execute(sa.select(t.objects.c.sha256, t.objects.c.format)).all()
    for i, obj in enumerate(objects):
        path = ctx.wb.image_path(obj)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(scenes[i % len(scenes)], path)


def annotate(ctx) -> dict:
    """Make the first images complete (every box confirmed, image done): what the export,
    FiftyOne's ground truth and the review pages need to show something."""
    wanted = min(ctx.complete, ctx.n // 50)  # a tenth of the images at most
    if ctx.wb.truth.counts("bench")["complete"] >= wanted:
        return {}
    operations = []
    for i in range(wanted):
        operations += [{"document_id": f"doc_{i:07d}_{k}", "collection_id": "bench",
                        "label": "confirmed"} for k in range(5)]
        operations.append({"document_id": f"doc_{i:07d}", "collection_id": "bench",
                           "label": "image_done"})
    began = time.perf_counter()
    for start in range(0, len(operations), 996):  # whole images per call (6 operations each)
        failed = [r for r in ctx.wb.annotations.bulk(operations[start:start + 996]) if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} annotations refused, first: {failed[0].error}")
    seconds = time.perf_counter() - began
    return {"annotations_bulk_per_s": round(len(operations) / seconds, 1),
            "complete_images": ctx.wb.truth.counts("bench")["complete"]}


def measure_taxonomy(ctx) -> dict:
    """bench/taxonomy.py's measurement: 600 references, apply, 300 more, apply again."""
    import numpy as np
    import sqlalchemy as sa

    from workbench.store import tables as t

    with ctx.wb.db.read() as conn:
        rows = conn.execute(sa.select(t.detections.c.id, t.detections.c.class_name)
                            .order_by(t.detections.c.id)).all()
    picked = np.random.default_rng(7).choice(len(rows), 900, replace=False)
    name = f"scale-{int(time.time())}"  # a new set and taxonomy in a reused workspace
    ctx.wb.references.create(name, "bench")

    def add(chosen):
        for cls in ("circle", "square", "triangle"):
            ctx.wb.references.add(name, [rows[i].id for i in chosen if rows[i].class_name == cls],
                                  true_class=cls)

    add(picked[:600])
    ctx.wb.taxonomies.create(name, name, threshold=0.3, top_k=5)
    ctx.wb.taxonomies.attach(name, "bench", "retroactive")
    first = ctx.wb.taxonomies.apply(name)
    add(picked[600:])
    retro = ctx.wb.taxonomies.apply(name)
    return {"taxonomy_first_det_per_s": round(first["classified"] / first["seconds"]),
            "taxonomy_retro_det_per_s": round(retro["classified"] / retro["seconds"]),
            "taxonomy_retro_changed": retro["changed"]}


def measure_queries(ctx) -> dict:
    """The review queue and a filtered retriever, in-process and through the CLI."""
    from workbench.errors import NotFoundError

    wb, runs = ctx.wb, max(20, 4 * ctx.runs)
    queue = wb.retrievers.review_queue("bench")
    try:
        wb.retrievers.get(FILTER)
    except NotFoundError:
        wb.retrievers.save(FILTER, "bench", [
            {"stage_type": "filter", "config": {"filters": {"AND": [
                {"field": "confidence", "operator": "lt", "value": 0.5},
                {"field": "class", "operator": "eq", "value": "triangle"}]}}},
            {"stage_type": "limit", "config": {"limit": 20}}])
    stages: dict[str, list[float]] = {}

    def queue_page():
        for stage, ms in wb.retrievers.execute(queue.name).stage_ms.items():
            stages.setdefault(stage, []).append(ms)

    queue_ms = timed_ms(queue_page, runs)
    filter_ms = timed_ms(lambda: wb.retrievers.execute(FILTER, count=True), runs)
    last = wb.retrievers.execute(FILTER, count=True)
    # A warm machine has the package's bytecode cached: Python writes it on a first import,
    # except where PYTHONDONTWRITEBYTECODE is set (as on the machine these figures come from),
    # and then compiles every module again in every command (50-80 ms of a CLI's start).
    compileall.compile_dir(str(REPO / "workbench"), quiet=1)
    queue_cli = cli_seconds(ctx.ws, ["review-queue", "bench"], ctx.runs)
    last_image = ctx.n // 5 - 1  # far from the complete images at the front: no verdict yet
    annotate_cli = [cli_seconds(ctx.ws, ["annotate", f"doc_{last_image - k:07d}_1", "-c",
                                         "bench", "-l", "confirmed"], 1)[0]
                    for k in range(ctx.runs)]
    filter_cli = cli_seconds(ctx.ws, ["retrievers", "run", FILTER, "--count"], ctx.runs)
    return {"queue_p50_ms": round(pct(queue_ms, 50), 1),
            "queue_p95_ms": round(pct(queue_ms, 95), 1),
            "queue_cli_p95_s": round(pct(queue_cli, 95), 2),
            "filter_p50_ms": round(pct(filter_ms, 50), 1),
            "filter_p95_ms": round(pct(filter_ms, 95), 1),
            "filter_matched": last.matched, "filter_matched_exact": last.matched_exact,
            "filter_cli_p95_s": round(pct(filter_cli, 95), 2),
            "cli_review_queue_s": round(statistics.median(queue_cli), 2),
            "cli_annotate_s": round(statistics.median(annotate_cli), 2),
            "cli_stats_s": round(statistics.median(
                cli_seconds(ctx.ws, ["stats", "-c", "bench"], ctx.runs)), 2),
            "cli_jobs_s": round(statistics.median(cli_seconds(ctx.ws, ["jobs"], ctx.runs)), 2)
            } | {f"queue_stage.{k}_p50_ms": round(pct(v, 50), 1) for k, v in stages.items()}


def measure_export(ctx) -> dict:
    with tempfile.TemporaryDirectory(prefix="wb-bench-scale-export-") as out:
        began = time.perf_counter()
        result = ctx.wb.export.yolo("bench", Path(out) / "yolo")
        seconds = time.perf_counter() - began
    images = sum(result.images.values())
    return {"export_images": images, "export_s": round(seconds, 2),
            "export_images_per_s": round(images / seconds)}


def measure_pages(ctx) -> dict:
    """Every page cold and warm in its own process, then all pages in one process."""
    figures, rss = {}, []
    for page in PAGES:
        name = page_name(page)
        answer = child("render", ctx.ws, ctx.runs, page)
        if answer.get("failed"):
            ctx.failures[f"page {name}"] = answer["failed"]
        figures |= {f"page.{name}.cold_s": answer["cold_s"], f"page.{name}.warm_s":
                    answer["warm_s"], f"page.{name}.rss_mb": answer["rss_mb"]}
        rss.append(answer["rss_mb"])
        served = child("render-served", ctx.ws, 0, page)
        figures[f"page.{name}.first_visit_s"] = served["cold_s"]
        print(f"  {name:12} cold {show(answer['cold_s'])} s, first visit {show(served['cold_s'])}"
              f" s, warm {show(answer['warm_s'])} s, {show(answer['rss_mb'])} MB", flush=True)
    together = child("render-all", ctx.ws, ctx.runs)
    return figures | {"app_peak_rss_mb": max(rss), "app_all_pages_rss_mb": together["rss_mb"]
                      } | {f"page.{k}.in_server_first_s": v for k, v in together["seconds"].items()}


MEASURES = {"index": measure_index, "disk": measure_disk, "annotate": annotate,
            "taxonomy": measure_taxonomy, "queries": measure_queries,
            "export": measure_export, "pages": measure_pages,
            "fiftyone": lambda ctx: child("fiftyone", ctx.ws, ctx.runs)}


# -- child processes ----------------------------------------------------------------------
def render(page: str, runs: int) -> dict:
    """One page: the first run (cold) and ``runs`` more (warm) of one AppTest."""
    from streamlit.components.v2.component_manager import BidiComponentManager
    from streamlit.testing.v1 import AppTest  # imported before the clock: not the page's

    # A server scans every installed package for components once, when it starts
    # (Runtime.__init__); AppTest does it in its first run, where it cost 0.34 s of every
    # cold figure (250 distributions). Scanned before the clock, as a server has.
    components = BidiComponentManager()
    components.discover_and_register_components(start_file_watching=False)
    began = time.perf_counter()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    at._bidi_component_manager = components  # AppTest's own slot for it (private)
    if page != "app.py":
        at.switch_page(page)
    at.run()
    cold = time.perf_counter() - began
    warm = []
    for _ in range(runs):
        began = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - began)
    problems = [f"exception: {e.message}" for e in at.exception] + \
        [f"error shown: {e.value}" for e in at.error]
    return {"cold_s": round(cold, 2), "warm_s": round(statistics.median(warm), 2) if warm
            else None, "rss_mb": peak_rss_mb(), "failed": "; ".join(problems)[:500] or None}


def child_main(args) -> dict:
    if args.child == "render":
        try:
            return render(args.page, args.runs)
        except Exception as exc:  # a page that never finishes: a figure-less failure
            return {"cold_s": None, "warm_s": None, "rss_mb": peak_rss_mb(),
                    "failed": f"{type(exc).__name__}: {exc}"[:500]}
    if args.child == "render-served":  # what `workbench app` imports before it serves
        from workbench.app_server import warm_imports

        warm_imports()
        return render(args.page, 0)
    if args.child == "render-all":
        seconds = {page_name(page): render(page, 0)["cold_s"] for page in PAGES}
        return {"rss_mb": peak_rss_mb(), "seconds": seconds}
    from workbench import Workbench  # fiftyone: first sync, then one with nothing new

    wb = Workbench.open(args.home)
    wb.fiftyone.delete("bench")
    first = wb.fiftyone.sync("bench")
    again = wb.fiftyone.sync("bench")
    return {"fiftyone_samples": first.samples, "fiftyone_first_s": first.seconds,
            "fiftyone_samples_per_s": round(first.added / first.seconds),
            "fiftyone_resync_s": again.seconds, "fiftyone_resync_unchanged": again.unchanged}


# -- one size, and the report ------------------------------------------------------------
def remember(ctx, figures: dict) -> None:
    """A finished build (and index) for --keep to reuse, with its figures."""
    if ctx.keep:
        ctx.record_path.write_text(json.dumps({"dim": ctx.dim, "built_at": ctx.built_at,
                                               "figures": figures}))


def run_size(n: int, args, root: Path) -> dict:
    from workbench import Workbench

    tag = "-postgres" if args.postgres else ""
    ws = root / f"scale-{n}{tag}"
    ctx = SimpleNamespace(n=n, dim=args.dim, runs=args.runs, ws=ws, reused=False,
                          complete=args.complete, keep=bool(args.keep), built_at=time.ctime(),
                          uri=f"workbench://{KEY}/detection_embedding", failures={},
                          record_path=root / f"scale-{n}{tag}.build.json")
    fresh = not ctx.record_path.exists()  # else a kept build to reuse
    if ws.exists() and fresh:
        shutil.rmtree(ws)  # a build that never finished: start again
    if args.postgres:  # the metadata in a database of its own; vectors and blobs in ws
        os.environ["WORKBENCH_DATABASE_URL"] = postgres_database(args.postgres,
                                                                 f"wb_scale_{n}", fresh)
    else:
        os.environ.pop("WORKBENCH_DATABASE_URL", None)  # SQLite, after a Postgres size
    ctx.wb = Workbench.open(ws)
    figures = build_workspace(ctx)
    ctx.saved = dict(figures)
    remember(ctx, figures)
    give_blobs(ctx)
    for section, measure in MEASURES.items():
        if section in args.skip:
            continue
        print(f"{section} ({n:,} detections)...", flush=True)
        try:
            figures |= measure(ctx)
        except Exception as exc:
            ctx.failures[section] = f"{type(exc).__name__}: {exc}"[:500]
            print(f"  {section} failed: {ctx.failures[section]}", flush=True)
        if section == "index":
            remember(ctx, figures)
    ctx.wb.close()
    return {"benchmark": "scale", "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}", "detections": n, "dim": args.dim,
            "runs": args.runs, "reused_workspace": ctx.reused, "skipped": sorted(args.skip),
            "metadata": "postgres" if args.postgres else "sqlite",
            "figures": figures, "failures": ctx.failures}


def postgres_database(server: str, name: str, fresh: bool) -> str:
    """The URL of database ``name`` on the Postgres ``server`` (a URL of its ``postgres``
    database), created empty when ``fresh`` (dropped first if it was there)."""
    import sqlalchemy as sa

    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        there = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(n)s",
                                     {"n": name}).first() is not None
        if fresh and there:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        if fresh or not there:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return sa.make_url(server).set(database=name).render_as_string(hide_password=False)


# SQLite against Postgres (issue 18): the figures compared when both results exist.
ENGINE_FIGURES = ("queue_p50_ms", "queue_p95_ms", "annotations_bulk_per_s",
                  "taxonomy_first_det_per_s", "taxonomy_retro_det_per_s", "filter_p95_ms",
                  "build_s")


def compare_engines(n: int) -> None:
    paths = [RESULTS / f"scale_{n}.json", RESULTS / f"scale_{n}_postgres.json"]
    if not all(p.exists() for p in paths):
        return
    sqlite, postgres = (json.loads(p.read_text())["figures"] for p in paths)
    print(f"\nSQLite vs Postgres at {n:,} detections (same machine, same builder)")
    print(f"  {'figure':34} {'SQLite':>10} {'Postgres':>10}  Postgres/SQLite")
    for name in ENGINE_FIGURES:
        a, b = sqlite.get(name), postgres.get(name)
        if isinstance(a, int | float) and isinstance(b, int | float) and a:
            print(f"  {name:34} {show(a):>10} {show(b):>10}  x{b / a:.2f}")


def verdict(name: str, value) -> str:
    for pattern, op, target, where in TARGETS:
        if fnmatch.fnmatch(name, pattern) and isinstance(value, int | float):
            met = value >= target if op == ">=" else value <= target
            return f"target {op} {target:,}{where}: {'met' if met else 'MISSED'}"
    return ""


def show(value) -> str:
    if not isinstance(value, float | int) or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 \
        else f"{value:.3f}"


def report(result: dict) -> None:
    print(f"\nscale benchmark: {result['detections']:,} detections, {result['dim']}-d "
          f"({result['machine']}){' — reused workspace' if result['reused_workspace'] else ''}")
    for name, value in result["figures"].items():
        print(f"  {name:34} {show(value):>12}   {verdict(name, value)}")
    for section, reason in result["failures"].items():
        print(f"  {section:34} failed: {reason}")


def growth() -> None:
    paths = [RESULTS / f"scale_{n}.json" for n in (100_000, 1_000_000)]
    if not all(p.exists() for p in paths):
        return
    small, large = (json.loads(p.read_text())["figures"] for p in paths)
    print("\ngrowth 100k → 1M (figure at 1M / figure at 100k; 10x the detections)")
    for name, value in large.items():
        before = small.get(name)
        if isinstance(value, int | float) and isinstance(before, int | float) and before \
                and not isinstance(value, bool):
            print(f"  {name:34} {show(before):>10} → {show(value):>10}  x{value / before:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--complete", type=int, default=500,
                        help="images made complete (every box reviewed) for export and FiftyOne")
    parser.add_argument("--keep", type=Path, help="build (or reuse) workspaces under DIR")
    parser.add_argument("--skip", default="", help=f"comma list of: {', '.join(SECTIONS)}")
    parser.add_argument("--postgres", metavar="URL", help="run each size on SQLite, then with "
                        "the metadata on this Postgres server (postgresql+psycopg://user@host:"
                        "port/postgres; a database wb_scale_<n> per size), and compare")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--page", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(JSON_LINE + json.dumps(child_main(args)), flush=True)
        return
    args.skip = {s for s in args.skip.split(",") if s}
    if args.skip - set(SECTIONS):
        parser.error(f"unknown sections {sorted(args.skip - set(SECTIONS))}; "
                     f"sections: {', '.join(SECTIONS)}")
    RESULTS.mkdir(exist_ok=True)
    # With --postgres each size runs on SQLite and then on Postgres, side by side in one run.
    engines = [None, args.postgres] if args.postgres else [None]
    for n in (int(s) for s in args.sizes.split(",")):
        for url in engines:
            on_engine = argparse.Namespace(**{**vars(args), "postgres": url})
            with tempfile.TemporaryDirectory(prefix="wb-bench-scale-") as tmp:
                root = args.keep or Path(tmp)
                root.mkdir(parents=True, exist_ok=True)
                result = run_size(n, on_engine, root.resolve())
            suffix = "_postgres" if url else ""
            (RESULTS / f"scale_{n}{suffix}.json").write_text(json.dumps(result, indent=2))
            report(result)
        compare_engines(n)
    growth()


if __name__ == "__main__":
    main()
