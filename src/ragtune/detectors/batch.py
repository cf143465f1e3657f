"""The detectors over JSONL files (``ragtune guard``, ``ragtune judge``): every line is checked before any work, a
bad line is an error naming the file and line, and the output is written whole or not at all."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ragtune.data import read_jsonl
from ragtune.detectors.injection import InjectionDetector
from ragtune.errors import DataError
from ragtune.evaluation.answers import ANSWER_BLOCK, AnswerScorer
from ragtune.workspace import atomic_write_text


def read_rows(path: Path, schema: dict[str, Callable[[object], bool]], what: dict[str, str]) -> list[dict]:
    """All objects of a JSONL file, each field checked by ``schema`` (``what`` says what was expected)."""
    rows = []
    for lineno, obj in read_jsonl(Path(path)):
        for name, ok in schema.items():
            if name not in obj:
                raise DataError(f"{path}:{lineno}: missing field {name!r} (expected {what[name]})")
            if not ok(obj[name]):
                raise DataError(f"{path}:{lineno}: field {name!r} must be {what[name]}, "
                                f"got {type(obj[name]).__name__}")
        rows.append(obj)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", disable=not enabled)


def guard_file(src: Path, out: Path, backend: str = "ngram", threshold: float | None = None,
               batch_size: int = 256, progress: bool = True) -> dict:
    """``{"text"}`` per line -> ``{"flagged", "score", "reasons"}`` per line, in the same order."""
    rows = read_rows(src, {"text": lambda v: isinstance(v, str)}, {"text": "a string"})
    det = InjectionDetector(backend, threshold)
    verdicts = []
    with _progress(len(rows), "guard", progress) as bar:
        for i in range(0, len(rows), batch_size):
            batch = [r["text"] for r in rows[i:i + batch_size]]
            verdicts += [v.as_dict() for v in det.check_many(batch)]
            bar.update(len(batch))
    write_jsonl(out, verdicts)
    return {"rows": len(rows), "flagged": sum(v["flagged"] for v in verdicts), "detector": det.name,
            "threshold": det.threshold}


def judge_file(src: Path, out: Path, scorer: AnswerScorer, progress: bool = True, threshold: float = 0.5,
               batch_size: int = ANSWER_BLOCK) -> dict:
    """``{"question", "contexts": [..], "answer"}`` per line -> ``{"hallucinated", "score", "faithfulness",
    "claims"}`` per line, in the same order (``scorer``: the offline scorer of ``ragtune eval``)."""
    rows = read_rows(src, {"question": lambda v: isinstance(v, str),
                           "contexts": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
                           "answer": lambda v: isinstance(v, str)},
                     {"question": "a string", "contexts": "a list of strings", "answer": "a string"})
    verdicts = []
    with _progress(len(rows), "judge", progress) as bar:
        for i in range(0, len(rows), batch_size):  # the verifier reads a batch's pairs in one call
            batch = [(r["question"], r["answer"], r["contexts"]) for r in rows[i:i + batch_size]]
            verdicts += scorer.judge_many(batch, threshold)
            bar.update(len(batch))
    write_jsonl(out, verdicts)
    return {"rows": len(rows), "hallucinated": sum(v["hallucinated"] for v in verdicts),
            "mean_score": sum(v["score"] for v in verdicts) / len(verdicts)}
