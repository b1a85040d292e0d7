#!/usr/bin/env python3
"""Calls the kitchen sink's limited() object (interface
RIKitchenSinkLimited.foolscap-rs.example) from Python foolscap 24.9.0, with
conforming and non-conforming arguments.

Usage (with the interpreter printed by scripts/python-env.sh):

  python schema_check.py FURL

FURL names a kitchen-sink server (the Rust example or its Python twin).
Each call prints one JSON line {"case": name, "kind": "ok"|"remote"|"local"
|"lost", "type": exception type, "value": answer or str(exception)}:
"remote" is a failure the server sent, "local" one raised by this client's
own checks before sending (nothing went out), "lost" a dropped
connection. The receiver cases skip the client's checks (_useSchema=False)
so the server's checks answer; the "local_" cases use them.
"""

import sys

import fsquiet  # noqa: E402  (first: quiet stdout, JSON lines)
from fsquiet import emit  # noqa: E402

from twisted.internet import defer, reactor  # noqa: E402

from foolscap.api import ListOf, RemoteInterface, Tub  # noqa: E402
from foolscap.call import CopiedFailure  # noqa: E402
from foolscap.schema import ByteStringConstraint  # noqa: E402

MiB = 1024 * 1024


class RIKitchenSinkLimited(RemoteInterface):
    __remote_name__ = "RIKitchenSinkLimited.foolscap-rs.example"

    def put_bytes(data=ByteStringConstraint(maxLength=65536)):
        return int

    def put_list(items=ListOf(int, maxLength=100)):
        return int


# (case, method, args, kwargs): sent without the client's checks
RECEIVER = [
    ("bytes_at_limit", "put_bytes", (b"x" * 65536,), {}),
    ("bytes_one_over", "put_bytes", (b"x" * 65537,), {}),
    ("bytes_16mib", "put_bytes", (b"x" * (16 * MiB),), {}),
    ("bytes_given_text", "put_bytes", ("text",), {}),
    ("bytes_given_int", "put_bytes", (5,), {}),
    ("bytes_by_keyword", "put_bytes", (), {"data": b"abc"}),
    ("list_at_limit", "put_list", (list(range(100)),), {}),
    ("list_one_over", "put_list", (list(range(101)),), {}),
    ("list_text_item", "put_list", ([1, "x"],), {}),
    ("list_float_item", "put_list", ([1.5],), {}),
    ("list_big_item", "put_list", ([2 ** 8200],), {}),
    ("list_given_tuple", "put_list", ((1, 2),), {}),
    ("list_nested_list", "put_list", ([[1]],), {}),
    ("missing_argument", "put_list", (), {}),
    ("unknown_keyword", "put_bytes", (b"x",), {"extra": 1}),
    ("too_many_positional", "put_bytes", (b"x", 2), {}),
    ("keyword_twice", "put_bytes", (b"x",), {"data": b"y"}),
    ("no_such_method", "nosuch", (), {}),
    ("still_connected", "put_bytes", (b"ok",), {}),
]

# (case, method, args, kwargs): with the client's checks
LOCAL = [
    ("local_bytes_one_over", "put_bytes", (b"x" * 65537,), {}),
    ("local_bytes_given_text", "put_bytes", ("text",), {}),
    ("local_list_one_over", "put_list", (list(range(101)),), {}),
    ("local_missing_argument", "put_list", (), {}),
    ("local_too_many_positional", "put_bytes", (b"x", 2), {}),
    ("local_ok", "put_list", ([1, 2],), {}),
]


def outcome(f):
    if isinstance(f, CopiedFailure):
        return {"kind": "remote", "type": f.parents[0], "value": str(f.value)}
    name = type(f.value).__module__ + "." + type(f.value).__name__
    kind = "lost" if "DeadReference" in name or "ConnectionLost" in name else "local"
    return {"kind": kind, "type": name, "value": str(f.value)}


@defer.inlineCallbacks
def run(furl):
    tub = Tub()
    tub.startService()
    sink = yield tub.getReference(furl)
    lim = yield sink.callRemote("limited")
    emit({"case": "interface", "kind": "ok", "value": lim.tracker.interfaceName})
    for case, method, args, kwargs in RECEIVER + LOCAL:
        use_schema = case.startswith("local_")
        d = defer.maybeDeferred(
            lim.callRemote, method, *args, _useSchema=use_schema, **kwargs
        )
        d.addCallbacks(lambda res: {"kind": "ok", "value": res}, outcome)
        res = yield d
        emit(dict(case=case, **res))
    yield tub.stopService()


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    status = []

    def crashed(f):
        emit({"case": "runner", "kind": "crash", "value": f.getTraceback()})
        status.append(1)

    d = run(sys.argv[1])
    d.addCallbacks(lambda _: status.append(0), crashed)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run()
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
