#!/usr/bin/env python3
"""Measure Python foolscap's own serializer/deserializer on the benchmark
inputs and print them side by side with the Rust numbers.

Usage (normally through benches/compare.sh):

    python benches/compare_python.py [--rust-json FILE] [--rust-dump DIR]
                                     [--seconds S] [--json-out FILE]

* The three inputs are built exactly as `benches/common/mod.rs` builds them.
* Python is timed with time.perf_counter over at least S seconds per row
  (default 1.0), driving foolscap's real Banana code: foolscap.storage's
  StorageBanana (the "Banana as pickle" front end) with vocab table 1
  installed, as a Broker has after negotiating initial-vocab-table-index 1.
* --rust-json is the JSON-lines output of `cargo bench --bench compare`.
* --rust-dump is the directory where that run wrote its encodings
  (<input>.bin); they must be byte-identical to Python's.
"""

import argparse
import gc
import json
import math
import os
import sys
import time

from foolscap import storage, vocab

# ---------------------------------------------------------------- inputs
# Keep in sync with benches/common/mod.rs.

N_INTS = 100_000
N_BLOBS = 160
BLOB_SIZE = 65536


def pattern(n, seed):
    """n deterministic bytes: (seed + 7*i) mod 256."""
    return bytes((seed + 7 * i) & 0xFF for i in range(n))


def ints_input():
    return list(range(N_INTS))


def blobs_input():
    return [bytes([i & 0xFF]) * BLOB_SIZE for i in range(N_BLOBS)]


def b32(seed, n=32):
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(alphabet[(seed * 13 + 5 * i) % 32] for i in range(n))


def furl(seed, host):
    return "pb://%s@tcp:%s:44801,tcp:10.0.%d.17:44801/%s" % (
        b32(seed), host, seed, b32(seed + 1))


def announcement():
    """A Tahoe-LAFS storage-server announcement as an introducer client
    receives it (announcement v2 body plus signature metadata)."""
    storage_v1 = {
        "maximum-immutable-share-size": 2**40,
        "maximum-mutable-share-size": 69105 * 1000 * 1000 * 1000 * 1000,
        "available-space": 12_345_678_901_234,
        "tolerates-immutable-read-overrun": True,
        "delete-mutable-shares-with-zero-length-writev": True,
        "fills-holes-with-zero-bytes": True,
        "prevents-read-past-end-of-share-data": True,
        "gbs-anonymous-storage-url": "https://storage01.example.net:8443/storage/v1/" + b32(3, 52),
        "gbs-mutable-write-batch": 64,
    }
    app_versions = {
        "tahoe-lafs": "1.19.0",
        "foolscap": "24.9.0",
        "twisted": "24.7.0",
        "python": "3.11.7",
        "platform": "Linux-debian_12-x86_64-64bit_ELF",
        "pyOpenSSL": "24.2.1",
        "cryptography": "43.0.1",
        "zfec": "1.5.7.4",
        "pycryptopp": "not installed",
        "attrs": "24.2.0",
        "klein": "23.12.0",
        "werkzeug": "3.0.4",
        "treq": "24.9.1",
        "cbor2": "5.6.4",
        "pycddl": "0.6.1",
        "magic-wormhole": "0.15.0",
        "setuptools": "75.1.0",
    }
    options = []
    for i in range(3):
        options.append({
            "name": "anonymous-storage" if i == 0 else "privatestorageio-zkapauthz-v%d" % i,
            "storage-server-FURL": furl(10 + i, "storage01.example.net"),
            "ristretto-issuer-root-url": "https://issuer.example.net/v%d/" % (i + 1),
            "pass-value": 1_000_000 * (i + 1),
            "default-token-count": 50_000,
            "lease.crawl-interval.mean": 864_000,
            "lease.crawl-interval.range": 86_400,
            "lease.min-time-remaining": 0,
            "allowed-public-keys": [b32(20 + i, 44) + "=", b32(30 + i, 44) + "="],
        })
    certificates = [
        {
            "certificate": '{"expires": %d, "public_key": "pub-v0-%s", "version": 1}'
                           % (1_750_000_000 + i, b32(40 + i, 52)),
            "signature": pattern(64, 100 + i),
        }
        for i in range(2)
    ]
    return {
        "anonymous-storage-FURL": furl(1, "storage01.example.net"),
        "permutation-seed-base32": b32(2),
        "nickname": "storage01 \u2603 rack-7",
        "my-version": "tahoe-lafs/1.19.0",
        "oldest-supported": "1.0",
        "service-name": "storage",
        "seqnum": 1_718_000_123,
        "nonce": pattern(32, 1),
        "anonymous-storage-public-key": b"pub-v0-" + b32(5, 52).encode(),
        "signature": pattern(64, 2),
        "last-seen": 1_718_000_123.25,
        "uptime-seconds": -1,
        "connection-hints": ["tcp:storage01.example.net:44801",
                             "tcp:10.0.0.17:44801",
                             "tor:" + b32(6, 56) + ".onion:44801"],
        "listen-ports": (44801, 8443, 3456),
        "grid-manager-certificates": certificates,
        "storage-options": options,
        "app-versions": app_versions,
        "http://allmydata.org/tahoe/protocols/storage/v1": storage_v1,
        "introducer-furl": None,
        "accepting-immutable-shares": True,
        "accepting-mutable-shares": False,
    }


def count_values(v):
    """Values in the tree, containers included (dict: keys and values)."""
    if isinstance(v, dict):
        return 1 + sum(count_values(k) + count_values(x) for k, x in v.items())
    if isinstance(v, (list, tuple, set, frozenset)):
        return 1 + sum(count_values(x) for x in v)
    return 1


INPUTS = [
    # name, builder, values counted for values/s
    ("ints", ints_input, lambda v: len(v)),
    ("blobs", blobs_input, lambda v: len(v)),
    ("announcement", announcement, count_values),
]

# ---------------------------------------------------------------- foolscap


def new_banana():
    b = storage.StorageBanana()
    b.populateVocabTable(vocab.vocab_v1)
    return b


def py_serialize(obj, banana):
    out = []
    storage.serialize(obj, banana=banana).addBoth(out.append)
    if not isinstance(out[0], bytes):
        raise RuntimeError("serialize failed: %r" % (out[0],))
    return out[0]


def py_unserialize(data):
    out = []
    storage.unserialize(data, banana=new_banana()).addBoth(out.append)
    if len(out) != 1 or hasattr(out[0], "raiseException"):
        raise RuntimeError("unserialize failed: %r" % (out,))
    return out[0]


def timeit(fn, seconds):
    """Seconds per call: calls fn until `seconds` have passed (at least 3
    calls after one warm-up call)."""
    fn()
    gc.collect()
    n = 0
    start = time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 3:
            return elapsed / n, n


def measure_python(seconds):
    rows = {}
    encodings = {}
    for name, build, count in INPUTS:
        value = build()
        wire = py_serialize(value, new_banana())
        encodings[name] = wire
        assert py_unserialize(wire) == value, name
        values = count(value)
        # a fresh Banana per message, so OPEN numbers (and the output) are
        # the same every time, as on the Rust side
        t, n = timeit(lambda: py_serialize(value, new_banana()), seconds)
        rows[(name, "encode")] = dict(s=t, iters=n, bytes=len(wire), values=values)
        t, n = timeit(lambda: py_unserialize(wire), seconds)
        rows[(name, "decode")] = dict(s=t, iters=n, bytes=len(wire), values=values)
    return rows, encodings


# ---------------------------------------------------------------- report


def load_rust(path):
    rows = {}
    if not path:
        return rows
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            rows[(r["input"], r["op"])] = dict(
                s=r["ns_per_op"] / 1e9, iters=r["iters"], bytes=r["bytes"],
                values=r["values"], tokens=r.get("tokens"))
    return rows


def fmt_rate(x):
    if x is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return "%.2f%s" % (x / div, unit)
    return "%.1f" % x


def fmt_mb(row):
    if row is None:
        return "-"
    return "%.1f" % (row["bytes"] / row["s"] / 1e6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rust-json")
    ap.add_argument("--rust-dump")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--json-out")
    args = ap.parse_args()

    import foolscap
    print("python %s, foolscap %s" % (sys.version.split()[0], foolscap.__version__))
    py, encodings = measure_python(args.seconds)
    for name, _, _ in INPUTS:
        print("input %-12s %9d bytes encoded, %d values"
              % (name, len(encodings[name]), py[(name, "encode")]["values"]))

    ok = True
    if args.rust_dump:
        for name, wire in encodings.items():
            path = os.path.join(args.rust_dump, name + ".bin")
            with open(path, "rb") as f:
                rust_wire = f.read()
            same = rust_wire == wire
            ok &= same
            print("encoding of %-12s Rust vs Python: %s"
                  % (name, "identical" if same else
                     "DIFFERENT (%d vs %d bytes)" % (len(rust_wire), len(wire))))

    rust = load_rust(args.rust_json)
    header = ("input", "operation", "Py values/s", "Py MB/s",
              "Rust values/s", "Rust MB/s", "Rust/Py")
    table = []
    for name, _, _ in INPUTS:
        for op in ("decode-tokens", "decode", "decode-copy", "encode"):
            # Python has one decode; it is compared with both Rust decodes
            p = py.get((name, "decode" if op == "decode-copy" else op))
            r = rust.get((name, op))
            if p is None and r is None:
                continue
            ratio = "%.1fx" % (p["s"] / r["s"]) if p and r else "-"
            table.append((
                name, op,
                fmt_rate(p["values"] / p["s"]) if p else "-",
                fmt_mb(p),
                fmt_rate((r["tokens"] if op == "decode-tokens" else r["values"]) / r["s"])
                + (" tok" if op == "decode-tokens" else "") if r else "-",
                fmt_mb(r),
                ratio,
            ))
    widths = [max(len(str(row[i])) for row in table + [header]) for i in range(len(header))]
    line = lambda row: "  ".join(str(c).rjust(w) if i >= 2 else str(c).ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths)))
    print()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in table:
        print(line(row))
    print()
    print("values/s: ints = 100,000 ints per op, blobs = 160 strings per op,")
    print("announcement = every value in the tree (containers, keys, leaves);")
    print("decode-tokens counts tokens instead (Python has no separate token layer).")
    print("Rust decode takes the input buffer over without copying (feed_bytes);")
    print("decode-copy feeds a borrowed slice (feed), copying it; both are compared")
    print("with Python's one unserialize(). Encode: a fresh serializer per message.")
    print("MB/s = encoded bytes / time (1 MB = 10^6 bytes).")

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"python": {"%s/%s" % k: v for k, v in py.items()},
                       "rust": {"%s/%s" % k: v for k, v in rust.items()}}, f, indent=1)
    if not ok:
        print("ERROR: Rust and Python encodings differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
