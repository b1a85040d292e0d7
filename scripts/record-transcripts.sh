#!/usr/bin/env bash
# Regenerates tests/transcripts/*.txt: live sessions between the Rust
# blocking driver (drivers/replay/examples/record.rs, which records at the
# plaintext boundary) and Python foolscap 24.9.0 (tests/interop/fsrecord.py),
# in both directions. tests/replay.rs replays them without Python.
#
# Our identities are tests/fixtures/rust-{server,client}.pem (created by
# the example on first use); the Python Tubs get fresh identities on every
# run (their tubids are read back from the transcripts).
#
# Usage: bash scripts/record-transcripts.sh [OUTDIR]   (default tests/transcripts)

set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
out=${1:-tests/transcripts}
mkdir -p "$out" tests/fixtures

py=$(bash scripts/python-env.sh)
cargo build -q -p foolscap-replay --example record
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
record="$target_dir/debug/examples/record"

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

# 1. Rust client -> Python server
mkfifo "$tmp/py-in"
"$py" tests/interop/fsrecord.py serve < "$tmp/py-in" > "$tmp/py-out" &
py_pid=$!
exec 7> "$tmp/py-in"          # keeps the Python server's stdin open
for _ in $(seq 1 300); do
    [ -s "$tmp/py-out" ] && break
    sleep 0.1
done
furl=$(sed -n 's/.*"furl": "\([^"]*\)".*/\1/p' "$tmp/py-out" | head -n1)
[ -n "$furl" ] || { echo "record-transcripts.sh: no FURL from fsrecord.py serve" >&2; exit 1; }
"$record" call tests/fixtures/rust-client.pem "$out/rust-client-python-server.txt" "$furl" >/dev/null
exec 7>&-
wait "$py_pid" || true

# 2. Python client -> Rust server
mkfifo "$tmp/rs-in"
"$record" serve tests/fixtures/rust-server.pem "$out/python-client-rust-server.txt" \
    < "$tmp/rs-in" > "$tmp/rs-out" &
rs_pid=$!
exec 8> "$tmp/rs-in"
for _ in $(seq 1 300); do
    [ -s "$tmp/rs-out" ] && break
    sleep 0.1
done
furl=$(sed -n 's/.*"furl": "\([^"]*\)".*/\1/p' "$tmp/rs-out" | head -n1)
[ -n "$furl" ] || { echo "record-transcripts.sh: no FURL from record serve" >&2; exit 1; }
"$py" tests/interop/fsrecord.py call "$furl" > "$tmp/call-out"
cat "$tmp/call-out" >&2
exec 8>&-
wait "$rs_pid"

echo "wrote $out/rust-client-python-server.txt $out/python-client-rust-server.txt" >&2
