"""The query service under load on loopback: p50/p95 latency and throughput at 1, 8 and 32 concurrent clients.

    python benchmarks/service_latency.py [LABEL ...]      # labels: "no re-ranking", "2 workers", "cross-encoder"

The sample corpus is published in a temporary workspace (hybrid search, MiniLM, extractive answers), without the
re-ranker (served by one process, then by two: `--workers 2`) and with the cross-encoder; `ragtune serve` runs in its
own process. The load comes from `wrk` (one thread, N connections, 10 s a row; script `wrk_query.lua`) when it is
installed (apt-get install wrk), else from an asyncio httpx client, which costs the shared cores about 1.5 ms of CPU
per request. Questions carry a number so that none is a cache hit; the cache-hit rows repeat one question. Rate
limiting is set out of the way. The server's CPU time per request is read from /proc. Uncached rows without the
re-ranker run three times and the run with the median p95 is printed, with the p95 of every run; cross-encoder rows
run once, for 40 s (at 32 clients a request takes about 15 s).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from _common import machine
from ragtune.config import RagConfig
from ragtune.data import load_dataset
from ragtune.engine import Engine
from ragtune.workspace import Workspace
from ragtune.ingest import sync
from ragtune.production.publish import publish
from ragtune.service.core import QueryService

REQUESTS = 96
REPEATS = 3  # uncached rows: timings on this VM drift by up to 40% between runs, so the median of three


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, questions: list[str], clients: int, key: str) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(questions)

    async def client(http: httpx.AsyncClient, i: int):
        while queue:
            q = queue.pop()
            t0 = time.perf_counter()
            res = await http.post("/query", json={"question": q, "client_id": f"c{i}"},
                                  headers={"authorization": f"Bearer {key}"})
            latencies.append((time.perf_counter() - t0) * 1000)
            assert res.status_code in (200, 202), res.text

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http, i) for i in range(clients)))
    return latencies, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the workers of `--workers N`) so far."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def measure(url: str, questions_file: Path, questions: list[str], clients: int, cached: bool, seconds: int,
            key: str) -> tuple:
    """(p50, p95, requests/s) of one row."""
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "120s", "-s", str(Path(__file__).with_name(
            "wrk_query.lua")), url], capture_output=True, text=True, check=True,
            env={**os.environ, "QUESTIONS": str(questions_file), "FIXED": "1" if cached else "0",
                 "RUN": uuid.uuid4().hex[:8], "KEY": key}).stdout
        p50, p95, _, rps, errors, non2xx = next(line for line in out.splitlines() if line.startswith("RESULT")).split()[1:]
        assert int(errors) == 0 and int(non2xx) == 0, out
        return float(p50), float(p95), float(rps)
    run = uuid.uuid4().hex[:8]
    batch = [questions[0]] * REQUESTS if cached else [
        f"{questions[i % len(questions)]} ({run}-{i})" for i in range(REQUESTS)]
    lat, wall = asyncio.run(load(url, batch, clients, key))
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 95)), len(lat) / wall


def main() -> None:
    ds = load_dataset("sample")
    questions = [q.text for q in ds.queries]
    generator = "wrk, 1 thread, 10 s a row" if shutil.which("wrk") else f"httpx asyncio client, {REQUESTS} requests"
    print(f"# {machine()}; sample ({len(ds.documents)} docs); load: {generator}")
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
            (Path(tmp) / "settings.yaml").write_text("rate_limit: 1000000\nglobal_rate_limit: 10000000\n")
            key = QueryService(ws).keys.create("bench")  # every request authenticated, as in production
            questions_file = Path(tmp) / "questions.txt"
            questions_file.write_text("\n".join(questions) + "\n")
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
                asyncio.run(load(url, [f"{q} (warm {i})" for i, q in enumerate(questions)], 4, key))
                for cached, counts in ((False, (1, 8, 32)), (True, (1, 8))):
                    if cached:
                        asyncio.run(load(url, [questions[0]], 1, key))  # the one question, cached from now on
                    for clients in counts:
                        runs = []
                        for _ in range(1 if cached or rerank else REPEATS):
                            cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
                            p50, p95, rps = measure(url, questions_file, questions, clients, cached,
                                                    40 if rerank and not cached else 10, key)
                            cpu = (cpu_seconds(server.pid) - cpu0) / (rps * (time.perf_counter() - t0)) * 1000
                            runs.append((p95, p50, rps, cpu))
                        p95, p50, rps, cpu = sorted(runs)[len(runs) // 2]  # the run with the median p95
                        kind = "cache hits" if cached else "uncached"
                        print(f"{label:14s} {kind:10s} {clients:2d} clients: p50 {p50:7.1f} ms, p95 {p95:7.1f} ms, "
                              f"{rps:6.1f} requests/s, server CPU {cpu:5.1f} ms/request"
                              + (f"  (p95 of the runs: {', '.join(f'{r[0]:.1f}' for r in runs)})" if runs[1:] else ""),
                              flush=True)
            finally:
                server.terminate()
                server.wait(30)


if __name__ == "__main__":
    main()
