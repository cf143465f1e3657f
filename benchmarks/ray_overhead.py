"""What running a sweep on Ray adds: the same 8-configuration sweep of the sample (in process, warm caches and
tables) run locally and with ``--ray local`` (Ray started in the process, on this one machine), seconds per
configuration each way. The Ray run includes starting Ray.

    python benchmarks/ray_overhead.py        # results in BENCHMARKS.md, "Sweeps on Ray"
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import machine

from ragtune.experiments.sweep import SweepSpec, run_sweep

SPEC = {"name": "overhead", "dataset": "sample", "tracking": {"mode": "disabled"},
        "grid": {"retrieval.mode": ["fts", "vector", "hybrid"], "retrieval.top_k": [5, 10], "chunking.size": [256]},
        "configs": [{"retrieval.mode": "hybrid", "retrieval.fusion": "linear"},
                    {"retrieval.mode": "hybrid", "retrieval.rrf_k": 10}],
        "baseline": {"retrieval.mode": "fts", "retrieval.top_k": 5}}


def main() -> None:
    print(machine())
    spec = SweepSpec.model_validate(SPEC)
    n = len(spec.expand())
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        run_sweep(spec, Path(tmp) / "warm", runner="inprocess", home=home, progress=False)  # tables and caches
        times = {}
        for name, ray in (("local", None), ("ray", "local")):
            t0 = time.perf_counter()
            report = run_sweep(spec, Path(tmp) / name, runner="inprocess", home=home, progress=False, ray=ray)
            times[name] = time.perf_counter() - t0
            assert report.count("done") == n
        print(f"{n} configurations, in process, warm: local {times['local']:.1f} s ({times['local'] / n:.2f} s a "
              f"configuration), --ray local {times['ray']:.1f} s ({times['ray'] / n:.2f} s a configuration): Ray adds "
              f"{(times['ray'] - times['local']) / n:.2f} s a configuration")


if __name__ == "__main__":
    main()
