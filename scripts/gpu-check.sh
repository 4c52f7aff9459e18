#!/usr/bin/env bash
# The GPU check (issue 30): GPU tests, bench ingest/serve/train and a FAISS GPU search on the GPU,
# each step with its own timeout, within 8 minutes; results in benchmarks/results/gpu/.
#
#   scripts/gpu-check.sh [--data DIR] [--out DIR] [--budget-s 450] [--dry-run] [--only STEP ...]
#
# Run it in the environment scripts/env.sh builds (or set PYTHON). Without a GPU it checks its own
# syntax and options, lists the steps it would run and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

bash -n "$0"
"$PYTHON" -m retrosearch.benchmarks.gpu_check --help > /dev/null
echo "gpu-check: syntax and options checked"
exec "$PYTHON" -m retrosearch.benchmarks.gpu_check "$@"
