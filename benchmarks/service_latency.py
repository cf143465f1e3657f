"""The query service under load on loopback: p50/p95 latency and throughput at 1, 8 and 32 concurrent clients.

    python benchmarks/service_latency.py

The sample corpus is published in a temporary workspace (hybrid search, MiniLM, extractive answers), without the
re-ranker (served by one process, then by two: `--workers 2`) and with the cross-encoder; `ragtune serve` runs in its
own process and an asyncio client (httpx)
sends each client's questions back to back. Questions carry a number so that none is a cache hit; the cache-hit
row repeats one question. Rate limiting is set out of the way.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from _common import machine
from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.engine import Engine, Workspace
from ragtune.ingest import sync
from ragtune.publish import publish

REQUESTS = 96


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, questions: list[str], clients: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(questions)

    async def client(http: httpx.AsyncClient, i: int):
        while queue:
            q = queue.pop()
            t0 = time.perf_counter()
            res = await http.post("/query", json={"question": q, "client_id": f"c{i}"})
            latencies.append((time.perf_counter() - t0) * 1000)
            assert res.status_code in (200, 202), res.text

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http, i) for i in range(clients)))
    return latencies, time.perf_counter() - t0


def main() -> None:
    ds = load_dataset("sample")
    questions = [q.text for q in ds.queries]
    print(f"# {machine()}; sample ({len(ds.documents)} docs), {REQUESTS} requests per row")
    only = sys.argv[1:]  # labels to run (all by default)
    for label, rerank, workers in (("no re-ranking", None, 1), ("2 workers", None, 2),
                                   ("cross-encoder", "cross-encoder", 1)):
        if only and label not in only:
            continue
        config = RagConfig.from_dict({"retrieval": {"mode": "hybrid"}, "rerank": {"model": rerank, "depth": 20},
                                      "generation": {"backend": "extractive"}})
        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace(Path(tmp))
            table, _ = sync(config, ds.corpus, ws.db, "production", Engine(config, ws).embedder)
            publish(ws, table, config=config.model_dump(mode="json"), config_id=config.id)
            (Path(tmp) / "settings.yaml").write_text("rate_limit: 1000000\n")
            port = free_port()
            server = subprocess.Popen([str(Path(sys.executable).with_name("ragtune")), "serve", "--home", tmp,
                                       "--port", str(port), "--settings", str(Path(tmp) / "settings.yaml"),
                                       "--workers", str(workers)],
                                      env={**os.environ, "HF_HUB_OFFLINE": "1"})
            url = f"http://127.0.0.1:{port}"
            try:
                deadline = time.time() + 120
                while True:
                    try:
                        if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.time() < deadline and server.poll() is None, "server did not start"
                    time.sleep(0.5)
                # warm up: every question once (embeds its sentences; later rows measure the serving path)
                asyncio.run(load(url, [f"{q} (warm {i})" for i, q in enumerate(questions)], 4))
                for clients in (1, 8, 32):
                    batch = [f"{questions[i % len(questions)]} ({clients}-{i})" for i in range(REQUESTS)]
                    lat, wall = asyncio.run(load(url, batch, clients))
                    print(f"{label:14s} {clients:2d} clients: p50 {np.percentile(lat, 50):7.1f} ms, "
                          f"p95 {np.percentile(lat, 95):7.1f} ms, {len(lat) / wall:6.1f} requests/s")
                asyncio.run(load(url, [questions[0]], 1))  # the one question, cached
                for clients in (1, 8):
                    lat, wall = asyncio.run(load(url, [questions[0]] * REQUESTS, clients))
                    print(f"{label:14s} cache hits, {clients} clients: p50 {np.percentile(lat, 50):.1f} ms, "
                          f"p95 {np.percentile(lat, 95):.1f} ms, {len(lat) / wall:.1f} requests/s")
            finally:
                server.terminate()
                server.wait(30)


if __name__ == "__main__":
    main()
