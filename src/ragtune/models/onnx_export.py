"""Sentence-transformers models exported once to ONNX, so that the CPU path runs them with ONNX Runtime.

The whole module chain (transformer, pooling, normalisation) is traced into one graph by ``torch.onnx.export``, so the
exported model returns the sentence embedding itself; its vectors match sentence-transformers' to about 1e-7
(a test holds it to cosine >= 0.99999), which is why both runtimes share one embedding cache. The tokenizer is the
model's own fast tokenizer, saved beside the graph. Exports live in the model cache (``ragtune.models.cache``) under
a key made of the model's files, so each model is exported once per machine (about a second); a process that finds
the export imports neither torch nor sentence-transformers, which saves about 6 s of start-up, and a query is
embedded about three times faster than through torch on the CPU (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ragtune.models.cache import build_once, fingerprint, model_cache_dir

EXPORT_VERSION = 1  # bump when the export changes, so old exports are not reused
EXPORT_FILE = "export.json"


def exported(model_path: str | Path) -> Path:
    """The directory holding ``model.onnx``, ``tokenizer.json`` and ``export.json`` for a sentence-transformers model
    directory; exported on first use (``ragtune.models.cache.build_once``: never half-written, even when concurrent)."""
    model_path = Path(model_path)
    key = fingerprint(model_path, f"ragtune-onnx-export-v{EXPORT_VERSION}")
    out = model_cache_dir() / f"{model_path.parent.name}-{model_path.name}-{key}"
    return build_once(out, EXPORT_FILE, lambda tmp: _export(model_path, tmp))


def _export(model_path: Path, out: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu").eval()
    example = model.preprocess(["An example sentence to trace the graph with."])
    names = [k for k, v in example.items() if isinstance(v, torch.Tensor)]
    constants = {k: v for k, v in example.items() if k not in names}

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model({**constants, **dict(zip(names, tensors))})["sentence_embedding"]

    out.mkdir(parents=True)
    dynamic = {n: {0: "batch", 1: "tokens"} for n in names} | {"sentence_embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches: they are fixed for this model
        torch.onnx.export(SentenceEmbedding().eval(), tuple(example[n] for n in names), str(out / "model.onnx"),
                          input_names=names, output_names=["sentence_embedding"], dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    backend = model.tokenizer.backend_tokenizer
    backend.save(str(out / "tokenizer.json"))
    meta = {"model_path": str(model_path), "inputs": names, "max_length": int(model.max_seq_length),
            "pad_id": int((backend.padding or {}).get("pad_id", 0)), "export_version": EXPORT_VERSION, "torch": torch.__version__,
            "sentence_transformers": __import__("sentence_transformers").__version__}
    (out / EXPORT_FILE).write_text(json.dumps(meta, indent=2))


def export_info(export_dir: Path) -> dict:
    return json.loads((export_dir / EXPORT_FILE).read_text())
