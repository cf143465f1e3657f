"""Sweeps on a Ray cluster (``ragtune sweep SPEC --ray auto|ADDRESS|local``): Ray's side of it.

Each configuration is a Ray task running ``ragtune.experiments.sweep.run_one`` (papermill or in process, as a local
sweep does) with the resources the spec asks for (``resources: {num_cpus, num_gpus}``), writing into the same sweep
folder; results, resume, failure records and W&B runs are those of a local sweep. Configurations that share a table
(the same chunking, embedder and index settings) wait for one task that builds it, so no table is built twice at
once. A task lost with its node is run again by Ray (``MAX_RETRIES``); one lost more often than that is recorded as
failed, and the sweep goes on.

The sweep folder and the workspace (``--home``: the embedding cache and the LanceDB tables) must be paths every node
reads and writes: one machine, or a shared file system. Workers import ragtune: install it on every node.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragtune.cluster import connect

#: how often Ray runs a task again when its node (or worker process) dies under it
MAX_RETRIES = 3


class Resources(BaseModel):
    """What each configuration's task holds on its node while it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_cpus: float = Field(1, ge=0, description="CPUs a configuration's task reserves")
    num_gpus: float = Field(0, ge=0, description="GPUs a configuration's task reserves (fractions share a card)")


def _after(fn: Callable, args: tuple, _first: Any) -> Any:
    """``fn(*args)`` once ``_first`` (an earlier task's result, which Ray resolves before starting this one) is done."""
    return fn(*args)


def run_tasks(address: str, calls: Sequence[tuple[Callable, tuple, Hashable]], resources: Resources,
              first: dict[Hashable, tuple[Callable, tuple]]) -> Iterator[tuple[int, Any, BaseException | None]]:
    """Run each call ``(fn, args, group)`` as a Ray task holding ``resources``, after the group's ``first`` task
    (``fn, args``: run once per group, before its calls; it must not raise). Yields ``(index, result, None)`` as
    calls complete, or ``(index, None, error)`` for a call lost more than ``MAX_RETRIES`` times."""
    ray, joined = connect(address)
    try:
        options = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "max_retries": MAX_RETRIES}
        task = ray.remote(**options)(_after)
        started = {group: task.remote(fn, args, None) for group, (fn, args) in first.items()}
        pending = {task.remote(fn, args, started.get(group)): i for i, (fn, args, group) in enumerate(calls)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                yield index, ray.get(ready[0]), None
            except Exception as exc:  # noqa: BLE001 - the task died more often than Ray runs it again
                yield index, None, exc
    finally:
        if joined:
            ray.shutdown()  # the driver leaves; a cluster it joined keeps running
