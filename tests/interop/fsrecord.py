#!/usr/bin/env python3
"""The Python side of the recorded transcripts (scripts/record-transcripts.sh,
tests/replay.rs): one fixed scenario, in both roles.

  python fsrecord.py serve     # prints {"furl": ...}; serves until stdin closes
  python fsrecord.py call FURL # runs the scenario against FURL, prints results

The scenario: getReference, add(1, 2), echo(rich values, kw='value'),
fail('boom') (a ValueError), call_back(observer, 'ping') (the server calls
observer.event('ping') and answers with its result), then disconnect.
The served object is registered under the swissnum "recorded-target".
"""

import re
import sys
from decimal import Decimal

from fsquiet import emit, serve, stop_when_stdin_closes  # noqa: E402

from twisted.internet import defer, reactor  # noqa: E402

from foolscap import call as fscall  # noqa: E402
from foolscap.api import Referenceable, Tub  # noqa: E402


def _scrub_tracebacks():
    """Copied Failures carry tracebacks with file paths; keep only the file
    names, so the transcripts hold no machine paths."""
    cls = fscall.FailureSlicer
    original = cls.getStateToCopy

    def getStateToCopy(self, obj, broker):
        state = original(self, obj, broker)
        tb = state.get("traceback")
        if isinstance(tb, bytes):
            state["traceback"] = re.sub(rb'File "[^"]*/', b'File "<path>/', tb)
        return state
    cls.getStateToCopy = getStateToCopy


_scrub_tracebacks()

NAME = "recorded-target"


class Target(Referenceable):
    def remote_add(self, a, b):
        return a + b

    def remote_echo(self, *args, **kwargs):
        return [list(args), kwargs]

    def remote_fail(self, msg):
        raise ValueError(msg)

    def remote_call_back(self, observer, x):
        return observer.callRemote("event", x)


class Observer(Referenceable):
    def remote_event(self, x):
        return "got " + x


def rich_args():
    shared = [10, 20]
    cyclic = []
    cyclic.append(cyclic)
    return [[1, 2], (3, 4), {"k": "v"}, {5}, frozenset([6]), "h\u00e9llo",
            b"bytes", True, False, None, 1.5, 2**70, -5, -2**40,
            Decimal("1.25"), [shared, shared], cyclic, b"list"]


@defer.inlineCallbacks
def scenario(tub, furl):
    ref = yield tub.getReference(furl)
    out = {}
    out["add"] = yield ref.callRemote("add", 1, 2)
    echoed = yield ref.callRemote("echo", *rich_args(), kw="value")
    out["echo_len"] = len(echoed[0])
    # a CopiedFailure cannot be re-raised inside inlineCallbacks
    out["fail"] = yield ref.callRemote("fail", "boom").addCallbacks(
        lambda _: "no failure", lambda f: str(f.value))
    out["call_back"] = yield ref.callRemote("call_back", Observer(), "ping")
    emit(out)
    yield tub.stopService()


def main():
    tub = Tub()
    tub.startService()
    if sys.argv[1] == "serve":
        serve(tub, Target(), NAME, lambda furl: emit({"furl": furl}))
        stop_when_stdin_closes()
    else:
        def run():
            d = scenario(tub, sys.argv[2])
            d.addErrback(lambda f: emit({"error": str(f.value)}))
            d.addBoth(lambda _: reactor.stop())
        reactor.callWhenRunning(run)
        reactor.callLater(60, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main()
