#!/usr/bin/env python3
"""A Python foolscap (24.9.0) client that exercises every kitchen-sink method.

Usage (with the interpreter printed by scripts/python-env.sh):

  python kitchen_check.py FURL [--only NAME,...] [--timeout S] [--list]

FURL names a kitchen-sink server (the Rust example `kitchen_sink` or its
Python twin kitchen_sink.py; see issue 4 for the methods). Each check prints
one JSON line {"check": name, "ok": bool, "detail": str} on stdout, and a
final line {"summary": true, "passed": N, "failed": M}. The exit status is 0
iff every check passed. --only runs the named checks (in their usual order),
--timeout bounds each check (default 60 s), --list prints the check names.

A check that fails (or raises, or times out) never stops the others. The
checks share one connection and run one after another; those that break a
connection on purpose (hangup, client disconnect mid-call) use Tubs of their
own. foolscap's and Twisted's own chatter is discarded (or sent to stderr
with FSNEGO_DEBUG=1).
"""

import argparse
import builtins
import gc
import inspect
import math
import os
import sys
import time
from decimal import Decimal

import fsquiet  # noqa: E402  (first: quiet stdout, JSON lines)
from fsquiet import emit  # noqa: E402

from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402
from twisted.python import reflect  # noqa: E402

from foolscap.api import Copyable, Referenceable, RemoteCopy, Tub  # noqa: E402
from foolscap.call import CopiedFailure  # noqa: E402
from foolscap.referenceable import RemoteReference  # noqa: E402

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

MiB = 1024 * 1024


class Point(Copyable, RemoteCopy):
    """The kitchen sink's copyable "kitchen-sink.Point", state {"x", "y"}."""
    typeToCopy = copytype = "kitchen-sink.Point"

    def __init__(self, x=None, y=None):
        self.x = x
        self.y = y

    def getStateToCopy(self):
        return {"x": self.x, "y": self.y}

    def setCopyableState(self, state):
        self.x = state.get("x")
        self.y = state.get("y")

    def __repr__(self):
        return "Point(%r, %r)" % (self.x, self.y)


class Helper(Referenceable):
    """A client-side object the server calls back into."""

    def __init__(self):
        self.records = []

    def remote_double(self, *args):
        return list(args) * 2

    def remote_explode(self, msg):
        raise RuntimeError(msg)

    def remote_record(self, x):
        self.records.append(x)


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def short(x, n=160):
    r = repr(x)
    return r if len(r) <= n else r[:n] + "...(%d chars)" % len(r)


# -- strict comparison --------------------------------------------------------

def same(a, b, seen=None):
    """Deep equality that also requires identical types, tells -0.0 from 0.0,
    takes nan == nan, compares Decimals by their text and copes with cycles
    (a pair of containers already being compared counts as equal)."""
    if seen is None:
        seen = set()
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, Point):
        return same(a.x, b.x, seen) and same(a.y, b.y, seen)
    if isinstance(a, (list, tuple, dict)):
        key = (id(a), id(b))
        if key in seen:
            return True
        seen.add(key)
        if len(a) != len(b):
            return False
        if isinstance(a, dict):
            if set(a.keys()) != set(b.keys()):
                return False
            # match keys by equality, then compare keys strictly too
            bkeys = {k: k for k in b}
            return all(same(k, bkeys[k], seen) and same(a[k], b[k], seen) for k in a)
        return all(same(x, y, seen) for x, y in zip(a, b))
    if isinstance(a, (set, frozenset)):
        if a != b:
            return False
        bitems = {e: e for e in b}
        return all(same(e, bitems[e], seen) for e in a)
    return a == b


# -- calling helpers ----------------------------------------------------------

def outcome(d):
    """Turn a call's Deferred into ("ok", result) or ("fail", failure).

    A CopiedFailure cannot be thrown into an inlineCallbacks generator (its
    .value is a string), so failures are looked at as values."""
    d.addCallbacks(lambda r: ("ok", r), lambda f: ("fail", f))
    return d


def failure_type(f):
    """The remote exception's type name. A CopiedFailure's .type is a class
    made up on arrival whose reflect.qual() is the sender's type name (e.g.
    "builtins.ValueError"); its .value is the str() of the exception."""
    t = f.type
    return t if isinstance(t, str) else reflect.qual(t)


@defer.inlineCallbacks
def expect_failure(d, type_name, text=None):
    """Wait for d to fail with a remote exception of type type_name whose
    message contains text; return a short description."""
    kind, res = yield outcome(d)
    expect(kind == "fail", "expected a failure, got %s" % short(res))
    expect(isinstance(res, CopiedFailure),
           "failure is %s, not a CopiedFailure: %s" % (type(res).__name__, res))
    got = failure_type(res)
    expect(got == type_name, "failure type %r, expected %r" % (got, type_name))
    expect(res.check(type_name) is not None, "f.check(%r) is None; parents %r"
           % (type_name, res.parents))
    # f.check() with the class works through .parents (qualified names), so
    # the sender must list the parents as Python does
    if type_name.startswith("builtins."):
        klass = getattr(builtins, type_name[len("builtins."):])
        expect(res.check(klass) is not None and res.check(Exception) is not None,
               "f.check(%s) or f.check(Exception) is None; parents %r"
               % (klass.__name__, res.parents))
    if text is not None:
        expect(text in str(res.value), "message %r lacks %r" % (res.value, text))
    return "%s: %s" % (got, res.value)


def sleep(seconds):
    return deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def wait_until(pred, seconds, step=0.02):
    deadline = time.monotonic() + seconds
    while not pred():
        if time.monotonic() > deadline:
            return False
        yield sleep(step)
    return True


# -- the checks ---------------------------------------------------------------

CHECKS = []


def check(fn):
    """Register an inlineCallbacks check; it gets the Context and returns a
    detail string, or raises (CheckFailed or anything else) to fail."""
    name = fn.__name__[len("check_"):]
    if inspect.isgeneratorfunction(fn):
        CHECKS.append((name, defer.inlineCallbacks(fn)))
    else:
        CHECKS.append((name, fn))
    return fn


class Context(object):
    def __init__(self, furl, tub, rref):
        self.furl = furl
        self.tub = tub
        self.rref = rref
        self.helper = Helper()
        self.counter = None   # a Counter reference, made on first use

    def call(self, method, *args, **kwargs):
        return self.rref.callRemote(method, *args, **kwargs)

    @defer.inlineCallbacks
    def get_counter(self):
        if self.counter is None:
            self.counter = yield self.call("make_counter")
        return self.counter


@defer.inlineCallbacks
def echo_all(ctx, values):
    """Echo every value; return the list of the ones that came back wrong."""
    bad = []
    for v in values:
        r = yield ctx.call("echo", v)
        if not same(v, r):
            bad.append("%s -> %s" % (short(v, 60), short(r, 60)))
    expect(not bad, "; ".join(bad))
    return "%d values" % len(values)


@check
def check_echo_none_bool(ctx):
    return echo_all(ctx, [None, True, False])


@check
def check_echo_ints(ctx):
    return echo_all(ctx, [0, 1, -1, 127, 128, 255, 256, 2**31 - 1, 2**31, -2**31,
                          -2**31 - 1, 2**63 - 1, 2**63, -2**63, -2**63 - 1, 2**64,
                          -2**64, 2**64 + 1, -2**100, 2**1000, -2**1000])


@check
def check_echo_floats(ctx):
    return echo_all(ctx, [0.0, -0.0, 1.5, -2.25, 0.1, 1e300, -1e-300, 5e-324,
                          float("inf"), float("-inf"), float("nan")])


@check
def check_echo_bytes(ctx):
    return echo_all(ctx, [b"", b"x", b"\x00", bytes(range(256)), b"\xff" * 1000,
                          b"list", b"a" * 70000])


@check
def check_echo_str(ctx):
    return echo_all(ctx, ["", "plain", "h\u00e9llo", "\u20ac", "\U0001f600 non-BMP",
                          "\x00nul", "a'b\"c\\", "\uffff", "list"])


@check
def check_echo_decimal(ctx):
    return echo_all(ctx, [Decimal("1.25"), Decimal("-0"), Decimal("0"),
                          Decimal("1E+3"), Decimal("123456789012345678901234567890.5"),
                          Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])


@check
def check_echo_containers(ctx):
    return echo_all(ctx, [[], [1, 2], (), (1,), (3, "four", b"five"), set(), {5},
                          {1, "a", b"b", (2, 3)}, frozenset(), frozenset([6, 7]),
                          {}, {"k": "v"}, [[], [[]], ()], (frozenset([1]), {2})])


@check
def check_echo_dict_keys(ctx):
    # Python foolscap sorts a dict's keys before sending it, so every dict
    # here has mutually comparable keys (a dict with keys 1 and b"x" cannot
    # be sent by Python at all: TypeError, and the connection is left with a
    # half-sent message).
    return echo_all(ctx, [{1: "a", -5: "b", 2**80: "big", 1.5: "float"},
                          {True: "t", 0.5: "half"},
                          {b"x": 1, b"": 2, b"\xff": 3},
                          {(1, 2): 3, (): 4, (0, b"t", "u"): 5},
                          {frozenset([1]): 1, frozenset(): 2},
                          {Decimal("2.5"): "dec", Decimal("-1"): "neg"},
                          {None: "none"}])


@check
def check_echo_nested(ctx):
    v = {"k": "v", "n": [1, 2.5, None, True, False],
         "t": (1, "two", b"three", [4.0], {5: None}, frozenset({6}), Decimal("7")),
         "deep": [[[[[[[[[[1]]]]]]]]]],
         "d": {"a": {"b": {"c": [1, (2, {3})]}}}}
    return echo_all(ctx, [v, [v, v]])


@check
def check_echo_shared(ctx):
    s = [10, 20]
    r = yield ctx.call("echo", [s, s])
    expect(same(r, [s, s]), "value %s" % short(r))
    expect(r[0] is r[1], "the shared list came back as two lists")
    # shared in several kinds of places within one argument
    t = ("shared", "tuple")
    d = {"k": 1}
    v = [s, {"a": s, "b": d}, (s, t), t, d]
    r = yield ctx.call("echo", v)
    expect(same(r, v), "value %s" % short(r))
    expect(r[0] is r[1]["a"] is r[2][0], "list sharing lost")
    expect(r[2][1] is r[3], "tuple sharing lost")
    expect(r[1]["b"] is r[4], "dict sharing lost")
    return "lists, tuples and dicts stay shared"


@check
def check_echo_cycles(ctx):
    l = [1]
    l.append(l)
    r = yield ctx.call("echo", l)
    expect(type(r) is list and len(r) == 2 and r[0] == 1, "list %s" % short(r))
    expect(r[1] is r, "list does not contain itself")
    d = {"n": 1}
    d["self"] = d
    r = yield ctx.call("echo", d)
    expect(type(r) is dict and r.get("n") == 1, "dict %s" % short(r))
    expect(r["self"] is r, "dict does not contain itself")
    # a list inside a dict inside the list
    l2 = []
    l2.append({"back": l2})
    r = yield ctx.call("echo", l2)
    expect(r[0]["back"] is r, "two-level cycle lost")
    return "list, dict and two-level cycles"


@check
def check_echo_keyword(ctx):
    v = [1, "a", b"b", (2.5, None)]
    r = yield ctx.call("echo", x=v)
    expect(same(r, v), "echo(x=...) gave %s" % short(r))
    return "echo(x=...) ok"


@check
def check_echo_args(ctx):
    r = yield ctx.call("echo_args", 1, b"two", "three", k="v", n=None, t=(1, 2))
    expected = [[1, b"two", "three"], {"k": "v", "n": None, "t": (1, 2)}]
    expect(same(r, expected), "got %s" % short(r))
    r = yield ctx.call("echo_args")
    expect(same(r, [[], {}]), "no arguments gave %s" % short(r))
    r = yield ctx.call("echo_args", only="kw")
    expect(same(r, [[], {"only": "kw"}]), "keywords only gave %s" % short(r))
    return "positional, keyword, none"


@check
def check_add(ctx):
    cases = [((2, 3), 5), ((2**100, 2**100), 2**101), ((-2**100, 1), -2**100 + 1),
             ((2**64, -2**64), 0), (("ab", "cd"), "abcd"), ((b"ab", b"\xff"), b"ab\xff"),
             (([1], [2, "3"]), [1, 2, "3"]), ((1.5, 2.25), 3.75)]
    bad = []
    for args, want in cases:
        r = yield ctx.call("add", *args)
        if not same(r, want):
            bad.append("add%s = %s" % (short(args, 60), short(r, 60)))
    r = yield ctx.call("add", a=40, b=2)
    if not same(r, 42):
        bad.append("add(a=40, b=2) = %s" % short(r))
    r = yield ctx.call("add", "x", b="y")
    if not same(r, "xy"):
        bad.append("add('x', b='y') = %s" % short(r))
    expect(not bad, "; ".join(bad))
    return "%d cases" % (len(cases) + 2)


@check
def check_length(ctx):
    cases = [("h\u00e9llo", 5), ("\U0001f600", 1), ("", 0), (b"abc", 3), (b"", 0),
             ([1, 2, 3], 3), ((), 0), ({"a": 1, "b": 2}, 2), ({1, 2, 3, 4}, 4),
             (frozenset([1]), 1)]
    bad = []
    for v, want in cases:
        r = yield ctx.call("length", v)
        if not same(r, want):
            bad.append("length(%s) = %s" % (short(v, 40), short(r)))
    r = yield ctx.call("length", x=[0] * 7)
    if r != 7:
        bad.append("length(x=[0]*7) = %s" % short(r))
    expect(not bad, "; ".join(bad))
    return "%d cases" % (len(cases) + 1)


@check
def check_big_small(ctx):
    r = yield ctx.call("big", 10)
    expect(same(r, b"x" * 10), "big(10) = %s" % short(r))
    r = yield ctx.call("big", 0)
    expect(same(r, b""), "big(0) = %s" % short(r))
    r = yield ctx.call("big", n=3)
    expect(same(r, b"xxx"), "big(n=3) = %s" % short(r))
    return "big(10), big(0), big(n=3)"


@check
def check_big_16mib(ctx):
    n = 16 * MiB
    t = time.monotonic()
    r = yield ctx.call("big", n)
    expect(type(r) is bytes, "big(16 MiB) is a %s" % type(r).__name__)
    expect(len(r) == n, "big(16 MiB) has %d bytes" % len(r))
    expect(r == b"x" * n, "big(16 MiB) is not all b'x'")
    return "16 MiB in %.2f s" % (time.monotonic() - t)


@check
def check_echo_16mib(ctx):
    v = bytes(range(256)) * (16 * MiB // 256)
    t = time.monotonic()
    r = yield ctx.call("echo", v)
    expect(type(r) is bytes and len(r) == len(v), "echo(16 MiB) gave %s"
           % short(r[:20] if isinstance(r, bytes) else r))
    expect(r == v, "echo(16 MiB) content differs")
    return "16 MiB round trip in %.2f s" % (time.monotonic() - t)


@check
def check_big_refused(ctx):
    detail = yield expect_failure(ctx.call("big", 256 * MiB + 1), "builtins.ValueError")
    r = yield ctx.call("echo", 1)
    expect(r == 1, "connection unusable afterwards")
    return detail


@check
def check_pow2(ctx):
    bad = []
    for n in (0, 1, 64, 100000):
        r = yield ctx.call("pow2", n)
        if not same(r, 2**n):
            bad.append("pow2(%d) = %s" % (n, short(r, 60)))
    r = yield ctx.call("pow2", n=10)
    if not same(r, 1024):
        bad.append("pow2(n=10) = %s" % short(r))
    expect(not bad, "; ".join(bad))
    detail = yield expect_failure(ctx.call("pow2", 100001), "builtins.ValueError")
    return "pow2(0/1/64/100000/n=10) ok; pow2(100001): %s" % detail


@check
def check_point(ctx):
    p = yield ctx.call("point", 1, 2)
    expect(isinstance(p, Point), "point(1, 2) is %s" % short(p))
    expect(same((p.x, p.y), (1, 2)), "point(1, 2) = %s" % short(p))
    p = yield ctx.call("point", x="a", y=[1.5, None])
    expect(isinstance(p, Point) and same((p.x, p.y), ("a", [1.5, None])),
           "point(x='a', y=[1.5, None]) = %s" % short(p))
    r = yield ctx.call("echo", Point(3, 4))
    expect(isinstance(r, Point) and same((r.x, r.y), (3, 4)),
           "echo(Point(3, 4)) = %s" % short(r))
    r = yield ctx.call("echo", [Point(5, b"six"), {"p": Point(-1, 2**70)}])
    expect(same(r, [Point(5, b"six"), {"p": Point(-1, 2**70)}]),
           "echo of nested Points = %s" % short(r))
    return "point() arrives as Point; echo returns Points"


@check
def check_fail(ctx):
    detail = yield expect_failure(ctx.call("fail", "boom"), "builtins.ValueError", "boom")
    d2 = yield expect_failure(ctx.call("fail", msg="bang"), "builtins.ValueError", "bang")
    return "%s; %s" % (detail, d2)


@check
def check_divzero(ctx):
    detail = yield expect_failure(ctx.call("divzero"), "builtins.ZeroDivisionError")
    return detail


@check
def check_fail_later(ctx):
    t = time.monotonic()
    detail = yield expect_failure(ctx.call("fail_later", "late"), "builtins.KeyError", "late")
    took = time.monotonic() - t
    d2 = yield expect_failure(ctx.call("fail_later", "later", seconds=0.3),
                              "builtins.KeyError", "later")
    took2 = time.monotonic() - t - took
    expect(took2 >= 0.25, "fail_later(seconds=0.3) failed after %.3f s" % took2)
    return "%s; %s (%.2f s)" % (detail, d2, took2)


@check
def check_counter(ctx):
    c = yield ctx.call("make_counter", start=5)
    expect(isinstance(c, RemoteReference), "make_counter gave %s" % short(c))
    a = yield c.callRemote("increment")
    b = yield c.callRemote("increment", by=10)
    g = yield c.callRemote("get")
    expect((a, b, g) == (6, 16, 16), "increment(), increment(by=10), get() = %r"
           % ((a, b, g),))
    c0 = yield ctx.call("make_counter")
    g0 = yield c0.callRemote("get")
    n = yield c0.callRemote("increment", 2)
    expect((g0, n) == (0, 2), "default counter: get()=%r, increment(2)=%r" % (g0, n))
    expect(c0 is not c, "two counters share one reference")
    # a Tub with a location gives every object it sends a FURL, which leads
    # back to the same object (over the same connection: the same reference)
    url = c.getSturdyRef().getURL()
    expect(url is not None and url.startswith("pb://%s@" % c.getRemoteTubID()),
           "the counter came without its own FURL: %r" % (url,))
    again = yield ctx.tub.getReference(url)
    expect(again is c, "the counter's FURL gave another reference")
    return "6, 16, 16; default start 0; counter FURL leads back to it"


@check
def check_get_self(ctx):
    s = yield ctx.call("get_self")
    expect(isinstance(s, RemoteReference), "get_self gave %s" % short(s))
    n = yield s.callRemote("count_calls")
    expect(isinstance(n, int) and n >= 1, "count_calls through it = %r" % n)
    # the same remote object maps to the same reference on one connection
    expect(s is ctx.rref, "get_self() is not the reference we already hold")
    return "count_calls() via get_self = %d; same reference" % n


@check
def check_is_same(ctx):
    c = yield ctx.get_counter()
    c2 = yield ctx.call("make_counter")
    r1 = yield ctx.call("is_same", c, c)
    r2 = yield ctx.call("is_same", c, c2)
    r3 = yield ctx.call("is_same", ctx.helper, ctx.helper)
    r4 = yield ctx.call("is_same", a=[1], b=[1])
    s = [1]
    r5 = yield ctx.call("is_same", s, s)
    expect((r1, r2, r3, r4, r5) == (True, False, True, False, True),
           "(c,c) (c,c2) (helper,helper) ([1],[1]) (s,s) = %r" % ((r1, r2, r3, r4, r5),))
    return "counter, helper and shared list identity ok"


@check
def check_hold(ctx):
    c = yield ctx.get_counter()
    other = yield ctx.call("make_counter")
    yield ctx.call("hold", c)
    r1 = yield ctx.call("is_held", c)
    r2 = yield ctx.call("is_held", other)
    yield ctx.call("hold", ctx.helper)
    r3 = yield ctx.call("is_held", ctx.helper)
    r4 = yield ctx.call("is_held", c)
    expect((r1, r2, r3, r4) == (True, False, True, False),
           "is_held(c), is_held(other), is_held(helper), is_held(c) = %r"
           % ((r1, r2, r3, r4),))
    return "held counter and client object recognised"


@check
def check_count_calls(ctx):
    a = yield ctx.call("count_calls")
    b = yield ctx.call("count_calls")
    yield ctx.call("echo", None)
    yield outcome(ctx.call("fail", "counted"))   # a failing call counts too
    c = yield ctx.call("count_calls")
    expect(b == a + 1, "count_calls twice: %r then %r" % (a, b))
    expect(c == b + 3, "after echo, fail and count_calls: %r then %r" % (b, c))
    return "%d, %d, %d" % (a, b, c)


@check
def check_notes(ctx):
    tag = "notes-%d-" % os.getpid()
    ds = [ctx.call("note", tag + str(i)) for i in range(105)]
    results = yield defer.gatherResults(ds)
    expect(all(r is None for r in results), "note() answers %s" % short(results))
    r = yield ctx.call("notes")
    want = [tag + str(i) for i in range(5, 105)]
    expect(r == want, "notes() = %s" % short(r))
    yield ctx.call("note", x=(1, b"two"))
    r = yield ctx.call("notes")
    expect(len(r) == 100 and same(r[-1], (1, b"two")) and r[0] == tag + "6",
           "after note(x=...): %s" % short(r[-3:]))
    return "last 100 kept in order"


@check
def check_call_remote_only(ctx):
    token = "only-%f" % time.time()
    ctx.rref.callRemoteOnly("note", token)
    r = yield ctx.call("notes")
    expect(r and r[-1] == token, "notes() after callRemoteOnly: %s" % short(r[-3:]))
    # failures of a callRemoteOnly are silent and leave the connection usable
    ctx.rref.callRemoteOnly("fail", "silent")
    ctx.rref.callRemoteOnly("no_such_method_here")
    r = yield ctx.call("echo", "still here")
    expect(r == "still here", "echo after failing callRemoteOnly: %s" % short(r))
    return "note via callRemoteOnly seen by the next call"


@check
def check_call_back(ctx):
    r = yield ctx.call("call_back", ctx.helper, "double", 1, "a", b"b")
    expect(same(r, [1, "a", b"b", 1, "a", b"b"]), "call_back double = %s" % short(r))
    r = yield ctx.call("call_back", ctx.helper, "double")
    expect(same(r, []), "call_back double() = %s" % short(r))
    detail = yield expect_failure(ctx.call("call_back", ctx.helper, "explode", "kaboom"),
                                  "builtins.RuntimeError", "kaboom")
    return "answer relayed; failure relayed: %s" % detail


@check
def check_call_back_only(ctx):
    token = "back-only-%f" % time.time()
    r = yield ctx.call("call_back_only", ctx.helper, "record", token)
    expect(r is None, "call_back_only answered %s" % short(r))
    ok = yield wait_until(lambda: token in ctx.helper.records, 5)
    expect(ok, "client object never recorded %r (records %s)"
           % (token, short(ctx.helper.records)))
    return "recorded"


@check
def check_call_back_home(ctx):
    # a reference to the server's own object comes home: the server calls
    # it as a local object (Python adapts it to a LocalReferenceable)
    c = yield ctx.call("make_counter", 5)
    r = yield ctx.call("call_back", c, "increment", 2)
    expect(r == 7, "call_back(counter, increment, 2) = %s" % short(r))
    r = yield ctx.call("call_back_only", c, "increment", 3)
    expect(r is None, "call_back_only(counter) answered %s" % short(r))
    # the eventual increment ran before any later call arrived
    r = yield c.callRemote("increment", 0)
    expect(r == 10, "counter after call_back_only: %s" % short(r))
    detail = yield expect_failure(ctx.call("call_back", c, "nope"),
                                  "builtins.AttributeError",
                                  "'Counter' object has no attribute 'remote_nope'")
    return "own counter called back: 7, then 10; %s" % detail


@check
def check_types_example(ctx):
    r = yield ctx.call("types", (1, b"x", ["s"]))
    expect(r == "tuple[int,bytes,list[str]]", "types((1, b'x', ['s'])) = %r" % r)
    return r


@check
def check_types_rules(ctx):
    c = yield ctx.get_counter()
    me = yield ctx.call("get_self")
    cyc_list = [1]
    cyc_list.append(cyc_list)
    cyc_dict = {}
    cyc_dict["k"] = cyc_dict
    cyc_tuple = ([],)
    cyc_tuple[0].append(cyc_tuple)
    shared = [1]
    cases = [
        (None, "None"), (True, "bool"), (False, "bool"), (0, "int"), (2**100, "int"),
        (-2**64, "int"), (1.5, "float"), (float("nan"), "float"),
        (Decimal("1.5"), "Decimal"), (b"", "bytes"), ("", "str"), ("\U0001f600", "str"),
        ([], "list[]"), ([True, 1, 1.0], "list[bool,int,float]"), ((), "tuple[]"),
        ((None,), "tuple[None]"), (set(), "set[]"),
        ({1, "a", b"b"}, "set[bytes,int,str]"),
        (frozenset([1.5, None]), "frozenset[None,float]"),
        ({(1, 2)}, "set[tuple[int,int]]"),
        ({}, "dict[]"),
        # (keys of one dict must be comparable: Python foolscap sorts them)
        ({"b": 1, "a": b"x", "c": None}, "dict[str:None,str:bytes,str:int]"),
        ({2: "s", 1.5: None}, "dict[float:None,int:str]"),
        ({(1,): 1, (2, "a"): 2}, "dict[tuple[int,str]:int,tuple[int]:int]"),
        ([(1, {2})], "list[tuple[int,set[int]]]"),
        ([shared, shared], "list[list[int],list[int]]"),
        (ctx.helper, "rref"),
        ([ctx.helper], "list[rref]"),
        (c, "local:Counter"),
        (me, "local:KitchenSink"),
        ({"c": c, "s": me}, "dict[str:local:Counter,str:local:KitchenSink]"),
        (Point(1, 2), "copyable:kitchen-sink.Point"),
        ([Point(1, 2)], "list[copyable:kitchen-sink.Point]"),
        (cyc_list, "list[int,cycle]"),
        (cyc_dict, "dict[str:cycle]"),
        (cyc_tuple, "tuple[list[cycle]]"),
    ]
    bad = []
    for v, want in cases:
        kind, r = yield outcome(ctx.call("types", v))
        if kind != "ok":
            bad.append("types(%s) failed: %s" % (short(v, 50), r))
        elif r != want:
            bad.append("types(%s) = %r, expected %r" % (short(v, 50), r, want))
    r = yield ctx.call("types", x=[None])
    if r != "list[None]":
        bad.append("types(x=[None]) = %r" % r)
    expect(not bad, "; ".join(bad))
    return "%d cases" % (len(cases) + 1)


@check
def check_sleep_concurrent(ctx):
    order = []
    t = time.monotonic()
    d1 = ctx.call("sleep", 0.5)
    d1.addCallback(lambda r: order.append(("sleep", r, time.monotonic() - t)))
    d2 = ctx.call("echo", "quick")
    d2.addCallback(lambda r: order.append(("echo", r, time.monotonic() - t)))
    yield defer.gatherResults([d1, d2])
    expect([o[0] for o in order] == ["echo", "sleep"], "order %r" % order)
    expect(order[0][1] == "quick", "echo answered %r" % (order[0][1],))
    expect(order[1][2] >= 0.45, "sleep(0.5) answered after %.3f s" % order[1][2])
    expect(order[0][2] < 0.45, "the quick call waited %.3f s" % order[0][2])
    yield ctx.call("sleep", seconds=0.01)
    return "echo after %.3f s, sleep after %.3f s (answer %r)" % (
        order[0][2], order[1][2], order[1][1])


@check
def check_concurrent_1000(ctx):
    t = time.monotonic()
    values = [(i, "v%d" % i, [i] * (i % 5)) for i in range(1000)]
    results = yield defer.gatherResults([ctx.call("echo", v) for v in values])
    bad = [i for i, (v, r) in enumerate(zip(values, results)) if not same(v, r)]
    expect(not bad, "%d wrong answers, first at %d: %s" % (
        len(bad), bad[0], short(results[bad[0]])) if bad else "")
    return "1000 answers in %.2f s" % (time.monotonic() - t)


@check
def check_unknown_method(ctx):
    kind, f = yield outcome(ctx.call("no_such_method_here", 1, k=2))
    expect(kind == "fail", "unknown method answered %s" % short(f))
    what = "%s: %s" % (failure_type(f), f.value)
    r = yield ctx.call("echo", "after")
    expect(r == "after", "echo after the unknown method: %s" % short(r))
    return "failed with %s; connection still usable" % what


@defer.inlineCallbacks
def with_tub(body):
    """Run body(tub) with a fresh client Tub of its own, stopped afterwards."""
    tub = Tub()
    tub.startService()
    try:
        result = yield body(tub)
    finally:
        yield tub.stopService()
    return result


@check
def check_hangup(ctx):
    @defer.inlineCallbacks
    def body(tub):
        r = yield tub.getReference(ctx.furl)
        lost = defer.Deferred()
        r.notifyOnDisconnect(lambda: lost.called or lost.callback(time.monotonic()))
        helper = Helper()
        t = time.monotonic()
        answer = yield r.callRemote("hangup", helper, 0.1)
        expect(answer is True, "hangup answered %s" % short(answer))
        timeout = sleep(5).addCallback(lambda _: None)
        first = yield defer.DeferredList([lost, timeout], fireOnOneCallback=True,
                                         consumeErrors=True)
        when = first[0]
        expect(when is not None, "notifyOnDisconnect did not fire within 5 s")
        timeout.cancel()
        # the old reference is dead; a new getReference works
        kind, f = yield outcome(r.callRemote("echo", 1))
        expect(kind == "fail", "the old reference still answers")
        r2 = yield tub.getReference(ctx.furl)
        v = yield r2.callRemote("echo", "again")
        expect(v == "again", "echo over the new connection: %s" % short(v))
        return "disconnected %.2f s after the call; new reference works" % (when - t)
    result = yield with_tub(body)
    return result


@check
def check_disconnect_mid_call(ctx):
    @defer.inlineCallbacks
    def body(tub):
        r = yield tub.getReference(ctx.furl)
        d = outcome(r.callRemote("sleep", 2))
        yield r.callRemote("echo", "delivered")   # sleep has been delivered too
        # (in a list: a Deferred returned from inlineCallbacks would be waited for)
        return [d]
    t = time.monotonic()
    pending = yield with_tub(body)
    kind, f = yield pending[0]
    took = time.monotonic() - t
    expect(took < 1.5, "the interrupted call ended after %.2f s" % took)
    expect(kind == "fail", "the interrupted call answered %s" % short(f))
    r = yield ctx.call("echo", "first client")
    expect(r == "first client", "echo from the first client: %s" % short(r))
    # and once the server has tried to answer the vanished caller
    yield sleep(2.2)
    r = yield ctx.call("echo", "later")
    expect(r == "later", "echo after the sleep ended: %s" % short(r))
    return "call failed with %s after %.2f s; server still answers" % (
        failure_type(f), took)


# -- running ------------------------------------------------------------------

@defer.inlineCallbacks
def run_checks(a):
    names = [n for n, _ in CHECKS]
    selected = CHECKS
    if a.only:
        wanted = [w.strip() for w in a.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            emit({"check": "arguments", "ok": False,
                  "detail": "unknown checks: %s" % ", ".join(unknown)})
            return 0, 1
        selected = [(n, f) for n, f in CHECKS if n in wanted]
    passed = failed = 0

    def report(name, ok, detail):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
        if len(detail) > 2000:
            detail = detail[:2000] + "...(%d chars)" % len(detail)
        emit({"check": name, "ok": ok, "detail": detail})

    tub = Tub()
    tub.startService()
    try:
        d = tub.getReference(a.furl)
        d.addTimeout(a.timeout, reactor)
        rref = yield d
    except Exception as e:
        report("connect", False, "getReference: %s: %s" % (type(e).__name__, e))
        for name, _ in selected:
            report(name, False, "not run: no connection")
        return passed, failed
    ctx = Context(a.furl, tub, rref)
    for name, fn in selected:
        note = ""
        if not ctx.rref.isConnected():
            # an earlier check lost the connection: start afresh so that
            # one failure does not fail every check after it
            try:
                d = tub.getReference(a.furl)
                d.addTimeout(a.timeout, reactor)
                ctx.rref = yield d
                ctx.counter = None
                note = " [reconnected before this check]"
            except Exception as e:
                report(name, False, "not run: reconnecting failed: %s" % e)
                continue
        d = defer.maybeDeferred(fn, ctx)
        d.addTimeout(a.timeout, reactor)
        kind, res = yield outcome(d)
        if kind == "ok":
            report(name, True, str(res) + note)
        else:
            f = res
            if f.check(CheckFailed):
                detail = str(f.value)
            elif f.check(defer.TimeoutError, defer.CancelledError):
                detail = "timed out after %s s" % a.timeout
            else:
                detail = "%s: %s" % (failure_type(f), f.value)
            report(name, False, detail + note)
        gc.collect()
    yield tub.stopService()
    return passed, failed


def main():
    p = argparse.ArgumentParser(description="exercise a kitchen-sink server")
    p.add_argument("furl", nargs="?")
    p.add_argument("--only", help="comma-separated check names")
    p.add_argument("--timeout", type=float, default=60, help="seconds per check")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    a = p.parse_args()
    if a.list:
        for name, _ in CHECKS:
            fsquiet.OUT.write(name + "\n")
        return 0
    if not a.furl:
        p.error("FURL is required")
    status = []

    def done(counts):
        passed, failed = counts
        emit({"summary": True, "passed": passed, "failed": failed})
        status.append(0 if failed == 0 and passed > 0 else 1)

    def crashed(f):
        emit({"check": "runner", "ok": False, "detail": f.getTraceback()})
        emit({"summary": True, "passed": 0, "failed": 1})
        status.append(1)

    d = run_checks(a)
    d.addCallbacks(done, crashed)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run()
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
