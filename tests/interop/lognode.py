"""A Python foolscap node whose logport the logport interop tests use.

usage: lognode.py WORKDIR

Publishes its logport (Tub option logport-furlfile, WORKDIR/logport.furl),
keeps incidents in WORKDIR/logdir, and logs on command: each line read
from stdin is one command, answered by a line "done <command>" on stdout
once its events are logged.

  shapes TAG    events of every shape a tail prints (messages start TAG:)
  weird TAG     a WEIRD event (declares an incident), then two more
  quit          stop
"""

import os
import sys

from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver

from foolscap.api import Tub
from foolscap.logging import log
from foolscap.util import allocate_tcp_port


def shapes(tag):
    log.msg("%s: plain" % tag)
    log.msg("%s: positional %%s and %%d" % tag, "abc", 5)
    log.msg(format="%(tag)s: %(name)s has %(count)d items", tag=tag,
            name="box", count=3, level=log.UNUSUAL, facility="app.sub")
    p = log.msg("%s: parent" % tag, level=log.NOISY)
    log.msg("%s: child" % tag, parent=p, level=log.INFREQUENT)
    try:
        1 / 0
    except ZeroDivisionError:
        log.err(None, "%s: caught" % tag, level=log.SCARY, facility="app.err")
    log.msg("%s: values" % tag, data=b"\x00\xffbin", nested={"k": [1, 2.5, None, True]},
            tup=(1, "x"), big=2 ** 70, s={3}, fs=frozenset([4]))
    log.msg(message="%s: literal %%(kw)s" % tag, kw="x")
    log.msg("%s: last" % tag, level=log.CURIOUS)


def weird(tag):
    log.msg("%s: before" % tag)
    log.msg("%s: weird" % tag, level=log.WEIRD)
    log.msg("%s: after" % tag)


class Commands(LineReceiver):
    delimiter = b"\n"

    def lineReceived(self, line):
        words = line.decode("utf-8").split()
        if not words:
            return
        cmd, rest = words[0], words[1:]
        if cmd == "shapes":
            shapes(rest[0])
        elif cmd == "weird":
            weird(rest[0])
        elif cmd == "quit":
            reactor.stop()
            return
        print("done " + " ".join(words), flush=True)

    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()


def main():
    workdir = sys.argv[1]
    tub = Tub()
    port = allocate_tcp_port()
    tub.listenOn("tcp:%d:interface=127.0.0.1" % port)
    tub.setLocation("tcp:127.0.0.1:%d" % port)
    log.setLogDir(os.path.join(workdir, "logdir"))
    tub.setOption("logport-furlfile", os.path.join(workdir, "logport.furl"))
    tub.startService()
    stdio.StandardIO(Commands())
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
