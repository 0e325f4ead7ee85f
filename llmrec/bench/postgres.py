"""A throwaway PostgreSQL server on this machine, for the tests and the fault benchmark.

Started from the system's server programs (`initdb`, `pg_ctl`: Debian's `postgresql` package, which
`scripts/ci_deps.sh` installs), listening on a Unix socket only, with a database `llmrec`;
`stop()` and `start()` restart it under whoever is connected (a database restart, for real).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def postgres_program(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else the newest Debian install (/usr/lib/postgresql/<ver>/bin,
    which Debian's postgresql package leaves off PATH)."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(n) for n in Path(d).parent.name.split(".") if n.isdigit()], reverse=True)
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(debian))


class PostgresServer:
    """One throwaway server: `PostgresServer.create()` makes and starts it, `url` reaches its database
    `llmrec`, `remove()` stops it and deletes its files."""

    def __init__(self, pg_ctl: str, data: Path, root: Path, options: str, as_user: list[str], url: str) -> None:
        self.pg_ctl, self.data, self.root, self.options, self.as_user, self.url = pg_ctl, data, root, options, as_user, url

    @classmethod
    def create(cls) -> PostgresServer:
        """initdb, start, create the database; raises FileNotFoundError when the server programs are missing."""
        import psycopg

        initdb, pg_ctl = postgres_program("initdb"), postgres_program("pg_ctl")
        if not (initdb and pg_ctl):
            raise FileNotFoundError("PostgreSQL server programs (initdb, pg_ctl) not found: scripts/ci_deps.sh installs them (Debian package postgresql)")
        root = Path(tempfile.mkdtemp(prefix="llmrec-pg-"))  # not under a 0700 tree: the server user must reach it
        as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the packages' postgres user
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
            as_user = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        data = root / "data"
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "llmrec", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        server = cls(pg_ctl, data, root, f"-p {port} -k {root} -c listen_addresses=''", as_user, f"postgresql://llmrec@/llmrec?host={root}&port={port}")
        server.start()
        try:
            with psycopg.connect(f"postgresql://llmrec@/postgres?host={root}&port={port}", autocommit=True) as admin:
                admin.execute("CREATE DATABASE llmrec")
        except BaseException:
            server.remove()
            raise
        return server

    def _ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), *args], check=check, capture_output=True)

    def start(self) -> None:
        self._ctl("-l", str(self.root / "server.log"), "-w", "-o", self.options, "start")

    def stop(self, check: bool = True) -> None:
        """A fast shutdown: open connections are cut, as in a database restart or failover."""
        self._ctl("-m", "fast", "-w", "stop", check=check)

    def remove(self) -> None:
        self.stop(check=False)
        shutil.rmtree(self.root, ignore_errors=True)
