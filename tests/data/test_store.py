"""The durable change log: round trips, sequence numbers, catch-up, durability, several writers."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from llmrec.config import ConfigError
from llmrec.data.store import EventRecord, ItemChange, PostgresStore, SQLiteStore, Store


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    """A fresh database of each kind: a SQLite file, or a new schema-free PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'catalog.sqlite'}"
    import psycopg

    base = request.getfixturevalue("postgres_url")
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return base.replace("/llmrec?", f"/{name}?")


@pytest.fixture
def store(database):
    opened = Store.open(database)
    yield opened
    opened.close()


def change(item_id: str, seed: int = 0, **fields) -> ItemChange:
    embedding = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    defaults = dict(scene="movie", title=f"Title {item_id}", text="A film.", attributes={"year": 1999, "genres": ["Drama"]},
                    created_at=1_700_000_000, encoder="minilm@abc", embedding=embedding)
    return ItemChange(seq=0, item_id=item_id, op="upsert", **{**defaults, **fields})


def test_item_upsert_round_trips_every_field_and_the_embedding(store):
    written = [change("m1", seed=1), change("m2", seed=2, attributes={"title_ja": "映画"}, text="")]
    store.upsert_items(written)
    read = store.item_changes()
    assert [c.item_id for c in read] == ["m1", "m2"]
    for before, after in zip(written, read):
        assert after.op == "upsert"
        assert (after.scene, after.title, after.text, after.attributes, after.created_at, after.encoder) == (
            before.scene, before.title, before.text, before.attributes, before.created_at, before.encoder
        )
        assert after.embedding.dtype == np.float32
        np.testing.assert_array_equal(after.embedding, before.embedding)


def test_delete_is_logged_as_its_own_change(store):
    store.upsert_items([change("m1")])
    store.delete_items(["m1", "m9"])
    read = store.item_changes()
    assert [(c.item_id, c.op) for c in read] == [("m1", "upsert"), ("m1", "delete"), ("m9", "delete")]
    assert read[1].embedding is None and read[1].attributes is None


def test_event_round_trip_keeps_values_and_missing_values(store):
    events = [EventRecord("u1", "m1", "rating", 4.5, 100), EventRecord("u1", "m2", "click", None, 101)]
    store.add_events(events)
    read = store.events()
    assert [(e.user_id, e.item_id, e.kind, e.value, e.timestamp) for e in read] == [
        ("u1", "m1", "rating", 4.5, 100),
        ("u1", "m2", "click", None, 101),
    ]
    assert read[0].seq < read[1].seq


def test_an_event_sent_again_with_its_id_is_stored_once(store):
    store.add_events([EventRecord("u1", "m1", "like", None, 100, event_id="w1:0"), EventRecord("u1", "m2", "click", None, 101)])
    store.add_events([EventRecord("u1", "m1", "like", None, 100, event_id="w1:0"), EventRecord("u1", "m3", "click", None, 102, event_id="w1:1")])
    store.add_events([EventRecord("u1", "m2", "click", None, 101)])  # without an id: every send is an event
    read = store.events()
    assert [(e.item_id, e.event_id) for e in read] == [("m1", "w1:0"), ("m2", None), ("m3", "w1:1"), ("m2", None)]


def test_a_store_made_before_event_ids_gains_them_and_keeps_its_events(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE event_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, item_id TEXT NOT NULL, kind TEXT NOT NULL,"
                " value REAL, timestamp INTEGER NOT NULL, written_at REAL NOT NULL)")
    old.execute("INSERT INTO event_log (user_id, item_id, kind, value, timestamp, written_at) VALUES ('u', 'a', 'like', NULL, 1, 0)")
    old.commit()
    old.close()
    store = SQLiteStore(path)
    store.add_events([EventRecord("u", "b", "like", None, 2, event_id="x")] * 2)
    assert [(e.item_id, e.event_id) for e in store.events()] == [("a", None), ("b", "x")]
    store.close()


def test_a_replica_starts_from_the_logs_compacted(store):
    """Each item's latest change, each user's newest events, every event counted: however long the logs."""
    store.upsert_items([change("a", title="A1"), change("b")])
    store.upsert_items([change("a", title="A2")])
    store.delete_items(["b"])
    store.upsert_items([change("c")])
    upto = store.last_sequence("item_log")
    store.upsert_items([change("a", title="after")])  # past `upto`: a follower reads it later
    assert [(c.item_id, c.op, c.title) for c in store.latest_item_changes(upto)] == [("a", "upsert", "A2"), ("b", "delete", ""), ("c", "upsert", "Title c")]
    store.add_events([EventRecord("u1", f"m{n % 2}", "like", None, n) for n in range(6)] + [EventRecord("u2", "m0", "dislike", None, 9)])
    events_upto = store.last_sequence("event_log")
    store.add_events([EventRecord("u1", "m9", "like", None, 10)])
    assert [(e.user_id, e.timestamp) for e in store.latest_events(2, events_upto)] == [("u1", 4), ("u1", 5), ("u2", 9)]
    assert store.event_counts(events_upto) == {"m0": 3, "m1": 3}
    assert store.last_sequence("event_log") > events_upto and store.last_sequence("item_log") > upto


def test_sequence_numbers_increase_and_writes_return_the_last_one(store):
    first = store.upsert_items([change("a"), change("b")])
    second = store.delete_items(["a"])
    third = store.upsert_items([change("c")])
    assert first < second < third
    seqs = [c.seq for c in store.item_changes()]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert seqs[1] == first and seqs[-1] == third
    assert store.add_events([EventRecord("u", "a", "click", None, 1)]) < store.add_events([EventRecord("u", "b", "click", None, 2)])


def test_item_changes_after_a_sequence_number_returns_only_newer_changes(store):
    seen = store.upsert_items([change("a"), change("b")])
    store.delete_items(["a"])
    store.upsert_items([change("c")])
    newer = store.item_changes(after=seen)
    assert [(c.item_id, c.op) for c in newer] == [("a", "delete"), ("c", "upsert")]
    assert all(c.seq > seen for c in newer)
    assert store.item_changes(after=newer[-1].seq) == []


def test_events_after_a_sequence_number_returns_only_newer_events(store):
    seen = store.add_events([EventRecord("u1", "a", "click", None, 1)])
    store.add_events([EventRecord("u2", "b", "like", None, 2)])
    assert [e.user_id for e in store.events(after=seen)] == ["u2"]


def test_a_conditional_upsert_lands_only_while_its_item_is_unchanged(store):
    first = store.upsert_items([change("m1"), change("m2")])
    derived = change("m1", title="Profiled", attributes={"profile": {"key": "k"}}, embedding=None)
    store.upsert_items_if_latest([(derived, first - 1), (change("m2", title="Stale", embedding=None), first - 2)])
    landed = store.item_changes(first)
    assert [(c.item_id, c.title, c.attributes, c.embedding) for c in landed] == [("m1", "Profiled", {"profile": {"key": "k"}}, None)]
    store.upsert_items([change("m1", title="The client's")])  # the item changes again: a write derived from before it never lands
    store.upsert_items_if_latest([(derived, landed[0].seq)])
    assert store.item_changes()[-1].title == "The client's"


def test_upsert_without_embedding_reads_back_none(store):
    store.upsert_items([change("m1", embedding=None)])
    assert store.item_changes()[0].embedding is None


def test_writes_survive_closing_and_reopening(database):
    first = Store.open(database)
    item = change("m1", seed=3)
    first.upsert_items([item])
    first.add_events([EventRecord("u1", "m1", "like", None, 5)])
    first.close()

    reopened = Store.open(database)
    try:
        (read,) = reopened.item_changes()
        np.testing.assert_array_equal(read.embedding, item.embedding)
        assert [e.kind for e in reopened.events()] == ["like"]
        # New writes continue the sequence instead of restarting it.
        assert reopened.upsert_items([change("m2")]) > read.seq
    finally:
        reopened.close()


def test_sqlite_url_prefix_is_accepted(tmp_path):
    path = tmp_path / "url.sqlite"
    store = Store.open(f"sqlite:///{path}")
    try:
        assert isinstance(store, SQLiteStore) and store.path == path
        store.delete_items(["x"])
    finally:
        store.close()
    assert path.is_file()


def test_a_write_from_one_store_is_visible_to_another_on_the_same_database(database):
    replica_a, replica_b = Store.open(database), Store.open(database)
    try:
        assert replica_b.item_changes() == []  # b has read before a writes
        seq = replica_a.upsert_items([change("m1", seed=4)])
        replica_a.add_events([EventRecord("u1", "m1", "click", None, 9)])
        (seen,) = replica_b.item_changes()
        assert seen.seq == seq and seen.item_id == "m1"
        np.testing.assert_array_equal(seen.embedding, change("m1", seed=4).embedding)
        assert [e.user_id for e in replica_b.events()] == ["u1"]
        replica_b.delete_items(["m1"])
        assert [c.op for c in replica_a.item_changes(after=seq)] == ["delete"]
    finally:
        replica_a.close()
        replica_b.close()


def run_writers(stores: list[Store], writes_each: int) -> None:
    errors: list[BaseException] = []

    def write(worker: int, store: Store) -> None:
        try:
            for n in range(writes_each):
                store.upsert_items([change(f"w{worker}-{n}", seed=n)])
                store.add_events([EventRecord(f"u{worker}", f"w{worker}-{n}", "click", None, n)])
        except BaseException as error:  # surfaced below: a lost write must fail the test
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w, s)) for w, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors


def check_nothing_lost(store: Store, workers: int, writes_each: int) -> None:
    changes = store.item_changes()
    expected = {f"w{w}-{n}" for w in range(workers) for n in range(writes_each)}
    assert len(changes) == workers * writes_each
    assert {c.item_id for c in changes} == expected
    assert len({c.seq for c in changes}) == len(changes)
    assert len(store.events()) == workers * writes_each


def test_concurrent_writes_from_four_threads_sharing_a_store_lose_nothing(store):
    run_writers([store] * 4, writes_each=50)
    check_nothing_lost(store, workers=4, writes_each=50)


def test_concurrent_writes_from_four_stores_on_one_database_lose_nothing(database):
    stores = [Store.open(database) for _ in range(4)]
    try:
        run_writers(stores, writes_each=50)
        check_nothing_lost(stores[0], workers=4, writes_each=50)
    finally:
        for opened in stores:
            opened.close()


def test_a_follower_reading_during_concurrent_writes_never_skips_a_sequence_number(database):
    """Followers catch up with `after=last seen`: a number that commits late would be lost to them."""
    writers = [Store.open(database) for _ in range(3)]
    follower = Store.open(database)
    seen: list[int] = []
    done = threading.Event()

    def follow() -> None:
        last = 0
        while not done.is_set() or follower.item_changes(after=last):
            for c in follower.item_changes(after=last):
                seen.append(c.seq)
                last = c.seq

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        run_writers(writers, writes_each=30)
    finally:
        done.set()
        thread.join(timeout=60)
        for opened in [*writers, follower]:
            opened.close()
    assert len(seen) == 90 and seen == sorted(set(seen))


def _write_events_in_a_process(url: str, worker: int, n: int) -> None:
    store = Store.open(url)
    try:
        for i in range(n):
            store.add_events([EventRecord(f"u{worker}", f"p{worker}-{i}", "click", None, i, event_id=f"p{worker}-{i}")])
    finally:
        store.close()


def test_writers_in_separate_processes_lose_nothing_and_a_follower_sees_every_event_in_order(database):
    """What replicas on several machines do to one database: three processes write at once while a
    follower reads with `after=last seen`."""
    import multiprocessing

    follower = Store.open(database)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_events_in_a_process, args=(database, w, 20)) for w in range(3)]
    seen: list[int] = []
    try:
        for process in processes:
            process.start()
        while any(p.is_alive() for p in processes) or follower.events(after=seen[-1] if seen else 0):
            seen += [e.seq for e in follower.events(after=seen[-1] if seen else 0)]
        assert [p.exitcode for p in processes] == [0, 0, 0]
        assert len(seen) == 60 and seen == sorted(set(seen))
        assert {e.event_id for e in follower.events()} == {f"p{w}-{i}" for w in range(3) for i in range(20)}
    finally:
        follower.close()


def test_open_picks_the_database_by_url(tmp_path, postgres_url):
    assert isinstance(Store.open(None, "demo"), SQLiteStore)
    with pytest.raises(ConfigError, match="use sqlite:///PATH or postgresql://"):
        Store.open("mysql://db/llmrec")
    opened = Store.open(postgres_url)
    try:
        assert isinstance(opened, PostgresStore)
        opened.ping()
    finally:
        opened.close()


# ---- credentials never appear in an error ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://user:s3cretpw@db.example:5432/llmrec", "postgresql+psycopg://user:***@db.example:5432/llmrec"),
        ("mysql://root:s3cretpw@db/llmrec?password=s3cretpw", "mysql://root:***@db/llmrec?password=***"),
    ],
)
def test_an_unsupported_store_url_is_shown_without_its_password(url, shown):
    with pytest.raises(ConfigError) as caught:
        Store.open(url)
    message = str(caught.value)
    assert "s3cretpw" not in message and shown in message and "postgresql://USER:PASSWORD@HOST:PORT/DB" in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:s3cret pw@/llmrec?host=/nonexistent-llmrec-socket-dir",  # libpq echoes the malformed password
        "postgresql://user:s3cret%20pw@/llmrec?host=/nonexistent-llmrec-socket-dir&bogus=1",
        "postgresql://user@/llmrec?host=/nonexistent-llmrec-socket-dir&password=s3cret",
    ],
)
def test_a_postgresql_connection_error_never_shows_the_password(url):
    with pytest.raises(ConfigError) as caught:
        Store.open(url)
    assert "s3cret" not in str(caught.value) and "nonexistent-llmrec-socket-dir" in str(caught.value)
    assert caught.value.__suppress_context__ and caught.value.__cause__ is None  # the driver's own message is not chained


def test_redact_url_keeps_everything_but_the_secrets():
    from llmrec.data.store import redact_url

    assert redact_url("postgresql://u:p@h:5432/db?sslmode=require") == "postgresql://u:***@h:5432/db?sslmode=require"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"
    assert redact_url("/tmp/state/demo.sqlite") == "/tmp/state/demo.sqlite"
    assert redact_url("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"
    assert redact_url("postgresql://u:pa/ss@h/db?password=x&sslmode=require") == "postgresql://u:***@h/db?password=***&sslmode=require"


def test_after_a_postgresql_restart_reads_and_writes_succeed_again_and_nothing_acknowledged_is_lost(postgres_server):
    """The server restarts under two open stores: each reconnects by itself (no new Store), the
    follower resumes from the sequence number it had, and no acknowledged write is lost."""
    import time

    writer, follower = Store.open(postgres_server.url), Store.open(postgres_server.url)
    try:
        before = writer.upsert_items([change(f"restart-{i}") for i in range(3)])
        seen = follower.item_changes(0)[-1].seq
        assert seen == before
        postgres_server.stop()
        postgres_server.start()
        started = time.monotonic()
        after = writer.upsert_items([change("restart-after")])
        newer = follower.item_changes(seen)
        assert time.monotonic() - started < 5
        assert [c.item_id for c in newer] == ["restart-after"] and newer[0].seq == after > before
        assert {f"restart-{i}" for i in range(3)} <= {c.item_id for c in follower.item_changes(0)}
    finally:
        writer.close()
        follower.close()


def test_while_postgresql_is_down_calls_fail_at_once_with_a_clear_503_and_succeed_once_it_is_back(postgres_server):
    """No waiting on a server that is away: a replica keeps answering from what it applied (reads fail
    fast, the caller degrades) and a write is a 503 the client retries; the first call after works."""
    from llmrec.errors import UnavailableError

    store = PostgresStore(postgres_server.url)
    try:
        postgres_server.stop()
        try:
            for call in (lambda: store.add_events([EventRecord("u", "restart-0", "like", None, 1_700_000_000)]), lambda: store.events(0)):
                with pytest.raises(UnavailableError, match="try again"):
                    call()
        finally:
            postgres_server.start()
        assert store.add_events([EventRecord("u", "restart-0", "like", None, 1_700_000_000)]) > 0
        assert [e.item_id for e in store.events(0)][-1] == "restart-0"
    finally:
        store.close()
