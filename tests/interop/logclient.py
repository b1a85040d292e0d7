"""A Python foolscap client of a logport (ours or Python's), for the logport
interop tests.

usage: logclient.py FURL methods       every RILogPublisher method, errors included
       logclient.py FURL incidents     list/get/subscribe_to_incidents; then waits
                                       for one live new_incident
       logclient.py FURL stalled N     subscribes an observer that never answers
                                       msg; prints "subscribed", then after N
                                       seconds the number of msg calls it got

Prints one JSON object per line.
"""

import json
import os
import sys

from twisted.internet import defer, reactor
from zope.interface import implementer

from foolscap.api import Referenceable, Tub
from foolscap.logging.interfaces import RILogObserver


def out(**kw):
    print(json.dumps(kw, sort_keys=True), flush=True)


def text(x):
    return x.decode("utf-8") if isinstance(x, bytes) else x


def failure(f):
    return [text(f.type) if isinstance(f.type, (str, bytes)) else f.type.__name__,
            text(f.value) if isinstance(f.value, (str, bytes)) else str(f.value)]


@implementer(RILogObserver)
class Observer(Referenceable):
    def __init__(self, answer=True):
        self.answer = answer
        self.msgs = []
        self.incidents = []
        self.caught_up = defer.Deferred()
        self.live = defer.Deferred()
        self.done_catchup = False

    def remote_msg(self, d):
        self.msgs.append(d)
        if not self.answer:
            return defer.Deferred()  # never answered
        return None

    def remote_new_incident(self, name, trigger):
        self.incidents.append([type(name).__name__, text(name), trigger.get("message")])
        if self.done_catchup and not self.live.called:
            self.live.callback(None)

    def remote_done_with_incident_catchup(self):
        self.done_catchup = True
        self.caught_up.callback(None)


def call(rref, method, *args, **kw):
    d = rref.callRemote(method, *args, **kw)
    d.addCallbacks(lambda r: ["ok", r], lambda f: ["error"] + failure(f))
    return d


@defer.inlineCallbacks
def methods(rref):
    v = yield call(rref, "get_versions")
    out(what="versions", types=sorted({type(k).__name__ for k in v[1]} | {type(x).__name__ for x in v[1].values()}),
        keys=sorted(text(k) for k in v[1]))
    pid = yield call(rref, "get_pid")
    out(what="pid", type=type(pid[1]).__name__)
    for name in ["bogus", b"bogus", "incident-nope"]:
        r = yield call(rref, "get_incident", name)
        out(what="get_incident", name=text(name), result=r)
    r = yield call(rref, "enumerate_logfiles")
    out(what="enumerate_logfiles", result=r)
    obs = Observer()
    sub = yield rref.callRemote("subscribe_to_all", obs)
    r1 = yield call(rref, "unsubscribe", sub)
    r2 = yield call(sub, "unsubscribe")
    r3 = yield call(rref, "unsubscribe", 7)
    out(what="unsubscribe", deprecated=r1, again=r2, int=r3)


@defer.inlineCallbacks
def incidents(rref):
    listed = yield rref.callRemote("list_incidents")
    names = sorted(listed.keys())
    out(what="list", names=[[type(n).__name__, n] for n in names],
        messages=[listed[n].get("message") for n in names],
        incarnation_types=sorted({type(listed[n]["incarnation"]).__name__ for n in names}))
    later = yield rref.callRemote("list_incidents", since=names[-1] if names else "")
    out(what="list_since_last", names=sorted(later.keys()))
    if names:
        header, events = yield rref.callRemote("get_incident", names[0].encode("utf-8"))
        out(what="get", header_type=header["type"], header_keys=sorted(header.keys()),
            trigger=header["trigger"].get("message"),
            messages=[e.get("message") for e in events])
    obs = Observer()
    yield rref.callRemote("subscribe_to_incidents", obs, catch_up=True, since=b"")
    yield obs.caught_up
    out(what="catchup", incidents=obs.incidents)
    obs.incidents = []
    out(what="subscribed")
    yield obs.live
    out(what="live", incidents=obs.incidents)


@defer.inlineCallbacks
def stalled(rref, seconds):
    obs = Observer(answer=False)
    yield rref.callRemote("subscribe_to_all", obs)
    out(what="subscribed")
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    yield d
    out(what="stalled", msgs=len(obs.msgs))


@defer.inlineCallbacks
def main():
    furl, cmd = sys.argv[1], sys.argv[2]
    tub = Tub()
    tub.startService()
    try:
        rref = yield tub.getReference(furl)
        if cmd == "methods":
            yield methods(rref)
        elif cmd == "incidents":
            yield incidents(rref)
        elif cmd == "stalled":
            yield stalled(rref, float(sys.argv[3]))
    except Exception:
        import traceback
        traceback.print_exc()
        out(what="crash")
    reactor.stop()


if __name__ == "__main__":
    reactor.callWhenRunning(main)
    reactor.run()
