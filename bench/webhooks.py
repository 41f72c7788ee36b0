"""Webhook benchmark: 10,000 events to a local receiver, then the same with the receiver down
for 10 minutes in the middle.

Events are recorded the way the services record them (an event row and its outbox rows in one
transaction); a dispatcher thread — the one the worker runs — delivers them to a threaded HTTP
receiver on 127.0.0.1 that checks every signature. Prints deliveries/s, the p50/p95
event-to-delivery latency, and, for the outage run, that the delivered count equals the
emitted count (every event arrives once the receiver is back; duplicates are counted apart)
and how long after the receiver came back the last one arrived. The product's own retry
policy is used unchanged (backoff up to 1 h, a 24 h window): an outage of ten minutes must not
lose an event. Writes bench/results/webhooks.json.

    .venv/bin/python bench/webhooks.py [--events 10000] [--outage 600]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


class Receiver:
    """A receiver in a process of its own (as a real one would be: not sharing our GIL) that
    verifies each signature and logs ``event id, delivery id, arrival time, signature ok``
    to a file. HTTP/1.0, so that stopping it really takes it down."""

    def __init__(self, secret: str, log: Path, port: int = 0):
        import socket
        import subprocess
        import sys

        if not port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", str(port),
                                         "--secret", secret, "--log", str(log)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    def close(self):
        self.process.terminate()
        self.process.wait(10)


def serve(port: int, secret: str, log: Path) -> None:
    from workbench.webhooks import verify_signature

    out = open(log, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify_signature(secret, self.headers["X-Workbench-Timestamp"], body,
                                  self.headers["X-Workbench-Signature"])
            out.write(f"{json.loads(body)['id']} {self.headers['X-Workbench-Delivery']} "
                      f"{time.time():.6f} {int(ok)}\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def read_log(log: Path):
    first, deliveries, bad = {}, [], 0
    if log.exists():
        for line in log.read_text().splitlines():
            event_id, delivery_id, at, ok = line.split()
            first.setdefault(event_id, float(at))
            deliveries.append(delivery_id)
            bad += ok != "1"
    return first, deliveries, bad


def emit(wb, n: int, emitted: dict[str, float], pace_s: float = 0.0) -> None:
    from workbench.events import record_event

    for i in range(n):
        with wb.db.write() as conn:
            event_id = record_event(conn, "annotation.created", {"n": i})
        emitted[event_id] = time.time()
        if pace_s:
            time.sleep(pace_s)


def run(args, outage: bool) -> dict:
    from workbench import Workbench

    with tempfile.TemporaryDirectory(prefix="wb-bench-webhooks-") as tmp:
        wb = Workbench.open(Path(tmp) / "ws")
        secret = "whsec_bench"
        log = Path(tmp) / "arrivals.log"
        receiver = Receiver(secret, log)
        port = receiver.port
        wb.webhooks.create("bench", f"http://127.0.0.1:{port}/hook", ["*"], secret=secret)
        stop = threading.Event()
        dispatcher = threading.Thread(target=wb.webhooks.run_dispatcher, args=(stop, 0.05),
                                      daemon=True)
        dispatcher.start()
        emitted: dict[str, float] = {}
        started = time.monotonic()
        if outage:
            emit(wb, args.events // 3, emitted)
            receiver.close()
            down_at = time.monotonic()
            # Events keep coming while the receiver is down.
            emit(wb, args.events // 3, emitted, pace_s=args.outage / (args.events // 3))
            while time.monotonic() - down_at < args.outage:
                time.sleep(0.1)
            receiver = Receiver(secret, log, port)
            back_at = time.time()
            if not args.quiet_return:  # else only retries can find out that it is back
                emit(wb, args.events - 2 * (args.events // 3), emitted)
        else:
            emit(wb, args.events, emitted)
        emitted_s = time.monotonic() - started
        deadline = time.monotonic() + 600
        while len(read_log(log)[0]) < len(emitted) and time.monotonic() < deadline:
            time.sleep(0.2)
        finished = time.monotonic() - started
        stop.set()
        dispatcher.join(timeout=15)
        receiver.close()
        first, deliveries, bad = read_log(log)
        latencies = sorted(first[e] - emitted[e] for e in emitted if e in first)
        with wb.db.read() as conn:
            import sqlalchemy as sa

            from workbench.store import tables as t

            attempts = conn.execute(sa.select(sa.func.count()).select_from(
                t.webhook_attempts)).scalar_one()
        settings = wb.settings
        wb.close()

    def pct(q):
        return latencies[min(len(latencies) - 1, round(q / 100 * (len(latencies) - 1)))]

    recovered = (round(max(first.values()) - back_at, 1)
                 if outage and first else None)  # the last arrival after the receiver's return
    return {"outage_s": args.outage if outage else 0, "emitted": len(emitted),
            "retry_window_s": settings.webhook_retry_window_s,
            "backoff_max_s": settings.webhook_backoff_max_s, "attempts": attempts,
            "all_in_s_after_return": recovered,
            "delivered_events": len(first), "requests": len(deliveries),
            "duplicates": len(deliveries) - len(set(deliveries)),
            "bad_signatures": bad, "emit_s": round(emitted_s, 2),
            "total_s": round(finished, 2),
            "deliveries_per_s": round(len(first) / finished, 1),
            "latency_p50_ms": round(pct(50) * 1000, 1), "latency_p95_ms": round(pct(95) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--outage", type=float, default=600.0)
    parser.add_argument("--quiet-return", action="store_true",
                        help="Emit nothing once the receiver is back (only retries reach it).")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.secret, args.log)
        return
    steady = run(args, outage=False)
    print(f"steady: {steady['delivered_events']}/{steady['emitted']} delivered, "
          f"{steady['deliveries_per_s']} deliveries/s, p50 {steady['latency_p50_ms']} ms, "
          f"p95 {steady['latency_p95_ms']} ms, bad signatures {steady['bad_signatures']}",
          flush=True)
    down = run(args, outage=True)
    print(f"receiver down {args.outage:.0f} s: {down['delivered_events']}/{down['emitted']} "
          f"delivered ({down['requests']} requests, {down['duplicates']} duplicates, "
          f"{down['attempts']} attempts), {down['total_s']} s in all, p95 "
          f"{down['latency_p95_ms']} ms; every event in {down['all_in_s_after_return']} s after "
          f"the receiver came back (retry window {down['retry_window_s']:.0f} s, backoff cap "
          f"{down['backoff_max_s']:.0f} s)", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"benchmark": "webhooks", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "settings": vars(args), "steady": steady, "outage": down,
              "peak_rss_mb": round(peak_mb)}
    RESULTS.mkdir(exist_ok=True)
    name = "webhooks-quiet-return.json" if args.quiet_return else "webhooks.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    assert down["delivered_events"] == down["emitted"], "events were lost"
    print(f"peak memory {peak_mb:.0f} MB RSS ({result['machine']})")


if __name__ == "__main__":
    main()
