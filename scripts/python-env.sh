#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv used by the interop tests.
#
# Usage: python-env.sh            the foolscap venv (interop-venv)
#        python-env.sh tahoe      a second venv (tahoe-venv) with tahoe-lafs
#                                 and the same foolscap, for the tests that
#                                 run a real Tahoe-LAFS storage node. It is
#                                 separate so that Tahoe's dependencies never
#                                 change what the foolscap interop tests run.
#
# The venv lives at "$CARGO_TARGET_DIR/interop-venv" (or "<repo>/target/
# interop-venv" when CARGO_TARGET_DIR is unset; a relative CARGO_TARGET_DIR is
# taken relative to the repository root). It contains the reference
# implementation, foolscap==24.9.0, installed with pip.
#
# On success the absolute path of the venv's python is printed on stdout (it
# is the only line written to stdout). Everything else goes to stderr. Any
# failure exits non-zero with a message on stderr.
#
# Safe to run from several processes at once: the slow path is serialized
# with flock(1) on "<target>/interop-venv.lock". The fast path (venv already
# complete) takes no lock and only checks a marker file written after a
# successful install plus a trivial run of the venv's interpreter.
#
# Environment:
#   PYTHON            interpreter used to create the venv (default: python3)
#   CARGO_TARGET_DIR  where the venv is placed (see above)
#   FOOLSCAP_VENV_LOCK_TIMEOUT  seconds to wait for the lock (default: 900)

set -euo pipefail

FOOLSCAP_REQ="foolscap==24.9.0"
FOOLSCAP_VERSION="24.9.0"
TAHOE_REQ="tahoe-lafs==1.20.0"
flavour=${1:-foolscap}

die() {
    echo "python-env.sh: error: $*" >&2
    exit 1
}

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd) \
    || die "cannot determine the script directory"
repo_root=$(cd -- "$script_dir/.." && pwd) \
    || die "cannot determine the repository root"

target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo_root/$target_dir" ;;
esac

case "$flavour" in
    foolscap)
        venv="$target_dir/interop-venv"
        requirements=("$FOOLSCAP_REQ")
        ;;
    tahoe)
        venv="$target_dir/tahoe-venv"
        requirements=("$FOOLSCAP_REQ" "$TAHOE_REQ")
        ;;
    *) die "unknown venv '$flavour' (expected: foolscap or tahoe)" ;;
esac
py="$venv/bin/python"
marker="$venv/.interop-foolscap-ok"
lock="$venv.lock"
marker_text="${requirements[*]}"

# True when the venv is complete: the marker is present and names the
# expected requirement, and the venv's interpreter still starts (it breaks
# when the base interpreter it was created from went away).
venv_ready() {
    [ -f "$marker" ] || return 1
    [ "$(cat -- "$marker" 2>/dev/null)" = "$marker_text" ] || return 1
    [ -x "$py" ] || return 1
    "$py" -c 'import sys' >/dev/null 2>&1 || return 1
    return 0
}

if venv_ready; then
    echo "$py"
    exit 0
fi

command -v flock >/dev/null 2>&1 || die "flock(1) is required but was not found"
mkdir -p -- "$target_dir" || die "cannot create $target_dir"

exec 9>>"$lock" || die "cannot open lock file $lock"
flock -w "${FOOLSCAP_VENV_LOCK_TIMEOUT:-900}" 9 \
    || die "timed out waiting for the lock $lock"

# Another process may have finished the job while we waited for the lock.
if venv_ready; then
    echo "$py"
    exit 0
fi

base_python=${PYTHON:-python3}
command -v "$base_python" >/dev/null 2>&1 \
    || die "no base interpreter '$base_python' found (set PYTHON=...)"
"$base_python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' \
    || die "'$base_python' is older than Python 3.8, which foolscap 24.9.0 needs"

# Missing, half-built or broken: start from scratch.
if [ -e "$venv" ]; then
    echo "python-env.sh: (re)building $venv" >&2
    rm -rf -- "$venv" || die "cannot remove the broken venv at $venv"
fi

"$base_python" -m venv -- "$venv" >&2 \
    || die "creating the virtualenv at $venv failed"
[ -x "$py" ] || die "the new virtualenv has no $py"

echo "python-env.sh: installing ${requirements[*]} into $venv (once; about 15 s)" >&2
"$py" -m pip install --quiet --disable-pip-version-check "${requirements[@]}" >&2 \
    || die "pip install ${requirements[*]} into $venv failed"

# Verify by importing it, including the pieces the interop script drives.
"$py" - "$FOOLSCAP_VERSION" >&2 <<'EOF' || die "foolscap is not importable in $venv after installation"
import sys
import foolscap
from foolscap import banana, storage, vocab, tokens  # noqa: F401
want = sys.argv[1]
if foolscap.__version__ != want:
    sys.exit("installed foolscap is %s, expected %s" % (foolscap.__version__, want))
EOF

printf '%s' "$marker_text" > "$marker.tmp.$$" \
    && mv -f -- "$marker.tmp.$$" "$marker" \
    || die "cannot write the marker file $marker"

echo "$py"
