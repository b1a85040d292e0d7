"""Checks the `foolscap` command-line tool against Python foolscap itself.

Usage: python cli_check.py FOOLSCAP_BINARY

For every case (built from Python code, so sharing and cycles are real):
  * Python serializes it (foolscap.storage.serialize, vocab table 0, and a
    table-1 Banana as a PB connection has); `foolscap decode` prints it; for
    acyclic, unshared values Python evaluates the printed text and compares
    strictly with the original.
  * `foolscap encode` gets the Python literal; Python decodes our bytes with
    foolscap.storage.unserialize (table 0) and with a table-1 Banana, and
    compares strictly; deterministic cases must be byte-identical to
    Python's own serialization.
Prints one JSON line: {"cases": n, "checks": n, "failures": [...]}.
"""

import json
import os
import subprocess
import sys
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.set_int_max_str_digits(0)

import fsinterop  # noqa: E402
from foolscap.storage import serialize as storage_serialize, unserialize  # noqa: E402

BIN = sys.argv[1]

LITERALS = [
    "None", "True", "False", "0", "-1", "2147483647", "2147483648", "-2147483648",
    "-2147483649", "9223372036854775808", "-18446744073709551616",
    "123456789012345678901234567890", "1.5", "-0.0", "0.1", "5e-324", "1e+300",
    "float('inf')", "-float('inf')", "float('nan')", "b''", "b'\\x00'", "b'list'",
    "b'\\xff\\xfe'", "''", "'h\\xe9llo'", "'\\U0001f600'", "'list'", "'\\x00'",
    "'a\\'b\"c'", "[]", "()", "(1,)", "{}", "set()", "frozenset()", "[1, 2]",
    "(3, 4)", "{'k': 'v'}", "{5}", "frozenset({6})", "Decimal('1.25')",
    "Decimal('-0')", "Decimal('NaN')", "Decimal('-Infinity')", "Decimal('1E+3')",
    "[None, True, 1, 1.0, b'b', 's', (), [], {}]",
    "{1: 'a', 2: 'b', -5: 'c'}", "{b'x': 1, b'a': 2}", "{(1, 2): 3, (0, 9): 4}",
    "{frozenset({1}): 1}", "{None: 1}", "{1.5: 2, 3: 4}",
    "[[[[[[[[[[1]]]]]]]]]]", "{'a': {'b': {'c': [1, (2, {3})]}}}",
    "(1, 'two', b'three', [4.0], {5: None}, frozenset({6}), Decimal('7'))",
]


def build_shared():
    shared = [10, 20]
    cyclic = []
    cyclic.append(cyclic)
    d = {}
    d["self"] = d
    t_list = [1]
    t = (t_list,)
    t_list.append(t)
    return {
        "shared_list": [shared, shared],
        "self_list": cyclic,
        "self_dict": d,
        "tuple_cycle": t,
        "mixed": [shared, {"k": shared}, (shared,)],
    }


def run(args, stdin=""):
    p = subprocess.run([BIN] + args, input=stdin.encode(), capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def banana_serialize(value, table):
    return storage_serialize(value).result if table == 0 else fsinterop.serialize(value, 1)


def main():
    failures = []
    checks = 0

    def fail(msg):
        failures.append(msg[:2000])

    cases = [(lit, eval(lit), True) for lit in LITERALS]
    cases += [(name, value, False) for name, value in build_shared().items()]
    for name, value, evaluable in cases:
        for table in (0, 1):
            # Python -> foolscap decode
            data = banana_serialize(value, table)
            code, out, err = run(["decode", "--vocab", str(table)], data.hex())
            if code != 0:
                fail("%s t%d: foolscap decode failed: %s" % (name, table, err))
                continue
            checks += 1
            if evaluable:
                back = eval(out.strip(), {"Decimal": Decimal})
                problem = fsinterop.strict_compare(value, back, False)
                if problem:
                    fail("%s t%d: decode printed %r: %s" % (name, table, out.strip(), problem))
            else:
                # printed cycles must look like Python's repr
                if "cycle" in name or "self" in name:
                    if out.strip() != repr(value):
                        fail("%s t%d: printed %r, Python %r" % (name, table, out.strip(), repr(value)))
            # foolscap encode -> Python
            if not evaluable:
                continue
            code, out, err = run(["encode", "--vocab", str(table), "--", name])
            if code != 0:
                fail("%s t%d: foolscap encode failed: %s" % (name, table, err))
                continue
            ours = bytes.fromhex(out.strip())
            checks += 1
            try:
                decoded = unserialize(ours).result if table == 0 else fsinterop.decode(ours, 1)
            except Exception as e:  # noqa: BLE001
                fail("%s t%d: Python cannot decode our %s: %s" % (name, table, ours.hex(), e))
                continue
            problem = fsinterop.strict_compare(value, decoded, False)
            if problem:
                fail("%s t%d: Python decoded our bytes to %r: %s" % (name, table, decoded, problem))
            has_set = any(k in name for k in ("set(", "{5}", "{6}", "{3}", "frozenset"))
            if not has_set and ours != data:
                fail("%s t%d: bytes differ\n python %s\n ours   %s" % (name, table, data.hex(), ours.hex()))
    fsinterop._JSON_OUT.write(json.dumps({"cases": len(cases), "checks": checks, "failures": failures}) + "\n")
    fsinterop._JSON_OUT.flush()


if __name__ == "__main__":
    main()
