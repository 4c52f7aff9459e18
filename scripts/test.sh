#!/usr/bin/env bash
# The test suite on a fresh machine: builds the Python environment (cached outside the clone),
# assembles and starts a local OpenSearch (cached Maven downloads), runs pytest, stops OpenSearch.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/env.sh

port="${RETROSEARCH_OPENSEARCH_PORT:-9250}"
export RETROSEARCH_OPENSEARCH_URL="http://127.0.0.1:${port}"
export RETROSEARCH_REQUIRE_OPENSEARCH=1
started_here=0
# A node already answering (a developer's) is used as is and left running afterwards.
if ! curl -s -m 30 -o /dev/null "$RETROSEARCH_OPENSEARCH_URL/"; then
  retrosearch opensearch start --with-ml --port "$port"
  started_here=1
fi
# The secured 3-node cluster of the `secure` phase (HTTP ports 9270-9272, transport 9370-9372), with the
# ML plugins: neural and hybrid queries, the ingest pipeline and the writer's and searcher's ML roles.
secure_port="${RETROSEARCH_SECURE_OPENSEARCH_PORT:-9270}"
secure_cluster=(--nodes 3 --secure --port "$secure_port")  # what start and stop both take
secure_started=0
stop_node() {
  if [ "$secure_started" = 1 ]; then retrosearch opensearch stop "${secure_cluster[@]}" || true; fi
  if [ "$started_here" = 1 ]; then retrosearch opensearch stop --port "$port" || true; fi
}
trap stop_node EXIT

if [ "$#" -gt 0 ]; then
  exec python -m pytest "$@"
fi
# Each phase prints its slowest tests and its wall time (pytest exit included), so a slow CI run shows where.
phase() {
  local began=$SECONDS
  python -m pytest --durations=15 "$@"
  echo "[test] phase '$*' took $((SECONDS - began)) s"
}
# Tests marked isolated fail when an earlier test in the same process already started Ray.
phase -m isolated
# The rest on two workers, a test file whole on one (module fixtures built once, tests in order):
# much of a test's time is a process or Ray starting, OpenSearch refreshing or a service answering.
# One torch thread each: two workers with two threads each on two cores run slower than with one.
(export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
 phase -m "not isolated and not cluster and not secure" -n "${RETROSEARCH_TEST_WORKERS:-2}" --dist loadfile)
# The cluster tests run their own head and worker node (about 2 GiB more) and kill nodes on purpose,
# so they run after the rest, not beside a test's in-process Ray.
phase -m cluster
# Every OpenSearch path on a cluster like production (TLS, users and roles, three nodes, replicas, the ML
# plugins), started once for this phase (3 nodes at 1 GB heap, about 5 GiB); the plain node stops first
# to leave its memory to the cluster. The other tests never need this cluster: they use the plain node above.
stop_node
started_here=0
began=$SECONDS
retrosearch opensearch start "${secure_cluster[@]}" --with-ml
secure_started=1
echo "[test] secured 3-node cluster green after $((SECONDS - began)) s"
(export RETROSEARCH_SECURE_OPENSEARCH_PORT="$secure_port" RETROSEARCH_REQUIRE_SECURE_OPENSEARCH=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
 phase -m secure)
