"""Shared start-up of the Python helper scripts (tests/interop, benches).

Import it before Twisted or foolscap: it keeps the real stdout for JSON
lines (`emit`) and silences everything else that would print there
(foolscap's and Twisted's chatter goes nowhere, or to stderr with
FSNEGO_DEBUG=1). It also has the pieces every helper server repeats.
"""

import json
import os
import sys
import threading

DEBUG = bool(os.environ.get("FSNEGO_DEBUG"))

OUT = sys.stdout
sys.stdout = sys.stderr if DEBUG else open(os.devnull, "w")

from twisted.internet import reactor  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402


def _log_observer(event):
    if DEBUG:
        from twisted.logger import formatEvent
        sys.stderr.write("[twisted] %s\n" % formatEvent(event))


globalLogBeginner.beginLoggingTo([_log_observer], redirectStandardIO=False)


def emit(obj):
    """One JSON line on the real stdout."""
    OUT.write(json.dumps(obj) + "\n")
    OUT.flush()


def stop_when_stdin_closes():
    """Stops the reactor once stdin reaches EOF (the test dropped us)."""
    def watch():
        try:
            while sys.stdin.read(1):
                pass
        except Exception:
            pass
        reactor.callFromThread(reactor.stop)
    threading.Thread(target=watch, daemon=True).start()


def write_atomically(path, text):
    """Writes `text` to `path` so that readers see all of it or nothing."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def serve(tub, obj, name, published, port=0, host="127.0.0.1"):
    """Once the reactor runs: listens on `host`:`port` (0: a free one;
    `host` an IPv4 or bare IPv6 address), sets the location, registers
    `obj` as `name` and calls `published(furl)`. The caller starts the Tub
    and the reactor."""
    # colons inside an endpoint-string field must be escaped
    interface = host.replace(":", "\\:")
    listener = tub.listenOn("tcp:%d:interface=%s" % (port, interface))

    def started(tries=[0]):
        # a TCP listener is normally up at once; poll just in case
        if listener._lp is None:
            tries[0] += 1
            if tries[0] > 500:
                sys.stderr.write("%s: listener did not start\n" % sys.argv[0])
                reactor.stop()
                return
            reactor.callLater(0.01, started)
            return
        bound = listener._lp.getHost()
        # the tcp hint syntax wants IPv6 hosts bracketed
        hint_host = "[%s]" % bound.host if ":" in bound.host else bound.host
        tub.setLocation("tcp:%s:%d" % (hint_host, bound.port))
        published(tub.registerReference(obj, name))

    reactor.callWhenRunning(started)
