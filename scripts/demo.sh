#!/usr/bin/env bash
# The README's main job: our banana codec and Python foolscap 24.9.0 read
# each other's bytes. Rust encodes values that Python decodes, and Python
# serializes values that Rust decodes and re-encodes byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."

py=$(bash scripts/python-env.sh)
cargo build --release -q -p foolscap-cli
fs=target/release/foolscap

echo "== Rust encodes, Python foolscap decodes (vocab table 1, as on a PB connection)"
for v in "[1, 'h\u00e9llo', b'bytes', (1180591620717411303424, -0.0), {'k': frozenset({1, 2})}, Decimal('1.25'), None, True]" \
         "{(1, 2): [float('inf'), 3.5], 'list': b'list'}"; do
    hex=$("$fs" encode --vocab 1 "$v")
    echo "value:  $v"
    echo "rust:   $hex"
    printf '{"id": 0, "hex": "%s"}\n' "$hex" \
        | "$py" tests/interop/fsinterop.py decode --vocab 1 \
        | "$py" -c 'import json,sys; r=json.loads(sys.stdin.read()); print("python:", r["repr"] if r["ok"] else "REFUSED " + r["error"])'
done

echo
echo "== Python foolscap serializes (sharing, a cycle, bignum, set, Decimal), Rust decodes"
hex=$("$py" - <<'PY'
import sys
from decimal import Decimal
from foolscap.storage import serialize
shared = [10, 20]
cyclic = []
cyclic.append(cyclic)
value = [shared, shared, cyclic, {"tubid": b"\x00\xff", "n": 2**100}, {3.5, 7}, Decimal("-0")]
d = serialize(value)
print(d.result.hex())
PY
)
echo "python: $hex"
echo -n "rust:   "; echo "$hex" | "$fs" decode --vocab 0
echo "(tokens)"; echo "$hex" | "$fs" decode --vocab 0 --tokens | head -12
