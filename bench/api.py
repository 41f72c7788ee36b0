"""What HTTP costs: the API's calls against a real ``workbench serve``, beside the same calls
made in-process, on a 100,000-detection workspace.

Builds the workspace with bench/review.py's ``build()`` (rows written directly, vectors
through the vector store; ``--keep DIR`` keeps and reuses it), starts ``workbench serve`` (a
real uvicorn server) on a free loopback port, and measures p50/p95 of

  (a) one annotation create (``POST /v1/annotations`` / ``wb.annotations.create``),
  (b) a review-queue page (``POST /v1/collections/bench/review-queue``, 20 items, leased to
      the reviewer / ``wb.retrievers.execute(..., reviewer=...)``: the same reviewer, so both
      get the same page and renew its leases),
  (c) the stats (``GET /v1/annotations/stats`` / ``wb.stats.report``),
  (d) a bulk request of 1,000 annotation creates (``POST /v1/annotations/bulk`` /
      ``wb.annotations.bulk``),

over HTTP (httpx, one kept-alive connection) and in-process, with the ratio and the issue's
targets (create p95 <= 15 ms, queue page p95 <= 50 ms, bulk 1,000 <= 1.5 s, the median of
its runs) marked met or MISSED for the HTTP figures. The load average is recorded before and
after: the 2 cores are shared, so one run says little. Writes bench/results/api.json.

    .venv/bin/python bench/api.py [--detections 100000] [--dim 448] [--runs 100]
        [--bulk-runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from review import build, pct  # noqa: E402  (the same synthetic workspace)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
COLLECTION = "bench"
PAGE = 20
TARGETS_MS = {"create": ("p95", 15.0), "queue_page": ("p95", 50.0),
              "bulk_1000": ("p50", 1500.0)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``workbench serve`` on a free port, once it answers."""
    import httpx

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "workbench", "--home", str(home), "serve", "--port", str(port),
         "--no-worker"], stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/docs", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.terminate()
            raise SystemExit("the server did not answer /docs in 120 s")
        time.sleep(0.2)


def _timed(call, runs: int, warm: int = 3) -> list[float]:
    """Milliseconds of ``runs`` calls, after ``warm`` untimed ones."""
    for _ in range(warm):
        call()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(times, 50), 2), "p95_ms": round(pct(times, 95), 2),
            "runs": len(times)}


def _workspace(args, root: Path):
    """The built workspace (reused with --keep when a finished build is there)."""
    from workbench import Workbench

    ws, record = root / "api-ws", root / "api-ws.build.json"
    if ws.exists() and record.exists() and json.loads(record.read_text()) == {
            "detections": args.detections, "dim": args.dim}:
        return Workbench.open(ws), 0.0, True
    if ws.exists():
        shutil.rmtree(ws)  # a build that never finished, or another size: start again
    wb = Workbench.open(ws)
    began = time.perf_counter()
    build(wb, args.detections, args.dim)
    seconds = time.perf_counter() - began
    record.write_text(json.dumps({"detections": args.detections, "dim": args.dim}))
    return wb, seconds, False


def measure(args, root: Path) -> dict:
    import httpx

    wb, build_s, reused = _workspace(args, root)
    reviewer = wb.annotations.default_author  # what an open loopback request acts as
    queue = wb.retrievers.review_queue(COLLECTION, PAGE)
    n_images = args.detections // 5
    # Each create judges another image's most confident box, each bulk request 1,000 other
    # boxes, least confident first. One reviewer name throughout, so no write is refused.
    creates = itertools.cycle([f"doc_{i:07d}_0" for i in range(n_images)])
    bulk_ids = itertools.cycle([f"doc_{i:07d}_{k}" for k in (4, 3, 2, 1)
                                for i in range(n_images)])

    def one(client=None):
        fields = {"document_id": next(creates), "collection_id": COLLECTION,
                  "label": "confirmed"}
        if client is None:
            return wb.annotations.create(**fields)
        answer = client.post("/v1/annotations", json=fields)
        assert answer.status_code == 201, answer.text

    def page(client=None):
        if client is None:
            return wb.retrievers.execute(queue.name, {"limit": PAGE}, count=False,
                                         reviewer=reviewer)
        answer = client.post(f"/v1/collections/{COLLECTION}/review-queue",
                             json={"limit": PAGE, "count": False})
        assert answer.status_code == 200 and answer.json()["results"], answer.text

    def stats(client=None):
        if client is None:
            return wb.stats.report("col_b")
        answer = client.get("/v1/annotations/stats", params={"collection_id": COLLECTION})
        assert answer.status_code == 200, answer.text

    def bulk(client=None):
        operations = [{"op": "create", "document_id": next(bulk_ids),
                       "collection_id": COLLECTION, "label": "false_positive"}
                      for _ in range(1000)]
        if client is None:
            results = wb.annotations.bulk(operations)
            assert all(r.ok for r in results)
            return results
        answer = client.post("/v1/annotations/bulk", json={"operations": operations})
        assert answer.status_code == 200 and answer.json()["failed"] == 0, answer.text

    calls = {"create": (one, args.runs), "queue_page": (page, args.runs),
             "stats": (stats, max(10, args.runs // 5)), "bulk_1000": (bulk, args.bulk_runs)}
    load_before = os.getloadavg()
    server, base = _serve(wb.home, root / "serve.log")
    figures: dict[str, dict] = {}
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for name, (call, runs) in calls.items():
                warm = 1 if name == "bulk_1000" else 3
                over_http = _timed(lambda c=call: c(client), runs, warm)
                in_process = _timed(call, runs, warm)
                http, local = _summary(over_http), _summary(in_process)
                figures[name] = {"http": http, "in_process": local,
                                 "ratio_p50": round(http["p50_ms"] / local["p50_ms"], 2)}
                print(f"{name:>10}: http p50 {http['p50_ms']:8.2f} p95 {http['p95_ms']:8.2f} ms"
                      f" | in-process p50 {local['p50_ms']:8.2f} p95 {local['p95_ms']:8.2f} ms"
                      f" | x{figures[name]['ratio_p50']}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    targets = {}
    for name, (statistic, limit) in TARGETS_MS.items():
        got = figures[name]["http"][f"{statistic}_ms"]
        targets[name] = {"statistic": statistic, "target_ms": limit, "http_ms": got,
                         "met": got <= limit}
    wb.close()
    return {"detections": args.detections, "dim": args.dim, "page": PAGE,
            "reused_workspace": reused, "build_s": round(build_s, 1), "figures": figures,
            "targets": targets, "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=448)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--bulk-runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the workspace under DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wb-bench-api-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        result = measure(args, root)
    for name, target in result["targets"].items():
        print(f"{name}: {target['statistic']} {target['http_ms']:.2f} ms over HTTP, target "
              f"<= {target['target_ms']:.0f} ms: {'met' if target['met'] else 'MISSED'}")
    print(f"load average before {result['load_average_before']}, after "
          f"{result['load_average_after']} on {result['cpus']} CPUs")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
