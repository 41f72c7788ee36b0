"""Ray executor benchmark (issue 18): the local executor and the Ray executor side by side.

The same images in one run, one workspace, two collections over them: a batch run with
``WORKBENCH_EXECUTOR=local`` (decode threads and the model in this process) and one with
``WORKBENCH_EXECUTOR=ray`` on a Ray head this script starts on 127.0.0.1 with ``--cpus``
CPUs (or the cluster of ``--address``), twice: the worker's first Ray run ("cold": it joins
the cluster and starts its model actors) and its next run of the same model over a third
collection ("warm": the actors are kept between runs, ``ray_actor_idle_s``), as a worker
that stays up runs them. All runs write through the same store code; their documents and
detections are compared. Per run: images/s end to end (the whole ``wb.detection.run``:
model loading, and for Ray joining the cluster and its actors' start, included) and in the
steady state (from the first batch written to the last), and the ratios Ray / local (Ray's
overhead on one machine; target >= 0.8). With ``--raw`` also raw ultralytics batched
predict over the same files (for a GPU machine: one Ray actor per GPU against it). Prints
the load average before and after, and writes bench/results/ray_executor.json
(``ray_executor_<n>.json`` for another ``--n``).

    .venv/bin/python bench/ray_executor.py [--n 300] [--imgsz 320] [--batch 8] [--cpus 2]
        [--address HOST:PORT] [--raw] [--weights PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
STARTER = REPO / "data" / "starter" / "shapeworld_starter.pt"
RAY_CLI = Path(sys.executable).parent / "ray"
TARGET = 0.8


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def start_head(cpus: int, root: Path) -> tuple[subprocess.Popen, str]:
    """A Ray head on 127.0.0.1 with ``cpus`` CPUs (``ray start --block``, stopped by
    SIGTERM); returns it and its address once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    head = subprocess.Popen(
        [str(RAY_CLI), "start", "--head", "--block", "--num-cpus", str(cpus),
         "--node-ip-address", "127.0.0.1", "--port", str(port), "--temp-dir", str(root),
         "--include-dashboard", "false", "--disable-usage-stats",
         "--object-store-memory", str(500 * 2**20)],
        stdout=open(root / "head.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise SystemExit(f"`ray start` exited {head.returncode}: "
                             f"{(root / 'head.log').read_text()[-1500:]}")
        if subprocess.run([str(RAY_CLI), "status", "--address", address],
                          capture_output=True).returncode == 0:
            return head, address
        time.sleep(1)
    stop_head(head)
    raise SystemExit(f"the Ray head did not answer in 120 s: {(root / 'head.log').read_text()}")


def stop_head(head: subprocess.Popen) -> None:
    """SIGTERM to the ``ray start --block`` group: it stops what it started."""
    if head.poll() is None:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def timed_run(wb, collection: str, params) -> dict:
    """One batch run: wall seconds, and the steady state from its first written batch."""
    marks: list[tuple[float, int]] = []

    def listener(job) -> None:
        if job.status == "running" and job.progress_done:
            marks.append((time.perf_counter(), job.progress_done))

    began = time.perf_counter()
    job = wb.detection.run(collection, params=params, listener=listener)
    seconds = time.perf_counter() - began
    if job.status != "done":
        raise SystemExit(f"the {collection} run ended {job.status}: {job.message}")
    images = job.result["processed_now"]
    (first_at, first_done), (last_at, last_done) = marks[0], marks[-1]
    steady = (last_done - first_done) / (last_at - first_at) if last_at > first_at else None
    return {"seconds": round(seconds, 2), "images_per_s": round(images / seconds, 2),
            "steady_images_per_s": round(steady, 2) if steady else None,
            "first_batch_after_s": round(first_at - began, 2),
            "images": images, "detections": job.result["detections_now"]}


def raw_predict(files: list[Path], weights: str, params, device: str) -> dict:
    from ultralytics import YOLO

    model = YOLO(weights)
    kwargs = dict(imgsz=params.imgsz, conf=params.conf, iou=params.iou, device=device,
                  verbose=False)
    batch = params.batch_size
    model.predict([str(f) for f in files[:batch]], batch=batch, **kwargs)  # warm up
    began = time.perf_counter()
    for i in range(0, len(files), batch):
        chunk = [str(f) for f in files[i:i + batch]]
        model.predict(chunk, batch=len(chunk), **kwargs)
    seconds = time.perf_counter() - began
    return {"seconds": round(seconds, 2), "images_per_s": round(len(files) / seconds, 2)}


def same_results(wb) -> bool:
    """Whether the collections hold the same boxes per image (class, box to 1e-4)."""
    key = wb.collections.get("local").active_version
    found = {}
    for name in ("local", "ray", "ray-warm"):
        collection = wb.collections.get(name)
        found[name] = sorted((d.object_id, d.index, d.class_name, *(round(v, 4) for v in d.xyxy))
                             for d in wb.detection.detections(collection, f"yolo_detector@{key}"))
    return found["local"] == found["ray"] == found["ray-warm"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray head started here")
    parser.add_argument("--address", help="join this Ray cluster instead of starting a head")
    parser.add_argument("--raw", action="store_true", help="also raw ultralytics predict")
    parser.add_argument("--weights", default=str(STARTER))
    args = parser.parse_args()

    if args.address is None:  # one machine: Ray stays on the loopback (read at import)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ["RAY_AUTH_MODE"] = "token"  # with a token of its own, whatever ~/.ray holds
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import ultralytics  # noqa: F401  (imported before the clocks, as for both executors)

    from workbench import Workbench
    from workbench.config import resolve_device
    from workbench.demo.shapeworld import SceneConfig, write_dataset
    from workbench.params import DetectParams

    params = DetectParams(imgsz=args.imgsz, batch_size=args.batch)
    load_before = load_average()
    head = None
    with tempfile.TemporaryDirectory(prefix="wb-bench-ray-") as tmp:
        root = Path(tmp)
        try:
            address = args.address
            if address is None:
                (root / "ray").mkdir()
                head, address = start_head(args.cpus, root / "ray")
            scenes = write_dataset(root / "scenes", SceneConfig(lighting="mixed", clutter=2),
                                   args.n, seed=9)
            wb = Workbench.open(root / "ws")
            wb.buckets.create("bench")
            wb.ingest.run("bench", [scenes / "images"])
            wb.registry.register_yolo(args.weights)
            for name in ("local", "ray", "ray-warm"):
                wb.collections.create(name, ["bench"])
            print(f"{args.n} images at imgsz {args.imgsz}, batch {args.batch}; load average "
                  f"{load_before}", flush=True)
            local = timed_run(wb, "local", params)
            print(f"  local: {local}", flush=True)
            wb.close()
            wb = Workbench.open(root / "ws", executor="ray", ray_address=address)
            remote = timed_run(wb, "ray", params)
            print(f"  ray (cold): {remote}", flush=True)
            warm = timed_run(wb, "ray-warm", params)
            print(f"  ray (warm): {warm}", flush=True)
            resources = ray.cluster_resources()
            identical = same_results(wb)
            raw = None
            if args.raw:
                raw = raw_predict(sorted((scenes / "images").iterdir()), args.weights, params,
                                  resolve_device("auto"))
            wb.close()
        finally:
            ray.shutdown()
            if head is not None:
                stop_head(head)
    ratio = remote["images_per_s"] / local["images_per_s"]
    warm_ratio = warm["images_per_s"] / local["images_per_s"]
    steady_ratio = (warm["steady_images_per_s"] / local["steady_images_per_s"]
                    if warm["steady_images_per_s"] and local["steady_images_per_s"] else None)
    result = {
        "benchmark": "ray_executor",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "ray_cluster": {k: v for k, v in resources.items() if k in ("CPU", "GPU")},
        "images": args.n, "imgsz": args.imgsz, "batch": args.batch,
        "local": local, "ray": remote, "ray_warm": warm,
        "ratio_ray_over_local": round(ratio, 3),
        "ratio_warm_ray_over_local": round(warm_ratio, 3),
        "steady_ratio_ray_over_local": round(steady_ratio, 3) if steady_ratio else None,
        "same_detections": identical,
        "raw_predict": raw,
        "load_average_before": load_before, "load_average_after": load_average(),
        "target_ratio": TARGET,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "ray_executor.json" if args.n == 300 else f"ray_executor_{args.n}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(f"\nray executor benchmark: {args.n} ShapeWorld images at imgsz {args.imgsz}, batch "
          f"{args.batch}, on {result['machine']}; Ray cluster {result['ray_cluster']}")
    for name, run in (("local executor", local), ("ray, first run", remote),
                      ("ray, next run", warm)):
        print(f"  {name:15} {run['images_per_s']:7.2f} images/s end to end "
              f"({run['seconds']} s, first batch written after {run['first_batch_after_s']} s), "
              f"{run['steady_images_per_s']} images/s steady")
    for name, value in (("first run", ratio), ("next run", warm_ratio)):
        print(f"  ratio ray/local, {name:9} {value:7.3f} end to end (target >= {TARGET}: "
              f"{'met' if value >= TARGET else 'MISSED'})")
    print(f"  ratio ray/local steady (next run) {result['steady_ratio_ray_over_local']}")
    print(f"  same detections: {identical} ({local['detections']} local, "
          f"{remote['detections']} and {warm['detections']} ray)")
    if raw:
        print(f"  raw ultralytics predict {raw['images_per_s']:.2f} images/s")
    print(f"  load average before {load_before}, after {result['load_average_after']}")


if __name__ == "__main__":
    main()
