"""Choosing where models run: ``auto`` means CUDA when a GPU is visible, else the CPU."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def cuda_available() -> bool:
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
