#!/usr/bin/env python3
"""Python side of the foolscap-rs interop tests for the banana codec.

Run it with the interpreter printed by scripts/python-env.sh (a virtualenv
holding foolscap==24.9.0). Every value is serialized and parsed by the real
foolscap machinery: a StorageBanana subclass (same Slicer/Unslicer adapters
and registries as a Broker) talking to an in-memory fake transport, with the
initial vocab table installed the way a Broker installs it. Each value gets a
fresh Banana, so OPEN numbering starts at 0 and the reference scope is that
single top-level value.

Subcommands (all take --vocab 0|1; all I/O is one JSON object per line):

  corpus     -> {"name", "hex", "repr", "deterministic", "evaluable"}
  check      <- {"name", "hex"?, "text"?}   -> {"name", "ok", "error"}
  roundtrip  <- {"id", "hex"}               -> {"id", "hex", "repr", "error"}
  decode     <- {"id", "hex"}               -> {"id", "ok", "repr", "error"}
  selftest   runs built-in sanity checks of this harness, exit status 0 = ok

Decode errors carry foolscap's own text: "BananaError(in <where>): (...)"
for protocol errors, "Violation (<where>): (...)" for violations, and
"<ExceptionType>: <message> (in <where>)" for other exceptions raised while
parsing (KeyError for an undefined VOCAB index, UnicodeDecodeError, ...).
The harness adds: "incomplete: ..." (stream ended mid-value or held no value),
"trailing data: ..." (more than one top-level value), "unresolved: ..." (a
reference that never resolved left a placeholder in the value) and
"set-vocab/add-vocab ..." (a vocab sequence instead of a value). Unlike a
Broker, any value (even a bare token) may stand at the top level.

Input lines are consumed as they arrive and answered in order; output is
written by a separate thread, so a caller may either write everything first
and read afterwards, or alternate line by line, without deadlocking.

Note: "text" values in `check` are passed to eval() with a tiny namespace.
That keeps honest mistakes out, it is not a sandbox: only feed it text
produced by our own test suite.
"""

import argparse
import json
import math
import os
import queue
import re
import struct
import sys
import threading
from decimal import Decimal

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)
sys.setrecursionlimit(20000)

# foolscap prints diagnostics on stdout in a few error paths (e.g.
# "exception in produce" when a dict's keys cannot be sorted). Our stdout
# carries JSON only, so keep the real stream for ourselves and send every
# other print to /dev/null (or to stderr with FSINTEROP_DEBUG=1). The errors
# themselves are still reported through the JSON answers.
_JSON_OUT = sys.stdout
sys.stdout = sys.stderr if os.environ.get("FSINTEROP_DEBUG") else open(os.devnull, "w")

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402

from foolscap import vocab as fs_vocab  # noqa: E402
from foolscap.slicers.set import _Placeholder  # noqa: E402
from foolscap.slicers.vocab import (  # noqa: E402
    AddToVocabularyTable, ReplaceVocabularyTable)
from foolscap.storage import StorageBanana  # noqa: E402
from foolscap.tokens import BananaError, Violation  # noqa: E402


def _log_observer(event):
    # Twisted/foolscap log output is noise for the tests; show it only when
    # asked to.
    if os.environ.get("FSINTEROP_DEBUG"):
        from twisted.logger import formatEvent
        sys.stderr.write("[twisted] %s\n" % formatEvent(event))


globalLogBeginner.beginLoggingTo([_log_observer], discardBuffer=True,
                                 redirectStandardIO=False)


# --------------------------------------------------------------------------
# Driving the real foolscap Banana
# --------------------------------------------------------------------------

class _FakeTransport:
    """Collects what the Banana writes. Not an ITCPTransport."""

    def __init__(self):
        self.chunks = []
        self.lost = False

    def write(self, data):
        self.chunks.append(bytes(data))

    def loseConnection(self, why=None):
        self.lost = True

    def getvalue(self):
        return b"".join(self.chunks)


class InteropBanana(StorageBanana):
    """StorageBanana whose error hooks record instead of raising.

    The vocab table is installed in __init__, before connectionMade, exactly
    as Broker.__init__ does it (and, like the Broker, only for a non-zero
    table index; table 0 is empty anyway).
    """

    def __init__(self, vocab_index):
        StorageBanana.__init__(self)
        if vocab_index:
            self.populateVocabTable(fs_vocab.INITIAL_VOCAB_TABLES[vocab_index])
        self.delivered = []          # (obj, ready_deferred) per top-level object
        self.violations = []         # BananaFailures given to reportViolation
        self.receive_failure = None  # Failure given to reportReceiveError
        self.error_message = None    # text foolscap would send in an ERROR token
        self.vocab_sequences = 0     # top-level set-vocab/add-vocab seen

    # receive side hooks -------------------------------------------------
    def receiveChild(self, obj, ready_deferred):
        if obj in (ReplaceVocabularyTable, AddToVocabularyTable):
            # the storage root accepts these at the top level and has already
            # applied them; they are markers, not values
            self.vocab_sequences += 1
            return
        self.delivered.append((obj, ready_deferred))

    def reportViolation(self, why):
        self.violations.append(why)
        return None  # absorbed at the top level, like a Broker does

    def reportReceiveError(self, f):
        if self.receive_failure is None:
            self.receive_failure = f

    def sendError(self, msg):
        if self.error_message is None:
            self.error_message = msg


class SerializeError(Exception):
    pass


def _describe_exception(e):
    if isinstance(e, (BananaError, Violation)):
        return str(e)  # already "BananaError(in ...): (...)" / "Violation (...): (...)"
    return "%s: %s" % (type(e).__name__, e)


def serialize(value, vocab_index):
    """Serialize one value with a fresh Banana; returns bytes or raises."""
    b = InteropBanana(vocab_index)
    t = _FakeTransport()
    b.transport = t
    b.connectionMade()
    outcome = []
    d = b.send(value)
    d.addCallbacks(lambda res: outcome.append(("ok", res)),
                   lambda f: outcome.append(("fail", f)))
    if not outcome:
        raise SerializeError("serialization did not complete synchronously")
    kind, res = outcome[0]
    if kind == "fail":
        raise SerializeError("foolscap refused to serialize: %s"
                             % _describe_exception(res.value))
    if t.lost:
        raise SerializeError("foolscap dropped the connection while serializing")
    return t.getvalue()


_PLACEHOLDER_STR = re.compile(r"^list placeholder for arg\[\d+\], rd=")


def _find_placeholder(value):
    """Return a description of a foolscap placeholder left in the decoded
    graph (a sign of a reference that never resolved), or None."""
    seen = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Deferred):
            return "unresolved Deferred"
        if isinstance(v, _Placeholder):
            return "unresolved set placeholder"
        if type(v) is str and _PLACEHOLDER_STR.match(v):
            return "unresolved list placeholder %r" % v
        if type(v) in (list, tuple, set, frozenset, dict):
            if id(v) in seen:
                continue
            seen.add(id(v))
            if type(v) is dict:
                for k, x in v.items():
                    stack.append(k)
                    stack.append(x)
            else:
                stack.extend(v)
    return None


class DecodeError(Exception):
    pass


def decode(data, vocab_index):
    """Parse one top-level value with a fresh Banana; returns the value or
    raises DecodeError with foolscap's own error text."""
    b = InteropBanana(vocab_index)
    b.transport = _FakeTransport()
    b.connectionMade()
    try:
        b.dataReceived(data)
    except Exception as e:  # should not happen: reportReceiveError records
        raise DecodeError("uncaught %s" % _describe_exception(e))
    if b.receive_failure is not None:
        e = b.receive_failure.value
        msg = _describe_exception(e)
        if not isinstance(e, BananaError):
            msg += " (in %s)" % b.describeReceive()
        raise DecodeError(msg)
    if b.violations:
        raise DecodeError(_describe_exception(b.violations[0].value))
    if b.vocab_sequences:
        raise DecodeError("set-vocab/add-vocab sequence at the top level: not "
                          "a value (a Broker discards these unprocessed)")
    if b.exploded is not None:
        raise DecodeError("exploded: %s" % b.exploded)
    if len(b.delivered) > 1:
        raise DecodeError("trailing data: %d top-level objects, expected 1"
                          % len(b.delivered))
    pending = []
    if len(b.receiveStack) > 1:
        pending.append("%d open sequence(s) at %s"
                       % (len(b.receiveStack) - 1, b.describeReceive()))
    if b.inOpen:
        pending.append("inside the index phase of an OPEN")
    if len(b.buffer):
        pending.append("%d unparsed byte(s) (partial token)" % len(b.buffer))
    if b.skipBytes:
        pending.append("%d byte(s) still to skip" % b.skipBytes)
    if b.discardCount:
        pending.append("discarding %d sequence(s)" % b.discardCount)
    if pending or not b.delivered:
        raise DecodeError("incomplete: %s" % ("; ".join(pending)
                                              or "no top-level object"))
    obj, ready = b.delivered[0]
    if ready is not None:
        raise DecodeError("top-level object delivered with a ready_deferred")
    problem = _find_placeholder(obj)
    if problem:
        raise DecodeError("unresolved: %s (foolscap would deliver a partial "
                          "object)" % problem)
    return obj


# --------------------------------------------------------------------------
# Strict comparison
# --------------------------------------------------------------------------

# The container types foolscap reference-tracks when sending (frozensets are
# not tracked: a shared frozenset goes out as two copies).
TRACKED = (list, tuple, dict, set)
SCALARS = (type(None), bool, int, float, bytes, str, Decimal)


def _short(v, limit=60):
    try:
        r = repr(v)
    except Exception as e:  # pragma: no cover
        r = "<unrepresentable %s: %s>" % (type(v).__name__, e)
    if len(r) > limit:
        r = r[:limit] + "...(%d chars)" % len(r)
    return r


def _float_bits(x):
    return struct.pack(">d", x)


def canon(v):
    """Hashable strict-equality key for a hashable value (dict key or set
    element): equal keys <=> strictly equal values."""
    t = type(v)
    if t is float:
        return ("float", _float_bits(v))
    if t is Decimal:
        return ("Decimal", str(v), v.is_signed())
    if t is tuple:
        return ("tuple", tuple(canon(e) for e in v))
    if t is frozenset:
        return ("frozenset", tuple(sorted((canon(e) for e in v), key=repr)))
    if t in (type(None), bool, int, bytes, str):
        return (t.__name__, v)
    return ("id", t.__name__, id(v))


def _scalar_mismatch(x, y):
    t = type(x)
    if t is type(None):
        return None
    if t is float:
        if _float_bits(x) != _float_bits(y):
            return "float %r (%s) != %r (%s)" % (
                x, _float_bits(x).hex(), y, _float_bits(y).hex())
        return None
    if t is Decimal:
        if str(x) != str(y) or x.is_signed() != y.is_signed():
            return "Decimal %r != %r" % (str(x), str(y))
        return None
    if t in (bytes, str):
        if x != y:
            i = 0
            n = min(len(x), len(y))
            while i < n and x[i] == y[i]:
                i += 1
            return "%s differ (len %d vs %d, first difference at index %d: %s vs %s)" % (
                t.__name__, len(x), len(y), i, _short(x[i:i + 8]), _short(y[i:i + 8]))
        return None
    # bool, int
    if x != y:
        return "%s %s != %s" % (t.__name__, _short(x), _short(y))
    return None


def strict_compare(expected, actual, identity):
    """Return None when `actual` strictly equals `expected`, else a message
    saying where and how they differ.

    identity=True additionally requires the same sharing/cycle structure:
    a tracked container met twice on one side must correspond to one and the
    same object on the other side, and vice versa. identity=False ignores
    sharing (each (expected, actual) pair is still compared only once, so
    cyclic input terminates)."""
    a2b = {}
    b2a = {}
    seen_pairs = set()
    stack = [(expected, actual, "")]
    while stack:
        x, y, path = stack.pop()
        where = path or "(root)"
        tx, ty = type(x), type(y)
        if tx is not ty:
            return "at %s: type %s != %s (expected %s, got %s)" % (
                where, tx.__name__, ty.__name__, _short(x), _short(y))
        if tx in SCALARS:
            msg = _scalar_mismatch(x, y)
            if msg:
                return "at %s: %s" % (where, msg)
            continue
        if tx not in (list, tuple, dict, set, frozenset):
            return "at %s: unsupported type %s" % (where, tx.__name__)
        if tx in TRACKED and identity:
            ix, iy = id(x), id(y)
            mx, my = a2b.get(ix), b2a.get(iy)
            if mx is None and my is None:
                a2b[ix] = iy
                b2a[iy] = ix
            elif mx == iy and my == ix:
                continue  # this pair was matched before (shared or cycle)
            elif mx is not None:
                return ("at %s: sharing differs: expected object was already "
                        "seen and matched a different object than the one "
                        "here (%s)" % (where, _short(y)))
            else:
                return ("at %s: sharing differs: this object was already "
                        "seen elsewhere but the expected value has a distinct "
                        "object here (%s)" % (where, _short(x)))
        else:
            key = (id(x), id(y))
            if key in seen_pairs:
                continue
            seen_pairs.add(key)
        if len(x) != len(y):
            return "at %s: %s length %d != %d" % (where, tx.__name__, len(x), len(y))
        if tx in (list, tuple):
            for i in range(len(x) - 1, -1, -1):
                stack.append((x[i], y[i], "%s[%d]" % (path, i)))
            continue
        # dict / set / frozenset: pair up keys/elements by strict equality
        if tx is dict:
            x_items, y_items = list(x.items()), list(y.items())
        else:
            x_items = [(e, None) for e in x]
            y_items = [(e, None) for e in y]
        pool = {}
        for item in y_items:
            pool.setdefault(canon(item[0]), []).append(item)
        pairs = []
        for item in x_items:
            cands = pool.get(canon(item[0]))
            if not cands:
                what = "key" if tx is dict else "element"
                return "at %s: %s %s missing from the actual %s" % (
                    where, what, _short(item[0]), tx.__name__)
            pairs.append((item, cands.pop()))
        for (kx, vx), (ky, vy) in reversed(pairs):
            label = _short(kx, 40)
            if tx is dict:
                stack.append((vx, vy, "%s{%s}" % (path, label)))
                stack.append((kx, ky, "%s<key %s>" % (path, label)))
            else:
                stack.append((kx, ky, "%s<elem %s>" % (path, label)))
    return None


# --------------------------------------------------------------------------
# Value properties and literals
# --------------------------------------------------------------------------

# Python's parser refuses more than 200 nested brackets/parentheses.
EVAL_DEPTH_LIMIT = 180


def analyse(value):
    """Return (deterministic, evaluable) for a corpus value."""
    has_set = False
    shared = False
    max_depth = 0
    seen = set()
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t in (set, frozenset):
            has_set = True
        if t in SCALARS:
            # Decimal('..') and float('nan') need one level of parentheses
            if t is Decimal or (t is float and not math.isfinite(v)):
                max_depth = max(max_depth, depth)
            continue
        # frozenset({...}) costs two levels
        d = depth + (1 if t is frozenset else 0)
        max_depth = max(max_depth, d)
        if t in TRACKED:
            if id(v) in seen:
                shared = True
                continue
            seen.add(id(v))
        if t is dict:
            for k, x in v.items():
                stack.append((k, d + 1))
                stack.append((x, d + 1))
        else:
            for x in v:
                stack.append((x, d + 1))
    evaluable = not shared and max_depth <= EVAL_DEPTH_LIMIT
    return (not has_set), evaluable


def py_literal(v):
    """Python source text that evaluates to `v` (tree-shaped values only)."""
    t = type(v)
    if t is float:
        if math.isnan(v):
            return "-float('nan')" if math.copysign(1.0, v) < 0 else "float('nan')"
        if math.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
        return repr(v)
    if t is Decimal:
        return "Decimal(%r)" % str(v)
    if t in (type(None), bool, int, bytes, str):
        return repr(v)
    if t is list:
        return "[" + ", ".join(py_literal(e) for e in v) + "]"
    if t is tuple:
        if len(v) == 1:
            return "(" + py_literal(v[0]) + ",)"
        return "(" + ", ".join(py_literal(e) for e in v) + ")"
    if t is dict:
        return "{" + ", ".join("%s: %s" % (py_literal(k), py_literal(x))
                               for k, x in v.items()) + "}"
    if t is set:
        if not v:
            return "set()"
        return "{" + ", ".join(py_literal(e) for e in v) + "}"
    if t is frozenset:
        if not v:
            return "frozenset()"
        return "frozenset({" + ", ".join(py_literal(e) for e in v) + "})"
    raise TypeError("no literal for %s" % t.__name__)


_EVAL_NAMESPACE = {
    "__builtins__": {},
    "Decimal": Decimal,
    "float": float,
    "int": int,
    "bytes": bytes,
    "str": str,
    "bool": bool,
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
}


def eval_text(text):
    return eval(text, dict(_EVAL_NAMESPACE))


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------

def _fresh(v):
    """Rebuild tuples so that no two tuple positions share one object.

    CPython folds equal constant tuples in one code object into a single
    object, which foolscap would then send as a `reference`. Corpus values
    meant to be trees go through this. (The empty tuple is a singleton and
    stays shared.)"""
    t = type(v)
    if t is list:
        return [_fresh(e) for e in v]
    if t is tuple:
        return tuple([_fresh(e) for e in v])
    if t is dict:
        return {_fresh(k): _fresh(x) for k, x in v.items()}
    if t is set:
        return {_fresh(e) for e in v}
    if t is frozenset:
        return frozenset(_fresh(e) for e in v)
    return v


def _nest(kind, depth, leaf):
    v = leaf
    for _ in range(depth):
        if kind == "list":
            v = [v]
        elif kind == "tuple":
            v = (v,)
        else:
            v = {"k": v}
    return v


def build_corpus():
    cases = []

    def add(name, value, fresh=True):
        cases.append((name, _fresh(value) if fresh else value))

    nan = float("nan")
    inf = float("inf")

    # --- None / booleans
    add("none", None)
    add("true", True)
    add("false", False)

    # --- integers
    ints = [
        ("int_0", 0), ("int_1", 1), ("int_127", 127), ("int_128", 128),
        ("int_300", 300), ("int_16383", 16383), ("int_16384", 16384),
        ("int_2p31m1", 2**31 - 1), ("int_2p31", 2**31), ("int_2p31p1", 2**31 + 1),
        ("int_2p32", 2**32),
        ("int_neg_1", -1), ("int_neg_128", -128),
        ("int_neg_2p31p1", -2**31 + 1), ("int_neg_2p31", -2**31),
        ("int_neg_2p31m1", -2**31 - 1),
        ("int_2p63m1", 2**63 - 1), ("int_2p63", 2**63),
        ("int_2p64m1", 2**64 - 1), ("int_2p64", 2**64),
        ("int_neg_2p63", -(2**63)), ("int_neg_2p64", -(2**64)),
        ("int_2p70", 2**70), ("int_neg_2p40", -2**40),
        ("int_10p50", 10**50), ("int_neg_10p50", -(10**50)),
        ("int_2p100000", 2**100000), ("int_neg_2p100000", -(2**100000)),
    ]
    for name, v in ints:
        add(name, v)

    # --- floats
    floats = [
        ("float_0", 0.0), ("float_neg_0", -0.0), ("float_1", 1.0),
        ("float_1_5", 1.5), ("float_neg_1_5", -1.5), ("float_0_1", 0.1),
        ("float_1e300", 1e300), ("float_neg_1e_minus300", -1e-300),
        ("float_min_subnormal", 5e-324),
        ("float_min_normal", 2.2250738585072014e-308),
        ("float_max", 1.7976931348623157e308),
        ("float_2p53", 9007199254740992.0), ("float_1e16", 1e16),
        ("float_1e22", 1e22), ("float_1e_minus7", 1e-7),
        ("float_pi", 3.141592653589793),
        ("float_inf", inf), ("float_neg_inf", -inf), ("float_nan", nan),
        ("float_neg_nan", -nan),
    ]
    for name, v in floats:
        add(name, v)

    # --- bytes
    add("bytes_empty", b"")
    add("bytes_nul", b"\x00")
    add("bytes_all_256", bytes(range(256)))
    add("bytes_high", b"\x80\xff\xfe")
    add("bytes_vocab_list", b"list")
    add("bytes_vocab_none", b"none")
    add("bytes_vocab_unicode", b"unicode")
    add("bytes_vocab_attrdict", b"attrdict")
    add("bytes_decimal_not_vocab", b"decimal")
    add("bytes_vocab_prefix", b"lis")
    add("bytes_quotes_backslashes", b"'\"\\ \\\\ '' \"\" \\x00 \r\n\t")
    add("bytes_len_127", b"a" * 127)
    add("bytes_len_128", b"b" * 128)
    add("bytes_len_16384", bytes(i % 251 for i in range(16384)))
    add("bytes_100k", bytes((i * 7 + 3) % 256 for i in range(100 * 1024)))

    # --- text
    add("str_empty", "")
    add("str_nul", "\x00")
    add("str_ascii", "hello, world")
    add("str_hello_accent", "h\u00e9llo")
    add("str_emoji_non_bmp", "\U0001f600")
    add("str_max_codepoint", "\U0010ffff")
    add("str_vocab_list", "list")
    add("str_vocab_none", "none")
    add("str_decimal_word", "decimal")
    add("str_special_chars",
        "'\"\\ quote's \"dq\" back\\slash\nnew\r\nline\ttab\x01\x07\x08\x0b\x0c"
        "\x1b\x1f\x7f DEL\x80\x85 NEL\xa0nbsp\u2028LS\u2029PS\ue000\uf8ff"
        "\U000f0000 private e\u0301 combining\u200b\u200d\ufeff\ufffd\ufffe\uffff")
    add("str_cjk", "\u65e5\u672c\u8a9e\u4e2d\u6587\ud55c\uad6d\uc5b4")
    add("str_rtl", "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627")
    add("str_long_mixed", "".join(chr(c) for c in range(32, 0x3000, 7)) * 3)

    # --- Decimal
    decimals = [
        ("dec_1_25", "1.25"), ("dec_neg_0", "-0"), ("dec_0", "0"),
        ("dec_1_250", "1.250"), ("dec_nan", "NaN"), ("dec_snan", "sNaN"),
        ("dec_neg_nan", "-NaN"), ("dec_nan_payload", "NaN123"),
        ("dec_inf", "Infinity"), ("dec_neg_inf", "-Infinity"),
        ("dec_1e3", "1E+3"), ("dec_1e_minus7", "1E-7"),
        ("dec_0_000001", "0.000001"),
        ("dec_long", "123456789012345678901234567890.123456789"),
        ("dec_neg_small", "-1E-10"), ("dec_huge_exp", "1E+1000000"),
    ]
    for name, s in decimals:
        add(name, Decimal(s))

    # --- empty and tiny containers
    add("list_empty", [])
    add("tuple_empty", ())
    add("dict_empty", {})
    add("set_empty", set())
    add("frozenset_empty", frozenset())
    add("list_one", [1])
    add("tuple_one", (1,))
    add("tuple_one_str", ("x",))
    add("list_1_2", [1, 2])
    add("tuple_3_4", (3, 4))
    add("dict_k_v", {"k": "v"})
    add("set_5", {5})
    add("frozenset_6", frozenset([6]))

    # --- containers of scalars
    scalars = [None, True, False, 0, -1, 127, 2**31, -2**31 - 1, 2**64, 1.5,
               -0.0, inf, nan, b"", b"x", b"list", "", "y", "unicode",
               Decimal("1.1"), Decimal("-Infinity")]
    add("list_all_scalars", list(scalars))
    add("tuple_all_scalars", tuple(scalars))
    add("list_bools_vs_ints", [True, 1, False, 0, 1.0, 0.0])
    add("list_of_empties", [[], (), {}, set(), frozenset(), b"", ""])
    add("list_big_ints", [2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63, -(2**63) - 1,
                          2**64 - 1, 2**64, 2**127, -(2**127), 10**40])
    add("list_float_specials", [0.0, -0.0, inf, -inf, nan, 5e-324, -5e-324,
                                1.7976931348623157e308, 2.2250738585072014e-308])
    add("list_decimals", [Decimal(s) for _, s in decimals])
    add("list_vocab_bytes", list(fs_vocab.INITIAL_VOCAB_TABLES[1]))
    add("list_vocab_strs", [w.decode("ascii") for w in fs_vocab.INITIAL_VOCAB_TABLES[1]])
    add("list_strs_growing", ["a" * i for i in range(0, 140, 7)])
    add("list_10000_ints", [((i * 37) % 1001) - 500 for i in range(10000)])
    add("list_1000_strs", ["s%d" % i for i in range(1000)])

    # --- nested mixes
    add("list_nested_mixed", [1, [2, [3, [4, []]]], (5, (6, ())), {"a": [7]},
                              {8}, frozenset([9]), None, "z", b"z"])
    add("tuple_nested_mixed", (None, (True, [False, {"k": (1, 2)}]), b"b", "s",
                               Decimal("2.50"), -7, 2**80))
    add("dict_nested_mixed", {
        "list": [1, 2, [3, (4, 5)]],
        "tuple": (None, True, "t"),
        "dict": {"inner": {"deeper": [b"bytes", "text", 1.25]}},
        "set": {1, 2, 3},
        "frozenset": frozenset(["a", "b"]),
        "decimal": Decimal("-0.001"),
        "none": None,
        "big": -(2**65),
    })
    add("list_of_containers_of_all_kinds",
        [[1, "a"], (2, b"b"), {"k": 3.5}, {4, 5}, frozenset([(6, 7)]),
         [[[]]], ((),), {"e": {}}, [set()], (frozenset(),)])
    add("tuple_of_sets", ({1, 2}, frozenset({3}), set(), {"x"}))
    add("tuple_nested_pairs", (1, (2, (3, (4, (5, None))))))
    add("list_mixed_numbers", [0, 0.0, Decimal("0"), False, -0.0, Decimal("-0"),
                               1, 1.0, Decimal("1"), True])

    # --- sets and frozensets
    add("set_ints", {1, 2, 3, -5, 2**40, -(2**70), 0})
    add("set_strs", {"a", "b", "list", "h\u00e9llo", ""})
    add("set_bytes", {b"a", b"b", b"none", b"", b"\x00\xff"})
    add("set_tuples", {(1, 2), (3, 4), ("a", b"b"), ()})
    add("set_mixed", {1, "a", b"b", 1.5, None, Decimal("2.5"), (1, "x"),
                      frozenset([2])})
    add("set_bools", {True, False})
    add("set_nan", {nan})
    add("set_neg_zero", {-0.0})
    add("set_of_frozensets", {frozenset([1]), frozenset([2, 3]), frozenset()})
    add("set_decimals", {Decimal("1.5"), Decimal("-2"), Decimal("1E+2")})
    add("frozenset_ints", frozenset([1, 2, 3, 2**31, -2**31 - 1]))
    add("frozenset_strs", frozenset(["x", "y", "unicode"]))
    add("frozenset_bytes", frozenset([b"x", b"y", b"unicode"]))
    add("frozenset_tuples", frozenset([(1,), (2, 3), ("z", (4, 5))]))
    add("frozenset_of_frozensets", frozenset([frozenset([1, 2]),
                                              frozenset([frozenset([3])])]))
    add("frozenset_in_set", {frozenset([1, 2]), frozenset(["a"]), 3})
    add("set_in_list_in_tuple", ([{1, 2}], [frozenset([3])]))
    add("set_1000_ints", set(range(-500, 500)))

    # --- dicts
    add("dict_str_keys", {"b": 2, "a": 1, "c": 3, "": 0, "h\u00e9": 4, "list": 5})
    add("dict_bytes_keys", {b"b": 2, b"a": 1, b"": 0, b"\xff": 3, b"none": 4})
    add("dict_int_keys", {3: "three", 1: "one", -1: "minus one", 0: "zero",
                          2**31: "2^31", -2**31 - 1: "-2^31-1", 2**100: "big",
                          -(2**64): "-2^64"})
    add("dict_float_keys", {1.5: "a", -0.0: "negzero", 1e300: "big",
                            inf: "inf", -inf: "-inf", 5e-324: "tiny"})
    add("dict_nan_key", {nan: "nan"})
    add("dict_tuple_keys", {(1, 2): "a", (1, 3): "b", (0, "z"): "c",
                            (): "empty", (1, 2, 3): "d"})
    add("dict_frozenset_keys", {frozenset([1]): "a", frozenset([2, 3]): "b",
                                frozenset(): "c"})
    add("dict_none_key", {None: "none"})
    add("dict_bool_keys", {True: "t", False: "f"})
    add("dict_decimal_keys", {Decimal("1.5"): 1, Decimal("-2"): 2,
                              Decimal("1E+3"): 3})
    add("dict_mixed_numeric_keys", {1: "int", 2.5: "float", Decimal("3.5"): "dec",
                                    -7: "neg", 2**70: "big", False: "false"})
    add("dict_values_all_types", {
        "none": None, "true": True, "false": False, "int": 5, "neg": -5,
        "big": 2**70, "bigneg": -(2**70), "float": 0.5, "nan": nan,
        "bytes": b"b", "vocab": b"dict", "str": "s", "dec": Decimal("9.99"),
        "list": [1], "tuple": (2,), "dict": {"x": 1}, "set": {3},
        "frozenset": frozenset([4]), "empty_list": [], "empty_dict": {},
    })
    add("dict_vocab_word_keys", {"list": 1, "dict": 2, "none": 3, "tuple": 4})
    add("dict_vocab_bytes_keys", {b"list": 1, b"dict": 2, b"none": 3})
    add("dict_nested_dicts", {"a": {"b": {"c": {"d": {}}}}, "e": {1: {2: {3: None}}}})
    add("dict_with_set_values", {"s": {1, 2}, "f": frozenset([b"x"]), "e": set()})
    add("dict_1000_int_keys", {i * 3 - 1500: i for i in range(1000)})
    add("dict_insertion_unsorted", {"zz": 1, "aa": 2, "mm": 3, "AA": 4, "_": 5})

    # --- deep nesting
    add("list_deep_100", _nest("list", 100, 1))
    add("list_deep_500", _nest("list", 500, None))
    add("tuple_deep_500", _nest("tuple", 500, "leaf"))
    add("dict_deep_500", _nest("dict", 500, b"leaf"))
    add("dict_deep_60", _nest("dict", 60, 0))
    add("mixed_deep_300", _mixed_deep(300))

    # --- shared sub-objects (built without _fresh so sharing survives)
    s = [10, 20]
    add("shared_list_twice", [s, s], fresh=False)
    d = {"k": "v"}
    add("shared_dict", {"a": d, "b": d, "c": [d]}, fresh=False)
    t = tuple([1, "two"])
    add("shared_tuple", [t, t, (t,)], fresh=False)
    st = {1, 2}
    add("shared_set", [st, (st,), {"s": st}], fresh=False)
    s2 = [1, 2]
    add("shared_list_in_dict_and_tuple", {"x": s2, "y": (s2, 3)}, fresh=False)
    t2 = tuple([1, 2])
    add("shared_tuple_key_and_value", {t2: t2}, fresh=False)
    fs = frozenset([1, 2])
    add("shared_frozenset", [fs, fs, {"f": fs}], fresh=False)
    add("shared_empty_tuple", [(), ()], fresh=False)
    s3 = [1]
    add("shared_three_ways", [[s3], [s3], (s3,), {"k": s3}], fresh=False)
    tt = tuple([1, 2])
    add("shared_tuple_in_set_and_list", [{tt, tuple([3, 4])}, tt], fresh=False)
    inner = ["inner"]
    mid = (inner, inner)
    add("shared_nested_tuple_pair", [mid, inner, mid], fresh=False)

    # --- cycles
    l1 = []
    l1.append(l1)
    add("cycle_list_self", l1, fresh=False)
    d1 = {}
    d1["self"] = d1
    add("cycle_dict_self", d1, fresh=False)
    l2 = [1]
    t3 = (l2,)
    l2.append(t3)
    add("cycle_tuple_via_list", l2, fresh=False)
    l3 = [1]
    t4 = (l3,)
    l3.append(t4)
    add("cycle_tuple_via_list_top_tuple", t4, fresh=False)
    l4 = []
    d2 = {"l": l4}
    l4.append(d2)
    add("cycle_list_dict_list", l4, fresh=False)
    d3 = {}
    t5 = (d3, 1)
    d3["t"] = t5
    add("cycle_tuple_dict_top_tuple", t5, fresh=False)
    a = []
    b = [a]
    a.append(b)
    add("cycle_two_lists", a, fresh=False)
    root = []
    cur = root
    for _ in range(50):
        n = []
        cur.append(n)
        cur = n
    cur.append(root)
    add("cycle_long_50", root, fresh=False)
    lx = [0]
    lx.append([lx, (lx, {"back": lx})])
    add("cycle_multi_backrefs", lx, fresh=False)
    ts = tuple([5, 6])
    sset = {ts, tuple([7, 8])}
    lc = [sset, ts]
    lc.append(lc)
    add("cycle_set_of_tuples_shared", lc, fresh=False)
    dd = {}
    dd["a"] = [dd, (dd,)]
    add("cycle_dict_list_tuple", dd, fresh=False)

    # --- realistic
    add("tahoe_announcement", {
        "anonymous-storage-FURL":
            "pb://vjtzkbhvhyyfzzzzzzzzzzzzzzzzzzzz@tcp:example.org:44801/"
            "fgx2tgnkdzqkoiqyh5kgmh2ybyd6ygsi",
        "permutation-seed-base32": "6okq4fhhyo4v5zf6lfe2a2kkuhgb7ohc",
        "nickname": "storage node \u2603",
        "my-version": "tahoe-lafs/1.19.0",
        "oldest-supported": "1.0",
        "service-name": "storage",
        "seqnum": 1700000000,
        "nonce": "2f6a5b8e7c",
        "anonymous-storage-FURLs": ["pb://a@tcp:h1:1/x", "pb://b@tcp:h2:2/y"],
        "storage-options": [
            {"name": "privatestorageio-zkapauthz-v2",
             "ristretto-issuer-root-url": "https://issuer.example/",
             "storage-server-FURL": "pb://c@tcp:h3:3/z",
             "pass-value": 1000000},
        ],
        "app-versions": {},
        "versions": {
            b"http://allmydata.org/tahoe/protocols/storage/v1": {
                b"maximum-immutable-share-size": 2**64 - 1,
                b"maximum-mutable-share-size": 69105 * 1000 * 1000 * 1000 * 1000,
                b"available-space": 123456789012,
                b"tolerates-immutable-read-overrun": True,
                b"delete-mutable-shares-with-zero-length-writev": True,
                b"fills-holes-with-zero-bytes": True,
                b"prevents-read-past-end-of-share-data": True,
            },
            b"application-version": b"tahoe-lafs/1.19.0",
        },
    })
    add("rpc_like_args", ((1, "two", b"three"), {"kw": [None, 4.5], "flag": False}))

    names = [n for n, _ in cases]
    dupes = sorted(n for n in set(names) if names.count(n) > 1)
    if dupes:
        raise AssertionError("duplicate corpus names: %s" % dupes)
    return cases


def _mixed_deep(depth):
    v = 0
    for i in range(depth):
        k = i % 4
        if k == 0:
            v = [v, i]
        elif k == 1:
            v = (i, v)
        elif k == 2:
            v = {"d%d" % i: v}
        else:
            v = [v]
    return v


_CORPUS = None


def corpus_dict():
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = dict(build_corpus())
    return _CORPUS


# --------------------------------------------------------------------------
# JSON-lines plumbing
# --------------------------------------------------------------------------

class _Writer:
    """Writes JSON lines from a background thread so that reading stdin never
    waits for the consumer of stdout."""

    def __init__(self, stream):
        self._stream = stream
        self._q = queue.SimpleQueue()
        self._failed = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        out = self._stream.buffer if hasattr(self._stream, "buffer") else None
        while True:
            item = self._q.get()
            if item is None:
                break
            if self._failed:
                continue
            try:
                data = item.encode("ascii")
                if out is not None:
                    out.write(data)
                else:
                    self._stream.write(item)
                if self._q.empty():
                    (out or self._stream).flush()
            except Exception as e:  # e.g. BrokenPipeError
                self._failed = e

    def emit(self, obj):
        self._q.put(json.dumps(obj) + "\n")

    def close(self):
        self._q.put(None)
        self._thread.join()
        if self._failed:
            raise self._failed


def _input_lines():
    for raw in sys.stdin.buffer:
        if raw.strip():
            yield raw


def _parse_line(raw):
    obj = json.loads(raw)
    if not isinstance(obj, dict):
        raise ValueError("input line is not a JSON object")
    return obj


def _hex_arg(obj):
    h = obj.get("hex")
    if not isinstance(h, str):
        raise ValueError("missing or non-string 'hex'")
    return bytes.fromhex(h)


# --------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------

def cmd_corpus(args, out):
    rows = []
    failures = []
    for name, value in build_corpus():
        try:
            data = serialize(value, args.vocab)
        except SerializeError as e:
            failures.append("%s: %s" % (name, e))
            continue
        deterministic, evaluable = analyse(value)
        rows.append({"name": name, "hex": data.hex(), "repr": repr(value),
                     "deterministic": deterministic, "evaluable": evaluable})
    if failures:
        sys.stderr.write("fsinterop corpus: foolscap could not serialize %d "
                         "case(s):\n  %s\n" % (len(failures), "\n  ".join(failures)))
        return 1
    for row in rows:
        out.emit(row)
    return 0


def _check_one(obj, vocab_index):
    name = obj.get("name")
    corpus = corpus_dict()
    if not isinstance(name, str) or name not in corpus:
        return name, "unknown corpus case %r" % (name,)
    expected = corpus[name]
    if "hex" not in obj and "text" not in obj:
        return name, "input has neither 'hex' nor 'text'"
    errors = []
    if "hex" in obj:
        try:
            actual = decode(_hex_arg(obj), vocab_index)
        except DecodeError as e:
            errors.append("hex: python failed to decode: %s" % e)
        except ValueError as e:
            errors.append("hex: bad input: %s" % e)
        else:
            msg = strict_compare(expected, actual, identity=True)
            if msg:
                errors.append("hex: %s" % msg)
    if "text" in obj:
        text = obj["text"]
        if not isinstance(text, str):
            errors.append("text: not a string")
        else:
            try:
                actual = eval_text(text)
            except Exception as e:
                errors.append("text: eval failed: %s: %s" % (type(e).__name__, e))
            else:
                msg = strict_compare(expected, actual, identity=False)
                if msg:
                    errors.append("text: %s" % msg)
    return name, ("; ".join(errors) if errors else None)


def cmd_check(args, out):
    for raw in _input_lines():
        try:
            obj = _parse_line(raw)
        except ValueError as e:
            out.emit({"name": None, "ok": False, "error": "bad input line: %s" % e})
            continue
        try:
            name, err = _check_one(obj, args.vocab)
        except Exception as e:  # a harness bug must not kill the stream
            name, err = obj.get("name"), "internal error: %s: %s" % (type(e).__name__, e)
        out.emit({"name": name, "ok": err is None, "error": err})
    return 0


def _decode_line(raw, vocab_index):
    """Returns (id, value, error) with value only meaningful if error is None."""
    try:
        obj = _parse_line(raw)
    except ValueError as e:
        return None, None, "bad input line: %s" % e
    ident = obj.get("id")
    try:
        data = _hex_arg(obj)
    except ValueError as e:
        return ident, None, "bad input: %s" % e
    try:
        return ident, decode(data, vocab_index), None
    except DecodeError as e:
        return ident, None, str(e)


def cmd_roundtrip(args, out):
    for raw in _input_lines():
        ident, value, err = _decode_line(raw, args.vocab)
        row = {"id": ident, "hex": None, "repr": None, "error": err}
        if err is None:
            row["repr"] = repr(value)
            try:
                row["hex"] = serialize(value, args.vocab).hex()
            except SerializeError as e:
                row["error"] = "re-serialize: %s" % e
        out.emit(row)
    return 0


def cmd_decode(args, out):
    for raw in _input_lines():
        ident, value, err = _decode_line(raw, args.vocab)
        out.emit({"id": ident, "ok": err is None,
                  "repr": repr(value) if err is None else None, "error": err})
    return 0


# Malformed streams and what foolscap must say about them:
# (label, vocab table, hex, substring expected in the error)
_MALFORMED = [
    ("undefined VOCAB index", 1, "0088" "1e87" "0089", "KeyError"),
    ("undefined VOCAB index (table 0)", 0, "0088" "0087" "0089", "KeyError"),
    ("CLOSE mismatch", 1, "0088" "0487" "0181" "0189", "lost sync"),
    ("none with a body token", 1, "0088" "0087" "0181" "0089",
     "NoneUnslicer does not accept any tokens"),
    ("invalid UTF-8 in unicode", 1, "0088" "0887" "0282c328" "0089",
     "UnicodeDecodeError"),
    ("truncated: missing CLOSE", 1, "0088" "0487" "0181" "0281", "incomplete"),
    ("truncated: partial STRING", 1, "0582" "6162", "incomplete"),
    ("truncated: partial FLOAT", 1, "84" "3ff8", "incomplete"),
    ("truncated: header only", 1, "0102", "incomplete"),
    ("empty stream", 1, "", "incomplete"),
    ("two top-level objects", 1, "0181" "0281", "trailing data"),
    ("unknown open type", 0, "0088" "0382" "666f6f" "0089", "unknown"),
    ("old LIST token", 1, "0080", "oldbanana"),
    ("invalid type byte", 1, "008b", "Invalid Type Byte"),
    ("65 header digits", 1, "01" * 65 + "81", "token prefix is limited"),
    ("boolean with STRING", 1, "0088" "0187" "0182" "61" "0089",
     "BooleanUnslicer only accepts an INT"),
    ("duplicate dict key", 1, "0088" "0387" "0181" "0281" "0181" "0381" "0089",
     "duplicate key"),
    ("dangling reference", 1, "0088" "0487" "0188" "0287" "0581" "0189" "0089",
     "dangling reference"),
    ("unhashable dict key", 1, "0088" "0387" "0188" "0487" "0189" "0181" "0089",
     "unhashable key"),
    ("top-level set-vocab", 1, "0088" "0987" "0081" "0382666f6f" "0089", "set-vocab"),
    ("ABORT inside a list", 1, "0088" "0487" "0181" "008a" "0089", "ABORT received"),
    ("bad Decimal text", 1, "0088" "0782646563696d616c" "03827879" "79" "0089",
     "InvalidOperation"),
    ("tuple cycle without a list", 1,
     "0088" "0487" "0188" "0587" "0288" "0587" "0388" "0287" "0181" "0389"
     "0289" "0189" "0089", "unresolved"),
]

_WELL_FORMED = [
    # (label, vocab table, hex, expected value)
    ("[1, 2] table 1", 1, "00880487018102810089", [1, 2]),
    ("None table 1", 1, "0088008700" "89", None),
    ("None table 0", 0, "008804826e6f6e650089", None),
    ("non-minimal header digits", 1, "0100000081", 1),
    ("PING inside a list", 1, "0088" "0487" "8e" "0181" "0089", [1]),
    ("b'list' as VOCAB", 1, "0487", b"list"),
]


def cmd_selftest(args, out):
    problems = []
    checked = 0
    corpus = build_corpus()
    for vocab_index in (0, 1):
        for name, value in corpus:
            checked += 1
            try:
                data = serialize(value, vocab_index)
                back = decode(data, vocab_index)
            except (SerializeError, DecodeError) as e:
                problems.append("vocab %d %s: %s" % (vocab_index, name, e))
                continue
            msg = strict_compare(value, back, identity=True)
            if msg:
                problems.append("vocab %d %s: roundtrip: %s" % (vocab_index, name, msg))
            det, evaluable = analyse(value)
            if det and serialize(back, vocab_index) != data:
                problems.append("vocab %d %s: re-serialization differs" % (vocab_index, name))
            if evaluable and vocab_index == 0:
                try:
                    msg = strict_compare(value, eval_text(py_literal(value)), identity=False)
                except Exception as e:
                    msg = "%s: %s" % (type(e).__name__, e)
                if msg:
                    problems.append("%s: literal: %s" % (name, msg))
    for label, vocab_index, h, want in _MALFORMED:
        checked += 1
        try:
            v = decode(bytes.fromhex(h), vocab_index)
            problems.append("malformed %r decoded as %r" % (label, v))
        except DecodeError as e:
            if want not in str(e):
                problems.append("malformed %r: error %r lacks %r" % (label, str(e), want))
    for label, vocab_index, h, want in _WELL_FORMED:
        checked += 1
        try:
            v = decode(bytes.fromhex(h), vocab_index)
            msg = strict_compare(want, v, identity=True)
            if msg:
                problems.append("%s: %s" % (label, msg))
        except DecodeError as e:
            problems.append("%s: %s" % (label, e))
    # the strict comparison itself must tell these apart
    s = [10, 20]
    negatives = [
        ("bool vs int", True, 1), ("int vs bool", 0, False),
        ("-0.0 vs 0.0", -0.0, 0.0), ("tuple vs list", (1,), [1]),
        ("set vs frozenset", {1}, frozenset([1])), ("bytes vs str", b"a", "a"),
        ("Decimal exponent", Decimal("1.0"), Decimal("1.00")),
        ("Decimal -0", Decimal("0"), Decimal("-0")),
        ("nan sign", float("nan"), -float("nan")),
        ("dict key type", {1: 1}, {True: 1}), ("set elem type", {1.0}, {1}),
        ("sharing", [s, s], [[10, 20], [10, 20]]),
        ("sharing reversed", [[10, 20], [10, 20]], [s, s]),
    ]
    for label, a, b in negatives:
        checked += 1
        if strict_compare(a, b, identity=True) is None:
            problems.append("strict_compare accepted %s" % label)
    l1 = []
    l1.append(l1)
    l2 = []
    l2.append([l2])
    checked += 1
    if strict_compare(l1, l2, identity=True) is None:
        problems.append("strict_compare accepted different cycles")
    checked += 1
    if strict_compare(float("nan"), float("nan"), identity=True) is not None:
        problems.append("strict_compare rejected nan == nan")
    for p in problems:
        sys.stderr.write("selftest: %s\n" % p)
    sys.stderr.write("selftest: %d checks, %d problem(s)\n" % (checked, len(problems)))
    print("%d passed, %d failed" % (checked - len(problems), len(problems)),
          file=_JSON_OUT)
    return 1 if problems else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("corpus", "check", "roundtrip", "decode", "selftest"):
        p = sub.add_parser(name)
        p.add_argument("--vocab", type=int, choices=sorted(fs_vocab.INITIAL_VOCAB_TABLES),
                       required=name != "selftest", default=1,
                       help="initial vocab table index (0 = empty, 1 = foolscap's table 1)")
    saved, sys.stdout = sys.stdout, _JSON_OUT  # let --help reach the terminal
    try:
        args = parser.parse_args(argv)
    finally:
        sys.stdout = saved
    if args.command == "selftest":
        return cmd_selftest(args, None)
    handler = {"corpus": cmd_corpus, "check": cmd_check,
               "roundtrip": cmd_roundtrip, "decode": cmd_decode}[args.command]
    out = _Writer(_JSON_OUT)
    try:
        rc = handler(args, out)
    finally:
        out.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
