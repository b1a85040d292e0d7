#!/usr/bin/env python3
"""The Python foolscap (24.9.0) server of the load benchmark
(benches/load.rs): the same rows as the Rust mio server, measured with the
same Rust mio clients (a Python client would be the bottleneck).

Run it with the interpreter printed by scripts/python-env.sh.

  serve [--max-inbound N]
      A Tub listening on 127.0.0.1 (a free port) with one Referenceable
      registered as "load":
        add(a, b)   returns a + b
        echo(x)     returns x
        big(n)      returns b"x" * n (at most 1 MiB)
        hold(ms, x) returns x after ms milliseconds (a call kept in flight)
      It speaks the protocol of tests/common/load.rs (ServerProcess):
      prints "FURL <furl>" on stdout once listening; answers each "stats"
      line on stdin with "STATS <connections> <calls> <rss KiB>"
      (connections: the Tub's brokers, i.e. negotiated connections); exits
      when stdin closes. The open-file limit is raised to N + 1000 (default
      N: 20000) so that many clients fit.

foolscap's and Twisted's own chatter is discarded (or sent to stderr with
FSNEGO_DEBUG=1).
"""

import argparse
import os
import resource
import sys

# the shared quiet start-up of the helper scripts
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
from fsquiet import OUT, serve  # noqa: E402

from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.protocol import Protocol  # noqa: E402
from twisted.internet.stdio import StandardIO  # noqa: E402

from foolscap.api import Referenceable, Tub  # noqa: E402

NAME = "load"
MAX_BIG = 1 << 20


class Load(Referenceable):
    def __init__(self):
        self.calls = 0
        self.big = b"x" * MAX_BIG

    def remote_add(self, a, b):
        self.calls += 1
        return a + b

    def remote_echo(self, x):
        self.calls += 1
        return x

    def remote_big(self, n):
        self.calls += 1
        return self.big[:max(0, min(n, MAX_BIG))]

    def remote_hold(self, ms, x):
        self.calls += 1
        d = defer.Deferred()
        reactor.callLater(max(0, ms) / 1000.0, d.callback, x)
        return d


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def say(text):
    OUT.write(text + "\n")
    OUT.flush()


class Control(Protocol):
    """stdin: "stats" lines; EOF stops the reactor."""

    def __init__(self, tub, obj):
        self.tub, self.obj, self.buf = tub, obj, b""

    def dataReceived(self, data):
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip() == b"stats":
                say("STATS %d %d %d" % (len(self.tub.brokers), self.obj.calls, rss_kib()))

    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--max-inbound", type=int, default=20000)
    a = p.parse_args()

    want = a.max_inbound + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tub = Tub()
    tub.startService()
    obj = Load()
    serve(tub, obj, NAME, lambda furl: say("FURL " + furl))
    # stdout stays ours (fsquiet keeps the real one in OUT); stdin drives us
    StandardIO(Control(tub, obj), stdout=os.open(os.devnull, os.O_WRONLY))
    reactor.run()


if __name__ == "__main__":
    main()
