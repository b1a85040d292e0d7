#!/usr/bin/env python3
"""Sends many calls over one connection, in a loop that does not wait for
answers, from Python foolscap 24.9.0: the order check of tests/call_order.rs.

Usage (with the interpreter printed by scripts/python-env.sh):

  python call_order.py FURL COUNT

Call i (0 <= i < COUNT) is `callRemote("ask", i)` when i % 5 == 4 and
`callRemoteOnly("feed", i, 4 KiB of bytes)` otherwise; all are sent at
once. Then `callRemote("done")`, whose answer (what the object saw) is
printed as one JSON line {"ok": answer} (or {"error": text}).
"""

import sys

import fsquiet  # noqa: E402  (first: quiet stdout, JSON lines)
from fsquiet import emit  # noqa: E402

from twisted.internet import defer, reactor  # noqa: E402

from foolscap.api import Tub  # noqa: E402


@defer.inlineCallbacks
def run(furl, count):
    tub = Tub()
    tub.startService()
    try:
        ref = yield tub.getReference(furl)
        asks = []
        for i in range(count):
            if i % 5 == 4:
                asks.append(ref.callRemote("ask", i))
            else:
                ref.callRemoteOnly("feed", i, b"x" * 4096)
        yield defer.gatherResults(asks)
        seen = yield ref.callRemote("done")
        emit({"ok": seen})
    except Exception as e:  # noqa: BLE001
        emit({"error": str(e)})
    finally:
        yield tub.stopService()
        reactor.stop()


def main():
    furl, count = sys.argv[1], int(sys.argv[2])
    reactor.callWhenRunning(run, furl, count)
    reactor.run()


if __name__ == "__main__":
    main()
