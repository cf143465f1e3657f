"""The production pipeline's steps: ingest -> index -> evaluate -> gate -> publish -> report.

``pipeline.yaml`` wires them for Ploomber (``pipelines/tasks.py`` holds one-line tasks). Each step reads what the
one before it wrote and writes its own product atomically, so a step killed midway leaves no half product and
Ploomber runs it again. The corpus and the evaluation set live outside the repo, where Ploomber cannot see them
change: ``corpus_state`` and ``dataset_state`` fingerprint them when the pipeline is loaded, and are passed as task
parameters, so a changed document re-runs ingest and everything after it, and an unchanged build runs nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ragtune import store
from ragtune.config import stable_hash
from ragtune.data import load_corpus, load_dataset, resolve_dataset
from ragtune.engine import Engine
from ragtune.errors import RagtuneError
from ragtune.evaluation.run import evaluate as run_eval
from ragtune.ingest import sync
from ragtune.production import RELEASE_DIR, Release, require_release
from ragtune.workspace import Workspace, atomic_write_text


class GateFailed(RagtuneError):
    """The evaluation fell below a floor of the release: nothing is published."""


def release_at(release: str | Path | None) -> Release:
    return require_release(Path(release) if release else RELEASE_DIR)


def production_table(release: Release) -> str:
    """One long-lived table per index settings: a promotion that changes chunking or embedder starts a new one,
    which is published only once it passes the gate (the old one keeps serving until then)."""
    return f"production_{stable_hash(release.config.index_settings)}"


def _read(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _write(path, record: dict) -> dict:
    atomic_write_text(Path(path), json.dumps(record, indent=1, default=str) + "\n")
    return record


def _open(workspace: Workspace, record: dict):
    """The table a previous step wrote, at the version it recorded (not whatever is latest now)."""
    table = workspace.db.open_table(record["table"])
    if "version" in record:
        table.checkout(int(record["version"]))
    return table


# -- what the build depends on outside its code -------------------------------------------------------------------


def corpus_state(corpus: str, release: str = "") -> dict:
    """What ingest depends on: the documents and the index settings of the release."""
    return {"corpus": load_corpus(corpus, stream=True).fingerprint,
            "index_settings": stable_hash(release_at(release).config.index_settings)}


def release_state(release: str = "") -> str:
    """What the gate depends on: the release as a whole (its configuration, and the floors in its provenance)."""
    rel = release_at(release)
    return stable_hash({"config": rel.config.id, "provenance": rel.provenance})


def dataset_state(dataset: str, release: str = "") -> str:
    """A hash of the evaluation set's files (queries, judgments, reference spans) as the release reads them."""
    split = release_at(release).provenance["dataset"].get("split", "test")
    root = resolve_dataset(dataset)
    digest = hashlib.sha256()
    for path in (root / "queries.jsonl", root / "qrels" / f"{split}.tsv", root / "references.jsonl"):
        digest.update(path.name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    return digest.hexdigest()[:16]


def pointer_state(home: str, out: str) -> str:
    """What publish depends on besides its upstream: that the live pointer is still the one it wrote. "ok" while
    ``<home>/published.json`` names what ``<out>/published.json`` recorded and that version opens (or before the first
    publication); otherwise a value that differs from every earlier one, so that the next build republishes: a
    damaged, deleted or dangling pointer is repaired without ``--force``."""
    from ragtune.production import publish as publication

    last = Path(out) / "published.json"
    if not last.is_file():
        return "ok"
    ws = Workspace(Path(home))
    try:
        live = publication.published(ws)
        if live is not None and {k: live.get(k) for k in ("table", "version")} == {
                k: _read(last).get(k) for k in ("table", "version")} and publication.open_published(ws) is not None:
            return "ok"
    except Exception:  # damaged JSON, a missing table or version: all mean "republish"
        pass
    pointer = ws.home / publication.POINTER
    seen = pointer.read_bytes() if pointer.is_file() else b"missing"
    return "repair:" + hashlib.sha256(seen + str(time.time_ns()).encode()).hexdigest()[:16]


def stale(corpus: str, ingested) -> bool:
    """True when ``corpus`` differs from what the last ingest (its ``ingest.json``) took in, or none ran."""
    path = Path(ingested)
    last = _read(path).get("corpus_fingerprint") if path.is_file() else None
    return load_corpus(corpus, stream=True).fingerprint != last


# -- the steps ------------------------------------------------------------------------------------------------------


def ingest(out, corpus: str, home: str, release: str = "") -> dict:
    """Incremental: only new and changed documents are chunked and embedded; deleted ones are removed."""
    rel, ws = release_at(release), Workspace(Path(home))
    name = production_table(rel)
    docs = load_corpus(corpus, stream=True)
    with ws.lock(name):
        _, fresh = sync(rel.config, docs, ws.db, name, Engine(rel.config, ws).embedder, index=False)
    return _write(out, {"table": name, "config_id": rel.config.id, "release": rel.version, "corpus": str(corpus),
                        "corpus_fingerprint": docs.fingerprint, **fresh.summary(),
                        "ids": {"added": fresh.added, "changed": fresh.changed, "removed": fresh.removed}})


def index(out, ingested, home: str, release: str = "") -> dict:
    """Full-text (and, for large tables, ANN) indexes over the synced rows; records the version to evaluate."""
    rel, ws = release_at(release), Workspace(Path(home))
    name = _read(ingested)["table"]
    with ws.lock(name):
        table = ws.db.open_table(name)
        if store.needs_index(table):
            store.reindex(table, rel.config.retrieval)
    indices = sorted(i.index_type for i in table.list_indices())
    return _write(out, {"table": name, "version": table.version, "rows": table.count_rows(), "indices": indices})


def evaluate(out, indexed, dataset: str, home: str, release: str = "") -> Path:
    """The release's configuration on the evaluation set, against exactly the indexed version."""
    rel, ws = release_at(release), Workspace(Path(home))
    spec = rel.provenance["dataset"]
    data = load_dataset(dataset, spec.get("split", "test"), spec.get("queries"))
    result = run_eval(rel.config, data, ws, table=_open(ws, _read(indexed)))
    return result.write(out)


def gate(out, evaluation, release: str = "") -> dict:
    """Every floor of the release must hold; otherwise GateFailed, and nothing downstream runs."""
    rel = release_at(release)
    metrics = _read(Path(evaluation) / "metrics.json")["metrics"]
    checks = rel.checks(metrics)
    failed = [c for c in checks if not c["passed"]]
    record = _write(out, {"passed": not failed, "release": rel.version, "config_id": rel.config.id, "checks": checks})
    if failed:
        detail = "; ".join(f"{c['metric']} = {_fmt(c['value'])} < floor {c['floor']:.4f}" for c in failed)
        raise GateFailed(f"evaluation gate failed (release v{rel.version}, config {rel.config.id}): {detail}. "
                         "Nothing was published; the previous publication keeps serving.")
    return record


def publish(out, ingested, indexed, gated, home: str, release: str = "") -> dict:
    """Point serving at the evaluated version (atomic; see ragtune.production.publish). The record carries the configuration
    the version was evaluated with (what serving must query it with) and the freshness of its documents."""
    from ragtune.production import publish as publication

    verdict = _read(gated)
    if not verdict.get("passed"):
        raise GateFailed(f"{gated}: the gate did not pass; refusing to publish")
    rel = release_at(release)
    if rel.config.id != verdict["config_id"]:
        raise GateFailed(f"{gated}: gated config {verdict['config_id']} is not the release's {rel.config.id}; "
                         "build again")
    ws, indexed_rec, fresh = Workspace(Path(home)), _read(indexed), _read(ingested)
    table = ws.db.open_table(indexed_rec["table"])
    record = publication.publish(ws, table, indexed_rec["version"], config_id=rel.config.id, release=rel.version,
                                 config=rel.config.model_dump(mode="json"), documents=fresh["documents"],
                                 oldest_document_ingested_at=fresh["oldest_document_ingested_at"])
    return _write(out, record)


def report(out: dict, ingested, evaluation, gated, published, tracking: str | None = None) -> dict:
    """Markdown and HTML with a plot of metrics against floors, and a W&B run (offline unless configured)."""
    from ragtune.production.report import write_report

    return write_report(out, _read(ingested), Path(evaluation), _read(gated), _read(published), tracking)


def _fmt(value) -> str:
    return "missing" if value is None else f"{value:.4f}"
