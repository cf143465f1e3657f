"""How an answer's claim scores become one answer score: the shipped rule (its worst claim) against other rules, from
the per-claim scores that `benchmarks/detectors.py hallucination --dump rows.jsonl` writes.

    python benchmarks/hallucination_aggregation.py rows.jsonl

Per set: AUROC of each rule against the human label, and the share of answers flagged at 0.5 beside the human rate
(the issue asks the printed rate to be close to the human one; the worst claim's rate grows with the number of
claims). A rule is chosen on the tuning sets (SummEdits' test rows, WiCE's dev claims), not on the others.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from sklearn.metrics import roc_auc_score

RULES = {
    "worst claim (shipped)": max,
    "mean": lambda s: sum(s) / len(s),
    "noisy-or": lambda s: 1 - math.prod(1 - x for x in s),
    "noisy-or per claim (geometric)": lambda s: 1 - math.prod(1 - x for x in s) ** (1 / len(s)),
    "share of claims unsupported": lambda s: sum(x >= 0.5 for x in s) / len(s),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump", type=Path, help="the JSONL of benchmarks/detectors.py hallucination --dump")
    args = ap.parse_args()
    sets: dict[str, list[dict]] = defaultdict(list)
    for line in args.dump.open():
        row = json.loads(line)
        sets[row["set"]].append(row)
    print("| set | rule | AUROC | flagged at 0.5 | human rate |\n|---|---|---|---|---|")
    for name, rows in sets.items():
        labels = [r["label"] for r in rows]
        claims = [[c["score"] for c in r["claims"]] or [0.0] for r in rows]
        human = sum(labels) / len(labels)
        for rule, fn in RULES.items():
            scores = [fn(s) for s in claims]
            flagged = sum(x >= 0.5 for x in scores) / len(scores)
            print(f"| {name} (n={len(rows)}) | {rule} | {roc_auc_score(labels, scores):.3f} | {flagged:.3f} | "
                  f"{human:.3f} |")


if __name__ == "__main__":
    main()
