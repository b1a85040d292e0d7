#!/usr/bin/env bash
# The README's main job: foolscap-rs and Python foolscap 24.9.0 call each
# other. A Rust kitchen-sink server is called by the Rust `foolscap call`
# tool and by a Python foolscap client; then `foolscap call` calls the
# Python twin of that server. Finally the codec: Python's bytes decoded by
# Rust and the other way round.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Setting up: the Python peer (a cached virtualenv under target/) and a release build"
echo "   (the first build compiles every crate: a few minutes; later runs take seconds)"
py=$(bash scripts/python-env.sh)
cargo build --release -p foolscap-cli --bin foolscap -p foolscap --example kitchen_sink 2>&1 \
    | grep -E '^(error|warning: unused)|Compiling foolscap|Finished' || true
test -x target/release/foolscap -a -x target/release/examples/kitchen_sink \
    || { echo "the build failed (run: cargo build --release -p foolscap-cli --bin foolscap -p foolscap --example kitchen_sink)" >&2; exit 1; }
fs=target/release/foolscap
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() { for _ in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "no FURL in $1" >&2; exit 1; }

echo "== A Rust kitchen-sink server (cargo run --release --example kitchen_sink)"
target/release/examples/kitchen_sink "$work/rust.furl" --max-seconds 300 &
pids+=($!)
wait_for "$work/rust.furl"
rust_furl=$(cat "$work/rust.furl")
echo "FURL: $rust_furl"

run() { echo "\$ foolscap call FURL $*"; "$fs" call "$rust_furl" "$@" || echo "(exit status $?)"; }
echo
echo "== called by the Rust tool"
run add 1 2
run echo "[1, 'h\u00e9llo', b'\x00\xff', (18446744073709551616, -0.0), {'k': frozenset({1, 2})}, Decimal('1.25'), None]"
run echo_args 1 2 name="'x'"
run types "(1, b'x', ['s'], {2.5: None})"
run pow2 100
run point 3 4
run fail "'boom'"

echo
echo "== called by Python foolscap 24.9.0"
"$py" - "$rust_furl" <<'PY' 2>/dev/null
import sys
from twisted.internet import defer, task
from twisted.python import reflect
from foolscap.api import Tub, Referenceable

class Client(Referenceable):
    def remote_twice(self, x):
        return x * 2

@defer.inlineCallbacks
def main(reactor, furl):
    tub = Tub()
    tub.startService()
    sink = yield tub.getReference(furl)
    print("python: add(40, 2) =", (yield sink.callRemote("add", 40, 2)))
    shared = [1, 2]
    cyclic = [shared]
    cyclic.append(cyclic)
    back = yield sink.callRemote("echo", [shared, shared, cyclic])
    print("python: echo keeps sharing and cycles:", back[0] is back[1], back[2][1] is back[2])
    counter = yield sink.callRemote("make_counter", start=10)
    yield counter.callRemote("increment")
    print("python: counter =", (yield counter.callRemote("increment", by=5)))
    print("python: call_back into the Python client =",
          (yield sink.callRemote("call_back", Client(), "twice", 21)))
    # a remote exception arrives as a CopiedFailure (the errback value;
    # wrapped, or the Deferred would stay failed)
    [f] = yield sink.callRemote("divzero").addCallbacks(lambda _: [None], lambda f: [f])
    print("python: divzero failed with", reflect.qual(f.type), "-", f.value)
    yield tub.stopService()

task.react(main, sys.argv[1:])
PY

echo
echo "== the Rust tool calls the Python twin (tests/interop/kitchen_sink.py)"
"$py" tests/interop/kitchen_sink.py "$work/py.furl" --max-seconds 300 &
pids+=($!)
wait_for "$work/py.furl"
rust_furl=$(cat "$work/py.furl")
run echo "{'from': 'rust', 'n': [1180591620717411303424, 1.5]}"
run types "(1, b'x', ['s'])"
run fail_later "'late'"

echo
echo "== the codec: Python serializes (sharing, a cycle, a bignum), Rust decodes"
hex=$("$py" - <<'PY'
from foolscap.storage import serialize
shared = [10, 20]
cyclic = []
cyclic.append(cyclic)
print(serialize([shared, shared, cyclic, {"n": 2**100}]).result.hex())
PY
)
echo "python bytes: $hex"
echo -n "rust decode:  "; echo "$hex" | "$fs" decode --vocab 0
