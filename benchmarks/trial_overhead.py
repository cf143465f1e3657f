"""What every sweep configuration, tune trial, pipeline evaluation and CLI call pays before any retrieval work:
a fully warm `ragtune eval -d sample` as a process, the fresh-process import of lancedb inside it, and the notebook
path's cost per configuration (papermill: kernel start, imports, the executed notebook) above calling the same
function in process, with warm caches on both sides.

    python benchmarks/trial_overhead.py        # results in BENCHMARKS.md, "Per-trial overhead"
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine

from ragtune.experiments.sweep import SweepSpec, run_sweep

BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        cli = [str(BIN / "ragtune"), "eval", "-d", "sample", "--home", str(home), "-s", "retrieval.mode=hybrid"]
        timed(cli, tmp)  # builds the index and fills the caches
        runs = [timed(cli, tmp) for _ in range(5)]
        print(f"warm `ragtune eval -d sample` (hybrid, 90 questions): median {statistics.median(runs):.2f} s "
              f"(min {min(runs):.2f}, max {max(runs):.2f}, 5 runs)")
        imports = [timed([sys.executable, "-c", "import lancedb"], tmp) for _ in range(5)]
        python = [timed([sys.executable, "-c", "pass"], tmp) for _ in range(5)]
        print(f"of which a fresh process's `import lancedb`: {statistics.median(imports) - statistics.median(python):.2f} s")

        spec = SweepSpec.model_validate({"name": "overhead", "dataset": "sample", "tracking": {"mode": "disabled"},
                                         "grid": {"retrieval.mode": ["vector", "hybrid", "fts"],
                                                  "retrieval.top_k": [5, 10]},
                                         "baseline": {"retrieval.mode": "fts", "retrieval.top_k": 5}})
        run_sweep(spec, tmp / "warm", runner="inprocess", home=home, progress=False)
        per = {}
        for runner in ("inprocess", "papermill"):
            t0 = time.perf_counter()
            report = run_sweep(spec, tmp / runner, runner=runner, home=home, progress=False)
            per[runner] = (time.perf_counter() - t0) / report.count("done")
        print(f"per configuration, warm caches ({report.count('done')} configs): in process {per['inprocess']:.2f} s, "
              f"through papermill {per['papermill']:.2f} s: the notebook path adds "
              f"{per['papermill'] - per['inprocess']:.2f} s")


if __name__ == "__main__":
    main()
