#!/usr/bin/env bash
# The harness behind docs/BENCHMARKS.md: every load path, each run on a fresh `trackd` and a fresh
# database, with the commands the targets are read against; prints one line per run and keeps
# each run's JSON summary, trackd log and the tool's progress output.
#
#   cargo build --release -p trackd -p trackctl
#   docs/bench.sh                        # the ceilings, then every path once
#   docs/bench.sh --runs 2 mint stream   # chosen paths, twice each (alternate builds with --bin)
#   docs/bench.sh --bin /tmp/build-a mint --env TRACKING_MINT_WORKERS=1
#   docs/bench.sh --bin /tmp/a --bin /tmp/b --runs 2 mint   # two builds, run a b b a
#   docs/bench.sh webhooks -- --rate 4070  # arguments after -- go to each path's trackctl load
#   docs/bench.sh held -- --concurrency 256  # (a flag given again overrides the path's own)
#
# Paths: ceilings echo mint stream webhooks held orders clicks overload start. PostgreSQL must be
# on 127.0.0.1:5432 (user postgres, trust), as for the tests; runs use databases named bench_*
# (dropped after each run) and the ports below, so stop any other trackd on them first.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bins=()
runs=1
out="${BENCH_OUT:-$repo/target/bench}"
grpc_port="${BENCH_GRPC_PORT:-53051}"
http_port="${BENCH_HTTP_PORT:-20080}"
ceiling="${PG_CEILING:-$repo/../shared/tools/pg-ceiling}"
extra_env=()
extra_args=()
paths=()
need() { [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) need "$@"; bins+=("$2"); shift 2 ;;
    --runs) need "$@"; runs=$2; shift 2 ;;
    --env) need "$@"; extra_env+=("$2"); shift 2 ;;
    --) shift; extra_args=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) paths+=("$1"); shift ;;
  esac
done
if [ ${#paths[@]} -eq 0 ]; then
  paths=(ceilings echo mint stream webhooks held orders clicks overload start)
fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a count, not $runs" >&2; exit 2; }
[ ${#bins[@]} -gt 0 ] || bins=("$repo/target/release")
[ ${#bins[@]} -le 2 ] || { echo "--bin at most twice (two builds to compare)" >&2; exit 2; }
for bin in "${bins[@]}"; do
  for tool in trackd trackctl; do
    [ -x "$bin/$tool" ] || { echo "no $bin/$tool: cargo build --release -p trackd -p trackctl" >&2; exit 2; }
  done
done
mkdir -p "$out"

psql_admin() { psql -h 127.0.0.1 -U postgres -w -qAt "$@"; }
http="http://127.0.0.1:$http_port"

# The load tool's arguments for each path (README, "Load testing"; docs/BENCHMARKS.md).
args_of() {
  case "$1" in
    echo) echo "echo --concurrency 64 --duration 5s" ;;
    mint) echo "mint --mode unary --concurrency 64 --duration 10s --creators 200000 --settle 90s" ;;
    stream) echo "mint --mode stream --concurrency 4 --window 512 --duration 10s --creators 300000 --settle 90s" ;;
    webhooks) echo "webhooks --concurrency 64 --duration 10s --duplicates 0.1 --creators 200 --settle 90s --http $http" ;;
    held) echo "webhooks --concurrency 64 --duration 10s --duplicates 0.1 --creators 200 --settle 90s --http $http --rate 5000" ;;
    orders) echo "orders --concurrency 16 --rate 33000 --duration 10s --chunk 500 --creators 50 --settle 60s --http $http" ;;
    clicks) echo "clicks --concurrency 64 --rate 20000 --duration 10s --creators 200 --http $http" ;;
    overload) echo "mint --mode unary --concurrency 2048 --rate 14000 --duration 10s --creators 200000" ;;
    *) return 1 ;;
  esac
}

trackd_pid=""
database=""
state=""
# Stops trackd; its database stays (a start-up measurement starts it again on it).
stop_trackd_keep_db() {
  if [ -n "$trackd_pid" ]; then
    kill "$trackd_pid" 2>/dev/null || true
    wait "$trackd_pid" 2>/dev/null || true
    trackd_pid=""
  fi
  if [ -n "$state" ]; then
    rm -rf "$state"
    state=""
  fi
}
stop_trackd() {
  stop_trackd_keep_db
  if [ -n "$database" ]; then
    psql_admin -c "drop database if exists \"$database\" with (force)" >/dev/null || true
    database=""
  fi
}
trap stop_trackd EXIT

listening() { [ -n "$(ss -ltnH "sport = :$1")" ]; }

# Starts trackd on the database named for the run (created and migrated by its first start);
# returns once /healthz answers, with `started` the seconds that took.
started=""
start_trackd() {
  local name=$1
  for _ in $(seq 1 100); do
    listening "$grpc_port" || listening "$http_port" || break
    sleep 0.2
  done
  if listening "$grpc_port" || listening "$http_port"; then
    echo "ports $grpc_port and $http_port must be free (another trackd?)" >&2
    exit 1
  fi
  database="bench_${name}_$$"
  state=$(mktemp -d)
  local t0=$EPOCHREALTIME
  env TRACKING_GRPC_ADDR="127.0.0.1:$grpc_port" TRACKING_HTTP_ADDR="127.0.0.1:$http_port" \
    TRACKING_JWT_SECRET=bench-secret-bench-secret-bench-secret TRACKING_STATE_DIR="$state" \
    RUST_LOG="${RUST_LOG:-warn}" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database" \
    ${extra_env[@]+"${extra_env[@]}"} "$bin/trackd" >"$out/$name.trackd.log" 2>&1 &
  trackd_pid=$!
  for _ in $(seq 1 3000); do
    if curl -sf "$http/healthz" >/dev/null; then
      kill -0 "$trackd_pid" 2>/dev/null || break
      started=$(echo "$EPOCHREALTIME - $t0" | bc)
      return 0
    fi
    kill -0 "$trackd_pid" 2>/dev/null || break
    sleep 0.01
  done
  echo "trackd did not start: $out/$name.trackd.log" >&2
  exit 1
}

# One line of a run's JSON summary: rate, latency, errors, verification, machine CPU, path figures.
show() {
  python3 - "$@" <<'PY'
import json, sys
name, path, peak = sys.argv[1], sys.argv[2], sys.argv[3]
lines = [line for line in open(path) if line.startswith("{")]
if not lines:
    print(f"{name:<20} no summary (see {path})")
    sys.exit()
d = json.loads(lines[-1])
rate, p50, p99 = d["requests_per_second"], d["p50_ms"], d["p99_ms"]
parts = [f"{rate:>9.0f}/s", f"p50 {p50:.1f}", f"p99 {p99:.1f} ms", f"errors {d['errors']}",
         "verified" if d["verified"] else "NOT VERIFIED"]
for key, fmt in [("machine_cpu_us_each", "cpu {:.0f} us each"), ("machine_cpu_busy_pct", "busy {:.0f} %"),
                 ("pushed_s", "all active at {:.1f} s"), ("attributed_per_second", "attributed {:.0f}/s"),
                 ("conversion_p99_ms", "conversion p99 {:.0f} ms")]:
    if d.get(key) is not None:
        parts.append(fmt.format(d[key]))
outcomes = d.get("latency_by_outcome", {})
if len(outcomes) > 1:
    for outcome, p in sorted(outcomes.items()):
        parts.append(f"{outcome} p99 {p['p99_ms']:.1f} ms")
if peak:
    parts.append(f"trackd peak {peak}")
print(f"{name:<20} " + ", ".join(parts))
PY
}

run_path() {
  local path=$1 name=$2
  local args
  args=$(args_of "$path")
  if [ "$path" = echo ]; then
    # shellcheck disable=SC2086 # the arguments are words
    "$bin/trackctl" load $args ${extra_args[@]+"${extra_args[@]}"} --json \
      >"$out/$name.json" 2>"$out/$name.progress" || true
    show "$name" "$out/$name.json" "" || true
    return
  fi
  start_trackd "$name"
  # shellcheck disable=SC2086
  env TRACKING_JWT_SECRET=bench-secret-bench-secret-bench-secret \
    "$bin/trackctl" load $args ${extra_args[@]+"${extra_args[@]}"} \
    --addr "http://127.0.0.1:$grpc_port" --json >"$out/$name.json" 2>"$out/$name.progress" || true
  local peak
  peak=$(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$trackd_pid/status" 2>/dev/null || true)
  stop_trackd
  show "$name" "$out/$name.json" "$peak" || echo "$name  no summary: $out/$name.json"
}

# From start to /healthz: once creating and migrating the database, then three times on it, each
# followed by the idle resident memory 10 s after.
run_start() {
  local name=$1 i rss
  start_trackd "$name"
  stop_trackd_keep_db
  printf '%-20s start 0: %.3f s to /healthz, creating and migrating its database\n' "$name" "$started"
  for i in 1 2 3; do
    start_trackd "$name"
    sleep 10
    rss=$(awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$trackd_pid/status" 2>/dev/null || true)
    stop_trackd_keep_db
    printf '%-20s start %d: %.3f s to /healthz, idle %s\n' "$name" "$i" "$started" "$rss"
  done
  stop_trackd
}

for path in "${paths[@]}"; do
  case "$path" in
    ceilings|start) ;;
    *) args_of "$path" >/dev/null || { echo "unknown path $path" >&2; exit 2; } ;;
  esac
done
# A build's name in the results: its directory's; for two of the same name (two `release`
# directories), the directory above; for two that still share it (`…/a/target/release` and
# `…/b/target/release`), `a` or `b` by their order on the command line.
label() {
  if [ ${#bins[@]} -eq 2 ] && [ "$(basename "${bins[0]}")" = "$(basename "${bins[1]}")" ]; then
    if [ "$(basename "$(dirname "${bins[0]}")")" = "$(basename "$(dirname "${bins[1]}")")" ]; then
      if [ "$1" = "${bins[0]}" ]; then echo a; else echo b; fi
    else
      basename "$(dirname "$1")"
    fi
  else
    basename "$1"
  fi
}
echo "results in $out (builds: ${bins[*]})"
# With two builds, each round runs both, in turn first and second (a b, b a, a b, ...): on a
# shared machine the second run of a pair can come out ahead by itself.
for round in $(seq 1 "$runs"); do
  order=("${bins[@]}")
  if [ ${#bins[@]} -eq 2 ] && [ $((round % 2)) -eq 0 ]; then
    order=("${bins[1]}" "${bins[0]}")
  fi
  for path in "${paths[@]}"; do
    for bin in "${order[@]}"; do
      name="$path-$round"
      [ ${#bins[@]} -eq 1 ] || name="$path-$round-$(label "$bin")"
      case "$path" in
        ceilings)
          [ "$bin" = "${order[0]}" ] || continue
          if [ -x "$ceiling" ]; then
            { "$ceiling" 10 2>&1 || echo "pg-ceiling failed"; } | sed "s/^/$path-$round  /"
          else
            echo "$path-$round  no $ceiling (PG_CEILING=...)"
          fi
          ;;
        start) run_start "$name" ;;
        *) run_path "$path" "$name" ;;
      esac
    done
  done
done
