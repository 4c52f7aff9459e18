"""Choosing where and in which precision the encoder runs (never hard-wired to the CPU)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Literal

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


#: What an encoder is loaded for: ``bulk`` (corpora: index, ingest, eval, mining) or ``queries``
#: (one short text per call: the query service, ``search``). ``auto`` picks the runtime per workload.
Workload = Literal["bulk", "queries"]


def resolve_runtime(requested: str = "auto", quantize: str = "none", device: str = "auto",
                    pooling: str = "mean", workload: Workload = "bulk") -> str:
    """What runs the forward pass: ``torch`` or ``onnx`` (ONNX Runtime on a cached export).

    ``auto`` follows what was measured with MiniLM on 2 CPUs (``bench serve`` and ``bench ingest``
    with ``--runtime-variants``, benchmarks/results/minilm/*_runtimes_*): ONNX Runtime answers one
    query 2.1-2.2x faster than torch (5.9 against 13.2 ms at p50 on a quiet machine), while over
    the first 300 SciFact abstracts torch embeds 1.2-1.4x faster (long texts in batches, where
    eager overhead is small). So ``auto`` is onnx for ``queries`` on the CPU and torch for
    ``bulk``; torch on accelerators (bf16/fp16 there, no export); torch for last-token (decoder
    LM) encoders, whose export takes minutes and whose ONNX speed was not measured. ``int8``
    exists only as an ONNX model, so ``auto`` with int8 means onnx, and torch with int8 is refused.
    """
    if requested not in ("auto", "torch", "onnx"):
        raise ValueError(f"runtime {requested!r} is not one of auto, torch, onnx")
    if quantize not in ("none", "int8"):
        raise ValueError(f"quantize {quantize!r} is not one of none, int8")
    if requested == "torch" and quantize != "none":
        raise ValueError(f"--quantize {quantize} needs --runtime onnx (torch runs the checkpoint's own weights)")
    if requested != "auto":
        return requested
    if quantize == "int8":
        return "onnx"
    on_cpu = resolve_device(device).type == "cpu"
    return "onnx" if on_cpu and pooling != "last" and workload == "queries" else "torch"


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
