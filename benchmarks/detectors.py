"""Detectors on public labelled data they were not trained or tuned on.

    python benchmarks/detectors.py injection --data DIR     # DIR: the sets of ragtune/detectors/sources.py

Injection: every ``eval`` set of sources.py (cross-dataset), the validation fifth of the training sets (split by
source and by language), and the project's own hand-made set (a regression set, not evidence); four detectors side
by side: always-flag (the trivial baseline), the rules alone, the classifier alone, rules + classifier (what ships).
Latency is per question on one thread, as the service calls it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from _common import REPO, machine

_STOP = {"de": "der die das und ist nicht ich du sie wie was wer mir mich ein eine für mit auf zu den dem vergiss "
               "bitte können".split(),
         "es": "el la los las que de y es por para una un como qué cómo olvida todo".split(),
         "fr": "le la les des et est une un pour que qui dans vous tu je ne pas ce".split()}


def language(text: str) -> str:
    """A guess by stop words (de, es, fr, else en): good enough to split a validation set by language."""
    words = re.findall(r"[a-zäöüßéèàçñáíóú]+", text.lower())
    counts = {lang: sum(w in stop for w in words) for lang, stop in _STOP.items()}
    lang, n = max(counts.items(), key=lambda kv: kv[1])
    english = sum(w in {"the", "and", "is", "you", "what", "how", "of", "to", "a", "in"} for w in words)
    return lang if n >= 2 and n > english else "en"


def _row(name, y, flags, scores=None):
    from ragtune.detectors.training import scores as score_fn

    y, flags = np.asarray(y), np.asarray(flags, bool)
    s = score_fn(y, flags.astype(float), 0.5)
    if scores is not None and 0 < y.sum() < len(y):
        s["auroc"] = score_fn(y, np.asarray(scores), 0.5)["auroc"]
    if y.all():
        return f"{name}: recall {s['recall']:.3f}"
    if not y.any():
        return f"{name}: false-alarm rate {flags.mean():.3f}"
    auroc = f", AUROC {s['auroc']:.3f}" if "auroc" in s else ""
    return f"{name}: P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f}{auroc}"


def injection(data: Path) -> None:
    from ragtune.detectors.injection import InjectionDetector
    from ragtune.detectors.training import load, split
    from ragtune.guard import rule_reasons

    det = InjectionDetector("ngram")
    sets = dict(load(data, "eval"))
    _, val = split(load(data, "train"))
    for src in sorted({s for s, *_ in val}):
        sets[f"validation: {src}"] = [(t, y) for s, t, y in val if s == src]
    deepset = [(t, y) for s, t, y in val if s == "deepset-train"]
    for lang in ("en", "de", "es", "fr"):
        rows = [(t, y) for t, y in deepset if language(t) == lang]
        if rows:
            sets[f"validation: deepset-train, {lang}"] = rows
    own = [json.loads(line) for line in (REPO / "tests/data/injection_set.jsonl").read_text().splitlines()]
    sets["own hand-made set (regression)"] = [(r["text"], int(r["injection"])) for r in own]

    print(f"{machine()}; detector {det.name}, threshold {det.threshold:.4f}\n")
    print("| set | n | attacks | always flag | rules | classifier | rules + classifier (shipped) |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in sets.items():
        texts, y = [t for t, _ in rows], np.array([label for _, label in rows])
        prob = det.model.predict_proba(texts)
        verdicts = det.check_many(texts)
        rules = [bool(rule_reasons(t)) for t in texts]
        cells = [_row("", y, np.ones(len(y), bool)).split(": ", 1)[1],
                 _row("", y, rules).split(": ", 1)[1],
                 _row("", y, prob >= det.threshold, prob).split(": ", 1)[1],
                 _row("", y, [v.flagged for v in verdicts], [v.score for v in verdicts]).split(": ", 1)[1]]
        print(f"| {name} | {len(y)} | {int(y.sum())} | " + " | ".join(cells) + " |")

    questions = [t for t, _ in sets["own hand-made set (regression)"]] * 5
    det.check(questions[0])
    times = []
    for q in questions:
        t0 = time.perf_counter()
        det.check(q)
        times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=20)
    print(f"\nlatency per question (rules + classifier, one thread, {len(times)} calls): "
          f"p50 {statistics.median(times):.2f} ms, p95 {q[18]:.2f} ms")


def faithbench(data: Path) -> list[dict]:
    """FaithBench rows as judge inputs; hallucinated = the worst annotation is 'Unwanted' (the paper's binary label)."""
    import csv

    from ragtune.detectors.sources import HALLUCINATION_SOURCES, digest

    src = HALLUCINATION_SOURCES[0]
    if digest(src, data) != src.sha256:
        sys.exit(f"{src.file(data)} is not the recorded revision")
    with src.file(data).open(newline="") as f:
        return [{"question": "", "contexts": [r["source"]], "answer": r["summary"].strip(),
                 "hallucinated": r["worst-label"].startswith("Unwanted"), "model": r["LLM"]} for r in csv.DictReader(f)]


def hallucination(data: Path) -> None:
    from ragtune.config import RagConfig
    from ragtune.detectors.training import scores
    from ragtune.engine import Engine
    from ragtune.workspace import Workspace
    from ragtune.evaluation.answers import AnswerScorer
    from ragtune.text import content_words
    from ragtune.types import Answer, Hit

    rows = faithbench(data)
    engine = Engine(RagConfig(), Workspace(Path(os.environ.get("RAGTUNE_HOME", ".ragtune"))))
    scorer = AnswerScorer(engine.embedder)
    y = np.array([r["hallucinated"] for r in rows], int)
    flags, probs, overlap = [], [], []
    t0 = time.perf_counter()
    for r in rows:
        hits = [Hit(f"c{i}", f"c{i}", 1.0, i + 1, t, 0, len(t)) for i, t in enumerate(r["contexts"])]
        out = scorer.score(r["question"], Answer(r["answer"]), hits)
        flags.append(out["hallucination"] == 1.0)
        probs.append(out.get("hallucination_score", float(out["hallucination"] == 1.0)))
        words, ctx = content_words(r["answer"]), set(content_words(" ".join(r["contexts"])))
        overlap.append(1 - sum(w in ctx for w in words) / max(1, len(words)))
    seconds = time.perf_counter() - t0
    print(f"{machine()}; FaithBench, {len(rows)} summaries, human rate {y.mean():.3f}\n")
    print("| detector | flag rate | precision | recall | F1 | balanced accuracy | AUROC |")
    print("|---|---|---|---|---|---|---|")
    for name, f, p in [("always flag", np.ones(len(y), bool), np.ones(len(y))),
                       ("word overlap (1 - share of answer words in the context)", np.array(overlap) > 0.2,
                        np.array(overlap)),
                       ("ragtune offline scorer", np.array(flags), np.array(probs))]:
        s = scores(y, p, 0.5)
        s2 = scores(y, np.asarray(f, float), 0.5)
        f = np.asarray(f, bool)
        balanced = (f[y == 1].mean() + (~f[y == 0]).mean()) / 2
        print(f"| {name} | {np.mean(f):.3f} | {s2['precision']:.3f} | {s2['recall']:.3f} | {s2['f1']:.3f} | "
              f"{balanced:.3f} | {s.get('auroc', float('nan')):.3f} |")
    flags, probs = np.array(flags), np.array(probs)
    print(f"\nrate: human {y.mean():.3f}, flagged {flags.mean():.3f}, mean hallucination_score {probs.mean():.3f}")
    lengths = np.array([len(r["answer"].split()) for r in rows])
    cuts = np.quantile(lengths, [1 / 3, 2 / 3])
    for name, mask in [(f"answers up to {cuts[0]:.0f} words", lengths <= cuts[0]),
                       (f"{cuts[0]:.0f}-{cuts[1]:.0f} words", (lengths > cuts[0]) & (lengths <= cuts[1])),
                       (f"over {cuts[1]:.0f} words", lengths > cuts[1])]:
        print(f"  {name}: human {y[mask].mean():.3f}, flagged {flags[mask].mean():.3f} (n={mask.sum()})")
    print(f"\n{len(rows) / seconds:.1f} answers/s (scoring only, models loaded, embeddings cached after a first run)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("detector", choices=["injection", "hallucination"])
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    {"injection": injection, "hallucination": hallucination}[args.detector](args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
