"""The production pipeline end to end (`ploomber build`, as a scheduler runs it), then incremental ingestion.

    python benchmarks/pipeline.py sample
    python benchmarks/pipeline.py msmarco

1. A release is promoted on the dataset (a one-config sweep of the committed production config, in its own
   workspace, so the pipeline starts with a cold embedding cache).
2. `ploomber build` on a fresh workspace: full ingest, index, evaluate, gate, publish, report (wall time).
3. `ploomber build` again, unchanged: nothing runs.
4. 1% of the documents get a new sentence; `ploomber build`: the ingest step's time against the full one.
5. Another 1%, synced in-process with the model already loaded: the incremental work without process start-up.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, dataset_path, machine
from ragtune.data import sample_dataset_path
from ragtune.workspace import Workspace
from ragtune.production import load_release
from ragtune.production.promote import promote
from ragtune.experiments.sweep import SweepSpec, run_sweep

PLOOMBER = Path(sys.executable).with_name("ploomber")


def copy_dataset(name: str, dest: Path) -> Path:
    src = sample_dataset_path() if name == "sample" else dataset_path(name)
    shutil.copytree(src, dest)
    return dest


def touch_one_percent(data: Path, seed: int = 0) -> int:
    """Append a sentence to 1% of the documents (at least one); returns how many changed."""
    rng = random.Random(seed)
    if (data / "corpus.jsonl").is_file():
        lines = (data / "corpus.jsonl").read_text().rstrip("\n").split("\n")  # not splitlines: texts hold U+2028
        picked = rng.sample(range(len(lines)), max(1, len(lines) // 100))
        for i in picked:
            row = json.loads(lines[i])
            row["text"] += " This passage was revised."
            lines[i] = json.dumps(row)
        (data / "corpus.jsonl").write_text("\n".join(lines) + "\n")
        return len(picked)
    files = sorted(p for p in (data / "docs").rglob("*") if p.is_file())
    picked = rng.sample(files, max(1, len(files) // 100))
    for p in picked:
        p.write_text(p.read_text() + "\n\nThis page was revised.\n")
    return len(picked)


def build(root: Path, data: Path, release: Path) -> tuple[float, dict]:
    env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false", "PLOOMBER_VERSION_CHECK_DISABLED": "1",
           "HF_HUB_OFFLINE": "1"}
    args = {"corpus": data, "dataset": data, "home": root / "home", "out": root / "out", "release": release,
            "tracking": "disabled"}
    t0 = time.perf_counter()
    proc = subprocess.run([str(PLOOMBER), "build", *[f"--env--{k}={v}" for k, v in args.items()]], cwd=REPO,
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    ran = [line.split()[0] for line in proc.stdout.splitlines() if line.split()[1:2] == ["True"]]
    return wall, {"ran": ran, "ingest": json.loads((root / "out" / "ingest.json").read_text())}


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "sample"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = copy_dataset(name, root / "data")
        config = load_release().config
        spec = SweepSpec.model_validate({"name": "release", "dataset": str(data), "tracking": {"mode": "disabled"},
                                         "base": config.model_dump(mode="json", exclude={"name"}), "configs": [{}]})
        run_sweep(spec, root / "sweep", runner="inprocess", home=root / "promotion-home", progress=False)
        promote(root / "sweep", release_dir=root / "release", regression_test=None,
                workspace=Workspace(root / "promotion-home"))
        print(f"# {machine()}; {name}; release config {config.id} ({config.retrieval.mode}, "
              f"{config.embedding.model}, {config.chunking.strategy} {config.chunking.size})")
        full_wall, full = build(root, data, root / "release")
        f = full["ingest"]
        print(f"full build:      {full_wall:6.1f} s wall; ingest {f['seconds']:.2f} s ({f['documents']} documents, "
              f"{f['chunks_embedded']} chunks embedded); ran {', '.join(full['ran'])}")
        same_wall, same = build(root, data, root / "release")
        print(f"unchanged build: {same_wall:6.1f} s wall; ran {', '.join(same['ran']) or 'nothing'}")
        changed = touch_one_percent(data)
        inc_wall, inc = build(root, data, root / "release")
        i = inc["ingest"]
        print(f"1% changed:      {inc_wall:6.1f} s wall; ingest {i['seconds']:.2f} s ({changed} documents changed, "
              f"{i['chunks_embedded']} chunks embedded); ran {', '.join(inc['ran'])}")
        print(f"incremental ingest / full ingest: {i['seconds'] / f['seconds']:.1%} (the ingest task, in a fresh "
              "process: includes loading the embedding model)")
        # the same sync in a process that has the model loaded already (a long-lived ingest worker)
        from ragtune.data import load_corpus
        from ragtune.engine import Engine
        from ragtune.ingest import sync
        from ragtune.production.pipeline import production_table, release_at

        rel, ws = release_at(root / "release"), Workspace(root / "home")
        embedder = Engine(rel.config, ws).embedder
        embedder.embed_documents(["load the model first"])
        touch_one_percent(data, seed=1)
        _, fresh = sync(rel.config, load_corpus(data), ws.db, production_table(rel), embedder, index=False)
        print(f"1% changed again, in-process sync with the model loaded: {fresh.seconds:.2f} s "
              f"({len(fresh.changed)} changed) = {fresh.seconds / f['seconds']:.1%} of the full ingest")


if __name__ == "__main__":
    main()
