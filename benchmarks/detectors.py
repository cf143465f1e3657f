"""Detectors on public labelled data they were not trained or tuned on.

    python benchmarks/detectors.py injection --data DIR     # DIR: the sets of ragtune/detectors/sources.py
    python benchmarks/detectors.py injection --data DIR --threshold 0.7   # the same at another operating point
    python benchmarks/detectors.py injection --data DIR --backend ngram-documents   # the model that scans chunks

Injection: every ``eval`` set of sources.py (cross-dataset), the validation fifth of the training sets (split by
source and by language), and the project's own hand-made set (a regression set, not evidence); four detectors side
by side: always-flag (the trivial baseline), the rules alone, the classifier alone, rules + classifier (what ships).
Latency is per question on one thread, as the service calls it.

    python benchmarks/detectors.py hallucination --data DIR

Hallucination: the offline scorer on FaithBench, on SummEdits' evaluation rows and on WiCE's test claims (with the
WiCE authors' own model scores on the 100 claims they scored), beside always-flag and word overlap, and an
experimental learned detector (logistic regression over the scorer's per-answer features, fitted on SummEdits' test
rows only) to show whether learning from labelled data helps across datasets. The scorer is the one
a configuration makes (``--set``, as on the command line): with a local NLI model, and with an LLM judge, whose
verdicts (hallucinated: a claim it finds unsupported) get rows of their own, so its prompt is checked against the
labels:

    python benchmarks/detectors.py hallucination --data DIR --set evaluation.verifier=hf-nli:/models/nli
    python benchmarks/detectors.py hallucination --data DIR --set evaluation.judge.backend=openai:MODEL \
        --set evaluation.judge.base_url=http://127.0.0.1:8000/v1 --limit 200
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


def injection(data: Path, backend: str = "ngram", threshold: float | None = None) -> None:
    from ragtune.detectors.injection import InjectionDetector
    from ragtune.detectors.training import load, split
    from ragtune.guard import rule_reasons

    det = InjectionDetector(backend, threshold)
    sets = dict(load(data, "eval"))
    _, val = split(load(data, "train"))
    for src in sorted({s for s, *_ in val}):
        sets[f"validation: {src}"] = [(t, y) for s, t, y in val if s == src]
    deepset = [(t, y) for s, t, y in val if s == "deepset-train"]
    for lang in ("en", "de", "es", "fr"):
        rows = [(t, y) for t, y in deepset if language(t) == lang]
        if rows:
            sets[f"validation: deepset-train, {lang}"] = rows
    from ragtune.detectors.sources import INJECTION_SOURCES

    translated = {s.name: s for s in INJECTION_SOURCES}["cyberseceval-multilingual"]
    by_language: dict[str, list] = {}
    for r in json.loads(translated.file(data).read_text()):
        lang = r["speaking_language"] if r["speaking_language"] in ("German", "French", "Spanish") else "13 others"
        by_language.setdefault(lang, []).append((r["user_input"], 1))
    for lang in ("German", "French", "Spanish", "13 others"):
        sets[f"cyberseceval-multilingual, {lang}"] = by_language[lang]
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


def hallucination_sets(data: Path) -> dict[str, list[dict]]:
    """Judge inputs with their human label, per set: FaithBench (hallucinated = the worst annotation is 'Unwanted',
    the paper's binary label), SummEdits (an edit labelled inconsistent), its 'test' rows apart from its
    'evaluation' rows, and WiCE's test claims (not fully supported by the cited page), a row per oracle chunk, and
    once more with a claim's chunks together, as a RAG answer's sentence meets what was retrieved for it."""
    import csv

    from ragtune.detectors.sources import HALLUCINATION_SOURCES, digest

    sources = {s.name: s for s in HALLUCINATION_SOURCES}
    for src in sources.values():
        if digest(src, data) != src.sha256:
            sys.exit(f"{src.file(data)} is not the recorded revision")
    with sources["faithbench"].file(data).open(newline="") as f:
        sets = {"FaithBench": [{"question": "", "contexts": [r["source"]], "answer": r["summary"].strip(),
                                "hallucinated": r["worst-label"].startswith("Unwanted")} for r in csv.DictReader(f)]}
    for path in sources["summedits"].files(data):
        for r in json.loads(path.read_text()):
            name = "SummEdits evaluation rows" if r["split"] == "evaluation" else "SummEdits test rows"
            sets.setdefault(name, []).append({"question": "", "contexts": [r["doc"]], "answer": r["summary"].strip(),
                                              "hallucinated": int(r["label"]) == 0})
    for name, source in [("WiCE test claims", "wice"), ("WiCE dev claims (tuning set)", "wice-dev")]:
        with sources[source].file(data).open() as f:  # a claim's rows: the same claim against different chunks
            sets[name] = [{"question": "", "contexts": ["\n".join(r["evidence"])], "answer": r["claim"],
                           "hallucinated": r["label"] != "supported", "group": r["meta"]["id"]}
                          for r in map(json.loads, f)]
    claims: dict[str, dict] = {}  # the RAG shape: each test claim against all of its chunks at once
    for r in sets["WiCE test claims"]:
        claims.setdefault(r["group"], {**r, "contexts": []})["contexts"] += r["contexts"]
    sets["WiCE test claims, their chunks together"] = [{k: v for k, v in r.items() if k != "group"}
                                                       for r in claims.values()]
    return sets


def wice_published(data: Path) -> dict[str, dict[str, float]]:
    """The WiCE authors' scores (P(supported)) of 100 test claims, per model."""
    from ragtune.detectors.sources import HALLUCINATION_SOURCES

    src = next(s for s in HALLUCINATION_SOURCES if s.name == "wice-published")
    return {path.parent.name.split("entailment=")[1]: json.loads(path.read_text()) for path in src.files(data)}


def best_of_groups(rows: list[dict], scores) -> list[int]:
    """The rows to keep, one per claim where a set scores a claim against several chunks: the chunk that supports it
    best (lowest score) decides, as the WiCE authors take the maximum entailment over a claim's chunks. Every row
    where the set has no groups."""
    if "group" not in rows[0]:
        return list(range(len(rows)))
    best: dict[str, int] = {}
    for i, r in enumerate(rows):
        if r["group"] not in best or scores[i] < scores[best[r["group"]]]:
            best[r["group"]] = i
    return list(best.values())


#: per-answer features of the experimental learned detector (not shipped: see BENCHMARKS.md)
FEATURES = ("offline score", "min support", "mean support", "min cosine", "min word coverage", "mean cosine",
            "mean word coverage", "share unsupported", "share with facts missing", "facts missing (log)",
            "claims (log)", "novel bigrams", "novel words", "answer words (log)", "context words (log)")


def _features(scorer, row: dict) -> tuple[dict, np.ndarray]:
    """The offline scorer's verdict on one answer, and the features the learned detector is fitted on."""
    from ragtune.evaluation.answers import claims_of
    from ragtune.text import content_words, words
    from ragtune.types import Hit

    context = " ".join(row["contexts"])
    hits = [Hit(f"c{i}", f"c{i}", 1.0, i + 1, t, 0, len(t)) for i, t in enumerate(row["contexts"])]
    supports = scorer.support(claims_of(row["answer"]), hits, row["question"])
    verdict = scorer.verdict(supports)

    def bigrams(text):
        w = [x.lower() for x in words(text)]
        return set(zip(w, w[1:]))

    def mean(values, empty=1.0):
        values = list(values)
        return float(np.mean(values)) if values else empty

    answer_words, context_words = content_words(row["answer"]), set(content_words(context))
    answer_bigrams = bigrams(row["answer"])
    x = [verdict["score"], min((s.score for s in supports), default=1.0), mean(s.score for s in supports),
         min((s.semantic for s in supports), default=1.0), min((s.lexical for s in supports), default=1.0),
         mean(s.semantic for s in supports), mean(s.lexical for s in supports),
         mean((s.probability >= 0.5 for s in supports), 0.0), mean((not s.facts_ok for s in supports), 0.0),
         np.log1p(sum(len(s.missing) for s in supports)), np.log1p(len(supports)),
         len(answer_bigrams - bigrams(context)) / max(1, len(answer_bigrams)),
         1 - sum(w in context_words for w in answer_words) / max(1, len(answer_words)),
         np.log1p(len(row["answer"].split())), np.log1p(len(context.split()))]
    return verdict, np.array(x, float)


def _judged(judge, row: dict) -> tuple[float, float]:
    """The LLM judge's verdict on one answer: (hallucinated 0/1, 1 - faithfulness), NaN where it gave none."""
    from ragtune.evaluation.answers import claims_of
    from ragtune.types import Hit

    hits = [Hit(f"c{i}", f"c{i}", 1.0, i + 1, t, 0, len(t)) for i, t in enumerate(row["contexts"])]
    claims = claims_of(row["answer"])
    if not claims:
        return 0.0, 0.0  # nothing claimed: nothing invented
    out = judge.score(row["question"], row["answer"], claims, hits)
    return out["judge_hallucination"], 1 - out["judge_faithfulness"]


def hallucination(data: Path, overrides: list[str], limit: int | None, dump: Path | None = None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from ragtune.cli import load_config
    from ragtune.engine import Engine
    from ragtune.workspace import Workspace

    sets = {name: rows[:limit] for name, rows in hallucination_sets(data).items()}
    config = load_config(None, overrides)
    engine = Engine(config, Workspace(Path(os.environ.get("RAGTUNE_HOME", ".ragtune"))))
    scorer, judge = engine.answer_scorer, engine.judge
    scorer_name = f"ragtune offline scorer ({config.evaluation.verifier or 'shipped'})"
    scored, judged, seconds, n = {}, {}, 0.0, 0
    for name, rows in list(sets.items()):
        t0 = time.perf_counter()
        verdicts, x = zip(*(_features(scorer, r) for r in rows))
        seconds, n = seconds + time.perf_counter() - t0, n + len(rows)
        keep = best_of_groups(rows, [v["score"] for v in verdicts])
        if judge is not None:  # the judge's own best chunk per claim (NaN, no verdict, counts as worst)
            j = np.array([_judged(judge, r) for r in rows])
            judged[name] = j[best_of_groups(rows, np.nan_to_num(j[:, 1], nan=np.inf))]
        sets[name] = [rows[i] for i in keep]
        scored[name] = (np.array([r["hallucinated"] for r in sets[name]], int), [verdicts[i] for i in keep],
                        np.array(x)[keep])
    if dump is not None:  # every kept row's verdict with its label, for analysis by hand
        with dump.open("w") as f:
            for name, (y, verdicts, _) in scored.items():
                for label, verdict in zip(y, verdicts):
                    f.write(json.dumps({"set": name, "label": int(label), **verdict}) + "\n")
    # the experimental learned detector: logistic regression on SummEdits' test rows, C chosen by cross-validation
    # there (nothing is tuned on the sets it is scored on)
    y_fit, _, x_fit = scored.pop("SummEdits test rows")
    scaler = StandardScaler().fit(x_fit)
    best_c = max((0.01, 0.1, 1.0), key=lambda c: _cv_auroc(x_fit, y_fit, c))
    learned = LogisticRegression(C=best_c, max_iter=5000).fit(scaler.transform(x_fit), y_fit)
    print(f"{machine()}; learned detector: C={best_c}, fitted on {len(y_fit)} SummEdits test rows"
          + (f"; the first {limit} rows of each set" if limit else "") + "\n")
    print("| set | detector | flag rate | precision | recall | F1 | balanced accuracy | AUROC |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (y, verdicts, x) in scored.items():
        overlap = x[:, FEATURES.index("novel words")]
        prob = np.array([v["score"] for v in verdicts])
        fitted = learned.predict_proba(scaler.transform(x))[:, 1]
        for detector, flags, p in [
                ("always flag", np.ones(len(y), bool), np.ones(len(y))),
                ("word overlap (1 - share of answer words in the context)", overlap > 0.2, overlap),
                (scorer_name, np.array([v["hallucinated"] for v in verdicts]), prob),
                ("learned over the scorer's features (not shipped)", fitted >= 0.5, fitted)]:
            _table_row(name, detector, y, np.asarray(flags, bool), p)
        if name in judged:  # rows the judge gave no verdict on are counted, and left out of its figures
            flags, p = judged[name][:, 0], judged[name][:, 1]
            ok = ~np.isnan(flags) & ~np.isnan(p)
            label = f"LLM judge ({config.evaluation.judge.backend}; {int((~ok).sum())} unmeasured)"
            if ok.any():
                _table_row(name, label, y[ok], flags[ok] >= 0.5, p[ok])
            else:
                print(f"| {name} | {label} | no verdict on any row |")
    wice = {r["group"]: (r["hallucinated"], v["score"]) for r, v in zip(sets["WiCE test claims"],
                                                                       scored["WiCE test claims"][1])}
    published = wice_published(data)
    subset = sorted(set(next(iter(published.values()))) & set(wice))
    y = np.array([wice[i][0] for i in subset], int)
    if 0 < y.sum() < len(y):
        print(f"\nWiCE, the {len(subset)} claims the authors scored (human rate {y.mean():.3f}): AUROC of "
              + ", ".join(f"{model} {roc_auc_score(y, [1 - p[i] for i in subset]):.3f}"
                          for model, p in published.items())
              + f"; ragtune offline scorer {roc_auc_score(y, [wice[i][1] for i in subset]):.3f}")
    y, verdicts, _ = scored["FaithBench"]
    flags, prob = np.array([v["hallucinated"] for v in verdicts]), np.array([v["score"] for v in verdicts])
    print(f"\nFaithBench rate: human {y.mean():.3f}, flagged {flags.mean():.3f}, mean score {prob.mean():.3f}"
          + (f"; the LLM judge's {np.nanmean(judged['FaithBench'][:, 0]):.3f}" if judged else ""))
    lengths = np.array([len(r["answer"].split()) for r in sets["FaithBench"]])
    cuts = np.quantile(lengths, [1 / 3, 2 / 3])
    for name, mask in [(f"answers up to {cuts[0]:.0f} words", lengths <= cuts[0]),
                       (f"{cuts[0]:.0f}-{cuts[1]:.0f} words", (lengths > cuts[0]) & (lengths <= cuts[1])),
                       (f"over {cuts[1]:.0f} words", lengths > cuts[1])]:
        print(f"  {name}: human {y[mask].mean():.3f}, flagged {flags[mask].mean():.3f} (n={mask.sum()})")
    print(f"\n{n / seconds:.1f} answers/s (offline scorer and features, models loaded)")


def _table_row(name: str, detector: str, y: np.ndarray, flags: np.ndarray, p: np.ndarray) -> None:
    """One line of the table: ``flags`` the detector's verdicts, ``p`` its score (for AUROC)."""
    from sklearn.metrics import roc_auc_score

    from ragtune.detectors.training import scores

    s = scores(y, flags.astype(float), 0.5)
    balanced = (flags[y == 1].mean() + (~flags[y == 0]).mean()) / 2
    print(f"| {name} (n={len(y)}, human rate {y.mean():.3f}) | {detector} | {flags.mean():.3f} | "
          f"{s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {balanced:.3f} | "
          f"{roc_auc_score(y, p) if 0 < y.sum() < len(y) else float('nan'):.3f} |")


def _cv_auroc(x: np.ndarray, y: np.ndarray, c: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    return float(cross_val_score(model, x, y, cv=5, scoring="roc_auc").mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("detector", choices=["injection", "hallucination"])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="hallucination: the configuration the scorer (and an LLM judge) comes from, as on the CLI")
    ap.add_argument("--limit", type=int, help="hallucination: the first N rows of each set (a quick check)")
    ap.add_argument("--dump", type=Path, help="hallucination: write each row's verdict and label (JSONL) here")
    ap.add_argument("--threshold", type=float, help="injection: flag at this score instead of the shipped threshold")
    ap.add_argument("--backend", default="ngram", help="injection: ngram (questions' model, the default), "
                    "ngram-documents (the model that scans chunks at indexing), rules, hf:<folder>")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    if args.detector == "injection":
        injection(args.data, args.backend, args.threshold)
    else:
        hallucination(args.data, args.overrides, args.limit, args.dump)
    return 0


if __name__ == "__main__":
    sys.exit(main())
