#!/usr/bin/env python3
"""RITyped: the Python twin of the Rust typed interface of tests/typed_iface
(same interface name, methods and constraints), for tests/interop_typed.rs.

Usage (with the interpreter printed by scripts/python-env.sh):

  fstyped.py serve CERTFILE [--lifetime S]   a Python RITyped server; prints
                                             {"furl": ...} and serves
  fstyped.py call CERTFILE FURL              calls the RITyped at FURL as a
                                             Python client that knows the
                                             interface; prints one JSON
                                             object of results
"""

import argparse
import json
import sys

from fsquiet import emit, serve, stop_when_stdin_closes  # noqa: E402  (first: quiet stdout)

from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402
from zope.interface import implementer  # noqa: E402

from foolscap.api import (  # noqa: E402
    Copyable, Referenceable, RemoteCopy, RemoteInterface, Tub, Violation)
from foolscap.call import CopiedFailure  # noqa: E402
from foolscap.remoteinterface import UnconstrainedMethod  # noqa: E402
from foolscap.schema import (  # noqa: E402
    Any, ByteStringConstraint, ChoiceOf, DictOf, IntegerConstraint, ListOf,
    Optional, SetOf, TupleOf, UnicodeConstraint)

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

I8 = IntegerConstraint(8)


class RITyped(RemoteInterface):
    __remote_name__ = "RITyped.foolscap-rs.example"

    def add(a=I8, b=I8):
        return I8

    def put_bytes(data=ByteStringConstraint(maxLength=65536)):
        return I8

    def put_list(items=ListOf(I8, maxLength=100)):
        return I8

    def greet(name=UnicodeConstraint(20), times=Optional(IntegerConstraint(4), None)):
        return str

    def mixed(m=TupleOf(bool, float, str, bytes, int, TupleOf(IntegerConstraint(), str),
                        DictOf(str, I8), SetOf(I8))):
        return TupleOf(bool, float, str, bytes, int, TupleOf(IntegerConstraint(), str),
                       DictOf(str, I8), SetOf(I8))

    def maps(m=DictOf(str, ListOf(IntegerConstraint())), s=SetOf(str)):
        return TupleOf(DictOf(str, ListOf(IntegerConstraint())), SetOf(str))

    def maybe(x=ChoiceOf(I8, None)):
        return ChoiceOf(I8, None)

    def move_point(p=Any(), dx=I8):
        return Any()

    def fail(msg=str):
        return None

    def later(x=I8):
        return I8

    # Python cannot name RITyped inside its own body: any reference
    def call_back(other=Referenceable, x=I8):
        return I8

    def int32(a=IntegerConstraint()):
        return I8

    loose = UnconstrainedMethod()
    anything = UnconstrainedMethod()
    wrong = UnconstrainedMethod()


class Point(Copyable, RemoteCopy):
    typeToCopy = copytype = "typed.Point"

    def __init__(self, x=None, y=None, label=None):
        self.x, self.y, self.label = x, y, label

    def getStateToCopy(self):
        return {"x": self.x, "y": self.y, "label": self.label}

    def setCopyableState(self, state):
        self.x, self.y, self.label = state["x"], state["y"], state.get("label")

    def __eq__(self, other):
        return (self.x, self.y, self.label) == (other.x, other.y, other.label)


@implementer(RITyped)
class TypedImpl(Referenceable):
    def remote_add(self, a, b):
        return a + b

    def remote_put_bytes(self, data):
        return len(data)

    def remote_put_list(self, items):
        return len(items)

    def remote_greet(self, name, times=None):
        return ("hello %s" % name) * (1 if times is None else times)

    def remote_mixed(self, m):
        return m

    def remote_maps(self, m, s):
        return (m, s)

    def remote_maybe(self, x):
        return None if x is None else x + 1

    def remote_move_point(self, p, dx):
        return Point(p.x + dx, p.y, p.label)

    def remote_fail(self, msg):
        raise ValueError(msg)

    def remote_later(self, x):
        return deferLater(reactor, 0.02, lambda: x * 2)

    def remote_call_back(self, other, x):
        return other.callRemote("add", x, x)

    def remote_int32(self, a):
        return a

    def remote_loose(self, a, b=None):
        return a + len(b or "")

    def remote_anything(self, v):
        return v

    def remote_wrong(self):
        return "not an int"


def cmd_serve(a):
    tub = Tub(certFile=a.certfile)  # made there if missing
    tub.startService()
    serve(tub, TypedImpl(), "typed",
          lambda furl: emit({"furl": furl, "tubid": tub.getTubID()}))
    stop_when_stdin_closes()
    reactor.callLater(a.lifetime, reactor.stop)
    reactor.run()


def outcome(d):
    """A Deferred's result as JSON: {"ok": value} or a failure's type,
    text, and whether it was raised locally (nothing sent)."""
    def ok(v):
        return {"ok": v}

    def failed(f):
        copied = isinstance(f, CopiedFailure)
        kind = f.type if isinstance(f.type, str) else "%s.%s" % (f.type.__module__, f.type.__name__)
        return {"type": kind, "value": str(f.value) if not copied else f.value,
                "local": not copied}
    d.addCallbacks(ok, failed)
    return d


@defer.inlineCallbacks
def call_body(a):
    tub = Tub(certFile=a.certfile)
    tub.startService()
    rref = yield tub.getReference(a.furl)
    out = {"interface": rref.tracker.interfaceName}
    call = lambda *args, **kw: outcome(rref.callRemote(*args, **kw))  # noqa: E731
    out["add"] = yield call("add", 1, 2)
    out["add_kw"] = yield call("add", b=2, a=1)
    out["put_bytes_limit"] = yield call("put_bytes", b"x" * 65536)
    out["put_bytes_over"] = yield call("put_bytes", b"x" * 65537)
    out["put_list_limit"] = yield call("put_list", list(range(100)))
    out["put_list_over"] = yield call("put_list", list(range(101)))
    out["greet"] = yield call("greet", "ann")
    out["greet_twice"] = yield call("greet", "bo", times=2)
    out["greet_over"] = yield call("greet", "x" * 21)
    out["greet_bytes"] = yield call("greet", b"ann")
    m = (True, 2.5, "h\u00e9llo", b"\x00\xff", 2 ** 100, (-7, "x"), {"k": 1, "l": -2}, {3, 1, 2})
    r = yield call("mixed", m)
    out["mixed"] = {"equal": r.get("ok") == m, "set": type(r.get("ok", [None] * 8)[7]).__name__}
    maps = ({"a": [1, 2], "b": []}, {"x", "y"})
    r = yield call("maps", *maps)
    out["maps"] = r.get("ok") == maps
    out["maybe_none"] = yield call("maybe", None)
    out["maybe_4"] = yield call("maybe", 4)
    r = yield call("move_point", Point(1, 2, "p"), 10)
    out["move_point"] = r.get("ok") == Point(11, 2, "p")
    out["fail"] = yield call("fail", "boom")
    out["later"] = yield call("later", 21)
    out["call_back"] = yield call("call_back", TypedImpl(), 5)
    out["int32_limit"] = yield call("int32", 2 ** 31 - 1)
    out["int32_over"] = yield call("int32", 2 ** 31)
    out["nosuch"] = yield call("nosuch")
    # unconstrained: what arrives is the server's own binding and conversion
    out["loose"] = yield call("loose", 1, "xy")
    out["loose_missing"] = yield call("loose")
    out["loose_extra"] = yield call("loose", 1, None, 3)
    out["loose_duplicate"] = yield call("loose", 1, a=2)
    out["loose_unknown"] = yield call("loose", 1, z=2)
    out["loose_type"] = yield call("loose", "1")
    out["anything"] = yield call("anything", [1, "two", b"three"])
    # the connection survived all of it
    out["after"] = yield call("add", 2, 3)
    # bytes and other values JSON lacks as their repr
    emit(json.loads(json.dumps(out, default=repr)))
    yield tub.stopService()


def run_client(a):
    d = call_body(a)

    def failed(f):
        emit({"error": "%s: %s" % (f.type.__name__, f.getErrorMessage())})
    d.addErrback(failed)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.callLater(a.timeout, lambda: (emit({"error": "timeout"}), reactor.stop()))
    reactor.run()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("certfile")
    s.add_argument("--lifetime", type=float, default=120)
    c = sub.add_parser("call")
    c.add_argument("certfile")
    c.add_argument("furl")
    c.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()
    if a.cmd == "serve":
        cmd_serve(a)
    else:
        run_client(a)


if __name__ == "__main__":
    main()
