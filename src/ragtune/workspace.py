"""Where derived state lives (the embedding cache, the LanceDB database, the index catalog, locks between
processes), and atomic writes of files and folders."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from ragtune import store
from ragtune.cache import EmbeddingCache, LanceEmbeddingCache, PairScoreCache
from ragtune.config import RagConfig, stable_hash
from ragtune.errors import ConfigError
from ragtune.types import IndexInfo


@dataclass
class Workspace:
    """Where derived state lives: the embedding cache, the LanceDB database (any URI) and the index catalog."""

    home: Path
    db_uri: str | None = None
    #: where embeddings are cached: ``sqlite`` (a file in ``home``: one machine, any number of processes) or
    #: ``lance`` (a table in the LanceDB database, on its URI: runners on several machines); default $RAGTUNE_CACHE
    cache_store: str | None = None

    @classmethod
    def default(cls) -> Workspace:
        return cls(Path(os.environ.get("RAGTUNE_HOME", ".ragtune")), os.environ.get("RAGTUNE_DB") or None)

    @cached_property
    def cache(self) -> EmbeddingCache | LanceEmbeddingCache:
        kind = self.cache_store or os.environ.get("RAGTUNE_CACHE") or "sqlite"
        if kind == "lance":
            return LanceEmbeddingCache(self.db)
        if kind != "sqlite":
            raise ConfigError(f"embedding cache {kind!r} (RAGTUNE_CACHE): expected sqlite or lance")
        return EmbeddingCache(self.home / "embeddings.sqlite")

    @cached_property
    def pair_scores(self) -> PairScoreCache:
        return PairScoreCache(self.home / "rerank.sqlite")

    @cached_property
    def db(self):
        uri = self.db_uri or str(self.home / "lancedb")
        if "://" not in uri:
            Path(uri).mkdir(parents=True, exist_ok=True)
        return store.connect(uri)

    @contextmanager
    def lock(self, name: str):
        """An exclusive lock between processes on this machine (held while a table is built)."""
        path = self.home / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # The catalog remembers which corpus each index came from, so `ragtune search` needs no corpus argument.
    @property
    def _catalog_path(self) -> Path:
        return self.home / "catalog.json"

    def catalog(self) -> dict[str, dict]:
        try:
            return json.loads(self._catalog_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def remember(self, info: IndexInfo) -> None:
        with self.lock("catalog"):
            entries = self.catalog()
            entries[info.key] = {**asdict(info), "used_at": datetime.now(timezone.utc).isoformat()}
            atomic_write_text(self._catalog_path, json.dumps(entries, indent=1))

    def latest_index_for(self, config: RagConfig) -> dict | None:
        """The catalog entry of the index last used with ``config``'s index settings; for a full-text configuration,
        any index with its chunks and full-text settings (a table with vectors serves full text as well)."""
        settings, text = stable_hash(config.index_settings), stable_hash(config.text_settings)
        fts = not config.uses_vectors
        matches = [e for e in self.catalog().values()
                   if e.get("settings") == settings or (fts and e.get("text") == text)]
        return max(matches, key=lambda e: e["used_at"]) if matches else None


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_dir(out: Path, fill) -> None:
    """Build a folder beside ``out`` and swap it in: readers see the old folder or the new one, never a mix."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
