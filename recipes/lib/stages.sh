# Stage runner shared by every recipe's run.sh (sourced, not executed).
#
#   source "$(dirname "$0")/../lib/stages.sh"
#   parse_stage_args "$@"
#   run_stage 1 prepare  python -m pipeline prepare ...
#
# A stage runs when it is inside [--stage, --stop-stage] and its .done marker is
# absent; --force reruns it. Markers live in $EXP/.done/, so deleting a stage's
# outputs and its marker is how one redoes it. Commands are run as argument
# vectors, never through eval.

STAGE=${STAGE:-0}
STOP_STAGE=${STOP_STAGE:-100}
FORCE=0
# With --force, "--force" for the commands a forced stage runs that otherwise refuse to replace
# outputs made with other settings (prepare: e.g. another held-out speaker) or return what a finished
# run of the same settings made (train); else empty.
FORCE_ARGS=()

parse_stage_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --stage) STAGE="$2"; shift 2 ;;
      --stop-stage) STOP_STAGE="$2"; shift 2 ;;
      --force) FORCE=1; FORCE_ARGS=(--force); shift ;;
      -h|--help) echo "usage: $0 [--stage N] [--stop-stage M] [--force]"; exit 0 ;;
      *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
  done
}

run_stage() {
  local n="$1" name="$2"; shift 2
  local marker="$EXP/.done/stage${n}.${name}"
  if [ "$n" -lt "$STAGE" ] || [ "$n" -gt "$STOP_STAGE" ]; then return 0; fi
  if [ -f "$marker" ] && [ "$FORCE" -eq 0 ]; then
    echo "== stage $n ($name): done already ($marker)"; return 0
  fi
  echo "== stage $n ($name): $*"
  local t0=$SECONDS rc
  # A subshell with errexit, not `"$@" || ...`: bash ignores `set -e` inside a function
  # called from an || list, so a stage function's failing first command would go unnoticed.
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then echo "stage $n ($name) failed" >&2; exit 1; fi
  mkdir -p "$EXP/.done" && date -u +%FT%TZ > "$marker"
  echo "== stage $n ($name) finished in $((SECONDS - t0)) s"
}

# Run "$@ dev" and "$@ test" at once, one CPU thread each (on 2 cores two 1-thread
# decoders finish sooner than one 2-thread decoder after the other); fails if either fails.
on_dev_and_test() {
  local split pids=() rc=0
  for split in dev test; do
    OMP_NUM_THREADS=1 "$@" "$split" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  return $rc
}
