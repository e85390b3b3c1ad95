#!/usr/bin/env bash
# After a device call: put what came back (FILES_AT/h200/...) into data/h200 so that the tables are committed
# and the next call (or a re-run of the same one) resumes from them. Tables are merged (deduplicated) into the
# existing ones, so calls 1-3 may be sent back to back from the same tree and collected afterwards.
#
#   bash scripts/gpu_collect.sh /path/to/files_at
set -euo pipefail
[[ $# -eq 1 && -d "$1/h200" ]] || { echo "usage: $0 FILES_AT (a folder holding h200/)" >&2; exit 2; }
cd "$(dirname "$0")/.."
src=$1/h200
mkdir -p data/h200/traces data/h200/logs
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
# tables are merged, never overwritten: calls made from the same starting tree each return their own rows
merge_tables() {
  local table
  for table in "$@"; do
    [[ -e "$table" ]] && "$PY" -m tta_energy.experiments.resume "data/h200/$(basename "$table")" "$table"
  done
  return 0
}
for bundle in "$src"/results-*.tar; do  # tables + traces of one call (paths data/h200/...)
  [[ -e "$bundle" ]] || continue
  tmp=$(mktemp -d)
  tar xf "$bundle" -C "$tmp"
  merge_tables "$tmp"/data/h200/*.csv
  if [[ -d "$tmp/data/h200/traces" ]]; then
    cp -n "$tmp"/data/h200/traces/* data/h200/traces/ 2>/dev/null || true
  fi
  rm -rf "$tmp"
done
merge_tables "$src"/*.csv  # tables copied flat (older layout)
for tarball in "$src"/traces-*.tar; do
  [[ -e "$tarball" ]] && tar xf "$tarball"  # paths inside are data/h200/traces/...
done
for log in "$src"/log-*.txt; do
  [[ -e "$log" ]] && cp "$log" data/h200/logs/
done
ls -l data/h200
