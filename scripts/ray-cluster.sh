#!/usr/bin/env bash
# A local multi-node Ray cluster (a head and worker nodes as separate `ray start` processes) for
# trying the --ray-address paths on one machine; see local/ray_cluster.py for ports and layout.
#
#   bash scripts/ray-cluster.sh start [--workers 1] [--cpus 2] [--object-store-mb 200] [--base-port 27000]
#   bash scripts/ray-cluster.sh status | stop
#   bash scripts/ray-cluster.sh kill-node w1     # SIGKILL that node's raylet (a lost node)
#   bash scripts/ray-cluster.sh start-node w1    # bring it back
#
# Uses the project's environment when it is active (source scripts/env.sh first), else builds it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! python -c "import retrosearch.local" 2>/dev/null; then
  source scripts/env.sh
fi
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
exec python -m retrosearch.local.ray_cluster "$@"
