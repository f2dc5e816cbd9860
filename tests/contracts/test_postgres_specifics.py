"""PostgresLedger beyond the contract: several replicas on one schema, NOTIFY, URLs, errors."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagedrop.errors import ConfigError, MissingDependencyError, TransientError
from imagedrop.ledger import DropItem, JobKind, NewBatch, NewJob, open_ledger
from imagedrop.ledger._pg_url import missing_driver_message, parse_url, redact, secrets_of
from imagedrop.ledger.schema import POSTGRES_MIGRATIONS as MIGRATIONS
from imagedrop.recipes import JobResult, Recipe
from tests.contracts.ledger_backends import (
    POSTGRES_URL,
    FakeClock,
    PostgresBackend,
    fresh_schema,
    postgres_admin,
)

asyncpg = pytest.importorskip("asyncpg")
from imagedrop.ledger.postgres import PostgresLedger  # noqa: E402 - needs the driver

LEASE = 30.0
PASSWORD = "s3cr3t-Pa55word"


def new_job(name: str, **kw: object) -> NewJob:
    return NewJob(kind=JobKind.B64, filename=name, recipe=Recipe(prompt="p"), **kw)  # type: ignore[arg-type]


def drop(key: str) -> DropItem:
    job = NewJob(kind=JobKind.DROP, filename=key, recipe=Recipe(prompt="p"),
                 dedupe_key=f"drop:b:food/{key}:e1", source_bucket="b", source_key=f"food/{key}")
    batch = NewBatch(kind="drop", bucket="b", prefix="food/", output_bucket="b",
                     output_prefix="edited/", recipe=Recipe(prompt="p"), group_key="b/food/")
    return DropItem(job=job, batch=batch, settle_seconds=5.0, max_settle_seconds=60.0)


@pytest.fixture(name="backend")
async def backend_fixture(tmp_path: Path, clock: FakeClock) -> AsyncIterator[PostgresBackend]:
    backend = PostgresBackend(tmp_path, clock)
    await backend.start()
    yield backend
    await backend.drop()


@pytest.fixture(name="pair")
async def pair_fixture(backend: PostgresBackend) -> AsyncIterator[tuple[PostgresLedger, ...]]:
    """Two ledgers on one schema, as two replicas would have."""
    ledgers = [backend.make(), backend.make()]
    for ledger in ledgers:
        await ledger.open()
    yield tuple(ledgers)  # type: ignore[misc]
    for ledger in ledgers:
        await ledger.close()


async def until(condition, what: str, deadline: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `condition` (a coroutine function) until true, failing after `deadline` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not await condition():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def listener_pid(ledger: PostgresLedger) -> int | None:
    """The server process of the ledger's LISTEN connection (private: this file tests it)."""
    listener = ledger._pg._listener
    conn = listener._conn if listener is not None else None
    return None if conn is None else conn.get_server_pid()


class TestReplicas:
    """Two ledgers on one schema never hand out the same work twice."""

    async def test_concurrent_claims_are_disjoint(self, pair: tuple[PostgresLedger, ...]):
        a, b = pair
        await a.create_jobs([new_job(f"{i}.png") for i in range(200)])
        claims = [(a if i % 2 else b).claim_jobs(f"w{i}", 7, LEASE) for i in range(40)]
        claimed = [job.id for jobs in await asyncio.gather(*claims) for job in jobs]
        assert len(claimed) == len(set(claimed)) == 200

    async def test_concurrent_delivery_claims_are_disjoint(self, pair: tuple[PostgresLedger, ...]):
        from tests.contracts.test_ledger import new_delivery

        a, b = pair
        [(job, _)] = await a.create_jobs([new_job("a.png")])
        await a.claim_jobs("w", 1, LEASE)
        await a.complete_job(job.id, "w", JobResult(), [new_delivery() for _ in range(50)])
        claims = [(a if i % 2 else b).claim_deliveries(f"s{i}", 3, LEASE) for i in range(30)]
        claimed = [d.id for ds in await asyncio.gather(*claims) for d in ds]
        assert len(claimed) == len(set(claimed)) == 50

    async def test_drops_into_one_folder_make_one_batch(self, pair: tuple[PostgresLedger, ...]):
        a, b = pair
        calls = [(a if i % 2 else b).record_drops([drop(f"{i}.jpg")]) for i in range(20)]
        jobs = [job for [(job, new)] in await asyncio.gather(*calls) if new]
        assert len(jobs) == 20
        assert len({job.batch_id for job in jobs}) == 1
        assert sorted(job.seq for job in jobs) == list(range(20))

    async def test_a_settling_batch_is_updated_in_place(self, backend: PostgresBackend):
        """Each drop pushes its folder's deadline out: PostgreSQL must be able to do that as a
        HOT update (no index names the deadline), or every drop adds an entry to each of the
        batch table's indexes and leaves a dead row that lookups wade through until vacuum."""
        ledger = backend.make()
        await ledger.open()
        try:
            for i in range(120):
                backend.clock.advance(0.01)  # each drop moves the deadline
                [(_, new)] = await ledger.record_drops([drop(f"{i}.jpg")])
                assert new
        finally:
            await ledger.close()  # its sessions end, and with them their statistics are sent
        admin = await postgres_admin()
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                updated, hot = await admin.fetchrow(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                    " WHERE schemaname = $1 AND relname = 'batches'", backend.schema)
                # The first drop makes the batch with its deadline; each later one moves it.
                if updated >= 119 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        assert updated >= 119
        assert hot >= 0.9 * updated, (updated, hot)


    async def test_statements_keep_their_indexes_as_tables_grow(self, backend: PostgresBackend,
                                                                  clock: FakeClock):
        """A pooled session's prepared statements must not keep a plan made while the tables
        were empty: a generic plan cached then scans the whole jobs table for every drop
        once it holds thousands (no ANALYZE has run to make the session plan again)."""
        ledger = PostgresLedger(POSTGRES_URL, clock=clock, schema=backend.schema, pool_max=1)
        await ledger.open()
        try:
            for i in range(10):  # the statements are planned on all but empty tables
                clock.advance(0.01)
                await ledger.record_drops([drop(f"early{i}.jpg")])
            for start in range(0, 5000, 1000):
                await ledger.create_jobs([new_job(f"{n}.png", dedupe_key=f"k{n}")
                                          for n in range(start, start + 1000)])
            for i in range(30):
                clock.advance(0.01)
                await ledger.record_drops([drop(f"late{i}.jpg")])
        finally:
            await ledger.close()  # its session ends, and with it its statistics are sent
        scans = await _scans(backend.schema, "jobs", at_least=40)
        # 40 drops read jobs; scanning it whole 30 times would read 150,000 rows
        assert scans["seq_tup_read"] < 5000, scans

class TestNotify:
    """A job recorded by one replica wakes another through LISTEN/NOTIFY."""

    async def test_create_on_a_wakes_b(self, pair: tuple[PostgresLedger, ...]):
        a, b = pair
        loop = asyncio.get_running_loop()
        timeout = 20.0
        waiter = b.wait_for_work(timeout, "jobs")
        await asyncio.sleep(0)  # let the waiter park its future before the work appears
        started = loop.time()
        await a.create_jobs([new_job("a.png")])
        await asyncio.wait_for(waiter, timeout=timeout * 2)
        assert loop.time() - started < timeout / 2  # woken, not timed out

    async def test_only_the_kind_of_work_made_wakes_b(self, pair: tuple[PostgresLedger, ...]):
        # Every replica hears every NOTIFY: one that woke its sender and lister for each new
        # job would query the ledger twice per job per replica, for nothing.
        a, b = pair
        deliveries = b.wait_for_work(20.0, "deliveries")
        jobs = b.wait_for_work(20.0, "jobs")
        await asyncio.sleep(0)
        await a.create_jobs([new_job("a.png")])
        await asyncio.wait_for(jobs, timeout=40)
        assert not deliveries.done()
        # An older replica's payload names no kind: every kind wakes.
        admin = await postgres_admin()
        try:
            await admin.execute(f'SET search_path = "{b.schema}"')
            await admin.execute("SELECT pg_notify('imagedrop_work', current_schema())")
        finally:
            await admin.close()
        await asyncio.wait_for(deliveries, timeout=40)

    async def test_listener_comes_back_after_losing_its_connection(
        self, pair: tuple[PostgresLedger, ...]
    ):
        a, b = pair
        lost = listener_pid(b)
        admin = await postgres_admin()
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lost)
        finally:
            await admin.close()

        async def back() -> bool:
            return b.listening and listener_pid(b) not in (None, lost)

        await until(back, "the listener to reconnect")
        loop = asyncio.get_running_loop()
        waiter = b.wait_for_work(20.0, "jobs")
        await asyncio.sleep(0)
        started = loop.time()
        await a.create_jobs([new_job("after.png")])
        await asyncio.wait_for(waiter, timeout=40)
        assert loop.time() - started < 10


class TestMigrations:
    """Replicas starting together on a fresh schema apply each migration once."""

    async def test_concurrent_opens(self, clock: FakeClock):
        admin = await postgres_admin()  # skips (fails under CI) without a server
        schema = fresh_schema()  # not created: the ledgers create it
        ledgers = [PostgresLedger(POSTGRES_URL, clock=clock, schema=schema, pool_max=2)
                   for _ in range(3)]
        try:
            await asyncio.gather(*(ledger.open() for ledger in ledgers))
            [(job, _)] = await ledgers[0].create_jobs([new_job("a.png")])
            assert (await ledgers[2].get_job(job.id)) == job
            versions = await admin.fetch(f'SELECT version FROM "{schema}".schema_version'
                                         " ORDER BY version")
            assert [row["version"] for row in versions] == list(range(1, len(MIGRATIONS) + 1))
        finally:
            await asyncio.gather(*(ledger.close() for ledger in ledgers))
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()

    async def test_refuses_a_newer_schema(self, backend: PostgresBackend):
        ledger = backend.make()
        await ledger.open()
        await ledger.close()
        admin = await postgres_admin()
        try:
            await admin.execute(f'INSERT INTO "{backend.schema}".schema_version VALUES (999, 0)')
        finally:
            await admin.close()
        with pytest.raises(ConfigError, match="newer"):
            await backend.make().open()


class TestUrls:
    """`postgresql://` URLs: our `schema` option is taken out, the rest goes to asyncpg."""

    def test_schema_option(self):
        parsed = parse_url("postgresql://u:p@db:5433/app?schema=tenant_1&sslmode=disable")
        assert parsed == ("postgresql://u:p@db:5433/app?sslmode=disable", "tenant_1")
        assert parse_url("postgres://db/app") == ("postgres://db/app", None)

    def test_open_ledger_picks_postgres(self):
        ledger = open_ledger(f"postgresql://u:{PASSWORD}@db/app?schema=s1")
        assert isinstance(ledger, PostgresLedger) and ledger.schema == "s1"
        assert PASSWORD not in repr(ledger)

    @pytest.mark.parametrize("url", [f"postgresql://u:{PASSWORD}@db/app?schema=Bad-Name",
                                     f"postgresql://u:{PASSWORD}@db:port/app",
                                     f"mysql://u:{PASSWORD}@db/app"])
    def test_bad_urls_hide_the_password(self, url: str):
        with pytest.raises(ConfigError) as caught:
            PostgresLedger.from_url(url)
        assert PASSWORD not in str(caught.value)

    def test_redact(self):
        dsn = f"postgresql://u:{PASSWORD}@db/app"
        text = f"failed for {dsn} (password {PASSWORD})"
        assert redact(text, secrets_of(dsn)) == "failed for *** (password ***)"
        query_dsn = f"postgresql://db/app?user=u&password={PASSWORD}"
        assert PASSWORD not in redact(f"pw={PASSWORD}", secrets_of(query_dsn))


class TestErrors:
    """Driver errors become imagedrop errors that never show the password."""

    async def test_unreachable_server_is_transient(self, clock: FakeClock):
        # Port 1 on localhost refuses at once: nothing listens there.
        ledger = PostgresLedger(f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
                                clock=clock)
        with pytest.raises(TransientError) as caught:
            await ledger.open()
        assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)
        assert "127.0.0.1:1/test" in str(caught.value)

    async def test_a_body_run_as_one_statement_cannot_run_two(
        self, pair: tuple[PostgresLedger, ...]
    ):
        # Outside a transaction each statement commits by itself: a body whose two statements
        # must stand together has to run as a "write", and one that does not is refused
        # before its second statement runs.
        from imagedrop.ledger.sql import run

        def two(d: object, now: float):  # type: ignore[no-untyped-def]
            yield run("UPDATE jobs SET seq = seq + 1")
            yield run("UPDATE jobs SET seq = seq + 1")

        ledger = pair[0]
        await ledger.create_jobs([new_job("a.png")])
        with pytest.raises(RuntimeError, match="second"):
            await ledger._run("single", two)
        [job] = await ledger.list_jobs()
        assert job.seq == 1  # the first ran (and committed): why such a body is refused
        await ledger._run("write", two)
        [job] = await ledger.list_jobs()
        assert job.seq == 3

    async def test_closed_ledger_refuses_calls(self, clock: FakeClock):
        ledger = PostgresLedger(POSTGRES_URL, clock=clock)
        with pytest.raises(RuntimeError, match="not open"):
            await ledger.get_job("x")

    def test_missing_driver_message(self):
        message = missing_driver_message("asyncpg")
        assert "pip install 'imagedrop[postgres]'" in message and "asyncpg" in message

    def test_import_without_the_driver(self, monkeypatch: pytest.MonkeyPatch):
        # None in sys.modules makes `import asyncpg` fail as if it were not installed.
        monkeypatch.setitem(sys.modules, "asyncpg", None)
        for name in [n for n in sys.modules if n.startswith("imagedrop.ledger._pg_")
                     or n == "imagedrop.ledger.postgres"]:
            monkeypatch.delitem(sys.modules, name)
        with pytest.raises(MissingDependencyError, match=r"pip install 'imagedrop\[postgres\]'"):
            import imagedrop.ledger.postgres  # noqa: F401
        with pytest.raises(MissingDependencyError, match="postgres"):
            open_ledger("postgresql://db/app")


async def _scans(schema: str, table: str, at_least: int) -> dict[str, int]:
    """The table's scan counters once they count `at_least` scans and have stopped moving
    (sessions report theirs when they end, some of it earlier), with a deadline."""
    admin = await postgres_admin()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        last: dict[str, int] = {}
        while True:
            found = dict(await admin.fetchrow(
                "SELECT seq_scan, seq_tup_read, COALESCE(idx_scan, 0) AS idx_scan"
                " FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2",
                schema, table))
            settled = found == last and found["seq_scan"] + found["idx_scan"] >= at_least
            if settled or asyncio.get_running_loop().time() > deadline:
                return found
            last = found
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
