"""Durable writes: items and events go to a database first, as an append-only change log.

Each change gets a monotonically increasing sequence number, so any process (a CLI call, every
Serve replica) can catch up with `item_changes(after)` / `events(after)` and reach the same state.
Item changes carry their embedding, so replaying them needs no encoder pass. SQLite (WAL,
synchronous=FULL) is the embedded default: a change is on disk before it is acknowledged.
PostgreSQL (`postgresql://...`) is for clusters, where replicas run on many machines; there writers
take a table lock so that sequence numbers become visible in order and no follower skips one.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from llmrec.config import ConfigError, llmrec_home
from llmrec.errors import UnavailableError

log = logging.getLogger(__name__)

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS item_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    scene TEXT, title TEXT, text TEXT, attributes TEXT, created_at INTEGER,
    encoder TEXT, embedding BLOB,
    written_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS event_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value REAL,
    timestamp INTEGER NOT NULL,
    written_at REAL NOT NULL,
    event_id TEXT
);
"""


POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS item_log (
    seq BIGSERIAL PRIMARY KEY,
    item_id TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    scene TEXT, title TEXT, text TEXT, attributes TEXT, created_at BIGINT,
    encoder TEXT, embedding BYTEA,
    written_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS event_log (
    seq BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value DOUBLE PRECISION,
    timestamp BIGINT NOT NULL,
    written_at DOUBLE PRECISION NOT NULL,
    event_id TEXT
);
ALTER TABLE event_log ADD COLUMN IF NOT EXISTS event_id TEXT;
"""
# An event's client id is unique where given (NULLs never collide): a retried write is stored once.
EVENT_ID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS event_log_event_id ON event_log (event_id)"


@dataclass
class ItemChange:
    seq: int
    item_id: str
    op: str
    scene: str = ""
    title: str = ""
    text: str = ""
    attributes: dict[str, Any] | None = None
    created_at: int = 0
    encoder: str = ""
    embedding: np.ndarray | None = None


@dataclass
class EventRecord:
    user_id: str
    item_id: str
    kind: str
    value: float | None
    timestamp: int
    seq: int = 0
    event_id: str | None = None  # the client's idempotency key: an id already stored is not stored again


_PASSWORD_PARAM = re.compile(r"(?i)([?&]password=)([^&]*)")


def _password(url: str) -> tuple[str, str, str] | None:
    """(before, password, after) of a scheme://user:password@host... URL (the last @ before any ?,
    so an unescaped / or @ in the password is still found), or None without one."""
    scheme, sep, rest = url.partition("://")
    main, question, query = rest.partition("?")
    userinfo, at, host = main.rpartition("@")
    if not (sep and at and ":" in userinfo):
        return None
    user, _, secret = userinfo.partition(":")
    return f"{scheme}://{user}:", secret, f"@{host}{question}{query}"


def redact_url(url: str) -> str:
    """The URL with its password (user:PASSWORD@ and ?password=) replaced by ***: what errors and logs show."""
    parts = _password(url)
    if parts is not None:
        url = f"{parts[0]}***{parts[2]}"
    return _PASSWORD_PARAM.sub(r"\1***", url)


def _scrub(message: str, url: str) -> str:
    """A driver's message with every form of the URL's password taken out (libpq may echo it)."""
    secrets = {m.group(2) for m in _PASSWORD_PARAM.finditer(url)}
    parts = _password(url)
    if parts is not None:
        secrets.add(parts[1])
    message = message.replace(url, redact_url(url))
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, unquote(secret)}:
            if form:
                message = message.replace(form, "***")
    return message


def default_store_path(catalog_name: str) -> Path:
    return llmrec_home() / "state" / f"{catalog_name}.sqlite"


class Follower:
    """Calls `sync` every `interval_s` seconds in a daemon thread until stopped: how writes made elsewhere
    reach an idle replica within about that interval. A failing sync (the store away) is logged once
    per outage and tried again at the next tick; `alive` is what a replica's health check reads."""

    def __init__(self, sync: Callable[[], int], interval_s: float) -> None:
        self._sync, self._interval_s = sync, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmrec-store-follow", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        failing = False
        while not self._stop.wait(self._interval_s):
            try:
                self._sync()
            except Exception:
                if not failing:
                    log.exception("store sync failed; trying again every %.1f s (answers come from the writes applied so far)", self._interval_s)
                failing = True
            else:
                if failing:
                    log.warning("store sync works again")
                failing = False

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()


class Store:
    """The change log of one catalog's writes: SQLite or PostgreSQL by URL (`Store.open`).

    Subclasses run SQL written with `?` placeholders; `_write` appends rows in one transaction and
    returns the last sequence number, `_read` returns rows. Thread-safe.
    """

    @classmethod
    def open(cls, url: str | Path | None, catalog_name: str = "") -> Store:
        """`postgresql://...`, `sqlite:///PATH` or a path; none means the embedded default for this catalog."""
        url = str(url or default_store_path(catalog_name))
        if url.startswith(("postgresql://", "postgres://")):
            return PostgresStore(url)
        if "://" in url and not url.startswith("sqlite:///"):
            raise ConfigError(f"store url {redact_url(url)!r}: use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB (no driver suffix such as +psycopg)")
        return SQLiteStore(url)

    def _write(self, sql: str, rows: list[tuple], idempotent: bool = False) -> int:
        """Append `rows` in one transaction; `idempotent` rows land once however often they are sent."""
        raise NotImplementedError

    def _read(self, sql: str, params: tuple) -> list[tuple]:
        raise NotImplementedError

    def ping(self) -> None:
        """Raises if the database cannot answer (health checks)."""
        self._read("SELECT 1", ())

    def close(self) -> None:
        raise NotImplementedError

    def upsert_items(self, changes: Iterable[ItemChange]) -> int:
        """Append item upserts (with embeddings); returns the last sequence number written."""
        now = time.time()
        rows = [
            (
                c.item_id, "upsert", c.scene, c.title, c.text, json.dumps(c.attributes or {}, ensure_ascii=False),
                c.created_at, c.encoder,
                None if c.embedding is None else np.asarray(c.embedding, dtype=np.float32).tobytes(),  # not a 1-element NaN
                now,
            )
            for c in changes
        ]
        return self._write(
            "INSERT INTO item_log (item_id, op, scene, title, text, attributes, created_at, encoder, embedding, written_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def upsert_items_if_latest(self, changes: Iterable[tuple[ItemChange, int]]) -> int:
        """Append each upsert (without an embedding: every reader embeds it) only while the given
        sequence number is still its item's latest change, checked in the write's own transaction:
        a write derived from an older state of an item never lands over a newer one."""
        now = time.time()
        rows = [
            (c.item_id, c.scene, c.title, c.text, json.dumps(c.attributes or {}, ensure_ascii=False), c.created_at, now, c.item_id, seq)
            for c, seq in changes
        ]
        return self._write(
            "INSERT INTO item_log (item_id, op, scene, title, text, attributes, created_at, encoder, written_at)"
            " SELECT ?, 'upsert', ?, ?, ?, ?, ?, '', ? WHERE (SELECT MAX(seq) FROM item_log WHERE item_id = ?) = ?",
            rows,
        )

    def delete_items(self, item_ids: Iterable[str]) -> int:
        now = time.time()
        return self._write("INSERT INTO item_log (item_id, op, written_at) VALUES (?, 'delete', ?)", [(i, now) for i in item_ids])

    def add_events(self, events: Iterable[EventRecord]) -> int:
        """Append events; one whose `event_id` is already stored is skipped (a retried write lands once)."""
        now = time.time()
        rows = [(e.user_id, e.item_id, e.kind, e.value, e.timestamp, now, e.event_id) for e in events]
        return self._write(
            "INSERT INTO event_log (user_id, item_id, kind, value, timestamp, written_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            rows,
            idempotent=all(row[-1] is not None for row in rows),
        )

    def item_changes(self, after: int = 0) -> list[ItemChange]:
        rows = self._read(
            "SELECT seq, item_id, op, scene, title, text, attributes, created_at, encoder, embedding"
            " FROM item_log WHERE seq > ? ORDER BY seq",
            (after,),
        )
        return [_item_change(r) for r in rows]

    def last_sequence(self, table: str) -> int:
        """The newest sequence number of `item_log` or `event_log` (0 when empty)."""
        if table not in ("item_log", "event_log"):
            raise ValueError(f"no such log: {table}")
        return int(self._read(f"SELECT COALESCE(MAX(seq), 0) FROM {table}", ())[0][0])

    def latest_item_changes(self, upto: int) -> list[ItemChange]:
        """The log up to `upto` compacted: each item's latest change only (a delete included), in log order.
        What a replica starts from: one row per item, however often items were rewritten."""
        rows = self._read(
            "SELECT seq, item_id, op, scene, title, text, attributes, created_at, encoder, embedding FROM ("
            " SELECT *, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY seq DESC) AS newest FROM item_log WHERE seq <= ?"
            ") AS latest WHERE newest = 1 ORDER BY seq",
            (upto,),
        )
        return [_item_change(r) for r in rows]

    def latest_events(self, per_user: int, upto: int) -> list[EventRecord]:
        """Each user's latest `per_user` events up to `upto`, in log order: what a replica reads back at start
        instead of the whole log (popularity comes from `event_counts`)."""
        rows = self._read(
            "SELECT seq, user_id, item_id, kind, value, timestamp, event_id FROM ("
            " SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY seq DESC) AS newest FROM event_log WHERE seq <= ?"
            ") AS latest WHERE newest <= ? ORDER BY seq",
            (upto, per_user),
        )
        return [_event(r) for r in rows]

    def event_counts(self, upto: int) -> dict[str, int]:
        """Events per item up to `upto`, dislikes left out: the popularity every event ever added."""
        return {item: int(n) for item, n in self._read("SELECT item_id, COUNT(*) FROM event_log WHERE seq <= ? AND kind <> 'dislike' GROUP BY item_id", (upto,))}

    def events(self, after: int = 0) -> list[EventRecord]:
        rows = self._read("SELECT seq, user_id, item_id, kind, value, timestamp, event_id FROM event_log WHERE seq > ? ORDER BY seq", (after,))
        return [_event(r) for r in rows]


def _item_change(r: tuple) -> ItemChange:
    return ItemChange(
        seq=r[0], item_id=r[1], op=r[2], scene=r[3] or "", title=r[4] or "", text=r[5] or "",
        attributes=json.loads(r[6]) if r[6] else None, created_at=r[7] or 0, encoder=r[8] or "",
        embedding=np.frombuffer(bytes(r[9]), dtype=np.float32) if r[9] else None,
    )


def _event(r: tuple) -> EventRecord:
    return EventRecord(seq=r[0], user_id=r[1], item_id=r[2], kind=r[3], value=r[4], timestamp=r[5], event_id=r[6])


class SQLiteStore(Store):
    """The embedded default: one file, WAL, every commit synced to disk; safe across processes of one machine."""

    def __init__(self, path: Path | str) -> None:
        path = Path(str(path).removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SQLITE_SCHEMA)
        if "event_id" not in {row[1] for row in self._db.execute("PRAGMA table_info(event_log)")}:  # a store made before event ids
            self._db.execute("ALTER TABLE event_log ADD COLUMN event_id TEXT")
        self._db.execute(EVENT_ID_INDEX)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _read(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _write(self, sql: str, rows: list[tuple], idempotent: bool = False) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # one writer at a time, across processes
            try:
                self._db.executemany(sql, rows)
                seq = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(seq)


class PostgresStore(Store):
    """A server database shared by every replica of a cluster (needs the `postgres` extra: psycopg).

    When the server goes away (a restart, a failover), each later call tries one new connection
    (`connect_timeout_s` at most) and, if the server is still away, fails at once with
    `UnavailableError` (503) instead of waiting: a replica keeps answering reads from what it has
    applied, and writes succeed again on the first call after the server is back. Followers keep
    the sequence numbers they applied, so they resume where they were. A read that loses its
    connection is retried once on a new one; a write only when its rows never went out (or when it
    is idempotent: keyed events), so nothing is applied twice, and nothing unacknowledged is lost."""

    def __init__(self, url: str, connect_timeout_s: float = 2.0) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError(f"store url {redact_url(url)!r} needs psycopg: pip install 'llmrec[postgres]'") from None
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._psycopg = psycopg
        self._lock = threading.Lock()
        self._db = self._connect()
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(72016)")  # CREATE IF NOT EXISTS races between replicas
            self._db.execute(POSTGRES_SCHEMA + EVENT_ID_INDEX)

    def _connect(self):  # -> psycopg.Connection
        try:
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s)))
        except self._psycopg.Error as error:  # libpq's message can quote the URL, password included
            raise ConfigError(f"cannot open the store at {redact_url(self.url)!r}: {_scrub(str(error).strip(), self.url)}") from None

    def _connection(self):  # -> psycopg.Connection; call with the lock held
        """The open connection; after the server went away, one new connection tried, or UnavailableError."""
        if not (self._db.closed or self._db.broken):
            return self._db
        try:
            self._db = self._connect()
        except ConfigError as error:  # the details (where the database is) go to the log, not to clients
            log.warning("store: %s", error)
            raise UnavailableError("the store is not answering; try again") from None
        log.warning("store: reconnected to %s", redact_url(self.url))
        return self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _read(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock:
            try:
                return self._connection().execute(sql.replace("?", "%s"), params).fetchall()
            except self._psycopg.OperationalError as error:  # the connection died under this read: once more on a new one
                if not (self._db.closed or self._db.broken):
                    raise
                try:
                    return self._connection().execute(sql.replace("?", "%s"), params).fetchall()
                except self._psycopg.OperationalError:
                    log.warning("store: %s lost its connection during a read", redact_url(self.url))
                    raise UnavailableError("the store is not answering; try again") from error

    def _write(self, sql: str, rows: list[tuple], idempotent: bool = False) -> int:
        if not rows:
            return 0
        with self._lock:
            try:
                return self._write_once(sql, rows)
            except _NotSent:  # lost before the rows went out (a server restart shows on first use): once more
                try:
                    return self._write_once(sql, rows)
                except (_NotSent, self._psycopg.OperationalError) as error:
                    raise self._unacknowledged() from error
            except self._psycopg.OperationalError as error:  # lost after: whether it committed is unknown
                if not idempotent:
                    raise self._unacknowledged() from error
                try:  # rows that land once however often they are sent: send them again
                    return self._write_once(sql, rows)
                except (_NotSent, self._psycopg.OperationalError) as again:
                    raise self._unacknowledged() from again

    def _write_once(self, sql: str, rows: list[tuple]) -> int:
        sent = False
        try:
            with self._connection().transaction():
                # Writers in sequence order: a follower that read up to seq N never sees N-1 commit later.
                self._db.execute(f"LOCK TABLE {sql.split()[2]} IN SHARE ROW EXCLUSIVE MODE")  # INSERT INTO <table>
                sent = True
                with self._db.cursor() as cursor:
                    cursor.executemany(sql.replace("?", "%s") + " RETURNING seq", rows, returning=True)
                    last = 0
                    while True:
                        row = cursor.fetchone()  # None for a conditional insert that inserted nothing
                        last = max(last, row[0] if row else 0)
                        if not cursor.nextset():
                            return int(last)
        except self._psycopg.OperationalError as error:
            if not sent and (self._db.closed or self._db.broken):
                raise _NotSent from error
            raise

    def _unacknowledged(self) -> UnavailableError:
        log.warning("store: %s dropped the connection during a write", redact_url(self.url))
        return UnavailableError("the store dropped the connection during a write; nothing was acknowledged, try again")


class _NotSent(Exception):
    """A write whose connection was gone before any row was sent: safe to send again."""
