"""What the ledger's SQL says differently on SQLite and PostgreSQL, and nothing else (pure).

Transaction bodies are written once; they take a `Dialect` for the few statements that truly
differ: claims (SQLite's single writer vs `FOR UPDATE SKIP LOCKED`), id lists (`json_each` vs
arrays), bulk inserts (multi-row VALUES vs `unnest`), row and advisory locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagedrop.ledger.sql import BATCH_COLUMNS, DELIVERY_COLUMNS, JOB_COLUMNS, Stmt, dumps, run

# Advisory lock classes (first key of PostgreSQL's two-int form), so our locks never meet
# another application's; the second key is a hash of the schema (migrations) or drop group.
MIGRATION_LOCK = 0x1D0E
DROP_GROUP_LOCK = 0x1D0F

# What a claim sets; the due-row conditions are the same on both databases.
_CLAIM_JOB_SET = (
    "UPDATE jobs SET state = 'running', lease_owner = :owner, lease_expires = :expires,"
    " attempts = attempts + 1, started_at = COALESCE(started_at, :now)"
)
_DUE_JOBS = (
    "state IN ('queued', 'running') AND run_after <= :now"
    " AND (state = 'queued' OR lease_expires < :now)"
    " ORDER BY (batch_id IS NOT NULL), seq, created_at"
)
_DUE_DELIVERIES = (
    "state = 'pending' AND next_attempt_at <= :now"
    " AND (lease_owner IS NULL OR lease_expires < :now) ORDER BY next_attempt_at, created_at"
)
_LISTABLE = (
    "NOT listing_done AND finished_at IS NULL"
    " AND settle_until IS NULL"  # drop batches are filled by notifications, not listed
    " AND (lease_owner IS NULL OR lease_expires < :now) ORDER BY created_at"
)
_CLAIM_LISTING_SET = (
    "UPDATE batches SET lease_owner = :owner, lease_expires = :expires, lease_seconds = :lease"
)


def _prefixed(table: str, columns: str) -> str:
    """`a, b` as `t.a, t.b`: RETURNING after UPDATE … FROM must say which table it means."""
    return ", ".join(f"{table}.{name}" for name in columns.split(", "))


class Dialect:
    """The statements and fragments that differ per database."""

    name: str
    pos: str  # insertion order, the last tie-breaker of every ordering
    row_locks: bool  # whether `SELECT … FOR UPDATE` exists (it orders concurrent writers)
    lock: str  # suffix of a SELECT whose rows stay locked until commit
    skip_locked: str  # suffix of a sub-SELECT that passes over rows others hold
    claim_jobs: str  # :now :limit :owner :expires -> pos + job columns
    claim_deliveries: str  # :now :limit :owner :expires -> pos + delivery columns
    claim_listing: str  # :now :owner :expires :lease -> batch columns

    def in_list(self, column: str, name: str) -> str:
        """A condition: `column` is one of the values of list parameter `name`."""
        raise NotImplementedError

    def list_param(self, values: Sequence[Any]) -> Any:
        """A list of values as the parameter `in_list` expects."""
        raise NotImplementedError

    def insert(
        self, table: str, columns: Sequence[tuple[str, str]], values: Sequence[Sequence[Any]],
        *, returning: str | None = None, ignore_conflicts: bool = False,
    ) -> list[Stmt]:
        """Statements inserting `values` rows (answering `returning` rows, if asked)."""
        raise NotImplementedError

    def group_locks(self, groups: Sequence[str]) -> list[Stmt]:
        """Statements taking a transaction-long lock per drop group, in the given order."""
        raise NotImplementedError


class SqliteDialect(Dialect):
    """SQLite: one writer at a time, so a claim needs no row locks; ids travel as JSON."""

    name = "sqlite"
    pos = "rowid"
    row_locks = False
    lock = ""
    skip_locked = ""
    # INDEXED BY pins the claim-order plan: left alone, the planner picks `jobs_state` and sorts
    # every due job.
    claim_jobs = (
        f"{_CLAIM_JOB_SET} WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_claim"
        f" WHERE {_DUE_JOBS} LIMIT :limit) RETURNING rowid AS pos, {JOB_COLUMNS}"
    )
    claim_deliveries = (
        "UPDATE deliveries SET lease_owner = :owner, lease_expires = :expires"
        f" WHERE id IN (SELECT id FROM deliveries WHERE {_DUE_DELIVERIES} LIMIT :limit)"
        f" RETURNING rowid AS pos, {DELIVERY_COLUMNS}"
    )
    claim_listing = (
        f"{_CLAIM_LISTING_SET} WHERE id = (SELECT id FROM batches WHERE {_LISTABLE}, rowid"
        f" LIMIT 1) RETURNING {BATCH_COLUMNS}"
    )
    # Bound parameters per statement stay well under SQLite's limit (32,766).
    _ROWS_PER_INSERT = 500

    def in_list(self, column: str, name: str) -> str:
        # One JSON parameter instead of one placeholder per id: no variable limit to mind.
        return f"{column} IN (SELECT value FROM json_each(:{name}))"

    def list_param(self, values: Sequence[Any]) -> Any:
        return dumps(list(values))

    def insert(
        self, table: str, columns: Sequence[tuple[str, str]], values: Sequence[Sequence[Any]],
        *, returning: str | None = None, ignore_conflicts: bool = False,
    ) -> list[Stmt]:
        if not values:
            return []
        names = ", ".join(name for name, _ in columns)
        one = "(" + ", ".join("?" * len(columns)) + ")"
        tail = (" ON CONFLICT DO NOTHING" if ignore_conflicts else "") + (
            f" RETURNING {returning}" if returning else "")
        out = []
        for start in range(0, len(values), self._ROWS_PER_INSERT):
            chunk = values[start:start + self._ROWS_PER_INSERT]
            sql = f"INSERT INTO {table} ({names}) VALUES {', '.join([one] * len(chunk))}{tail}"
            out.append(Stmt(sql, [v for item in chunk for v in item],
                            "rows" if returning else "none"))
        return out

    def group_locks(self, groups: Sequence[str]) -> list[Stmt]:
        return []  # the write transaction holds SQLite's one write lock already


class PostgresDialect(Dialect):
    """PostgreSQL: replicas claim side by side (SKIP LOCKED), ids travel as arrays."""

    name = "postgres"
    pos = "pos"
    row_locks = True
    lock = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    # SKIP LOCKED passes over rows another replica is claiming right now instead of queueing
    # behind it; MATERIALIZED makes the LIMIT apply once (an inlined subquery may be rescanned).
    claim_jobs = (
        f"WITH due AS MATERIALIZED (SELECT id FROM jobs WHERE {_DUE_JOBS}, pos LIMIT :limit"
        f" FOR UPDATE SKIP LOCKED) {_CLAIM_JOB_SET} FROM due WHERE jobs.id = due.id"
        " RETURNING jobs.pos, " + _prefixed("jobs", JOB_COLUMNS)
    )
    claim_deliveries = (
        f"WITH due AS MATERIALIZED (SELECT id FROM deliveries WHERE {_DUE_DELIVERIES}, pos"
        " LIMIT :limit FOR UPDATE SKIP LOCKED) UPDATE deliveries SET lease_owner = :owner,"
        " lease_expires = :expires FROM due WHERE deliveries.id = due.id RETURNING"
        " deliveries.pos, " + _prefixed("deliveries", DELIVERY_COLUMNS)
    )
    claim_listing = (
        f"WITH free AS MATERIALIZED (SELECT id FROM batches WHERE {_LISTABLE}, pos LIMIT 1"
        f" FOR UPDATE SKIP LOCKED) {_CLAIM_LISTING_SET} FROM free WHERE batches.id = free.id"
        " RETURNING " + _prefixed("batches", BATCH_COLUMNS)
    )

    def in_list(self, column: str, name: str) -> str:
        return f"{column} = ANY(:{name}::text[])"

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

    def insert(
        self, table: str, columns: Sequence[tuple[str, str]], values: Sequence[Sequence[Any]],
        *, returning: str | None = None, ignore_conflicts: bool = False,
    ) -> list[Stmt]:
        # One statement for any number of rows: typed arrays in, rows in the given order
        # (ORDINALITY), so of two new rows with one unique key the first is the one kept.
        if not values:
            return []
        names = ", ".join(name for name, _ in columns)
        picked = ", ".join(f"{n}::jsonb" if kind == "jsonb" else n for n, kind in columns)
        arrays = ", ".join(f"${i}::{'text' if kind == 'jsonb' else kind}[]"
                           for i, (_, kind) in enumerate(columns, start=1))
        sql = (f"INSERT INTO {table} ({names}) SELECT {picked} FROM unnest({arrays})"
               f" WITH ORDINALITY AS r({names}, ord) ORDER BY ord"
               + (" ON CONFLICT DO NOTHING" if ignore_conflicts else "")
               + (f" RETURNING {returning}" if returning else ""))
        params = [list(column) for column in zip(*values, strict=True)]
        return [Stmt(sql, params, "rows" if returning else "none")]

    def group_locks(self, groups: Sequence[str]) -> list[Stmt]:
        return [run("SELECT pg_advisory_xact_lock(:lock_class, hashtext(:group))",
                    lock_class=DROP_GROUP_LOCK, group=group) for group in groups]


SQLITE = SqliteDialect()
POSTGRES = PostgresDialect()
