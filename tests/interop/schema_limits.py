#!/usr/bin/env python3
"""An object with a RemoteInterface using every constraint kind, served by
Python foolscap (24.9.0), and a client that calls such an object with
conforming and non-conforming arguments.

Usage (with the interpreter printed by scripts/python-env.sh):

  python schema_limits.py serve FURLFILE [--max-seconds S]
  python schema_limits.py check FURL

`serve` registers a Limits object (interface RILimits.foolscap-rs.test) and
writes its FURL to FURLFILE. `check` calls the object at FURL, skipping
its own argument checks (_useSchema=False) so that the server's checks
answer, and prints one JSON line per call: {"case", "kind": "ok" |
"remote" | "local" | "lost", "type", "value"}. The interop test runs it
against this server and against a Rust object declaring the same
interface, and compares the lines.
"""

import argparse
import sys

import fsquiet  # noqa: E402  (first: quiet stdout, JSON lines)
from fsquiet import emit, serve, write_atomically  # noqa: E402

from twisted.internet import defer, reactor  # noqa: E402

from foolscap.api import (  # noqa: E402
    Any, ChoiceOf, DictOf, IntegerConstraint, ListOf, Referenceable,
    RemoteInterface, SetOf, StringConstraint, Tub, TupleOf,
)
from foolscap.call import CopiedFailure  # noqa: E402
from foolscap.schema import ByteStringConstraint, Optional  # noqa: E402
from foolscap.slicers.unicode import UnicodeConstraint  # noqa: E402
from zope.interface import implementer  # noqa: E402

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)


class RILimits(RemoteInterface):
    __remote_name__ = "RILimits.foolscap-rs.test"

    def limited(b=ByteStringConstraint(10), l=ListOf(int, maxLength=3)):
        return int

    def text(s=UnicodeConstraint(5)):
        return str

    def anytext(s=str):
        return str

    def shortbytes(b=StringConstraint(3, minLength=2)):
        return int

    def i32(n=IntegerConstraint()):
        return int

    def i1024(n=int):
        return int

    def i8(n=IntegerConstraint(8)):
        return int

    def flag(x=bool):
        return bool

    def nothing(x=None):
        return None

    def num(x=float):
        return float

    def pair(t=TupleOf(int, bytes)):
        return int

    def mapping(d=DictOf(bytes, int, maxKeys=2)):
        return int

    def aset(s=SetOf(int, maxLength=2)):
        return int

    def choice(c=ChoiceOf(int, bytes)):
        return int

    def opt(a=int, b=Optional(int, 5)):
        return int

    def anything(x=Any()):
        return int

    def anyref(r=Referenceable):
        return int

    def nested(v=ListOf(TupleOf(int, ByteStringConstraint(2)), maxLength=2)):
        return int

    def minlist(l=ListOf(int, minLength=2)):
        return int

    def bad_return():
        return int

    def bad_return_list():
        return ListOf(int, maxLength=2)

    def no_return_decl():
        """returns None"""


@implementer(RILimits)
class Limits(Referenceable):
    def remote_limited(self, b, l):
        return len(b) + len(l)

    def remote_text(self, s):
        return s

    def remote_anytext(self, s):
        return s

    def remote_shortbytes(self, b):
        return len(b)

    def remote_i32(self, n):
        return 0

    def remote_i1024(self, n):
        return 0

    def remote_i8(self, n):
        return 0

    def remote_flag(self, x):
        return x

    def remote_nothing(self, x):
        return None

    def remote_num(self, x):
        return float(x)

    def remote_pair(self, t):
        return len(t)

    def remote_mapping(self, d):
        return len(d)

    def remote_aset(self, s):
        return len(s)

    def remote_choice(self, c):
        return 0

    def remote_opt(self, a, b=5):
        return a + b

    def remote_anything(self, x):
        return 0

    def remote_anyref(self, r):
        return 1

    def remote_nested(self, v):
        return len(v)

    def remote_minlist(self, l):
        return len(l)

    def remote_bad_return(self):
        return "not an int"

    def remote_bad_return_list(self):
        return [1, 2, 3]

    def remote_no_return_decl(self):
        return 5


class Plain(Referenceable):
    pass


def cases():
    ints = lambda n: list(range(n))  # noqa: E731
    return [
        # accepted, at the limits
        ("limited_ok", "limited", (b"x" * 10, ints(3)), {}),
        ("text_ok", "text", ("fivef",), {}),
        ("shortbytes_ok", "shortbytes", (b"abc",), {}),
        ("i32_max", "i32", (2 ** 31 - 1,), {}),
        ("i32_min", "i32", (-2 ** 31,), {}),
        ("i1024_max", "i1024", (2 ** 8191,), {}),
        ("i8_max", "i8", (2 ** 63,), {}),
        ("flag_ok", "flag", (False,), {}),
        ("nothing_ok", "nothing", (None,), {}),
        ("num_int", "num", (3,), {}),
        ("num_float", "num", (2.5,), {}),
        ("pair_ok", "pair", ((1, b"x"),), {}),
        ("mapping_ok", "mapping", ({b"a": 1, b"b": 2},), {}),
        ("aset_ok", "aset", ({1, 2},), {}),
        ("choice_bytes", "choice", (b"x",), {}),
        ("choice_int", "choice", (7,), {}),
        ("opt_default", "opt", (1,), {}),
        ("opt_given", "opt", (1,), {"b": 2}),
        ("keywords_only", "limited", (), {"l": [1], "b": b"ab"}),
        ("anything_big", "anything", (2 ** 7999,), {}),
        ("anyref_ok", "anyref", (Plain(),), {}),
        ("nested_ok", "nested", ([(1, b"ab"), (2, b"c")],), {}),
        ("minlist_ok", "minlist", ([1, 2],), {}),
        # token-time rejections
        ("bytes_one_over", "limited", (b"x" * 11, [1]), {}),
        ("bytes_given_text", "limited", ("text", [1]), {}),
        ("list_one_over", "limited", (b"x", ints(4)), {}),
        ("list_text_item", "limited", (b"x", [1, "x"]), {}),
        ("list_big_item", "limited", (b"x", [2 ** 8200]), {}),
        ("list_float_item", "limited", (b"x", [1.5]), {}),
        ("unknown_keyword", "limited", (b"x",), {"extra": 1}),
        ("too_many_positional", "limited", (b"x", [1], 3), {}),
        ("keyword_twice", "limited", (b"x",), {"b": b"y"}),
        ("i32_one_over", "i32", (2 ** 31,), {}),
        ("i32_one_under", "i32", (-2 ** 31 - 1,), {}),
        ("i1024_one_over", "i1024", (2 ** 8192,), {}),
        ("i8_one_over", "i8", (2 ** 64,), {}),
        ("int_given_float", "i1024", (1.0,), {}),
        ("int_given_bool", "i1024", (True,), {}),
        ("bool_given_none", "flag", (None,), {}),
        ("float_given_bytes", "num", (b"1",), {}),
        ("tuple_one_over", "pair", ((1, b"x", 2),), {}),
        ("tuple_given_list", "pair", ([1, b"x"],), {}),
        ("dict_one_over", "mapping", ({b"a": 1, b"b": 2, b"c": 3},), {}),
        ("dict_text_key", "mapping", ({"k": 1},), {}),
        ("set_one_over", "aset", ({1, 2, 3},), {}),
        ("choice_float", "choice", (1.5,), {}),
        ("choice_list", "choice", ([1],), {}),
        ("anything_too_big", "anything", (2 ** 8008,), {}),
        ("anyref_given_bytes", "anyref", (b"x",), {}),
        ("nested_inner", "nested", ([(1, b"ab"), (2, b"abc")],), {}),
        # whole-argument rejections
        ("text_one_over", "text", ("sixsix",), {}),
        ("shortbytes_short", "shortbytes", (b"x",), {}),
        ("shortbytes_vocab", "shortbytes", (b"reference",), {}),
        ("tuple_short", "pair", ((1,),), {}),
        ("minlist_short", "minlist", ([1],), {}),
        ("missing_argument", "limited", (b"x",), {}),
        ("opt_missing_required", "opt", (), {}),
        # results
        ("bad_return", "bad_return", (), {}),
        ("bad_return_list", "bad_return_list", (), {}),
        ("no_return_decl", "no_return_decl", (), {}),
        ("still_connected", "limited", (b"ok", [1]), {}),
    ]


# what a Python receiver drops the connection for (a protocol error), and
# a call after it
STRICT = [
    ("text_given_bytes", "anytext", (b"x",), {}),
    ("bool_given_int", "flag", (1,), {}),
    ("none_given_int", "nothing", (0,), {}),
    ("still_connected", "limited", (b"ok", [1]), {}),
]


def outcome(f):
    if isinstance(f, CopiedFailure):
        return {"kind": "remote", "type": f.parents[0], "value": str(f.value)}
    name = type(f.value).__module__ + "." + type(f.value).__name__
    kind = "lost" if "DeadReference" in name or "ConnectionLost" in name else "local"
    return {"kind": kind, "type": name, "value": str(f.value)}


def plain(v):
    """JSON form of an answer."""
    if isinstance(v, bytes):
        return {"bytes": v.decode("latin-1")}
    if isinstance(v, float):
        return {"float": repr(v)}
    return v


@defer.inlineCallbacks
def check(furl, strict=False):
    tub = Tub()
    tub.startService()
    lim = yield tub.getReference(furl)
    emit({"case": "interface", "kind": "ok", "value": lim.tracker.interfaceName})
    for case, method, args, kwargs in (STRICT if strict else cases()):
        d = defer.maybeDeferred(
            lim.callRemote, method, *args, _useSchema=False, **kwargs
        )
        d.addCallbacks(lambda res: {"kind": "ok", "value": plain(res)}, outcome)
        res = yield d
        emit(dict(case=case, **res))
    yield tub.stopService()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "check", "strict"])
    p.add_argument("target", help="FURLFILE (serve) or FURL (check)")
    p.add_argument("--max-seconds", type=float, default=600)
    a = p.parse_args()
    if a.mode == "serve":
        tub = Tub()
        tub.startService()
        serve(tub, Limits(), "limits",
              lambda furl: write_atomically(a.target, furl + "\n"))
        reactor.callLater(a.max_seconds, reactor.stop)
        reactor.run()
        return 0
    status = []

    def crashed(f):
        emit({"case": "runner", "kind": "crash", "value": f.getTraceback()})
        status.append(1)

    d = check(a.target, strict=a.mode == "strict")
    d.addCallbacks(lambda _: status.append(0), crashed)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run()
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
