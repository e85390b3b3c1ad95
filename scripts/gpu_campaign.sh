#!/usr/bin/env bash
# One device call of the H200 campaign (campaigns/h200.toml), and bringing its rows back.
#
#   bash scripts/gpu_campaign.sh run [OPTIONS]      # on the device: `tta-energy campaign run OPTIONS` (e.g.
#                                                   # --experiment batch --time-budget-s 500), then pack the
#                                                   # campaign's tables, runs log and this call's traces
#   bash scripts/gpu_campaign.sh merge-earlier      # on the device: merge the earlier calls' rows (below) only
#   bash scripts/gpu_campaign.sh collect FILES_AT   # here, after the call: merge what came back into
#                                                   # data/h200 (run tables deduplicated by (config, repeat),
#                                                   # runs-log lines and traces that are new), validate, status
#
# Price the call first with `tta-energy campaign plan`; a --time-budget-s in which nothing fits is refused
# before any model is built (exit 2). Exit 3 from `run`: cells are left (the next call resumes); exit 6: every
# cell was done before the run (`campaign run` measured nothing; scripts/gpu_call.sh goes on with its next plan). Exit 5: a
# generation lost the CUDA context (its row is written); one fresh process resumes the call in the time left.
# Calls chained on a warm device machine (it idles out 30 s after a call: too soon to collect in between)
# each get the tables of this checkout; `run` first merges what earlier calls on that machine returned (kept
# in the git-ignored .cache/campaign-calls/), so a chained call resumes from their rows instead of measuring
# the same cells again. Collecting every call's files here afterwards adds each row once.
# The device call carries .whl (scripts/device_env.sh installs its wheels). Environment: PYTHON (default
# python3), CAMPAIGN (default campaigns/h200.toml; its out_dir, data/h200, is where the tables go and come
# back, inside the repository), HARD_LIMIT_S (whole seconds, default 560: the run is stopped there whatever its
# --time-budget-s, and packing follows; give the device call a limit of 600 s; any other value is one error line,
# exit 2).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
source scripts/device_exits.sh  # the exit statuses, and check_seconds
CAMPAIGN=${CAMPAIGN:-campaigns/h200.toml}
HARD_LIMIT_S=${HARD_LIMIT_S:-560}
check_seconds HARD_LIMIT_S 1 "" "the campaign run's hard stop"  # before any work
# the campaign's tables, relative to the repository root (its out_dir: data/h200 for campaigns/h200.toml)
TABLES=$(PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c 'import os, sys
from tta_energy.errors import TtaError
from tta_energy.experiments.campaign_spec import load_campaign
try:
    print(os.path.relpath(load_campaign(sys.argv[1]).out_dir))
except TtaError as exc:
    sys.exit(f"error: {exc}")' "$CAMPAIGN") || exit 2
[[ "$TABLES" != ..* ]] || { echo "error: $CAMPAIGN: its out_dir $TABLES is outside the repository" >&2; exit 2; }
MODE=${1:-}
shift || true
KEPT=.cache/campaign-calls  # each call's returned tables, kept on the (warm) device machine

merge_earlier_calls() {  # the rows of earlier calls on this machine into the tables (none on a fresh one)
  for kept in "$KEPT"/*.tar.gz; do
    [[ -e "$kept" ]] || continue
    earlier=$(mktemp -d)
    if ! { tar xzf "$kept" -C "$earlier" \
           && "$PY" -m tta_energy campaign collect "$earlier/$TABLES" --campaign "$CAMPAIGN" \
              | sed 's/^/earlier call: /'; }; then  # pipefail: a failed collect fails the pipeline
      # the call goes on (its rows are valid), but it may measure the earlier call's cells again
      echo "WARNING: the rows of $kept could not be merged; this call may repeat its cells" >&2
    fi
    rm -rf "$earlier"
  done
}

case "$MODE" in
  merge-earlier)  # on the device, before judging what is left (scripts/gpu_call.sh): what `run` does first
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    merge_earlier_calls ;;
  run)
    export TTA_ENERGY_CALL_START=${TTA_ENERGY_CALL_START:-$(date -u +%FT%T.%3N+00:00)}  # unless gpu_call.sh set it
    source scripts/device_env.sh
    "$PY" scripts/gpu_preflight.py || exit 1  # a missing wheel fails here, not as error rows mid-run
    mkdir -p "${OUT:-/tmp/gpu_campaign}/campaign"
    DEST=${OUT:-/tmp/gpu_campaign}/campaign
    START=$(date -u +%Y%m%dT%H%M%S)
    started=$(mktemp)  # what this call writes in the tables (earlier calls' rows, the run's) is newer
    merge_earlier_calls
    stamp "checks and earlier calls' rows done; the campaign runs"
    # a hard stop (SIGTERM, which tta-energy handles as SIGINT; SIGKILL 15 s later if it still runs: rows are
    # on disk one by one) leaves time to pack what was measured even if a model build hangs past the budget
    T0=$SECONDS
    timeout -s TERM -k 15 "$HARD_LIMIT_S" "$PY" -m tta_energy campaign run --campaign "$CAMPAIGN" --no-progress "$@" 2>&1 \
      | tee "$DEST/log-$START.txt"
    rc=${PIPESTATUS[0]}
    # a process that lost its CUDA context (exit 5) keeps its rows; one fresh process resumes the campaign in
    # the time left (once: a cell that loses it again ends the call), with the same options but a --time-budget-s
    # of that time (an option is given once)
    left_s=$((HARD_LIMIT_S - (SECONDS - T0)))
    if ((rc == CONTEXT_LOST_EXIT && left_s >= FRESH_PROCESS_MIN_S)); then
      echo "a fresh process resumes the campaign ($left_s s left)" | tee -a "$DEST/log-$START.txt"
      same=()
      while (($#)); do
        case "$1" in
          --time-budget-s | --time-budget) shift; (($#)) && shift ;;
          --time-budget-s=* | --time-budget=*) shift ;;
          *) same+=("$1"); shift ;;
        esac
      done
      timeout -s TERM -k 15 "$left_s" "$PY" -m tta_energy campaign run --campaign "$CAMPAIGN" --no-progress \
        "${same[@]}" --time-budget-s $((left_s - 60)) 2>&1 | tee -a "$DEST/log-$START.txt"
      rc=${PIPESTATUS[0]}
      # nothing left, or a time left that fits no cell (refused, exit 2): the first process measured rows
      ((rc == NOTHING_LEFT_EXIT || rc == 2)) && rc=0
    fi
    # a run refused as bad use (exit 2: an unknown option, a --time-budget-s in which nothing fits) returns
    # nothing when the tables are still those of this checkout; one that wrote rows and then exited 2, or a
    # call that merged earlier calls' rows, is packed as any other (those rows come back with it, as at exit 6)
    written=
    [[ -d "$TABLES" ]] && written=$(find "$TABLES" -type f -newer "$started" ! -name '.*.lock' -print -quit)
    rm -f "$started"
    if ((rc == 2)) && [[ -z "$written" ]]; then
      stamp "the campaign run was refused (exit 2) and wrote nothing: nothing packed"
      exit "$rc"
    fi
    stamp "the campaign ended (exit $rc); packing"
    # the tables, the runs log and the campaign's traces whole (collect adds only what is new here)
    tar czf "$DEST/h200.tar.gz" "$TABLES"/*.csv "$TABLES/campaign_runs.jsonl" "$TABLES"/traces/campaign-*
    mkdir -p "$KEPT" && cp "$DEST/h200.tar.gz" "$KEPT/$START-$$.tar.gz"
    # exit 6 (every cell was done before the run) still returns the tables: on a warm machine, the rows of the
    # calls chained before this one come back with the last call's files
    stamp "campaign call finished (exit $rc); returned $DEST/h200.tar.gz"
    exit "$rc" ;;
  collect)
    (($# == 1)) || { echo "usage: $0 collect FILES_AT" >&2; exit 2; }
    check_path FILES_AT "$1" folder "the folder a device call's files came back to"
    tarball=$(ls "$1"/campaign/h200.tar.gz "$1"/h200.tar.gz 2>/dev/null | head -1)
    [[ -n "$tarball" ]] || { echo "no h200.tar.gz under $1" >&2; exit 2; }
    unpacked=$(mktemp -d)
    trap 'rm -rf "$unpacked"' EXIT
    tar tzf "$tarball" >/dev/null 2>&1 \
      || { echo "error: $tarball: not a readable .tar.gz (corrupt or cut short); nothing was merged" >&2; exit 2; }
    tar xzf "$tarball" -C "$unpacked" || exit 2
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -m tta_energy campaign collect "$unpacked/$TABLES" --campaign "$CAMPAIGN" || exit $?
    log=$(ls "$1"/campaign/log-*.txt 2>/dev/null | tail -1)
    [[ -n "$log" ]] && mkdir -p "$TABLES/logs" && cp "$log" "$TABLES/logs/campaign-$(basename "$log")"
    "$PY" -m tta_energy summary --runs "$TABLES" >/dev/null || exit $?
    "$PY" -m tta_energy campaign status --campaign "$CAMPAIGN" | tail -12 ;;
  *)
    echo "usage: $0 run [campaign run options] | merge-earlier | collect FILES_AT" >&2; exit 2 ;;
esac
