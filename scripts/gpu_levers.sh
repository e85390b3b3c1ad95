#!/usr/bin/env bash
# The energy-levers table on one lent GPU, one device call at a time. A levers plan file declares the whole
# table (campaigns/h200_levers.toml, campaigns/h100_levers.toml), its GPU and its out_dir; each call measures
# the first call's worth of what earlier calls left (units of one model at one batch size, each with the study
# default in the same call; see src/tta_energy/levers/calls.py), so the same command is repeated until it
# prints "nothing left" (and `plan` exits 6, NOTHING_LEFT_EXIT, having measured, reported and packed nothing).
#
#   bash scripts/gpu_levers.sh dry PLAN [MODELS]   # here, before spending: what is left, priced, in calls
#   bash scripts/gpu_levers.sh plan PLAN [MODELS]  # on the device: measure the next call of PLAN (its
#                                     # models, or the comma list MODELS of them). Inductor's caches go to
#                                     # .cache/compile (carry it), the fp32 references to
#                                     # <out_dir>/levers/references; both come back for the next call
#   bash scripts/gpu_levers.sh merge-earlier       # on the device: unpack earlier calls' parts (below) only
#   bash scripts/gpu_levers.sh collect FILES_AT    # here, after each call: unpack + rebuild the report
#
# Each call measures the GPU's ceiling (bf16 8192^3 matmul loop, TFLOP/J) at its start and end with the same
# meter, then per model: the fp32 eager reference (unless stored), one warm-up per configuration and batch
# size (its one-time cost: capture / compilation), and the plan's rounds of every (configuration, steps,
# batch) cell in a seeded random order (docs/levers.md). A time budget (BUDGET_S - 60 s) is shared between
# the models in proportion to their predicted seconds; a model may also use what the later ones do not need.
#
# Writes <out_dir>/levers/partplan-<UTC time>/ (levers_runs.csv in the run-record schema,
# levers_equivalence.csv, levers_configs.csv, levers_ceiling.csv, levers_profile.csv, levers_compile.csv,
# traces/) and rebuilds
# <out_dir>/levers.csv, levers_summary.md and levers.png from every part present. On the
# device machine ($OUT set) it returns under $OUT/levers/: levers-partplan-<UTC time>.tar.gz (the part's
# folder), levers-references.tar.gz, compile-cache.tar.gz (when at most COMPILE_CACHE_MAX_MB, default 8 MiB:
# the device returns files of at most 16 MiB, and the tree it receives, carried folders included, is at most
# 64 MiB), the report and the log.
#
# Environment: PYTHON (default python3: the device image's torch), BUDGET_S (whole seconds this call may use,
# more than 60, default 520: the run is stopped there, packing follows; give the device call a limit of 600 s;
# any other value is one error line, exit 2), LEVERS_ARGS (more options for 'tta-energy levers run').
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
source scripts/device_exits.sh  # the exit statuses (a failure before device_env.sh's install uses them too)
BUDGET_S=${BUDGET_S:-520}
check_seconds BUDGET_S 61 "" "the levers call's time" "its run gets BUDGET_S - 60"  # before any work
COMPILE_PACK_RATIO=10  # the most a compile cache is taken to shrink when packed (below)
PART=${1:-}
TABLES=  # the plan's out_dir relative to the repository root (data/h200 for campaigns/h200_levers.toml)
ROOT=    # $TABLES/levers: the calls' part folders and the stored fp32 references

merge_earlier_calls() {  # the part folders and references earlier calls on this machine returned (paths
  # inside: <out_dir>/levers/...), unpacked into the checkout; none on a fresh machine
  for kept in .cache/levers-calls/*.tar.gz; do
    [[ -e "$kept" ]] && tar xzf "$kept" --exclude=references-pruned.txt \
      && echo "earlier call on this machine: $(basename "$kept")"
  done
  return 0
}

tables_of_plan() {  # PLAN -> its out_dir, relative to the repository root
  "$PY" -c 'import os, sys
from tta_energy.errors import TtaError
from tta_energy.levers.plan import read_levers_plan
try:
    plan = read_levers_plan(sys.argv[1])
except TtaError as exc:
    sys.exit(f"error: {exc}")
if plan.out_dir is None:
    sys.exit(f"error: {sys.argv[1]}: needs out_dir in [levers] (where its table goes)")
print(os.path.relpath(plan.out_dir))' "$1"
}

report() {
  local parts=()
  # every part with a table: a call cut before its first generation still measured its ceilings
  for d in "$ROOT"/part*; do compgen -G "$d/levers_*.csv" >/dev/null && parts+=("$d"); done
  ((${#parts[@]})) && "$PY" -m tta_energy levers report "${parts[@]}" --out-dir "$TABLES"
}

if [[ "$PART" == merge-earlier ]]; then  # on the device, before judging what is left (scripts/gpu_call.sh)
  merge_earlier_calls
  exit 0
fi

paths_of() {  # TARBALL -> the paths it holds, one a line; one error line if gzip or tar cannot read it
  tar tzf "$1" 2>/dev/null \
    || { echo "error: $1: not a readable .tar.gz (corrupt or cut short); nothing was unpacked" >&2; return 2; }
}

only_under() {  # TARBALL PATHS WHERE...: every one of PATHS (one a line) is one of the glob patterns WHERE or lies
  # under one, none with a .. part; else one error line naming the first that is not
  local path where allowed
  while IFS= read -r path; do
    [[ -n "$path" ]] || continue
    if [[ "/$path/" != */../* ]]; then
      for where in "${@:3}"; do [[ "$path" == $where || "$path" == $where/* ]] && continue 2; done
    fi
    printf -v allowed '%s or ' "${@:3}"
    echo "error: $1: holds $path, outside ${allowed% or }; nothing was unpacked" >&2
    return 2
  done <<<"$2"
}

if [[ "$PART" == collect ]]; then
  (($# == 2)) || { echo "usage: $0 collect FILES_AT" >&2; exit 2; }
  check_path FILES_AT "$2" folder "the folder a device call's files came back to"
  # every tarball is read, and every path in it checked, before anything is unpacked
  parts=()
  for tarball in "$2"/levers/levers-part*.tar.gz "$2"/levers-part*.tar.gz; do
    [[ -e "$tarball" ]] || continue
    # paths inside: <out_dir>/levers/part<N>/..., e.g. data/h200/levers/partplan-<UTC time>/ (one folder, or two
    # where a fresh process measured the rest of the call)
    paths=$(paths_of "$tarball") || exit 2
    first=$(sed -n 1p <<<"$paths")
    ROOT=$(cut -d/ -f1-3 <<<"$first")
    [[ "$ROOT" =~ ^data/[A-Za-z0-9._-]+/levers$ && "$first" == "$ROOT"/part* ]] \
      || { echo "error: $tarball: not a levers part (its first path is $first, not in" \
                "data/<folder>/levers/part*); nothing was unpacked" >&2; exit 2; }
    only_under "$tarball" "$paths" "$ROOT/part*" || exit 2
    parts+=("$tarball")
  done
  ((${#parts[@]})) || { echo "no levers-part*.tar.gz under $2" >&2; exit 2; }
  TABLES=${ROOT%/levers}
  references=()
  for tarball in "$2"/levers/levers-references.tar.gz "$2"/levers-references.tar.gz; do
    [[ -e "$tarball" ]] || continue
    paths=$(paths_of "$tarball") || exit 2
    only_under "$tarball" "$paths" "$ROOT/references" references-pruned.txt || exit 2
    references+=("$tarball")
  done
  caches=()
  for tarball in "$2"/levers/compile-cache.tar.gz "$2"/compile-cache.tar.gz; do
    [[ -e "$tarball" ]] || continue
    paths=$(paths_of "$tarball") || exit 2
    only_under "$tarball" "$paths" .cache/compile || exit 2  # git-ignored; the next call carries it
    caches+=("$tarball")
  done
  for tarball in "${parts[@]}"; do
    tar xzf "$tarball" || exit 1
  done
  for tarball in "${references[@]}"; do
    # paths inside: <out_dir>/levers/references/..., and references-pruned.txt: the stale references the call
    # removed there, removed here too once the rest is unpacked (a collect cut short removes nothing; only
    # what the call names, so collecting an older call again removes no newer reference)
    tar xzf "$tarball" --exclude=references-pruned.txt || exit 1
    while read -r stale; do
      [[ "$stale" == data/*/levers/references/*.npz && -e "$stale" ]] && rm -f "$stale" && echo "removed $stale"
    done < <(tar xzf "$tarball" -O references-pruned.txt 2>/dev/null)
  done
  for tarball in "${caches[@]}"; do
    tar xzf "$tarball"  # paths inside: .cache/compile/... (a cache that fails to unpack is compiled anew)
  done
  mkdir -p "$TABLES/logs"
  for log in "$2"/levers/log-levers-*.txt "$2"/log-levers-*.txt; do [[ -e "$log" ]] && cp "$log" "$TABLES/logs/"; done
  report
  exit $?
fi

case "$PART" in
  dry|plan)
    (($# == 2 || $# == 3)) || { echo "usage: $0 $PART PLAN.toml [MODELS]" >&2; exit 2; }
    check_path PLAN "$2" file "a levers plan file (campaigns/h200_levers.toml, campaigns/h100_levers.toml)"
    (($# == 2)) || [[ -n "${3// }" ]] \
      || { echo "error: MODELS is empty: give a comma list of the plan's models, or leave it out for all" >&2
           exit 2; }
    MODELS=${3:-}
    TABLES=$(tables_of_plan "$2") || exit 2
    ROOT=$TABLES/levers
    EXTRA=(--plan "$2" --compile-cache .cache/compile --references "$ROOT/references"
           --done "$ROOT/partplan-*")
    if [[ "$PART" == dry ]]; then
      exec "$PY" -m tta_energy levers run ${MODELS:+--model "$MODELS"} "${EXTRA[@]}" \
        --time-budget-s $((BUDGET_S - 60)) --dry-run ${LEVERS_ARGS:-}
    fi
    # what a device call writes comes back only from inside the repository (collect unpacks it there)
    [[ "$TABLES" =~ ^data/[^/]+$ ]] \
      || { echo "error: $2: its out_dir is $TABLES; a device call's table goes to data/<one folder>" >&2; exit 2; }
    source scripts/device_env.sh  # wheels carried in .whl/ (torchao for fp8)
    mkdir -p .cache/compile
    # calls chained on a warm device machine each get this checkout's data/: the part folders and references
    # that earlier calls on that machine returned (kept in the git-ignored .cache/levers-calls/) are unpacked
    # first, so --done counts their cells and a chained call measures the plan's next units, not the same ones
    merge_earlier_calls
    PART=plan-$(date -u +%Y%m%dT%H%M%S) ;;
  *) echo "usage: $0 dry PLAN [MODELS] | plan PLAN [MODELS] | merge-earlier | collect FILES_AT" >&2; exit 2 ;;
esac
new_outdir() {  # a part folder of its own for each process: never two calls' (or processes') rows in one
  OUTDIR=$ROOT/part$PART
  [[ -e "$OUTDIR" ]] && OUTDIR=$ROOT/part$PART-$(date -u +%Y%m%dT%H%M%S)
  [[ " ${OUTDIRS[*]} " == *" $OUTDIR "* ]] || OUTDIRS+=("$OUTDIR")
}
OUTDIRS=()
new_outdir
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/levers"
  exec > >(tee -a "$OUT/levers/log-levers-$PART.txt") 2>&1
  TEE_PID=$!
fi
T0=$SECONDS
echo "levers part $PART on $(hostname) at $(date -u +%FT%TZ); models $MODELS; budget ${BUDGET_S}s; raw in $OUTDIR"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || true
"$PY" scripts/gpu_preflight.py || exit 1  # a missing wheel fails here, not as error rows mid-sweep
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,temperature.gpu --format=csv || true
# the plan sets models (filtered by MODELS), cells and repeats; --done skips what earlier calls measured
# a hard stop at BUDGET_S (SIGTERM, handled as SIGINT; SIGKILL 15 s later: rows are on disk one by one) leaves
# time to pack what was measured even if a build or compilation hangs past the time budget
# A process that loses its CUDA context (exit 5: a CUDA error nothing survives, e.g. a kernel's launch failure)
# keeps its rows; a fresh process measures what is left in the time left, the configuration that lost it left
# out (tta_energy.levers.calls: a lost context settles its cells)
rc=1
while :; do
  left_s=$((BUDGET_S - (SECONDS - T0)))
  ((left_s > 60)) || { echo "no time left for a levers run (${left_s} s of BUDGET_S)"; break; }
  timeout -s TERM -k 15 "$left_s" "$PY" -m tta_energy levers run ${MODELS:+--model "$MODELS"} \
    --out-dir "$OUTDIR" --no-report "${EXTRA[@]}" --time-budget-s $((left_s - 60)) ${LEVERS_ARGS:-}
  rc=$?
  # the plan had nothing left to measure (the run wrote nothing): the call's first run passes the status
  # on, with no report or packing, and scripts/gpu_call.sh goes on. A fresh process after a lost context
  # that finds nothing left, or no unit its time fits (refused, exit 2), ends a call that measured rows
  if ((${#OUTDIRS[@]} > 1 && (rc == NOTHING_LEFT_EXIT || rc == 2))); then
    rc=0
    break
  fi
  ((rc == NOTHING_LEFT_EXIT)) && break
  left_s=$((BUDGET_S - (SECONDS - T0)))
  ((rc == CONTEXT_LOST_EXIT && left_s >= FRESH_PROCESS_MIN_S)) || break
  new_outdir
  echo "a fresh process measures the rest ($left_s s left) in $OUTDIR"
done
((rc == NOTHING_LEFT_EXIT)) || report \
  || echo "report failed (the raw tables are complete; rebuild with: $0 collect FILES_AT)"
if [[ -n "${OUT:-}" ]] && ((rc != NOTHING_LEFT_EXIT)); then
  # the device returns at most 8 files of 16 MiB each (64 MiB in all): the part, the fp32 references and the
  # compile cache travel as separate files, so that a large one cannot take the measured rows with it
  # a write cut by the hard stop leaves a hidden .NAME.PID.HEX.tmp (tta_energy.fileio): never packed
  parts=()
  for d in "${OUTDIRS[@]}"; do [[ -d "$d" ]] && parts+=("$d"); done  # a process that wrote nothing has none
  ((${#parts[@]})) && tar czf "$OUT/levers/levers-part$PART.tar.gz" --exclude='.*.tmp' "${parts[@]}"
  # references this device can never load again (older models' code or torch) are removed before packing and
  # listed in the tarball's references-pruned.txt; collect removes them here too, so the tree the next call
  # carries stays within its 64 MiB (the device returns at most 8 files: the list is not one of its own)
  mkdir -p .cache && : >.cache/references-pruned.txt
  [[ -d "$ROOT/references" ]] && "$PY" -c 'import sys
from pathlib import Path
from tta_energy.levers.references import prune_stale_here
with open(sys.argv[2], "a", encoding="utf-8") as listed:
    for path in prune_stale_here(Path(sys.argv[1])):
        print("stale reference removed:", path.name)
        listed.write(f"{path}\n")' "$ROOT/references" .cache/references-pruned.txt
  [[ -d "$ROOT/references" ]] && tar czf "$OUT/levers/levers-references.tar.gz" --exclude='.*.tmp' \
    "$ROOT/references" -C .cache references-pruned.txt
  mkdir -p .cache/levers-calls  # for a call chained on this machine (above)
  [[ -e "$OUT/levers/levers-part$PART.tar.gz" ]] && cp "$OUT/levers/levers-part$PART.tar.gz" .cache/levers-calls/
  [[ -e "$OUT/levers/levers-references.tar.gz" ]] \
    && cp "$OUT/levers/levers-references.tar.gz" ".cache/levers-calls/references-$PART.tar.gz"
  if [[ -d .cache/compile ]]; then
    max_mb=${COMPILE_CACHE_MAX_MB:-8}
    # gzip packs Inductor's and Triton's files 6.7-7.4x (the H100 calls of data/h100/logs: 422 MiB to 63,
    # 628 to 93, 682 to 101) at tens of MiB/s: a cache more than COMPILE_PACK_RATIO times the limit is not
    # packed, since a call would spend 10-20 s packing what cannot come back
    raw_mb=$(du -sm .cache/compile | cut -f1)
    why=
    if (( raw_mb > max_mb * COMPILE_PACK_RATIO )); then
      why="${raw_mb} MiB unpacked, more than ${COMPILE_PACK_RATIO} x ${max_mb} MiB"
    else
      tar czf "$OUT/levers/compile-cache.tar.gz" .cache/compile
      packed_mb=$(( $(stat -c %s "$OUT/levers/compile-cache.tar.gz") / 1048576 ))
      (( packed_mb > max_mb )) && why="${packed_mb} MiB > ${max_mb} MiB"
    fi
    if [[ -n "$why" ]]; then  # it would not come back, or not fit the next carry
      rm -f "$OUT/levers/compile-cache.tar.gz"
      echo "compile cache not returned: $why (the next call compiles anew)"
      # what it holds, to know what could be left behind: bytes per folder and per file extension
      du -sh .cache/compile/*/ 2>/dev/null
      find .cache/compile -type f -printf '%s %f\n' | awk '{n=$2; e=(n ~ /\./) ? n : "(none)"; sub(/.*\./, "", e);
        b[e]+=$1} END {for (e in b) printf "%8.1f MiB  .%s\n", b[e]/1048576, e}' | sort -rn | head -8
    fi
  fi
  for f in "$TABLES"/levers.csv "$TABLES"/levers_summary.md "$TABLES"/levers.png; do
    [[ -e "$f" ]] && cp "$f" "$OUT/levers/"
  done
fi
echo "levers part $PART finished in $((SECONDS - T0)) s (exit $rc)"
if [[ -n "${TEE_PID:-}" ]]; then
  exec 1>&- 2>&-
  wait "$TEE_PID" 2>/dev/null || true
fi
exit $rc
