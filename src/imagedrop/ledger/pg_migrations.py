"""The PostgreSQL ledger's schema as a versioned list of SQL scripts, applied in order once each.

Never edit a released script: append a new one. `schema_version` records what has been applied.
"""

from __future__ import annotations

from typing import Any

from imagedrop.errors import ConfigError

# Advisory lock classes (first key of the two-int form), so our locks never meet another
# application's; the second key is a hash of the schema (migrations) or drop group.
MIGRATION_LOCK = 0x1D0E
DROP_GROUP_LOCK = 0x1D0F

# `pos` is insertion order: SQLite breaks ties in claim and list order by rowid, and the fake
# clock in tests (or a coarse real one) gives many rows the same created_at.
# Claims scan `jobs_claim` in claim order and stop after `limit` due rows, so a claim costs about
# `limit` index steps however many jobs wait in the future (retries) or are final (not indexed).
_V1 = """
CREATE TABLE batches (
    pos             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    bucket          TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    output_bucket   TEXT NOT NULL,
    output_prefix   TEXT NOT NULL,
    recipe          JSONB NOT NULL,
    callback_url    TEXT,
    listing_cursor  TEXT NOT NULL DEFAULT '',
    listing_done    BOOLEAN NOT NULL DEFAULT false,
    lease_owner     TEXT,
    lease_expires   DOUBLE PRECISION,
    lease_seconds   DOUBLE PRECISION,           -- renewal length for add_batch_jobs
    created_at      DOUBLE PRECISION NOT NULL,
    finished_at     DOUBLE PRECISION,
    summary         JSONB,
    extra           JSONB NOT NULL DEFAULT '{}',
    group_key       TEXT,                       -- drop batches: what they collect for
    settle_until    DOUBLE PRECISION            -- drop batches: close after this
);
CREATE INDEX batches_listing ON batches (created_at, pos)
    WHERE NOT listing_done AND finished_at IS NULL AND settle_until IS NULL;
CREATE INDEX batches_settling ON batches (group_key, created_at)
    WHERE NOT listing_done AND settle_until IS NOT NULL;
CREATE INDEX batches_unfinished ON batches (created_at, pos)
    WHERE listing_done AND finished_at IS NULL;

CREATE TABLE jobs (
    pos             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    filename        TEXT NOT NULL,
    recipe          JSONB NOT NULL,
    dedupe_key      TEXT UNIQUE,
    batch_id        TEXT REFERENCES batches (id),
    seq             INTEGER NOT NULL DEFAULT 0,
    source_bucket   TEXT,
    source_key      TEXT,
    source_etag     TEXT,
    input_data      BYTEA,
    output_bucket   TEXT,
    output_key      TEXT,
    callback_url    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    run_after       DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_expires   DOUBLE PRECISION,
    created_at      DOUBLE PRECISION NOT NULL,
    started_at      DOUBLE PRECISION,
    finished_at     DOUBLE PRECISION,
    result          JSONB,
    error           TEXT,
    last_error      TEXT,
    fallback_local  BOOLEAN NOT NULL DEFAULT false,
    version_key     TEXT,                       -- object version + recipe
    generation      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_version ON jobs (version_key, finished_at) WHERE state = 'completed';
CREATE INDEX jobs_source ON jobs (source_bucket, source_key);
CREATE INDEX jobs_claim ON jobs ((batch_id IS NOT NULL), seq, created_at, pos)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_batch ON jobs (batch_id, state);
CREATE INDEX jobs_batch_seq ON jobs (batch_id, seq);
CREATE INDEX jobs_owner ON jobs (lease_owner) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, created_at, pos);
CREATE INDEX jobs_created ON jobs (created_at, pos);

CREATE TABLE deliveries (
    pos             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            BYTEA NOT NULL,
    event_type      TEXT,
    job_id          TEXT REFERENCES jobs (id),
    batch_id        TEXT REFERENCES batches (id),
    secret_ref      TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_owner     TEXT,
    lease_expires   DOUBLE PRECISION,
    created_at      DOUBLE PRECISION NOT NULL,
    finished_at     DOUBLE PRECISION,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, created_at, pos)
    WHERE state = 'pending';
CREATE INDEX deliveries_job ON deliveries (job_id);
CREATE INDEX deliveries_batch ON deliveries (batch_id);

CREATE TABLE delivery_attempts (
    pos             BIGINT GENERATED ALWAYS AS IDENTITY,
    delivery_id     TEXT NOT NULL REFERENCES deliveries (id),
    attempt         INTEGER NOT NULL,
    at              DOUBLE PRECISION NOT NULL,
    status          INTEGER,
    error           TEXT,
    duration_ms     DOUBLE PRECISION NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt, pos);

CREATE TABLE endpoints (
    url             TEXT PRIMARY KEY,
    disabled_at     DOUBLE PRECISION NOT NULL,
    reason          TEXT NOT NULL
);
"""

# Provider limits shared by replicas: the global edit rate (GCRA state) and provider pauses.
_V2 = """
CREATE TABLE rate_limits (
    key             TEXT PRIMARY KEY,
    tat             DOUBLE PRECISION NOT NULL   -- when the next slot is free (limits.take_slot)
);
CREATE TABLE provider_pauses (
    key             TEXT PRIMARY KEY,
    until           DOUBLE PRECISION NOT NULL,
    reason          TEXT NOT NULL,              -- "<provider error code>: <message>"
    paused_at       DOUBLE PRECISION NOT NULL
);
"""

# Object versions being edited: a job holds its version while it runs, so a second job for the
# same version and recipe waits for the first result instead of paying for the same edit.
_V3 = """
CREATE TABLE version_leases (
    version_key     TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL,
    lease_expires   DOUBLE PRECISION NOT NULL
);
CREATE INDEX version_leases_job ON version_leases (job_id);
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3]


async def apply_migrations(conn: Any, now: float, schema: str | None) -> int:
    """Apply every script newer than the recorded version; returns the resulting version.

    One transaction holds an advisory lock for this schema while it creates the schema (if
    named), reads the version and applies what is missing, so replicas starting together apply
    each script exactly once and a failed script leaves nothing behind. `schema` must already
    be a checked identifier (`_pg_url.check_schema`); the connection's search_path names it.
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE($2::text, current_schema(), '')))",
            MIGRATION_LOCK, schema,
        )
        # Checked first: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database.
        if schema is not None and not await conn.fetchval(
            "SELECT true FROM pg_namespace WHERE nspname = $1", schema
        ):
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        version = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for target, script in enumerate(MIGRATIONS, start=1):
            if version < target:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version VALUES ($1, $2)", target, now)
                version = target
    if version > len(MIGRATIONS):
        raise ConfigError(
            f"the ledger's schema is version {version}, newer than this imagedrop knows "
            f"({len(MIGRATIONS)}): upgrade imagedrop"
        )
    return version
