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
    "state = 'running', lease_owner = :owner, lease_expires = :expires,"
    " attempts = attempts + 1, started_at = COALESCE(started_at, :now)"
)
# `{free}`: the row's lease may be taken (see `Dialect.free`).
_DUE_JOBS = (
    "state IN ('queued', 'running') AND run_after <= :now AND (state = 'queued' OR {free})"
    " ORDER BY (batch_id IS NOT NULL), seq, created_at"
)
_DUE_DELIVERIES = (
    "state = 'pending' AND next_attempt_at <= :now AND (lease_owner IS NULL OR {free})"
    " ORDER BY next_attempt_at, created_at"
)
_LISTABLE = (
    "NOT listing_done AND finished_at IS NULL"
    " AND group_key IS NULL"  # drop batches are filled by notifications, not listed
    " AND (lease_owner IS NULL OR {free}) ORDER BY created_at"
)
_CLAIM_LISTING_SET = "lease_owner = :owner, lease_expires = :expires, lease_seconds = :lease"


class Dialect:
    """The statements and fragments that differ per database."""

    name: str
    pos: str  # insertion order, the last tie-breaker of every ordering
    row_locks: bool  # whether `SELECT … FOR UPDATE` exists (it orders concurrent writers)
    lock: str  # suffix of a SELECT whose rows stay locked until commit
    skip_locked: str  # suffix of a sub-SELECT that passes over rows others hold
    picked: str  # a condition on `{}`, a sub-SELECT of ids: the row's id is among them
    claim_index: str  # what pins the job claim's plan to its index, if the planner needs it
    _alive: str  # a condition on `{}`, an owner name: its process is known to be alive

    def __init__(self) -> None:
        # A claim takes the due rows in order, passing over those another replica is
        # claiming right now (SKIP LOCKED, where rows lock) instead of queueing behind it.
        def claim(table: str, assignments: str, due: str, columns: str, limit: str,
                  index: str = "") -> str:
            ids = (f"SELECT id FROM {table}{index} WHERE {due.format(free=self.free())},"
                   f" {self.pos} LIMIT {limit}{self.skip_locked}")
            return (f"UPDATE {table} SET {assignments} WHERE id {self.picked.format(ids)}"
                    f" RETURNING {self.pos} AS pos, {columns}")

        # :now :limit :owner :expires (:lease) -> pos + the rows' columns
        self.claim_jobs = claim("jobs", _CLAIM_JOB_SET, _DUE_JOBS, JOB_COLUMNS, ":limit",
                                self.claim_index)
        self.claim_deliveries = claim("deliveries", "lease_owner = :owner, lease_expires ="
                                      " :expires", _DUE_DELIVERIES, DELIVERY_COLUMNS, ":limit")
        self.claim_listing = claim("batches", _CLAIM_LISTING_SET, _LISTABLE, BATCH_COLUMNS, "1")

    def alive(self, owner: str) -> str:
        """A condition: the process that registered as `owner` (an SQL expression) still
        lives. False for an owner that never registered: only its leases can tell."""
        return self._alive.format(owner)

    def free(self, lease_expires: str = "lease_expires", owner: str = "lease_owner") -> str:
        """A condition: a lease may be taken over. Only once it expired, and never from an
        owner that is alive, however long it went without renewing (a stalled loop); the
        reaper expires a dead owner's leases at once (`tx_owners.take_over`)."""
        return (f"CASE WHEN {lease_expires} < :now THEN NOT {self.alive(owner)}"
                " ELSE FALSE END")

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

    def json_number(self, column: str, key: str) -> str:
        """SQL for the number at `key` of the JSON in `column` (NULL when absent)."""
        raise NotImplementedError


class SqliteDialect(Dialect):
    """SQLite: one writer at a time, so a claim needs no row locks; ids travel as JSON."""

    name = "sqlite"
    pos = "rowid"
    row_locks = False
    lock = ""
    skip_locked = ""
    # The driver defines owner_alive(key): whether the key's lock file is held.
    _alive = "owner_alive((SELECT key FROM owners WHERE owner = {}))"
    picked = "IN ({})"
    # Left alone, the planner picks `jobs_state` and sorts every due job.
    claim_index = " INDEXED BY jobs_claim"
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

    def json_number(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"


class PostgresDialect(Dialect):
    """PostgreSQL: replicas claim side by side (SKIP LOCKED), ids travel as arrays."""

    name = "postgres"
    pos = "pos"
    row_locks = True
    lock = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    # An owner holds a session-level advisory lock on its key (bigint form: the high half is
    # classid, the low half objid) for as long as its connection lives.
    _alive = (
        "EXISTS (SELECT 1 FROM owners o, pg_locks l WHERE o.owner = {} AND l.granted"
        " AND l.locktype = 'advisory' AND l.objsubid = 1 AND l.classid = (o.key >> 32)::oid"
        " AND l.objid = (o.key & 4294967295)::oid"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    )

    # The ids as an array, computed once (an initplan): the LIMIT and the row locks apply
    # once, where a plain IN (sub-SELECT) may be rescanned or joined.
    picked = "= ANY(ARRAY({}))"
    claim_index = ""

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

    def json_number(self, column: str, key: str) -> str:
        return f"({column}->>'{key}')::float8"


SQLITE = SqliteDialect()
POSTGRES = PostgresDialect()
