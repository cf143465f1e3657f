"""Latency compared fairly. Latencies recorded by separate runs (a sweep's configurations, the production
evaluation) were measured at different moments on a machine whose load changes: a difference between them can be the
machine's, not the configurations'. Before latency decides anything, the configurations are timed again here, in one
process, on the same queries, at the same moments: after an untimed warm-up round, every round visits the queries in
a new random order and times every configuration on each query back to back, in a random order; each query's time
per configuration is its median over the rounds. A load that comes and goes then falls on all configurations alike.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ragtune.config import RagConfig
from ragtune.data import Dataset
from ragtune.engine import Engine
from ragtune.workspace import Workspace


@dataclass
class LatencyTrial:
    per_query: pd.DataFrame  # one row per query, one column per config id: median ms over the rounds
    rounds: int

    def describe(self) -> str:
        return (f"timed now in one process: {len(self.per_query)} queries x {self.rounds} rounds after a warm-up, "
                "configurations interleaved in random order, median per query")


def time_configs(configs: Sequence[RagConfig], dataset: Dataset, workspace: Workspace | None = None,
                 rounds: int = 5, seed: int = 0) -> LatencyTrial:
    """Each configuration's per-query latency (search, re-ranking and the answer when it generates one; the query
    vectors are embedded beforehand, as in an evaluation), measured interleaved as the module says."""
    engines = [Engine(c, workspace, cache_pairs=False) for c in configs]  # the model is timed, not a cache
    retrievers = [e.retriever(e.index(dataset.corpus)[0]) for e in engines]
    queries = dataset.judged()
    vectors = [None if not c.embeds_queries else e.embedder.embed_queries([q.text for q in queries])
               for c, e in zip(configs, engines)]
    times: list[list[list[float]]] = [[[] for _ in queries] for _ in configs]
    rng = random.Random(seed)
    for round_ in range(rounds + 1):  # round 0 warms caches and models up, untimed
        order = list(range(len(queries)))
        rng.shuffle(order)
        for i in order:
            sides = list(range(len(configs)))
            rng.shuffle(sides)
            for k in sides:
                t0 = time.perf_counter()
                engines[k].answer_one(queries[i].text, retrievers[k], None if vectors[k] is None else vectors[k][i])
                if round_:
                    times[k][i].append((time.perf_counter() - t0) * 1000)
    medians = {c.id: [float(pd.Series(t).median()) for t in times[k]] for k, c in enumerate(configs)}
    return LatencyTrial(pd.DataFrame(medians, index=[q.id for q in queries]).rename_axis("query_id"), rounds)
