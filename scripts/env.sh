#!/usr/bin/env bash
# Source this file: it creates (once) and activates the project's Python environment.
#
# The environment lives outside the clone, keyed by a hash of pyproject.toml, so a fresh clone
# (CI) reuses it and a dependency change builds a new one. The project itself is installed in
# editable mode on every call, pointing at the clone that sourced this file.

_rs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_rs_cache="${RETROSEARCH_CACHE:-$HOME/.cache/retrosearch}"
_rs_python="${RETROSEARCH_PYTHON:-$(command -v python3.11 || command -v python3)}"
_rs_key="$("$_rs_python" - "$_rs_root/pyproject.toml" <<'PY'
import hashlib, sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))
project = data["project"]
payload = repr((sys.version_info[:2], project["dependencies"], project.get("optional-dependencies", {})))
print(hashlib.sha256(payload.encode()).hexdigest()[:16])
PY
)"
export RETROSEARCH_VENV="$_rs_cache/venv-$_rs_key"

if [ ! -f "$RETROSEARCH_VENV/.complete" ]; then
  echo "[env] building $RETROSEARCH_VENV (first run only; downloads a few GB of wheels)" >&2
  rm -rf "$RETROSEARCH_VENV"
  mkdir -p "$_rs_cache"
  "$_rs_python" -m venv "$RETROSEARCH_VENV"
  "$RETROSEARCH_VENV/bin/python" -m pip install --quiet --upgrade "pip>=24" "setuptools>=69" wheel
  "$RETROSEARCH_VENV/bin/python" "$_rs_root/scripts/requirements.py" "$_rs_root/pyproject.toml" --dev > "$RETROSEARCH_VENV/requirements.txt"
  "$RETROSEARCH_VENV/bin/python" -m pip install --progress-bar off -r "$RETROSEARCH_VENV/requirements.txt"
  touch "$RETROSEARCH_VENV/.complete"
fi

# shellcheck disable=SC1091
source "$RETROSEARCH_VENV/bin/activate"
_rs_missing="$(python - "$_rs_root/pyproject.toml" <<'PY'
import sys, tomllib
from importlib import metadata
wanted = tomllib.load(open(sys.argv[1], "rb")).get("tool", {}).get("retrosearch", {}).get("no-deps", [])
for req in wanted:
    name, _, version = req.partition("==")
    try:
        if metadata.version(name) == version or not version:
            continue
    except metadata.PackageNotFoundError:
        pass
    print(req)
PY
)"
if [ -n "$_rs_missing" ]; then
  # shellcheck disable=SC2086
  python -m pip install --quiet --no-deps $_rs_missing || { echo "[env] failed to install $_rs_missing" >&2; return 1 2>/dev/null || exit 1; }
fi
_rs_log="$(mktemp)"
if ! python -m pip install --quiet --no-deps --no-build-isolation -e "$_rs_root" >"$_rs_log" 2>&1; then
  cat "$_rs_log" >&2; rm -f "$_rs_log"; return 1 2>/dev/null || exit 1
fi
rm -f "$_rs_log"

export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
export RETROSEARCH_DATA="${RETROSEARCH_DATA:-$(cd "$_rs_root/.." && pwd)/shared/data}"
