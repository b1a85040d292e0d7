#!/usr/bin/env python3
"""Calls per second through Python foolscap (24.9.0): the Python half of the
remote-call benchmark that compares it with foolscap-rs.

Run it with the interpreter printed by scripts/python-env.sh.

  serve FURLFILE [--max-seconds S]
      A Tub listening on 127.0.0.1 (a free port) with one Referenceable
      registered as "kitchen-sink": echo(x) returns x, add(a, b) returns
      a + b. Its FURL is written to FURLFILE atomically (a temporary file
      renamed into place). Exits on SIGTERM/SIGINT or after --max-seconds
      (default 600). Nothing is printed on stdout.

  client FURL [--seconds S] [--inflight N] [--echo-bytes B] [--timeout T]
      Connects to FURL (getReference), warms up with 200 add(1, 2) calls,
      then measures three rows of about S seconds each (default 3):
        sequential  one add(1, 2) at a time, the next issued when the
                    previous one has answered;
        inflight    N (default 100) add(1, 2) calls outstanding at all
                    times: every completion issues a new call until the
                    time is up, then the outstanding ones are drained;
        echo        sequential echo(b"x" * B), B default 1 MiB (1048576).
      One JSON line per row on stdout:
        {"row", "calls", "seconds", "calls_per_s"[, "mib_per_s", "bytes"]}
      where mib_per_s = B * calls_per_s / 2**20 (the payload counted once,
      although it travels both ways). "seconds" runs from the first call
      issued to the last answer received. Every answer is checked (3, or
      the same bytes); a wrong answer, a failed call or --timeout (default
      3 * S + 60 s) prints {"error": ...} and exits non-zero.

foolscap's and Twisted's own chatter is discarded (or sent to stderr with
FSNEGO_DEBUG=1).
"""

import argparse
import gc
import os
import signal
import sys
import time

# the shared quiet start-up of the helper scripts
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
from fsquiet import emit, serve, write_atomically  # noqa: E402

from twisted.internet import defer, reactor  # noqa: E402

from foolscap.api import Referenceable, Tub  # noqa: E402

WARMUP_CALLS = 200
NAME = "kitchen-sink"


class BenchError(Exception):
    """A wrong answer or a failed call: the run is aborted."""


# ---------------------------------------------------------------- server


class Sink(Referenceable):
    def remote_echo(self, x):
        return x

    def remote_add(self, a, b):
        return a + b


def cmd_serve(a):
    tub = Tub()
    tub.startService()
    serve(tub, Sink(), NAME, lambda furl: write_atomically(a.furlfile, furl + "\n"))

    def stop(*_):
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # the reactor waits for the Deferred stopService returns
    reactor.addSystemEventTrigger("before", "shutdown", tub.stopService)
    reactor.callLater(a.max_seconds, reactor.stop)
    reactor.run(installSignalHandlers=False)


# ---------------------------------------------------------------- client


def sequential(rref, method, args, check, seconds, max_calls=None):
    """Issue one call at a time, the next from the previous one's callback,
    until `seconds` have passed (or `max_calls` were made). Fires with
    (calls, elapsed)."""
    done = defer.Deferred()
    state = {"calls": 0}
    start = time.perf_counter()

    def issue():
        d = rref.callRemote(method, *args)
        d.addCallbacks(answered, failed)

    def answered(result):
        if not check(result):
            done.errback(BenchError("%s%s: wrong answer %s" % (
                method, _short(args), _short(result))))
            return
        state["calls"] += 1
        now = time.perf_counter()
        if max_calls is not None:
            finished = state["calls"] >= max_calls
        else:
            finished = now - start >= seconds
        if finished:
            done.callback((state["calls"], now - start))
        else:
            issue()

    def failed(f):
        done.errback(f)

    issue()
    return done


def inflight(rref, n, seconds):
    """Keep n add(1, 2) calls outstanding: every completion issues a new
    call until `seconds` have passed, then the outstanding calls are
    drained. Fires with (completed calls, elapsed to the last answer)."""
    done = defer.Deferred()
    state = {"calls": 0, "outstanding": 0, "stopping": False, "last": None}
    start = time.perf_counter()

    def issue():
        state["outstanding"] += 1
        d = rref.callRemote("add", 1, 2)
        d.addCallbacks(answered, failed)

    def answered(result):
        state["outstanding"] -= 1
        if done.called:
            return
        if result != 3:
            done.errback(BenchError("add(1, 2): wrong answer %r" % (result,)))
            return
        state["calls"] += 1
        now = state["last"] = time.perf_counter()
        if not state["stopping"] and now - start >= seconds:
            state["stopping"] = True
        if not state["stopping"]:
            issue()
        elif state["outstanding"] == 0:
            done.callback((state["calls"], state["last"] - start))

    def failed(f):
        state["outstanding"] -= 1
        if not done.called:
            done.errback(f)

    for _ in range(n):
        issue()
    return done


def _short(v):
    r = repr(v)
    return r if len(r) <= 80 else r[:60] + "...(%d chars)" % len(r)


def row(name, calls, elapsed, **extra):
    out = {"row": name, "calls": calls, "seconds": round(elapsed, 6),
           "calls_per_s": round(calls / elapsed, 3) if elapsed > 0 else None}
    out.update(extra)
    return out


@defer.inlineCallbacks
def client_body(a, tub):
    rref = yield tub.getReference(a.furl.strip())

    def is3(r):
        return r == 3

    # warm-up
    yield sequential(rref, "add", (1, 2), is3, None, max_calls=WARMUP_CALLS)

    gc.collect()
    calls, elapsed = yield sequential(rref, "add", (1, 2), is3, a.seconds)
    emit(row("sequential", calls, elapsed))

    gc.collect()
    calls, elapsed = yield inflight(rref, a.inflight, a.seconds)
    emit(row("inflight", calls, elapsed, inflight=a.inflight))

    payload = b"x" * a.echo_bytes
    # one unmeasured echo so the first big buffers are allocated already
    yield sequential(rref, "echo", (payload,), lambda r: r == payload, None,
                     max_calls=1)
    gc.collect()
    calls, elapsed = yield sequential(rref, "echo", (payload,),
                                      lambda r: r == payload, a.seconds)
    r = row("echo", calls, elapsed, bytes=a.echo_bytes)
    r["mib_per_s"] = round(a.echo_bytes * calls / elapsed / 2 ** 20, 3)
    emit(r)


def cmd_client(a):
    if a.timeout is None:
        a.timeout = 3 * a.seconds + 60
    status = {"rc": 1}
    tub = Tub()
    tub.startService()

    def ok(_):
        status["rc"] = 0

    def failed(f):
        if f.check(BenchError):
            msg = str(f.value)
        else:
            msg = "%s: %s" % (getattr(f.type, "__name__", f.type), f.getErrorMessage())
        emit({"error": msg})

    def timeout():
        emit({"error": "timeout after %g s" % a.timeout})
        reactor.stop()

    watchdog = reactor.callLater(a.timeout, timeout)

    def finish(_):
        if watchdog.active():
            watchdog.cancel()
        # stopService drops the connection; then stop the reactor
        d = defer.maybeDeferred(tub.stopService)
        d.addBoth(lambda _: reactor.callLater(0, reactor.stop))

    d = client_body(a, tub)
    d.addCallbacks(ok, failed)
    d.addBoth(finish)
    reactor.run()
    return status["rc"]


# ---------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description="foolscap calls/s benchmark (Python)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("furlfile")
    s.add_argument("--max-seconds", type=float, default=600)
    c = sub.add_parser("client")
    c.add_argument("furl")
    c.add_argument("--seconds", type=float, default=3.0)
    c.add_argument("--inflight", type=int, default=100)
    c.add_argument("--echo-bytes", type=int, default=1048576)
    c.add_argument("--timeout", type=float, default=None)
    a = p.parse_args()
    if a.cmd == "serve":
        cmd_serve(a)
        return 0
    if a.inflight < 1 or a.echo_bytes < 0 or a.seconds <= 0:
        p.error("--inflight must be >= 1, --echo-bytes >= 0, --seconds > 0")
    return cmd_client(a)


if __name__ == "__main__":
    sys.exit(main())
