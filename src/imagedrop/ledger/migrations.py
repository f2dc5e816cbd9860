"""The SQLite ledger's schema as a versioned list of SQL scripts, applied in order once each.

Never edit a released script: append a new one. `schema_version` records what has been applied.
"""

from __future__ import annotations

import sqlite3

from imagedrop.errors import ConfigError

# Claims scan `jobs_claim` in claim order and stop after `limit` due rows. Final jobs are not in
# that index; queued jobs waiting for a later retry are, and are stepped over (cheap unless very
# many retries wait at once).
_V1 = """
CREATE TABLE batches (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    bucket          TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    output_bucket   TEXT NOT NULL,
    output_prefix   TEXT NOT NULL,
    recipe          TEXT NOT NULL,             -- JSON
    callback_url    TEXT,
    listing_cursor  TEXT NOT NULL DEFAULT '',
    listing_done    INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_expires   REAL,
    lease_seconds   REAL,                      -- renewal length for add_batch_jobs
    created_at      REAL NOT NULL,
    finished_at     REAL,
    summary         TEXT,                      -- JSON
    extra           TEXT NOT NULL DEFAULT '{}' -- JSON
);
CREATE INDEX batches_listing ON batches (created_at)
    WHERE listing_done = 0 AND finished_at IS NULL;

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    filename        TEXT NOT NULL,
    recipe          TEXT NOT NULL,             -- JSON
    dedupe_key      TEXT UNIQUE,
    batch_id        TEXT REFERENCES batches (id),
    seq             INTEGER NOT NULL DEFAULT 0,
    source_bucket   TEXT,
    source_key      TEXT,
    source_etag     TEXT,
    input_data      BLOB,
    output_bucket   TEXT,
    output_key      TEXT,
    callback_url    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    run_after       REAL NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_expires   REAL,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    result          TEXT,                      -- JSON
    error           TEXT,
    last_error      TEXT,
    fallback_local  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_claim ON jobs ((batch_id IS NOT NULL), seq, created_at)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_batch ON jobs (batch_id, state);
CREATE INDEX jobs_owner ON jobs (lease_owner) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, created_at);
CREATE INDEX jobs_created ON jobs (created_at);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            BLOB NOT NULL,
    event_type      TEXT,
    job_id          TEXT REFERENCES jobs (id),
    batch_id        TEXT REFERENCES batches (id),
    secret_ref      TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_owner     TEXT,
    lease_expires   REAL,
    created_at      REAL NOT NULL,
    finished_at     REAL,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, created_at) WHERE state = 'pending';
CREATE INDEX deliveries_job ON deliveries (job_id);
CREATE INDEX deliveries_batch ON deliveries (batch_id);

CREATE TABLE delivery_attempts (
    delivery_id     TEXT NOT NULL REFERENCES deliveries (id),
    attempt         INTEGER NOT NULL,
    at              REAL NOT NULL,
    status          INTEGER,
    error           TEXT,
    duration_ms     REAL NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
"""

# Drop-a-file: settling folder batches, object-version reuse, replays, disabled subscribers.
_V2 = """
ALTER TABLE batches ADD COLUMN group_key TEXT;
ALTER TABLE batches ADD COLUMN settle_until REAL;
DROP INDEX batches_listing;
CREATE INDEX batches_listing ON batches (created_at)
    WHERE listing_done = 0 AND finished_at IS NULL AND settle_until IS NULL;
CREATE INDEX batches_settling ON batches (group_key)
    WHERE listing_done = 0 AND settle_until IS NOT NULL;
CREATE INDEX batches_unfinished ON batches (created_at)
    WHERE listing_done = 1 AND finished_at IS NULL;

ALTER TABLE jobs ADD COLUMN version_key TEXT;
ALTER TABLE jobs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_version ON jobs (version_key, finished_at) WHERE state = 'completed';
CREATE INDEX jobs_source ON jobs (source_bucket, source_key);
CREATE INDEX jobs_batch_seq ON jobs (batch_id, seq);

CREATE TABLE endpoints (
    url             TEXT PRIMARY KEY,
    disabled_at     REAL NOT NULL,
    reason          TEXT NOT NULL
);
"""

# Provider limits shared by replicas: the global edit rate (GCRA state) and provider pauses.
_V3 = """
CREATE TABLE rate_limits (
    key             TEXT PRIMARY KEY,
    tat             REAL NOT NULL              -- when the next slot is free (limits.take_slot)
);
CREATE TABLE provider_pauses (
    key             TEXT PRIMARY KEY,
    until           REAL NOT NULL,
    reason          TEXT NOT NULL,             -- "<provider error code>: <message>"
    paused_at       REAL NOT NULL
);
"""

# Object versions being edited: a job holds its version while it runs, so a second job for the
# same version and recipe waits for the first result instead of paying for the same edit.
_V4 = """
CREATE TABLE version_leases (
    version_key     TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL,
    lease_expires   REAL NOT NULL
);
CREATE INDEX version_leases_job ON version_leases (job_id);
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4]


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


def apply_migrations(conn: sqlite3.Connection, now: float) -> int:
    """Apply every script newer than the recorded version; returns the resulting version.

    `conn` must be in autocommit mode (isolation_level=None). Each script runs in its own
    BEGIN IMMEDIATE transaction that re-reads the version, so two processes opening the same
    file at once apply each script exactly once.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version"
        " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    version = 0
    for target, script in enumerate(MIGRATIONS, start=1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version"
            ).fetchone()
            if version < target:
                # executescript would COMMIT first; statements one by one keep the script atomic.
                for statement in split_statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (target, now))
                version = target
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if version > len(MIGRATIONS):
        raise ConfigError(
            f"the ledger's schema is version {version}, newer than this imagedrop knows "
            f"({len(MIGRATIONS)}): upgrade imagedrop"
        )
    return version
