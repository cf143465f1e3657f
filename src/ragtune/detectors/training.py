"""Train and measure the injection classifiers: ``python -m ragtune.detectors.training --data DIR``.

DIR holds the public sets of ``sources.py`` laid out as ``<owner>+<name>/<path>`` (``--from-mirrors`` fills it from
git clones). Two models are trained, one per kind of text scanned (``injection.MODEL_FILES``, ``LEAVE_OUT``):
questions (the service's guard, ``ragtune guard``) and documents (every chunk, at indexing). Deterministic: the
validation split is a fixed fifth of every training set chosen by text hash, the solver has no randomness, and the
same data gives the same weights. The regularisation and the threshold are picked
on the validation split only; the ``eval`` sets are scored once, at the end, for the report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ragtune.detectors.injection import MODEL_FILES, ngram_features
from ragtune.detectors.sources import INJECTION_SOURCES, Source, digest, export
from ragtune.errors import RagtuneError

C_GRID = (1.0, 4.0, 16.0)
N_FEATURES = 2**19
#: the training sets each model leaves out. The jailbreak prompts and XSafety's hijacked questions are written to a
#: chat model by its user: they teach the questions' model role-play personas and other languages, but make prose
#: addressed to "you" look like an attack (on the validation fifth's benign documents, answer paragraphs and
#: Wikipedia, the model trained with the jailbreaks flags 1.1% against none without them); chunks carry planted
#: instructions, not chat prompts, so the documents' model learns without both. GNOME's help pages teach the
#: documents' model that help-centre prose ("Click ... to open the panel") is no instruction to it; the questions'
#: model, which never reads documents, learns without them (with them its recall on deepset's validation rows fell
#: from 0.957 to 0.915).
LEAVE_OUT = {"questions": frozenset({"gnome-help"}), "documents": frozenset({"inthewild-jailbreaks", "xsafety"})}


def _rows(src: Source, root: Path) -> list[tuple[str, int]]:
    """(text, label) pairs of one source, in file order."""
    path = src.file(root)
    if src.name == "deepset-train":
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pydict()
        return [(t, int(y)) for t, y in zip(table["text"], table["label"])]
    if src.name == "promptshield-train":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [(r["prompt"], int(r["label"])) for r in rows
                if r["label"] == 1 or r.get("source") == "synthetic_edge"]
    if src.name == "inthewild-jailbreaks":
        return [(t, 1) for t in json.loads(path.read_text())]
    if src.name == "xsafety":
        import csv
        import io

        return [(",".join(row).strip(), int(f.stem == "Goal_Hijacking")) for f in src.files(root)
                for row in csv.reader(io.StringIO(f.read_text(encoding="utf-8-sig"))) if ",".join(row).strip()]
    if src.name == "gnome-help":
        return [(t, 0) for f in src.files(root) for t in po_paragraphs(f.read_text(), english=f.stem == "de")]
    if src.name.endswith("-docs") or src.name.startswith("obsidian-help"):
        return [(t, 0) for f in src.files(root) for t in doc_paragraphs(f.read_text(errors="replace"))]
    if src.name == "alpacaeval":
        rows = json.loads(path.read_text())
        paragraphs = [p.strip() for r in rows for p in r["output"].split("\n\n") if len(p.strip()) >= 80]
        return [(r["instruction"], 0) for r in rows] + [(p, 0) for p in paragraphs]
    if src.name == "xquad":
        out = []
        for f in src.files(root):
            for article in json.loads(f.read_text())["data"]:
                for para in article["paragraphs"]:
                    out += [(para["context"], 0)] + [(qa["question"], 0) for qa in para["qas"]]
        return out
    if src.name == "clinc150":
        data = json.loads(path.read_text())
        return [(text, 0) for text, _ in data["train"] + data["oos_train"]]
    if src.name == "banking77":
        import csv

        with path.open(newline="") as f:
            return [(row["text"], 0) for row in csv.DictReader(f)]
    if src.name.startswith("tensortrust"):
        return [(json.loads(line)["attack"], 1) for line in path.read_text().splitlines() if line.strip()]
    if src.name.startswith("bipia"):
        return [(t, 1) for texts in json.loads(path.read_text()).values() for t in texts]
    if src.name.startswith("cyberseceval"):
        return [(r["user_input"], 1) for r in json.loads(path.read_text())]
    if src.name in ("notinject", "wildguard-benign"):
        return [(r["prompt"], 0) for f in src.files(root) for r in json.loads(f.read_text())]
    raise RagtuneError(f"no reader for source {src.name}")


def po_paragraphs(text: str, english: bool = False) -> list[str]:
    """The translated paragraphs of a gettext .po file of a help manual (and, with ``english``, the originals), its
    markup removed; titles and fuzzy or untranslated entries are left out."""
    import ast
    import re

    out = []
    for entry in text.split("\n\n"):
        if "#, fuzzy" in entry or not re.search(r"path: \S*(/p|/desc)\b", entry):
            continue
        fields, key = {}, None
        for line in entry.splitlines():
            m = re.match(r'(msgid|msgstr) (".*")$', line)
            if m:
                key, line = m.group(1), m.group(2)
            if key and line.startswith('"'):
                fields[key] = fields.get(key, "") + ast.literal_eval(line)
        for key in ("msgid", "msgstr") if english else ("msgstr",):
            para = " ".join(re.sub(r"<[^>]+>", "", fields.get(key, "")).split())
            if len(para) >= 60:
                out.append(para)
    return out


def doc_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of a Markdown or reStructuredText page (>= 120 characters, 20 words): headings, lists,
    tables, code, directives and indented blocks left out, link and role markup reduced to its text."""
    import re

    out = []
    for block in re.split(r"\n\s*\n", re.sub(r"```.*?```", "\n\n", text, flags=re.S)):
        lines = block.split("\n")
        first = lines[0].lstrip()
        if (not first or first.startswith(("..", ":", "|", "+", "=", "#", "`", ">", "<", "!", "{", "---", "- ", "* "))
                or any(re.fullmatch(r"\s*[=\-~^\"'`#*+]{3,}\s*", line) for line in lines)
                or any(line.startswith(("   ", "\t")) for line in lines)):
            continue
        para = " ".join(line.strip() for line in lines)
        para = re.sub(r":[a-z:]+:`([^`<]*)(<[^>]*>)?`", r"\1", para)
        para = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", para)
        para = re.sub(r"\[\[([^\]|]*\|)?([^\]]*)\]\]", r"\2", para)
        para = " ".join(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", para).replace("**", "").replace("`", "").split())
        if len(para) >= 120 and len(re.findall(r"\w+", para)) >= 20:
            out.append(para)
    return out


def load(root: Path, use: str, check: bool = True, leave_out=frozenset()) -> dict[str, list[tuple[str, int]]]:
    """Every source of that use (but those named in ``leave_out``), verified against its recorded sha256."""
    out = {}
    for src in INJECTION_SOURCES:
        if src.use != use or src.name in leave_out:
            continue
        files = src.files(root)
        missing = [f for f in files if not f.exists()] or ([] if files else [src.file(root)])
        if missing:
            raise RagtuneError(f"{src.name}: {missing[0]} is missing; fetch {src.repo} at {src.commit[:12]} "
                               f"({src.path}), or run with --from-mirrors")
        if check and digest(src, root) != src.sha256:
            raise RagtuneError(f"{src.name}: a file of {src.path} under {root} is not the recorded revision "
                               "(sha256 differs)")
        out[src.name] = _rows(src, root)
    return out


def is_validation(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 5 == 0


def split(sets: dict[str, list[tuple[str, int]]]):
    """(train, validation): lists of (source, text, label); texts seen twice are kept once."""
    seen, train, val = set(), [], []
    for name, rows in sets.items():
        for text, label in rows:
            if text in seen:
                continue
            seen.add(text)
            (val if is_validation(text) else train).append((name, text, label))
    return train, val


def scores(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    pred = prob >= threshold
    tp, fp, fn = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    out = {"n": len(y), "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
           "accuracy": float((pred == (y == 1)).mean()) if len(y) else float("nan")}
    if 0 < y.sum() < len(y):
        out["auroc"] = float(roc_auc_score(y, prob))
    return out


def best_threshold(y: np.ndarray, prob: np.ndarray) -> float:
    """The threshold of highest F1 on (y, prob); ties go to the higher threshold (fewer false alarms)."""
    candidates = np.unique(np.round(prob, 4))
    f1 = [scores(y, prob, t)["f1"] for t in candidates]
    best = max(f1)
    return float(max(t for t, f in zip(candidates, f1) if f == best))


def fit(train: list, val: list) -> dict:
    """Fit over C_GRID, keep the C with the best validation F1; returns the model's arrays and its validation scores."""
    from sklearn.linear_model import LogisticRegression

    x_train = ngram_features([t for _, t, _ in train], N_FEATURES)
    y_train = np.array([y for *_, y in train])
    x_val = ngram_features([t for _, t, _ in val], N_FEATURES)
    y_val = np.array([y for *_, y in val])
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", solver="liblinear")
        clf.fit(x_train, y_train)
        prob = clf.predict_proba(x_val)[:, 1]
        threshold = best_threshold(y_val, prob)
        s = scores(y_val, prob, threshold)
        if best is None or s["f1"] > best["validation"]["f1"]:
            best = {"C": c, "threshold": threshold, "validation": s, "clf": clf}
    clf = best.pop("clf")
    w = clf.coef_[0].astype(np.float16)  # half precision: the file stays small, logits move by about 1e-3
    index = np.flatnonzero(w).astype(np.int32)  # features never seen in training keep a zero weight
    best.update(index=index, value=w[index], bias=np.float32(clf.intercept_[0]))
    return best


def save(model: dict, sources: dict, path: Path, kind: str = "questions") -> Path:
    """Write the model file atomically; ``meta`` records the settings, the data digests and the validation scores."""
    meta = {"kind": kind, "n_features": N_FEATURES,
            "features": "char_wb 2-5 + word 1-2, hashed, l2 per block, guard.normalise",
            "C": model["C"], "threshold": model["threshold"], "validation": model["validation"],
            "sources": sources}
    meta["sha256"] = hashlib.sha256(model["value"].tobytes() + model["index"].tobytes()).hexdigest()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    try:
        nonzero = np.zeros(2 * N_FEATURES, bool)  # which weights are stored: a bit per feature, not an int32 each
        nonzero[model["index"]] = True
        np.savez_compressed(tmp, nonzero=np.packbits(nonzero), value=model["value"], bias=model["bias"],
                            meta=np.array(json.dumps(meta, sort_keys=True)))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def train(root: Path, kind: str = "questions") -> tuple[dict, dict]:
    """The model of ``kind`` (a key of ``LEAVE_OUT``) and the sources it learned from."""
    sets = load(root, "train", leave_out=LEAVE_OUT[kind])
    train_rows, val_rows = split(sets)
    model = fit(train_rows, val_rows)
    used = {s.name: {"repo": s.repo, "commit": s.commit, "path": s.path, "sha256": s.sha256, "licence": s.licence,
                     "rows": len(sets[s.name])} for s in INJECTION_SOURCES if s.name in sets}
    return model, used


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of the public sets (<owner>+<name>/<path>)")
    ap.add_argument("--from-mirrors", type=Path, help="fill --data from git clones named <owner>+<name> first")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder the model files are written to")
    args = ap.parse_args(argv)
    if args.from_mirrors:
        export(INJECTION_SOURCES, args.from_mirrors, args.data)
    for kind, name in MODEL_FILES.items():
        model, used = train(args.data, kind)
        save(model, used, args.out / name, kind)
        print(json.dumps({"model": name, "C": model["C"], "threshold": model["threshold"],
                          "validation": model["validation"], "weights": int(len(model["index"]))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
