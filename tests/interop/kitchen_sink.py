#!/usr/bin/env python3
"""The kitchen-sink server of issue 4, in Python foolscap (24.9.0).

It is the Python twin of the Rust example `kitchen_sink`: same command line,
same methods, same answers, so the interop tests can run one set of checks
(kitchen_check.py, or the Rust client) against either server.

Usage (with the interpreter printed by scripts/python-env.sh):

  python kitchen_sink.py FURLFILE [--port N] [--name SWISSNUM]
                         [--certfile PEM] [--max-seconds S] [--listen HOST]
                         [--no-tracebacks]

Listens on --listen HOST (default 127.0.0.1; an IPv6 address such as ::1,
with or without brackets, puts tcp:[::1]:PORT into the FURL) at --port (0,
the default, picks a free port), registers one KitchenSink under SWISSNUM
("kitchen-sink" by default) and writes its FURL to FURLFILE atomically (a
temporary file renamed into place). With --certfile, an existing PEM file is
used as the Tub's identity; a missing one is created there. Exits on
SIGTERM/SIGINT or after --max-seconds (default 3600).

foolscap's and Twisted's own chatter is discarded (or sent to stderr with
FSNEGO_DEBUG=1); nothing is printed on stdout.
"""

import argparse
import signal
import sys
from decimal import Decimal

# first: quiet stdout and Twisted's log (shared with the other helpers)
from fsquiet import serve, write_atomically  # noqa: E402

from twisted.internet import reactor  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from foolscap.api import Copyable, Referenceable, RemoteCopy, Tub  # noqa: E402
from foolscap.ipb import IRemoteReference  # noqa: E402
from foolscap.api import ListOf, RemoteInterface  # noqa: E402
from foolscap.schema import ByteStringConstraint  # noqa: E402
from zope.interface import implementer  # noqa: E402
from foolscap.referenceable import RemoteReference  # noqa: E402

# The interpreter's default limit of 4300 digits for int <-> str stays in
# force: "%d" of a bigger number in an error message raises ValueError
# (the Rust example does the same, so neither spends quadratic time
# printing a number of millions of digits).

MAX_BIG = 256 * 1024 * 1024   # big(n) refuses n > 256 MiB
MAX_POW2 = 100000             # pow2(n) refuses n > 100000
MAX_SLEEP = 60.0              # sleep(seconds) is capped at 60 s
MAX_NOTES = 100               # notes() keeps the last 100 notes


class Point(Copyable, RemoteCopy):
    """A copyable of type "kitchen-sink.Point" with state {"x": x, "y": y}.

    Copyable makes it sendable; RemoteCopy (whose metaclass registers
    `copytype`) makes a received Point decode to this class, so a Point that
    arrives can be sent back unchanged.
    """
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


class Counter(Referenceable):
    """What make_counter(start) returns."""

    def __init__(self, start=0):
        self.value = start

    def remote_increment(self, by=1):
        self.value += by
        return self.value

    def remote_get(self):
        return self.value


class RIKitchenSinkLimited(RemoteInterface):
    __remote_name__ = "RIKitchenSinkLimited.foolscap-rs.example"

    def put_bytes(data=ByteStringConstraint(maxLength=65536)):
        return int

    def put_list(items=ListOf(int, maxLength=100)):
        return int


@implementer(RIKitchenSinkLimited)
class Limited(Referenceable):
    """What limited() returns: its calls are checked by its interface."""

    def remote_put_bytes(self, data):
        return len(data)

    def remote_put_list(self, items):
        return len(items)


def describe_type(x, ancestors=()):
    """types(x): a string describing the decoded type tree of x.

    `ancestors` holds the ids of the containers above x; a container that is
    its own ancestor is described as "cycle". A container shared without a
    cycle is simply described again at each place it appears.
    """
    if x is None:
        return "None"
    # bool before int: True is an int too
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float"
    if isinstance(x, Decimal):
        return "Decimal"
    if isinstance(x, bytes):
        return "bytes"
    if isinstance(x, str):
        return "str"
    if isinstance(x, RemoteReference):
        return "rref"
    if isinstance(x, Referenceable):
        # one of our own objects, come home
        return "local:%s" % type(x).__name__
    if isinstance(x, Copyable):
        return "copyable:%s" % x.getTypeToCopy()
    if isinstance(x, (list, tuple, set, frozenset, dict)):
        if id(x) in ancestors:
            return "cycle"
        inner = ancestors + (id(x),)
        if isinstance(x, dict):
            items = sorted("%s:%s" % (describe_type(k, inner), describe_type(v, inner))
                           for k, v in x.items())
            return "dict[%s]" % ",".join(items)
        parts = [describe_type(e, inner) for e in x]
        if isinstance(x, (set, frozenset)):
            parts.sort()
        # (subclasses of the builtin containers are named after the builtin)
        for klass in (frozenset, set, tuple, list):
            if isinstance(x, klass):
                name = klass.__name__
                break
        return "%s[%s]" % (name, ",".join(parts))
    # anything else a peer managed to send (should not happen)
    return "other:%s" % type(x).__name__


class KitchenSink(Referenceable):
    """The object registered under the swissnum. Every method is also callable
    with keyword arguments (foolscap passes them through)."""

    def __init__(self):
        self.calls = 0
        self.notes = []
        self.held = None

    def doRemoteCall(self, methodname, args, kwargs):
        # count_calls() counts every call delivered to this object, itself
        # included (and calls of unknown methods, which then fail)
        self.calls += 1
        return Referenceable.doRemoteCall(self, methodname, args, kwargs)

    # -- values --------------------------------------------------------------

    def remote_echo(self, x):
        return x

    def remote_echo_args(self, *args, **kwargs):
        return [list(args), dict(kwargs)]

    def remote_add(self, a, b):
        return a + b

    def remote_length(self, x):
        return len(x)

    def remote_big(self, n):
        if n > MAX_BIG:
            raise ValueError("big(%d): n must be at most %d" % (n, MAX_BIG))
        return b"x" * n

    def remote_pow2(self, n):
        if n > MAX_POW2:
            raise ValueError("pow2(%d): n must be at most %d" % (n, MAX_POW2))
        if n < 0:
            raise ValueError("pow2(%d): n must not be negative" % n)
        return 2 ** n

    def remote_point(self, x, y):
        return Point(x, y)

    def remote_types(self, x):
        return describe_type(x)

    # -- failures ------------------------------------------------------------

    def remote_fail(self, msg):
        raise ValueError(msg)

    def remote_divzero(self):
        return 1 / 0

    def remote_fail_later(self, msg, seconds=0.05):
        def fail():
            raise KeyError(msg)
        return deferLater(reactor, seconds, fail)

    # -- references ----------------------------------------------------------

    def remote_make_counter(self, start=0):
        return Counter(start)

    def remote_get_self(self):
        return self

    def remote_limited(self):
        return Limited()

    def remote_call_back(self, ref, method, *args):
        # the answer (or failure) of the call-back is our answer; one of our
        # own objects come home is adapted to a local reference (anything
        # else that is no reference stays as it is, and fails as it did)
        return IRemoteReference(ref, ref).callRemote(method, *args)

    def remote_call_back_only(self, ref, method, *args):
        IRemoteReference(ref, ref).callRemoteOnly(method, *args)
        return None

    def remote_is_same(self, a, b):
        return a is b

    def remote_hold(self, x):
        self.held = x
        return None

    def remote_is_held(self, x):
        return x is self.held

    # -- state and timing ----------------------------------------------------

    def remote_count_calls(self):
        return self.calls

    def remote_note(self, x):
        self.notes.append(x)
        del self.notes[:-MAX_NOTES]
        return None

    def remote_notes(self):
        return list(self.notes)

    def remote_log(self, msg):
        from foolscap.logging import log
        log.msg(msg, facility="kitchen-sink", level=log.OPERATIONAL)
        return None

    def remote_sleep(self, seconds):
        seconds = max(0.0, min(float(seconds), MAX_SLEEP))
        # deferLater: the reactor keeps serving other calls meanwhile
        return deferLater(reactor, seconds, lambda: None)

    def remote_hangup(self, ref, seconds=0.1):
        # drop the connection over which ref (one of the caller's objects)
        # arrived, after answering
        broker = ref.tracker.broker

        def drop():
            if broker.transport is not None:
                broker.transport.loseConnection()
        reactor.callLater(seconds, drop)
        return True


def main():
    p = argparse.ArgumentParser(description="Python foolscap kitchen-sink server")
    p.add_argument("furlfile")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--name", default="kitchen-sink")
    p.add_argument("--certfile")
    p.add_argument("--max-seconds", type=float, default=3600)
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--no-tracebacks", action="store_true",
                   help="Tub.unsafeTracebacks = False: errors say 'Traceback unavailable'")
    p.add_argument("--logport-furlfile",
                   help="publish the logport; its FURL is written to this file")
    a = p.parse_args()
    host = a.listen
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]

    # Tub(certFile=...) loads the PEM if it exists, else creates it there
    tub = Tub(certFile=a.certfile) if a.certfile else Tub()
    if a.no_tracebacks:
        tub.unsafeTracebacks = False
    if a.logport_furlfile:
        tub.setOption("logport-furlfile", a.logport_furlfile)
    tub.startService()
    serve(tub, KitchenSink(), a.name,
          lambda furl: write_atomically(a.furlfile, furl + "\n"), port=a.port,
          host=host)

    def stop(*_):
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reactor.callLater(a.max_seconds, reactor.stop)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
