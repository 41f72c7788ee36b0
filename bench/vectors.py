"""Vector write and read benchmark at 1,024-d, side by side in one run.

Writes the same clustered random vectors, 5,000 per upsert, into Chroma under four HNSW
settings (default; a large batch and sync threshold; a lighter graph with and without them)
and into the workbench's contiguous float16 copy, and prints vectors/s per 5,000-vector step
(the rate falls as an HNSW graph grows), a nearest-neighbour query's latency and recall@10,
and reading every vector back by id from Chroma and from the copy. Writes
bench/results/vectors.json.

    .venv/bin/python bench/vectors.py [--n 20000] [--dim 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STEP = 5000
CONFIGS = {
    "chroma default": None,
    "chroma batch 10k, sync 100k": {"batch_size": 10_000, "sync_threshold": 100_000},
    "chroma ef_construction 64, M 12": {"batch_size": 10_000, "sync_threshold": 100_000,
                                        "ef_construction": 64, "max_neighbors": 12},
    "chroma ef_construction 64, M 12 only": {"ef_construction": 64, "max_neighbors": 12},
}
QUERIES = 20  # recall@10 against an exact search, over this many queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1024)
    args = parser.parse_args()

    import chromadb
    import numpy as np
    from chromadb.config import Settings

    from workbench.store.vectors import VectorCopy

    rng = np.random.default_rng(0)
    # Clustered like detection embeddings (objects of a class sit together), not uniform
    # noise, on which no index finds neighbours (every distance is alike).
    centres = rng.standard_normal((50, args.dim), dtype=np.float32)
    data = centres[rng.integers(50, size=args.n)] + \
        0.8 * rng.standard_normal((args.n, args.dim), dtype=np.float32)
    ids = [f"v{i}" for i in range(args.n)]
    query = rng.standard_normal(args.dim, dtype=np.float32)
    # Queries near stored vectors (as "find similar" asks), and their exact cosine top 10.
    probes = data[rng.choice(args.n, QUERIES, replace=False)] + \
        0.1 * rng.standard_normal((QUERIES, args.dim), dtype=np.float32)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    exact = [set(np.argsort(-(unit @ (p / np.linalg.norm(p))))[:10]) for p in probes]
    results: dict[str, dict] = {}
    for name, hnsw in CONFIGS.items():
        with tempfile.TemporaryDirectory(prefix="wb-bench-vectors-") as tmp:
            client = chromadb.PersistentClient(path=tmp, settings=Settings(
                anonymized_telemetry=False))
            configuration = {"hnsw": {"space": "cosine", **(hnsw or {})}}
            collection = client.get_or_create_collection(
                "bench", embedding_function=None, configuration=configuration)
            steps, began = [], time.perf_counter()
            for start in range(0, args.n, STEP):
                t = time.perf_counter()
                collection.upsert(ids=ids[start:start + STEP], embeddings=data[start:start + STEP])
                steps.append(round(STEP / (time.perf_counter() - t)))
            write = args.n / (time.perf_counter() - began)
            t = time.perf_counter()
            collection.query(query_embeddings=[query], n_results=10)
            query_ms = (time.perf_counter() - t) * 1000
            answers = collection.query(query_embeddings=probes, n_results=10)["ids"]
            recall = float(np.mean([len({int(i[1:]) for i in got} & want) / 10
                                    for got, want in zip(answers, exact, strict=True)]))
            t = time.perf_counter()
            for start in range(0, args.n, STEP):
                collection.get(ids=ids[start:start + STEP], include=["embeddings"])
            read = args.n / (time.perf_counter() - t)
        results[name] = {"write_per_s": round(write), "steps_per_s": steps,
                         "query_ms": round(query_ms, 1), "read_per_s": round(read),
                         "recall_at_10": round(recall, 3)}
    with tempfile.TemporaryDirectory(prefix="wb-bench-vectors-") as tmp:
        copy = VectorCopy(Path(tmp) / "copy")
        steps, began = [], time.perf_counter()
        for start in range(0, args.n, STEP):
            t = time.perf_counter()
            copy.append(ids[start:start + STEP], data[start:start + STEP], complete=True)
            steps.append(round(STEP / (time.perf_counter() - t)))
        write = args.n / (time.perf_counter() - began)
        t = time.perf_counter()
        assert len(copy.get(ids)) == args.n
        read = args.n / (time.perf_counter() - t)
    results["float16 copy"] = {"write_per_s": round(write), "steps_per_s": steps,
                               "query_ms": None, "read_per_s": round(read)}

    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vectors.json").write_text(json.dumps(
        {"benchmark": "vectors", "machine": machine, "settings": vars(args),
         "results": results}, indent=2))
    print(f"\nvector benchmark: {args.n:,} random vectors of {args.dim} dimensions, {STEP:,} "
          f"per upsert ({machine})")
    for name, r in results.items():
        query = "" if r["query_ms"] is None else \
            f", query {r['query_ms']} ms, recall@10 {r['recall_at_10']}"
        print(f"  {name:32} write {r['write_per_s']:8,}/s (per step: "
              f"{', '.join(f'{s:,}' for s in r['steps_per_s'])}){query}, read by id "
              f"{r['read_per_s']:,}/s")
    print("  target: >= 5,000 vectors/s written, sustained to 1M")


if __name__ == "__main__":
    main()
