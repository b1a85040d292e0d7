#!/usr/bin/env bash
# Compare Python foolscap 24.9.0's serializer/deserializer with ours on the
# same inputs, in one run, and print a table.
#
#   bash benches/compare.sh            (from the repository root)
#
# Builds the `compare` bench (release profile) on first use, finds/creates
# the Python venv with scripts/python-env.sh, runs the Rust half
# (benches/compare.rs, JSON lines), then benches/compare_python.py, which
# times Python, checks that both sides' encodings are byte-identical and
# prints the table. COMPARE_SECS (default 1) is the minimum time per row on
# each side. Then the load benchmark (benches/load.rs: many connections to
# the mio server and to Python's, calls/s, memory per idle connection,
# connect time; COMPARE_LOAD=0 skips it). Raw results are kept in
# $CARGO_TARGET_DIR/compare/ (default target/compare/).
set -euo pipefail

repo_root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

secs=${COMPARE_SECS:-1}
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$repo_root/$target_dir" ;; esac
out="$target_dir/compare"
mkdir -p "$out"

py=$(bash scripts/python-env.sh)

echo "building the Rust harness (cargo bench --bench compare --no-run) ..." >&2
cargo bench --bench compare --no-run --quiet >&2

echo "running the Rust harness ..." >&2
rm -rf "$out/dump"
COMPARE_SECS="$secs" FOOLSCAP_COMPARE_DUMP="$out/dump" \
    cargo bench --bench compare --quiet > "$out/rust.jsonl"

echo "running the Python side ..." >&2
"$py" "$repo_root/benches/compare_python.py" \
    --seconds "$secs" \
    --rust-json "$out/rust.jsonl" \
    --rust-dump "$out/dump" \
    --json-out "$out/results.json"

# Many connections (benches/load.rs): the mio server against Python
# foolscap's, with the same Rust clients; prints JSON lines, then a table
# with the ratios. COMPARE_LOAD=0 skips it; LOAD_SECS (default 3) is the
# time per calls/s row.
if [ "${COMPARE_LOAD:-1}" != 0 ]; then
    echo "running the load benchmark (cargo bench --bench load) ..." >&2
    cargo bench --bench load --quiet -- "${LOAD_SECS:-3}" | tee "$out/load.txt"
    grep '^{' "$out/load.txt" > "$out/load.jsonl" || true
fi
