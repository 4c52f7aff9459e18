"""Device, precision and the CPU allocator setting the runtime applies."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from retrosearch.core.encoder.device import resolve_device, resolve_dtype, tune_cpu_allocator


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_allocator_tuning_applies_on_glibc_and_once():
    assert tune_cpu_allocator() is True
    assert tune_cpu_allocator() is True


def test_cpu_runs_in_float32_and_auto_never_picks_a_missing_gpu():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    device = resolve_device("auto")
    assert device.type != "cuda" or torch.cuda.is_available()
