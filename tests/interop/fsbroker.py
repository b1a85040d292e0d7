#!/usr/bin/env python3
"""Python side of the foolscap-rs broker interop tests.

Run it with the interpreter printed by scripts/python-env.sh (a virtualenv
holding foolscap==24.9.0). Every subcommand prints JSON, one object per
line, on stdout; foolscap's and Twisted's own chatter is discarded (or sent
to stderr with FSNEGO_DEBUG=1). Servers stop when their stdin closes or
after --lifetime seconds, clients after --timeout.

  serve CERTFILE [--lifetime S]
      A Tub listening on 127.0.0.1 with a Target registered as "target":
      add(a, b), fail() raising ValueError("boom"), note(x) / notes() (a
      list of what note received), echo(*args, **kwargs) returning
      [list(args), kwargs]. First line: {"furl", "tubid"}.
  call CERTFILE FURL [--timeout S]
      A Tub that gets FURL and calls echo(<rich values>, kw="value"),
      fail(), raise_custom() and nosuch() on it, then drops the reference
      (foolscap sends decref) and waits 0.5 s. One line:
      {"echo_ok", "echo", "fail": {...}, "custom": {...}, "nosuch": {...}}.
"""

import argparse
import gc
from decimal import Decimal

from fsquiet import emit, serve, stop_when_stdin_closes  # noqa: E402  (first: quiet stdout)

from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402
from twisted.python import reflect  # noqa: E402

from foolscap.api import Referenceable, Tub  # noqa: E402


class Target(Referenceable):
    def __init__(self):
        self.seen = []

    def remote_add(self, a, b):
        return a + b

    def remote_fail(self):
        raise ValueError("boom")

    def remote_note(self, x):
        self.seen.append(x)

    def remote_notes(self):
        return list(self.seen)

    def remote_echo(self, *args, **kwargs):
        return [list(args), kwargs]


def cmd_serve(a):
    tub = Tub(certData=open(a.certfile, "rb").read())
    tub.startService()
    serve(tub, Target(), "target",
          lambda furl: emit({"furl": furl, "tubid": tub.getTubID()}))
    stop_when_stdin_closes()
    reactor.callLater(a.lifetime, reactor.stop)
    reactor.run()


def rich_args():
    shared = [10, 20]
    return [
        {"k": "v", "n": [1, 2.5, None, True, False]},
        b"bytes",
        (3, 4),
        {5},
        frozenset([6]),
        u"h\u00e9llo",
        2 ** 70,
        -5,
        -2 ** 40,
        Decimal("1.25"),
        [shared, shared],
        b"list",
    ]


def failure_info(f):
    return {
        "type": reflect.qual(f.type) if not isinstance(f.type, str) else f.type,
        "value": str(f.value),
        "parents": list(getattr(f, "parents", [])),
        "check_valueerror": f.check(ValueError) is not None,
        "check_keyerror": f.check(KeyError) is not None,
        "check_attributeerror": f.check(AttributeError) is not None,
    }


@defer.inlineCallbacks
def call_body(a, certdata):
    tub = Tub(certData=certdata)
    tub.startService()
    rref = yield tub.getReference(a.furl)
    out = {}
    args = rich_args()
    result = yield rref.callRemote("echo", *args, kw="value")
    expected = [args, {"kw": "value"}]
    out["echo_ok"] = result == expected
    rargs = result[0]
    out["echo_shared"] = rargs[10][0] is rargs[10][1]
    out["echo"] = repr(result)
    for name in ("fail", "raise_custom", "nosuch"):
        # a CopiedFailure cannot be thrown into a generator: look at it in
        # an errback
        d = rref.callRemote(name)
        d.addCallbacks(lambda _: {"ok": True}, failure_info)
        out[name] = yield d
    # the connection is still usable
    out["after"] = yield rref.callRemote("echo", 1)
    # drop the reference: foolscap sends decref(clid, count) and waits for
    # the answer
    del rref
    gc.collect()
    yield deferLater(reactor, 0.5, lambda: None)
    emit(out)
    yield tub.stopService()


def run_client(a, body):
    certdata = open(a.certfile, "rb").read()
    d = body(a, certdata)

    def failed(f):
        emit({"ok": False, "error": "%s: %s" % (f.type.__name__, f.getErrorMessage())})
    d.addErrback(failed)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.callLater(a.timeout, lambda: (emit({"ok": False, "error": "timeout"}),
                                          reactor.stop()))
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
    elif a.cmd == "call":
        run_client(a, call_body)


if __name__ == "__main__":
    main()
