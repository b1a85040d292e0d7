"""A Python foolscap node that reports to log gatherers (tests/interop_gatherers.rs).

    gatherer_node.py --gatherer FURL [--gatherer FURL ...] [--logdir DIR] [--certfile PEM]

Sets the Tub option log-gatherer-furl, listens on 127.0.0.1, and then
obeys one command per stdin line, answering each with one JSON line on
stdout:

    msg TEXT       log.msg(TEXT) at level 20            -> {"num": N}
    incident TEXT  log.msg(TEXT, level=WEIRD): starts an incident in
                   --logdir (its file is complete some seconds later)  -> {"num": N}
    shapes         one event of each value shape (tuple, bytes, big int,
                   float, None, bool, nested dict, unicode)           -> {"num": N}
    flood N        N events of about 1 KB, at most 2000 at a time in the
                   publisher's queue (Python drops the newest past that)
                                                                   -> {"num": last}
    subscribers    how many incident subscriptions the node serves -> {"num": N}
    quit           stops

On start it prints {"tubid": ..., "furl": ...} once the location is set.
"""

import argparse
import sys
import threading

from fsquiet import emit, serve  # noqa: E402

from twisted.internet import reactor  # noqa: E402

from foolscap.api import Referenceable, Tub  # noqa: E402
from foolscap.logging import log  # noqa: E402


class Nothing(Referenceable):
    pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gatherer", action="append", default=[])
    p.add_argument("--logdir")
    p.add_argument("--certfile")
    a = p.parse_args()
    if a.logdir:
        log.setLogDir(a.logdir)
    tub = Tub(certFile=a.certfile) if a.certfile else Tub()
    if a.gatherer:
        tub.setOption("log-gatherer-furl", a.gatherer)
    tub.startService()
    serve(tub, Nothing(), "nothing",
          lambda furl: emit({"tubid": tub.getTubID(), "furl": furl}))

    def command(line):
        word, _, rest = line.strip().partition(" ")
        if word == "msg":
            emit({"num": log.msg(rest)})
        elif word == "incident":
            emit({"num": log.msg(rest, level=log.WEIRD, facility="app.incident")})
        elif word == "shapes":
            emit({"num": log.msg("shapes %(n)d", n=7, t=(1, "two"), b=b"raw\xff",
                                 big=2 ** 70, f=1.5, none=None, yes=True,
                                 nested={"k": [1, {"x": "y"}]}, u="h\u00e9llo \u2713")})
        elif word == "flood":
            num = None
            for i in range(int(rest)):
                num = log.msg("flood %d %s" % (i, "y" * 1000))
            emit({"num": num})
        elif word == "subscribers":
            emit({"num": len(log.theLogger._immediate_incident_observers)})
        elif word == "quit":
            reactor.stop()

    def read():
        for line in sys.stdin:
            reactor.callFromThread(command, line)
        reactor.callFromThread(reactor.stop)

    threading.Thread(target=read, daemon=True).start()
    reactor.run()


if __name__ == "__main__":
    main()
