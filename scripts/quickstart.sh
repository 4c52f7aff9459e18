#!/usr/bin/env bash
# The main job on the embedded default (FAISS, no server): builds the Python environment on first
# use, embeds SciFact with the packaged all-MiniLM-L6-v2, evaluates it and shows example queries.
# Extra arguments go to `retrosearch quickstart`, e.g. `--collection ../shared/data/cranfield`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/env.sh
retrosearch quickstart "$@"
