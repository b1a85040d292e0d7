"""Gift roles for tests/interop_gifts.rs (docs/protocol.md section 5.6).

Three Tubs: A sends a reference to C's object to B. This script plays
one role; the Rust test plays the others.

  fsgifts.py FURLFILE owner [--max-seconds N]
      C: serves a Thing ("hello", "make", "name"); writes its FURL.
  fsgifts.py FURLFILE recipient [--no-gifts] [--max-seconds N]
      B: serves a Receiver (see below); writes its FURL.
  fsgifts.py - sender RECEIVER-FURL THING-FURL [MISSING-FURL]
      A: runs the sender flows against B and C, prints one JSON line per
      step and a last line {"done": true}.

The Receiver calls every reference it gets through IRemoteReference, so
a gift that resolved to one of its own objects works too.
"""

import argparse

from fsquiet import emit, serve, write_atomically  # noqa: E402

from twisted.internet import defer, reactor  # noqa: E402
from twisted.python import reflect  # noqa: E402

from foolscap.api import Referenceable, Tub  # noqa: E402
from foolscap.ipb import IRemoteReference  # noqa: E402


def ref(x):
    return IRemoteReference(x, x)


class Thing(Referenceable):
    def __init__(self, name):
        self.name = name

    def remote_hello(self):
        return "hello from %s" % self.name

    def remote_name(self):
        return self.name

    def remote_make(self, name):
        return Thing(name)


class Receiver(Referenceable):
    def __init__(self):
        self.log = []
        self.kept = None

    def remote_take(self, x):
        self.log.append("take")
        return ref(x).callRemote("hello")

    def remote_take_all(self, *xs):
        self.log.append("take_all")
        return defer.gatherResults([ref(x).callRemote("hello") for x in xs])

    def remote_take_in(self, box):
        # a dict {name: reference} or a list of references
        self.log.append("take_in")
        items = list(box.values()) if isinstance(box, dict) else list(box)
        return defer.gatherResults([ref(x).callRemote("hello") for x in items])

    def remote_same(self, a, b):
        return a is b

    def remote_keep(self, x):
        self.log.append("keep")
        self.kept = x
        return None

    def remote_give(self):
        return self.kept

    def remote_ping(self):
        self.log.append("ping")
        return "pong"

    def remote_hello(self):
        return "hello from receiver"

    def remote_log(self):
        return list(self.log)


def outcome(d):
    def ok(v):
        return {"ok": v}

    def bad(f):
        # a CopiedFailure's type is a class named after the sender's type
        t = f.type if isinstance(f.type, str) else reflect.qual(f.type)
        v = f.value if isinstance(f.value, str) else str(f.value)
        return {"fail": t, "value": v}
    d.addCallbacks(ok, bad)
    return d


def gifts_held(tub):
    return sum(len(b.myGifts) for b in tub.brokers.values())


@defer.inlineCallbacks
def sender(a):
    tub = Tub()
    tub.startService()
    try:
        receiver = yield tub.getReference(a.receiver)
        thing = yield tub.getReference(a.thing)
        # 1. a gift, and a call right behind it
        d1 = outcome(receiver.callRemote("take", thing))
        d2 = outcome(receiver.callRemote("ping"))
        r1 = yield d1
        r2 = yield d2
        emit({"step": "take", "result": r1})
        emit({"step": "ping", "result": r2})
        log = yield receiver.callRemote("log")
        emit({"step": "order", "result": {"ok": log[-2:]}})
        # 2. the same reference twice, and in a list and a dict
        r = yield outcome(receiver.callRemote("take_all", thing, thing))
        emit({"step": "take_all", "result": r})
        r = yield outcome(receiver.callRemote("take_in", [thing, thing]))
        emit({"step": "take_in_list", "result": r})
        r = yield outcome(receiver.callRemote("take_in", {"a": thing}))
        emit({"step": "take_in_dict", "result": r})
        r = yield outcome(receiver.callRemote("same", thing, thing))
        emit({"step": "same", "result": r})
        # 3. a gift in an answer: B gives back what it kept
        yield receiver.callRemote("keep", thing)
        back = yield receiver.callRemote("give")
        emit({"step": "give_back", "result": {"ok": back is thing}})
        # 4. an object of C that was never registered (its weak FURL)
        other = yield thing.callRemote("make", "other")
        r = yield outcome(receiver.callRemote("take", other))
        emit({"step": "take_made", "result": r})
        # 5. a reference whose owner no longer knows the name
        if a.missing:
            gone = yield tub.getReference(a.missing)
            yield gone.callRemote("forget")
            r = yield outcome(receiver.callRemote("take", gone))
            emit({"step": "take_unknown_name", "result": r})
        # decgift accounting: every gift acknowledged
        for _ in range(100):
            if gifts_held(tub) == 0:
                break
            from twisted.internet.task import deferLater
            yield deferLater(reactor, 0.05, lambda: None)
        emit({"step": "gifts_held", "result": {"ok": gifts_held(tub)}})
    except Exception as e:
        emit({"step": "error", "result": {"fail": repr(e)}})
    emit({"done": True})
    yield tub.stopService()


@defer.inlineCallbacks
def sender_loopback(a):
    """A gives B a reference to A's own object, obtained through A's own
    FURL (a loopback reference in Python): a gift pointing at the
    sender."""
    tub = Tub()
    tub.startService()
    try:
        listener = tub.listenOn("tcp:0:interface=127.0.0.1")
        yield defer.succeed(None)
        tub.setLocation("tcp:127.0.0.1:%d" % listener.getPortnum())
        furl = tub.registerReference(Thing("a-thing"), "a-thing-swiss")
        mine = yield tub.getReference(furl)
        receiver = yield tub.getReference(a.receiver)
        r = yield outcome(receiver.callRemote("take", mine))
        emit({"step": "take_loopback", "result": r})
    except Exception as e:
        emit({"step": "error", "result": {"fail": repr(e)}})
    emit({"done": True})
    yield tub.stopService()


@defer.inlineCallbacks
def bench(a):
    """benches/gifts.rs's Python half: three Tubs in this process; the
    time of take(gift) (B looks the gift up at C and calls it once), with
    the B-C connection already open (warm) and with a new B each time
    (fresh). Prints {"warm_ms": [...], "fresh_ms": [...]}."""
    import time

    def server(obj, name):
        t = Tub()
        t.startService()
        lp = t.listenOn("tcp:0:interface=127.0.0.1")
        t.setLocation("tcp:127.0.0.1:%d" % lp.getPortnum())
        return t, t.registerReference(obj, name)

    c, thing_furl = server(Thing("thing"), "thing-swiss")
    b, receiver_furl = server(Receiver(), "receiver-swiss")
    tub = Tub()
    tub.startService()
    thing = yield tub.getReference(thing_furl)
    receiver = yield tub.getReference(receiver_furl)
    yield receiver.callRemote("take", thing)
    warm = []
    for _ in range(a.warm):
        t0 = time.perf_counter()
        yield receiver.callRemote("take", thing)
        warm.append((time.perf_counter() - t0) * 1000)
    fresh = []
    for _ in range(a.fresh):
        b2, furl2 = server(Receiver(), "receiver-swiss")
        r2 = yield tub.getReference(furl2)
        t0 = time.perf_counter()
        yield r2.callRemote("take", thing)
        fresh.append((time.perf_counter() - t0) * 1000)
        yield b2.stopService()
    emit({"warm_ms": warm, "fresh_ms": fresh})
    for t in (tub, b, c):
        yield t.stopService()


class Forgettable(Thing):
    """A Thing that can withdraw its own name (for the unknown-name case)."""

    def __init__(self, name, tub):
        Thing.__init__(self, name)
        self.tub = tub

    def remote_forget(self):
        self.tub.unregisterReference(self)
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("furlfile")
    p.add_argument("role", choices=["owner", "recipient", "sender", "sender-loopback", "bench"])
    p.add_argument("--warm", type=int, default=200)
    p.add_argument("--fresh", type=int, default=20)
    p.add_argument("receiver", nargs="?")
    p.add_argument("thing", nargs="?")
    p.add_argument("missing", nargs="?")
    p.add_argument("--no-gifts", action="store_true")
    p.add_argument("--max-seconds", type=float, default=300)
    a = p.parse_args()
    if a.role in ("sender", "sender-loopback", "bench"):
        d = {"sender": sender, "sender-loopback": sender_loopback, "bench": bench}[a.role](a)
        d.addBoth(lambda _: reactor.stop())
        reactor.callLater(a.max_seconds, reactor.stop)
        reactor.run()
        return
    tub = Tub()
    if a.no_gifts:
        tub.setOption("accept-gifts", False)
    tub.startService()
    if a.role == "owner":
        obj = Thing("thing")
        name = "thing-swiss"
    else:
        obj = Receiver()
        name = "receiver-swiss"

    def published(furl):
        if a.role == "owner":
            # a second object whose name can be withdrawn
            gone = Forgettable("gone", tub)
            furl = furl + "\n" + tub.registerReference(gone, "gone-swiss")
        write_atomically(a.furlfile, furl + "\n")

    serve(tub, obj, name, published)
    reactor.callLater(a.max_seconds, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main()
