"""Start-up: the command starts without the heavy libraries, and every process gets the same settings."""

from __future__ import annotations

import os
import subprocess
import sys

# What `retrosearch --help` must not import: each costs from a tenth of a second to seconds.
HEAVY = (
    "torch", "transformers", "sentence_transformers", "peft", "faiss", "ray", "opensearchpy", "onnxruntime",
    "onnx", "datasets", "pyarrow", "matplotlib", "uvicorn", "fastapi", "cryptography", "httpx", "aiohttp",
)


def test_the_command_starts_without_torch_or_transformers():
    code = (
        "import sys, retrosearch.cli; "
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported at start-up: {proc.stdout.strip()}"
    help_text = subprocess.run([sys.executable, "-m", "retrosearch.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "serve" in help_text.stdout and "ingest" in help_text.stdout


def test_start_up_settings_are_defaults_a_user_can_override(monkeypatch):
    from retrosearch.core.startup import configure_process, forwarded_environment

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    configure_process()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"  # the user's own choice wins
    forwarded = forwarded_environment()
    assert forwarded["HF_HUB_OFFLINE"] == "1" and forwarded["TOKENIZERS_PARALLELISM"] == "true"
    assert set(forwarded) >= {"TRANSFORMERS_OFFLINE", "RAY_AUTH_MODE"}
