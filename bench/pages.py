"""Page benchmark (issue 16): every page of the app (app.py and every file in pages/) rendered
with AppTest on the 150-image demo and on a 100,000-detection workspace; target: each page in
at most 1.5 s at 100k.

Per workspace and page, ``--runs`` fresh processes (5 by default): in each, streamlit and
AppTest are imported before the clock, then the page's first render in the process is timed
(cold: caches empty, the workspace opened, the page's modules imported) and ``--runs`` more
reruns of it (warm: what a user's next click costs); then ``--runs`` processes that first
import what ``workbench app`` imports before it serves (workbench.app_server), whose first
render is a user's first visit to the page in the served app (the target's figure, with warm;
the bare cold figure is printed beside it). A page's cold figure is the median of
its processes' first renders, its warm figure the median of their reruns' medians.

The 100k workspace is the one bench/scale.py builds (its builder, imported: rows and
vectors as a batch run writes them, a JPEG blob per image, 500 complete images, Chroma's
index, a taxonomy applied to every detection), with a cluster run added; the demo is the
Home page's demo (ShapeWorld scenes detected by the starter) with a few images reviewed by
the simulated reviewer and a cluster run. ``--keep DIR`` builds them under DIR once and
reuses them (a workspace bench/scale.py built there with --keep is reused too).

Prints a table with the load average and writes bench/results/pages.json.

    .venv/bin/python bench/pages.py [--runs 5] [--keep DIR] [--detections 100000]
        [--dim 1024] [--pages Detect,Stats] [--workspaces demo,100k]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # noqa: E402  (its workspace builder and its AppTest render, not copies)

REPO = scale.REPO
RESULTS = scale.RESULTS
TARGET_S = 1.5
JSON_LINE = "PAGES-JSON "
CHILD_ENV = scale.CHILD_ENV


# -- workspaces ---------------------------------------------------------------------------
def build_demo(root: Path, review_budget: int = 120) -> Path:
    """The Home page's demo, a few images reviewed, one cluster run (once under ``root``)."""
    from workbench import Workbench
    from workbench.demo import DEMO_COLLECTION
    from workbench.demo.reviewer import GroundTruth, SimulatedReviewer

    ws, record = root / "demo", root / "demo.build.json"
    if record.exists():
        print(f"reusing {ws} (built {json.loads(record.read_text())['built_at']})")
        return ws
    if ws.exists():
        import shutil

        shutil.rmtree(ws)  # a build that never finished: start again
    began = time.perf_counter()
    wb = Workbench.open(ws)
    print("demo: scenes, starter model, detection...", flush=True)
    setup = wb.demo.setup(scale=1.0)
    print("demo: simulated review...", flush=True)
    SimulatedReviewer(wb, GroundTruth.for_demo(wb)).review_images(
        DEMO_COLLECTION, budget=review_budget, order="random")
    print("demo: cluster run...", flush=True)
    wb.clusters.run(DEMO_COLLECTION, "kmeans", {"n_clusters": 6, "n_init": "auto"})
    wb.close()
    record.write_text(json.dumps({"built_at": time.ctime(), "setup": setup,
                                  "build_s": round(time.perf_counter() - began, 1)}))
    return ws


def build_large(root: Path, n: int, dim: int) -> Path:
    """bench/scale.py's workspace of ``n`` detections (built, given blobs, annotated and
    indexed by its own functions), a taxonomy applied to it and a cluster run."""
    from workbench import Workbench

    ws = root / f"scale-{n}"
    ctx = SimpleNamespace(n=n, dim=dim, runs=1, ws=ws, reused=False, complete=500,
                          keep=True, built_at=time.ctime(), failures={},
                          uri=f"workbench://{scale.KEY}/detection_embedding",
                          record_path=root / f"scale-{n}.build.json")
    if ws.exists() and not ctx.record_path.exists():
        import shutil

        shutil.rmtree(ws)  # a build that never finished: start again
    ctx.wb = Workbench.open(ws)
    figures = scale.build_workspace(ctx)
    ctx.saved = dict(figures)
    scale.remember(ctx, figures)
    scale.give_blobs(ctx)
    scale.annotate(ctx)
    if ctx.wb.vectors.unindexed():
        figures |= scale.measure_index(ctx)  # what the idle worker does behind the writes
        scale.remember(ctx, figures)
    if not ctx.wb.taxonomies.list():
        print("100k: taxonomy (600 then 900 references, applied to every detection)...",
              flush=True)
        scale.measure_taxonomy(ctx)
    if not ctx.wb.clusters.list("bench"):
        print("100k: cluster run (uncertain triangles)...", flush=True)
        ctx.wb.clusters.run("bench", "kmeans", {"n_clusters": 8, "n_init": "auto"}, {"AND": [
            {"field": "class", "operator": "eq", "value": "triangle"},
            {"field": "confidence", "operator": "lt", "value": 0.4}]})
    ctx.wb.close()
    return ws


# -- measuring ----------------------------------------------------------------------------
def child(ws: Path, page: str, runs: int, served: bool = False) -> dict:
    """One fresh process: the page's first render and ``runs`` reruns (scale.render); with
    ``served``, after the imports ``workbench app`` makes before it serves."""
    done = subprocess.run([sys.executable, __file__, "--child", page, "--home", str(ws),
                           "--runs", str(runs), *(["--served"] if served else [])],
                          capture_output=True, text=True, cwd=REPO,
                          timeout=900, env={**os.environ, **CHILD_ENV,
                                            "WORKBENCH_HOME": str(ws)})
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(JSON_LINE):
            return json.loads(line[len(JSON_LINE):])
    return {"cold_s": None, "warm_s": None, "failed": f"exited {done.returncode}: "
            f"{done.stderr.strip()[-400:]}"}


def measure(ws: Path, pages: list[str], runs: int) -> dict[str, dict]:
    figures = {}
    for page in pages:
        answers = [child(ws, page, runs) for _ in range(runs)]
        visits = [a["cold_s"] for a in (child(ws, page, 0, served=True) for _ in range(runs))
                  if a["cold_s"] is not None]
        colds = [a["cold_s"] for a in answers if a["cold_s"] is not None]
        warms = [a["warm_s"] for a in answers if a["warm_s"] is not None]
        failed = sorted({a["failed"] for a in answers if a.get("failed")})
        name = scale.page_name(page)
        figures[name] = {
            "cold_s": round(statistics.median(colds), 2) if colds else None,
            "first_visit_s": round(statistics.median(visits), 2) if visits else None,
            "warm_s": round(statistics.median(warms), 2) if warms else None,
            "cold_runs_s": colds, "rss_mb": max((a.get("rss_mb") or 0) for a in answers),
            "failed": "; ".join(failed)[:500] or None}
        print(f"  {name:12} cold {show(figures[name]['cold_s'])} s, first visit "
              f"{show(figures[name]['first_visit_s'])} s, warm "
              f"{show(figures[name]['warm_s'])} s" + (f"  FAILED: {failed[0][:200]}"
                                                      if failed else ""), flush=True)
    return figures


def show(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def met(entry: dict, first: str = "first_visit_s") -> bool:
    """A user's first visit (in the app as ``workbench app`` serves it) and their next clicks
    within the target; with ``first="cold_s"``, a bare process's first render instead."""
    return (not entry["failed"] and entry[first] is not None and entry["warm_s"] is not None
            and entry[first] <= TARGET_S and entry["warm_s"] <= TARGET_S)


def table(results: dict[str, dict[str, dict]], large: str | None) -> None:
    names = list(next(iter(results.values())))
    header = f"{'page':12}" + "".join(f" | {ws + ' cold':>12} | {ws + ' visit':>12} | "
                                       f"{ws + ' warm':>12}" for ws in results)
    print("\n" + header + (f" | target ≤ {TARGET_S} s at {large}" if large else ""))
    print("-" * len(header) + ("-" * 26 if large else ""))
    for name in names:
        line = f"{name:12}" + "".join(f" | {show(results[ws][name]['cold_s']):>12} | "
                                      f"{show(results[ws][name]['first_visit_s']):>12} | "
                                      f"{show(results[ws][name]['warm_s']):>12}"
                                      for ws in results)
        if large:
            line += f" | {'met' if met(results[large][name]) else 'MISSED'}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per page, and "
                        "reruns per process")
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the workspaces under DIR")
    parser.add_argument("--pages", default="", help="comma list of page names (default all)")
    parser.add_argument("--workspaces", default="demo,100k")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--served", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.served:  # what `workbench app` imports before it serves (app_server)
            from workbench.app_server import warm_imports

            warm_imports()
        print(JSON_LINE + json.dumps(scale.render(args.child, args.runs)), flush=True)
        return

    pages = [p for p in scale.PAGES if not args.pages or
             scale.page_name(p) in args.pages.split(",")]
    large = f"{args.detections // 1000}k"
    wanted = args.workspaces.split(",")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="wb-bench-pages-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        workspaces = {}
        if "demo" in wanted:
            workspaces["demo"] = build_demo(root)
        if "100k" in wanted or large in wanted:
            workspaces[large] = build_large(root, args.detections, args.dim)
        began = time.perf_counter()
        results = {}
        for label, ws in workspaces.items():
            print(f"pages on {label} ({ws}), {args.runs} processes per page:", flush=True)
            results[label] = measure(ws, pages, args.runs)
    load_after = os.getloadavg()
    table(results, large if large in results else None)
    print(f"\nload average (1, 5, 15 min): {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f} before, {load_after[0]:.2f} {load_after[1]:.2f} "
          f"{load_after[2]:.2f} after; {os.cpu_count()} cores; measured in "
          f"{time.perf_counter() - began:.0f} s")
    missed = [n for n, e in results.get(large, {}).items() if not met(e)]
    bare = [n for n, e in results.get(large, {}).items() if not met(e, "cold_s")]
    if large in results:
        print(f"target ≤ {TARGET_S} s, first visit and warm, at {large}: " +
              ("met by every page" if not missed else f"MISSED by {', '.join(missed)}"))
        print("  (first render in a bare process, nothing imported before: " +
              ("every page within it)" if not bare else f"over it: {', '.join(bare)})"))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "pages.json"
    out.write_text(json.dumps({
        "benchmark": "pages", "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}", "runs": args.runs, "target_s": TARGET_S,
        "detections": args.detections, "dim": args.dim,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "missed": missed, "results": results}, indent=1))
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
