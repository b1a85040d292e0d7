#!/usr/bin/env python3
"""Python side of the foolscap-rs negotiation interop tests and benchmark.

Run it with the interpreter printed by scripts/python-env.sh (a virtualenv
holding foolscap==24.9.0). Every subcommand prints JSON, one object per
line, on stdout; foolscap's and Twisted's own chatter is discarded (or sent
to stderr with FSNEGO_DEBUG=1). Every process stops by itself: servers when
their stdin closes or after --lifetime seconds, clients after --timeout.

  serve CERTFILE [--name NAME] [--lifetime S]
      A Tub with that identity listening on 127.0.0.1 (a free port) and
      an object with remote_add(a, b) registered as NAME. First line:
      {"furl", "tubid", "incarnation"}.
  connect CERTFILE FURL [--count N]
      For each of N iterations a new Tub (same identity, new incarnation)
      gets the reference and calls add(1, 2). One line per iteration:
      {"ok", "tubid", "result"} or {"ok": false, "error"}.
  duplicate CERTFILE FURL
      Tub 1 connects and calls add; then Tub 2 (same identity, new
      incarnation) does the same while Tub 1's connection is up. Reports
      whether Tub 1's reference was disconnected (replaced) and both results.
  mkcert OUT [--form pkcs8|pkcs1-keyfirst|ec|ec-by-ec|ec-by-rsa|ec-akid]
      Writes a new certFile and prints the tubid Python computes for it:
      foolscap's own (pkcs8), the same with a PKCS#1 key placed before the
      certificate, or an ECDSA P-256 X.509 v3 identity made with
      `cryptography` (SEC1 key). The ec-by-* forms name themselves as
      issuer but are signed by another key: another P-256 key, an RSA key,
      or another P-256 key that an authority key id names (beside the
      certificate's own subject key id).
  tubid CERTFILE...
      The tubid Python computes for each file: {"file", "tubid"}.
  bench CERTFILE FURL --count N
      Times N fresh connections (TCP connected -> negotiation finished,
      measured inside foolscap's Negotiation): {"samples_ms": [...]}.
"""

import argparse
import time

from fsquiet import emit, serve, stop_when_stdin_closes  # noqa: E402  (first: quiet stdout)

from twisted.internet import defer, reactor  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from foolscap import negotiate  # noqa: E402
from foolscap.api import Referenceable, Tub  # noqa: E402


class Calc(Referenceable):
    def remote_add(self, a, b):
        return a + b


def cmd_serve(a):
    tub = Tub(certData=open(a.certfile, "rb").read())
    tub.startService()
    serve(tub, Calc(), a.name,
          lambda furl: emit({"furl": furl, "tubid": tub.getTubID(),
                             "incarnation": tub.getIncarnationString()}))
    stop_when_stdin_closes()
    reactor.callLater(a.lifetime, reactor.stop)
    reactor.run()


def describe(failure):
    return "%s: %s" % (failure.type.__name__, failure.getErrorMessage())


@defer.inlineCallbacks
def connect_loop(a, certdata):
    for _ in range(a.count):
        tub = Tub(certData=certdata)
        tub.startService()
        try:
            rref = yield tub.getReference(a.furl)
            result = yield rref.callRemote("add", 1, 2)
            emit({"ok": True, "tubid": tub.getTubID(), "result": result})
        except Exception:
            emit({"ok": False, "tubid": tub.getTubID(),
                  "error": describe(Failure())})
        yield tub.stopService()


def run_client(a, body):
    certdata = open(a.certfile, "rb").read()
    d = body(a, certdata)

    def failed(f):
        emit({"ok": False, "error": describe(f)})
    d.addErrback(failed)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.callLater(a.timeout, lambda: (emit({"ok": False, "error": "timeout"}),
                                          reactor.stop()))
    reactor.run()


@defer.inlineCallbacks
def duplicate(a, certdata):
    tub1 = Tub(certData=certdata)
    tub1.startService()
    rref1 = yield tub1.getReference(a.furl)
    first = yield rref1.callRemote("add", 1, 2)
    lost = defer.Deferred()
    rref1.notifyOnDisconnect(lambda: lost.called or lost.callback(True))
    tub2 = Tub(certData=certdata)
    tub2.startService()
    rref2 = yield tub2.getReference(a.furl)
    second = yield rref2.callRemote("add", 2, 3)
    timer = reactor.callLater(10, lambda: lost.called or lost.callback(False))
    first_disconnected = yield lost
    if timer.active():
        timer.cancel()
    emit({"ok": True, "first": first, "second": second,
          "first_disconnected": first_disconnected,
          "incarnations": [tub1.getIncarnationString(),
                           tub2.getIncarnationString()]})
    yield tub1.stopService()
    yield tub2.stopService()


def cmd_mkcert(a):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime
    if a.form.startswith("ec"):
        from cryptography.hazmat.primitives.asymmetric import rsa
        key = ec.generate_private_key(ec.SECP256R1())
        signer = {"ec": key,
                  "ec-by-ec": ec.generate_private_key(ec.SECP256R1()),
                  "ec-akid": ec.generate_private_key(ec.SECP256R1()),
                  "ec-by-rsa": rsa.generate_private_key(65537, 2048)}[a.form]
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "newpb_thingy")])
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365)))
        if a.form == "ec-akid":
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False)
        cert = builder.sign(signer, hashes.SHA256())
        data = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption())
    else:
        data = Tub().getCertData()
        if isinstance(data, str):
            data = data.encode()
        if a.form == "pkcs1-keyfirst":
            key = serialization.load_pem_private_key(data, None)
            cert = x509.load_pem_x509_certificate(data)
            data = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)
    with open(a.out, "wb") as f:
        f.write(data)
    emit({"file": a.out, "tubid": Tub(certData=data).getTubID()})


def cmd_tubid(a):
    for fn in a.files:
        emit({"file": fn, "tubid": Tub(certData=open(fn, "rb").read()).getTubID()})


STAMPS = {}


def cmd_bench(a):
    orig_made = negotiate.Negotiation.connectionMade
    orig_banana = negotiate.Negotiation.switchToBanana

    def made(self):
        STAMPS["start"] = time.perf_counter()
        return orig_made(self)

    def banana(self, params):
        STAMPS["end"] = time.perf_counter()
        return orig_banana(self, params)

    negotiate.Negotiation.connectionMade = made
    negotiate.Negotiation.switchToBanana = banana

    @defer.inlineCallbacks
    def body(a, certdata):
        samples = []
        for _ in range(a.count):
            STAMPS.clear()
            tub = Tub(certData=certdata)
            tub.startService()
            yield tub.getReference(a.furl)
            samples.append((STAMPS["end"] - STAMPS["start"]) * 1000.0)
            yield tub.stopService()
        emit({"ok": True, "samples_ms": samples})
    run_client(a, body)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("certfile")
    s.add_argument("--name", default="calc")
    s.add_argument("--lifetime", type=float, default=300)
    for name in ("connect", "duplicate", "bench"):
        c = sub.add_parser(name)
        c.add_argument("certfile")
        c.add_argument("furl")
        c.add_argument("--count", type=int, default=1)
        c.add_argument("--timeout", type=float, default=120)
    m = sub.add_parser("mkcert")
    m.add_argument("out")
    m.add_argument("--form", choices=["pkcs8", "pkcs1-keyfirst", "ec", "ec-by-ec",
                                      "ec-by-rsa", "ec-akid"], default="pkcs8")
    t = sub.add_parser("tubid")
    t.add_argument("files", nargs="+")
    a = p.parse_args()
    if a.cmd == "serve":
        cmd_serve(a)
    elif a.cmd == "connect":
        run_client(a, connect_loop)
    elif a.cmd == "duplicate":
        run_client(a, duplicate)
    elif a.cmd == "bench":
        cmd_bench(a)
    elif a.cmd == "mkcert":
        cmd_mkcert(a)
    elif a.cmd == "tubid":
        cmd_tubid(a)


if __name__ == "__main__":
    main()
