"""The ledger's schema: versioned SQL scripts written once, rendered for SQLite and PostgreSQL.

Never change what a released script does: append a new one. `schema_version` records what has
been applied. Placeholders name what differs: column types, PostgreSQL's insertion-order column
`pos` (SQLite has rowid) and index tails. PostgreSQL took its first two scripts as one.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from imagedrop.errors import ConfigError

Backend = Literal["sqlite", "postgres"]

_WORDS: dict[Backend, dict[str, str]] = {
    "sqlite": {"REAL": "REAL", "BLOB": "BLOB", "BOOL": "INTEGER", "JSON": "TEXT", "POS": "",
               "_POS": ""},
    "postgres": {"REAL": "DOUBLE PRECISION", "BLOB": "BYTEA", "BOOL": "BOOLEAN",
                 "JSON": "JSONB", "POS": "pos BIGINT GENERATED ALWAYS AS IDENTITY,",
                 "_POS": ", pos"},
}

# Claims scan `jobs_claim` in claim order and stop after `limit` due rows, so a claim costs
# about `limit` index steps however many jobs wait in the future (retries) or are final (not
# indexed). `pos` breaks ties where the clock (a fake one in tests) gives rows one created_at.
_V1 = """
CREATE TABLE batches (
    {POS}
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    bucket          TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    output_bucket   TEXT NOT NULL,
    output_prefix   TEXT NOT NULL,
    recipe          {JSON} NOT NULL,
    callback_url    TEXT,
    listing_cursor  TEXT NOT NULL DEFAULT '',
    listing_done    {BOOL} NOT NULL DEFAULT FALSE,
    lease_owner     TEXT,
    lease_expires   {REAL},
    lease_seconds   {REAL},                     -- renewal length for add_batch_jobs
    created_at      {REAL} NOT NULL,
    finished_at     {REAL},
    summary         {JSON},
    extra           {JSON} NOT NULL DEFAULT '{{}}'
);
CREATE INDEX batches_listing ON batches (created_at{_POS})
    WHERE NOT listing_done AND finished_at IS NULL;

CREATE TABLE jobs (
    {POS}
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    filename        TEXT NOT NULL,
    recipe          {JSON} NOT NULL,
    dedupe_key      TEXT UNIQUE,
    batch_id        TEXT REFERENCES batches (id),
    seq             INTEGER NOT NULL DEFAULT 0,
    source_bucket   TEXT,
    source_key      TEXT,
    source_etag     TEXT,
    input_data      {BLOB},
    output_bucket   TEXT,
    output_key      TEXT,
    callback_url    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    run_after       {REAL} NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_expires   {REAL},
    created_at      {REAL} NOT NULL,
    started_at      {REAL},
    finished_at     {REAL},
    result          {JSON},
    error           TEXT,
    last_error      TEXT,
    fallback_local  {BOOL} NOT NULL DEFAULT FALSE
);
CREATE INDEX jobs_claim ON jobs ((batch_id IS NOT NULL), seq, created_at{_POS})
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_batch ON jobs (batch_id, state);
CREATE INDEX jobs_owner ON jobs (lease_owner) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, created_at{_POS});
CREATE INDEX jobs_created ON jobs (created_at{_POS});

CREATE TABLE deliveries (
    {POS}
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            {BLOB} NOT NULL,
    event_type      TEXT,
    job_id          TEXT REFERENCES jobs (id),
    batch_id        TEXT REFERENCES batches (id),
    secret_ref      TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {REAL} NOT NULL,
    lease_owner     TEXT,
    lease_expires   {REAL},
    created_at      {REAL} NOT NULL,
    finished_at     {REAL},
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, created_at{_POS})
    WHERE state = 'pending';
CREATE INDEX deliveries_job ON deliveries (job_id);
CREATE INDEX deliveries_batch ON deliveries (batch_id);

CREATE TABLE delivery_attempts (
    {POS}
    delivery_id     TEXT NOT NULL REFERENCES deliveries (id),
    attempt         INTEGER NOT NULL,
    at              {REAL} NOT NULL,
    status          INTEGER,
    error           TEXT,
    duration_ms     {REAL} NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt{_POS});
"""

# Drop-a-file: settling folder batches, object-version reuse, replays, disabled subscribers.
_V2 = """
ALTER TABLE batches ADD COLUMN group_key TEXT;
ALTER TABLE batches ADD COLUMN settle_until {REAL};
DROP INDEX batches_listing;
CREATE INDEX batches_listing ON batches (created_at{_POS})
    WHERE NOT listing_done AND finished_at IS NULL AND settle_until IS NULL;
CREATE INDEX batches_settling ON batches (group_key, created_at)
    WHERE NOT listing_done AND settle_until IS NOT NULL;
CREATE INDEX batches_unfinished ON batches (created_at{_POS})
    WHERE listing_done AND finished_at IS NULL;

ALTER TABLE jobs ADD COLUMN version_key TEXT;
ALTER TABLE jobs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_version ON jobs (version_key, finished_at) WHERE state = 'completed';
CREATE INDEX jobs_source ON jobs (source_bucket, source_key);
CREATE INDEX jobs_batch_seq ON jobs (batch_id, seq);

CREATE TABLE endpoints (
    url             TEXT PRIMARY KEY,
    disabled_at     {REAL} NOT NULL,
    reason          TEXT NOT NULL
);
"""

# Provider limits shared by replicas: the global edit rate (GCRA state) and provider pauses.
_V3 = """
CREATE TABLE rate_limits (
    key             TEXT PRIMARY KEY,
    tat             {REAL} NOT NULL             -- when the next slot is free (gcra.take_slot)
);
CREATE TABLE provider_pauses (
    key             TEXT PRIMARY KEY,
    until           {REAL} NOT NULL,
    reason          TEXT NOT NULL,              -- "<provider error code>: <message>"
    paused_at       {REAL} NOT NULL
);
"""

# Object versions being edited: a job holds its version while it runs, so a second job for the
# same version and recipe waits for the first result instead of paying for the same edit.
_V4 = """
CREATE TABLE version_leases (
    version_key     TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL,
    lease_expires   {REAL} NOT NULL
);
CREATE INDEX version_leases_job ON version_leases (job_id);
"""

# SQLite files made before the ledger's statements were written once carry batch indexes
# whose conditions say `listing_done = 0`: SQLite uses a partial index only for a query that
# says the same, and the shared statements say `NOT listing_done`. (PostgreSQL had these.)
_V5_SQLITE = """
DROP INDEX batches_listing;
DROP INDEX batches_settling;
DROP INDEX batches_unfinished;
CREATE INDEX batches_listing ON batches (created_at)
    WHERE NOT listing_done AND finished_at IS NULL AND settle_until IS NULL;
CREATE INDEX batches_settling ON batches (group_key, created_at)
    WHERE NOT listing_done AND settle_until IS NOT NULL;
CREATE INDEX batches_unfinished ON batches (created_at)
    WHERE listing_done AND finished_at IS NULL;
"""


# Who holds leases, and how to tell whether it still lives: each process registers a random
# key and holds a lock on it for its lifetime (a lock file on SQLite, a session advisory lock
# on PostgreSQL), which the OS or the server drops the instant the process dies. And one
# sweeper per bucket across replicas. And images that failed under a broken manifest, to be
# queued again when it is fixed; indexes for the operators' listings; large values apart; spend
# budgets. (Not yet released: still open to additions until a release carries it.)
_V6 = """
CREATE TABLE owners (
    owner           TEXT PRIMARY KEY,
    key             BIGINT NOT NULL UNIQUE,
    host            TEXT NOT NULL,
    pid             INTEGER NOT NULL,
    started_at      {REAL} NOT NULL
);
CREATE TABLE sweep_leases (
    bucket          TEXT PRIMARY KEY,
    lease_owner     TEXT NOT NULL,
    lease_expires   {REAL} NOT NULL
);

ALTER TABLE jobs ADD COLUMN blocked_by TEXT;  -- bucket␟key␟etag of the broken manifest
CREATE INDEX jobs_blocked ON jobs (blocked_by) WHERE blocked_by IS NOT NULL;

-- The request (and trace) that recorded work: its log lines and spans follow into it.
ALTER TABLE jobs ADD COLUMN request_id TEXT;
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
ALTER TABLE batches ADD COLUMN request_id TEXT;
ALTER TABLE batches ADD COLUMN traceparent TEXT;
ALTER TABLE deliveries ADD COLUMN request_id TEXT;
ALTER TABLE deliveries ADD COLUMN traceparent TEXT;

-- Operators' listings: deliveries newest first, and by subscriber URL.
CREATE INDEX deliveries_created ON deliveries (created_at{_POS});
CREATE INDEX deliveries_url ON deliveries (url, kind);

-- Large values (an uploaded image, a callback carrying a base64 result) apart from the rows
-- whose state changes: SQLite rewrites a whole row, blob included, on every UPDATE of it (a
-- claim, a lease, an attempt). Rows from before keep theirs in jobs.input_data/deliveries.body.
CREATE TABLE job_inputs (
    job_id          TEXT PRIMARY KEY REFERENCES jobs (id),
    data            {BLOB} NOT NULL
);
CREATE TABLE delivery_bodies (
    delivery_id     TEXT PRIMARY KEY REFERENCES deliveries (id),
    body            {BLOB} NOT NULL
);

-- Spend per budget scope (a folder's manifest, the service) and UTC day: edits sent and dollars
-- (estimated when an edit is let through, settled with its reported usage), and when the
-- budget was first found reached that day (subscribers hear it once).
CREATE TABLE budget_usage (
    scope           TEXT NOT NULL,
    day             TEXT NOT NULL,
    edits           INTEGER NOT NULL DEFAULT 0,
    usd             {REAL} NOT NULL DEFAULT 0,
    reached_at      {REAL},
    PRIMARY KEY (scope, day)
);
CREATE INDEX jobs_held ON jobs (run_after) WHERE state = 'held';
CREATE INDEX jobs_finished ON jobs (state, finished_at);  -- the dashboard's recent counts
"""


# An uploaded image may be kept as the canonical base64 it came in (decoded when the job runs,
# not while the caller waits), and on SQLite in a file beside the ledger that `spool` names
# (then `data` is empty): 40 photos at once are 40 parallel fsyncs, not 8 MB through the WAL.
# A large callback body (a base64 result) likewise.
_V7 = """
ALTER TABLE job_inputs ADD COLUMN encoding TEXT NOT NULL DEFAULT 'bytes';
ALTER TABLE job_inputs ADD COLUMN spool TEXT;
ALTER TABLE delivery_bodies ADD COLUMN spool TEXT;
CREATE INDEX job_inputs_spool ON job_inputs (spool) WHERE spool IS NOT NULL;
CREATE INDEX delivery_bodies_spool ON delivery_bodies (spool) WHERE spool IS NOT NULL;
"""

# A drop batch is told apart by its `group_key` (set when it is made, never changed), not by its
# settle deadline, which moves with every drop into its folder: PostgreSQL updates a row in place
# (HOT, no index entries) only when no index names a column it changes, predicates included.
# With `settle_until` in two predicates, a folder taking notifications wrote a new entry into
# every index of `batches` per transaction, and its lookups slowed until autovacuum came by.
_V8 = """
DROP INDEX batches_listing;
DROP INDEX batches_settling;
CREATE INDEX batches_listing ON batches (created_at{_POS})
    WHERE NOT listing_done AND finished_at IS NULL AND group_key IS NULL;
CREATE INDEX batches_settling ON batches (group_key, created_at)
    WHERE NOT listing_done AND group_key IS NOT NULL;
"""


def migrations(backend: Backend) -> list[str]:
    """The scripts for `backend`, in order; script n brings the schema to version n."""
    words = _WORDS[backend]
    scripts = ([_V1 + _V2, _V3, _V4] if backend == "postgres"
               else [_V1, _V2, _V3, _V4, _V5_SQLITE]) + [_V6, _V7, _V8]
    return [script.format(**words) for script in scripts]


SQLITE_MIGRATIONS = migrations("sqlite")
POSTGRES_MIGRATIONS = migrations("postgres")


def split_statements(script: str) -> list[str]:
    """Cut a script into complete SQL statements (pure; `sqlite3.complete_statement` decides)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending[:60]!r}")
    return statements


def check_version(version: int, known: int) -> None:
    """Refuse a ledger whose schema is newer than this imagedrop knows."""
    if version > known:
        raise ConfigError(f"the ledger's schema is version {version}, newer than this imagedrop"
                          f" knows ({known}): upgrade imagedrop")
