"""Choosing where and in which precision the encoder runs (never hard-wired to the CPU)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_allocator_tuned = False


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, then Apple MPS, then the CPU."""
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on GPUs that support it, float16 on older GPUs, float32 on the CPU."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def resolve_runtime(requested: str = "auto", quantize: str = "none") -> str:
    """What runs the forward pass: ``torch`` or ``onnx`` (ONNX Runtime on a cached export).

    ``auto`` means torch, still. Measured on 2 CPUs with MiniLM (benchmarks/results/minilm/
    *_runtimes_scifact.json), ONNX Runtime fp32 gives the same vectors 1.3x faster in bulk and
    2.1x faster per query in the service (int8: 1.9x and 3.2x). It is not the default yet because
    the choice would have to depend on the device and the model (GPUs run torch in bf16; decoder
    LMs were not timed) and each new checkpoint pays a one-time export (5 s for MiniLM, 40 s for
    SmolLM2) that every test building a tiny model would pay too. The one exception:
    ``quantize="int8"`` exists only as an ONNX model, so ``auto`` with int8 means onnx, and torch
    with int8 is refused.
    """
    if requested not in ("auto", "torch", "onnx"):
        raise ValueError(f"runtime {requested!r} is not one of auto, torch, onnx")
    if quantize not in ("none", "int8"):
        raise ValueError(f"quantize {quantize!r} is not one of none, int8")
    if requested == "auto":
        return "onnx" if quantize == "int8" else "torch"
    if requested == "torch" and quantize != "none":
        raise ValueError(f"--quantize {quantize} needs --runtime onnx (torch runs the checkpoint's own weights)")
    return requested


def set_threads(threads: int | None) -> None:
    """Limit intra-op CPU threads (on a busy 2-core box 1 thread can beat 2)."""
    if threads:
        torch.set_num_threads(threads)


def tune_cpu_allocator() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the kernel.

    With glibc defaults every forward pass maps and unmaps its large activation buffers, and the
    page faults that follow cost 10-15% of a CPU encoder's time (measured with MiniLM on
    SciFact passages: 8.6 -> 10.2 docs/s on one thread). Buffers up to 32 MiB come from the heap,
    and up to 1 GiB of freed heap is kept for the next batch. Once per process; glibc only
    (returns False elsewhere).
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30) and mallopt(_M_TOP_PAD, 64 << 20)
    _allocator_tuned = bool(ok)
    return _allocator_tuned
