"""Choosing where models run: ``auto`` means CUDA when a GPU is visible, else the CPU."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from glob import glob
from pathlib import Path


@lru_cache(maxsize=None)
def cuda_available() -> bool:
    if sys.platform.startswith("linux") and not (Path("/proc/driver/nvidia").exists() or glob("/dev/nvidia*")):
        return False  # no NVIDIA driver: no CUDA, and no need to import torch (1.5 s) to say so
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but ONNX backends do not need it
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        from ragtune.errors import BackendError

        raise BackendError("device 'cuda' was requested but no CUDA device is visible (use device: auto or cpu)")
    return device


def onnx_providers(device: str) -> list[str]:
    import onnxruntime as ort

    if resolve_device(device) == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


_threads = 0


def limit_threads(n: int) -> None:
    """At most ``n`` threads per model call from now on (processes sharing the cores would oversubscribe them)."""
    global _threads
    _threads = n
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def import_torch():
    """torch, with the thread limit applied (a model loaded after ``limit_threads`` must respect it too)."""
    import torch

    if _threads:
        torch.set_num_threads(_threads)
    return torch


def thread_limit() -> int:
    """The limit set by ``limit_threads``; 0: the runtime's default (one thread per core)."""
    return _threads


def quiet_hugging_face() -> None:
    """Offline, and no progress bars, before transformers loads a model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def resolve_precision(precision: str, device: str):
    """The torch dtype to cast a model to. ``auto``: fp16 on CUDA, fp32 elsewhere. Always a dtype, fp32 included:
    transformers loads weights in the dtype they were saved in (a folder of fp16 weights gives an fp16 model, five
    times slower on a CPU), so fp32 has to be asked for."""
    import torch

    if precision == "auto":
        precision = "fp16" if device == "cuda" else "fp32"
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
