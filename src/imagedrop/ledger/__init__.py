"""The ledger: durable jobs, batches and callback deliveries behind one Protocol.

Every state change is committed before it is acknowledged. Work is claimed with a lease that
its owner renews; a claim whose owner died expires and is claimed again. Backends are chosen by
URL (`open_ledger`): SQLite now; the Protocol is shaped for a PostgreSQL backend whose claims
use `FOR UPDATE SKIP LOCKED` and whose wake-ups use LISTEN/NOTIFY.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class JobState(StrEnum):
    """Where a job is in its life. `completed` and `failed` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED)


class JobKind(StrEnum):
    """Which door a job came in by; decides where its result goes."""

    B64 = "b64"  # POST /process-image-async-b64: result in the callback as base64
    COS = "cos"  # POST /process-image-async: result stored, presigned URL in the callback
    BATCH = "batch"  # one object of a folder batch (WXO batch or trigger)
    DROP = "drop"  # a dropped file found by a notification or the sweep


class DeliveryState(StrEnum):
    """Where a callback delivery is. Everything but `pending` is final."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retries exhausted or a permanent refusal
    DISABLED = "disabled"  # receiver answered 410 Gone


@dataclass(slots=True)
class NewJob:
    """A job to record. `dedupe_key`, when set, makes recording it idempotent."""

    kind: JobKind
    filename: str
    recipe: dict[str, Any]  # prompt and provider options (EditSpec fields)
    id: str | None = None  # generated when None
    dedupe_key: str | None = None
    batch_id: str | None = None
    seq: int = 0  # position within its batch; claims interleave batches by it
    source_bucket: str | None = None
    source_key: str | None = None
    source_etag: str | None = None
    input_data: bytes | None = None  # inline image for the WXO single-image endpoints
    output_bucket: str | None = None
    output_key: str | None = None
    callback_url: str | None = None
    max_attempts: int = 5
    run_after: float = 0.0
    version_key: str | None = None  # object version + recipe: finds an earlier identical edit


@dataclass(slots=True)
class Job:
    """A recorded job."""

    id: str
    kind: JobKind
    state: JobState
    filename: str
    recipe: dict[str, Any]
    dedupe_key: str | None
    batch_id: str | None
    seq: int
    source_bucket: str | None
    source_key: str | None
    source_etag: str | None
    input_data: bytes | None
    output_bucket: str | None
    output_key: str | None
    callback_url: str | None
    attempts: int
    max_attempts: int
    run_after: float
    lease_owner: str | None
    lease_expires: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: dict[str, Any] | None
    error: str | None
    last_error: str | None
    version_key: str | None = None
    generation: int = 0  # bumped by a forced replay, so an earlier output is not reused


@dataclass(slots=True)
class NewBatch:
    """A folder batch to record: listed page by page, then its jobs run."""

    kind: str  # "wxo", "trigger" or "drop"
    bucket: str
    prefix: str
    output_bucket: str
    output_prefix: str
    recipe: dict[str, Any]
    id: str | None = None
    callback_url: str | None = None
    listing_done: bool = False  # True when jobs are added directly (drop batches)
    extra: dict[str, Any] = field(default_factory=dict)
    group_key: str | None = None  # drop batches: folder + manifest revision they collect for


@dataclass(slots=True)
class Batch:
    """A recorded batch."""

    id: str
    kind: str
    bucket: str
    prefix: str
    output_bucket: str
    output_prefix: str
    recipe: dict[str, Any]
    callback_url: str | None
    listing_cursor: str
    listing_done: bool
    lease_owner: str | None
    lease_expires: float | None
    created_at: float
    finished_at: float | None
    summary: dict[str, Any] | None
    extra: dict[str, Any]
    group_key: str | None = None
    settle_until: float | None = None  # drop batches close when no image came for a while


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Counts over a batch's jobs."""

    total: int
    queued: int
    running: int
    completed: int
    failed: int
    fallback_local: int  # completed by the local provider after a billing stop
    listing_done: bool
    finished: bool

    @property
    def all_final(self) -> bool:
        return self.listing_done and self.queued == 0 and self.running == 0


@dataclass(slots=True)
class NewDelivery:
    """A callback to deliver: the body is fixed now; signatures are made per attempt."""

    kind: str  # "callback" (WXO callbackUrl / trigger summary) or "webhook" (subscriber)
    url: str
    body: bytes
    event_type: str | None = None  # image.completed | image.failed | batch.completed | None
    job_id: str | None = None
    batch_id: str | None = None
    secret_ref: str | None = None  # name of the env var holding the subscriber's whsec_ secret
    id: str | None = None  # doubles as webhook-id; stable across retries
    next_attempt_at: float = 0.0


@dataclass(slots=True)
class Delivery:
    """A recorded delivery."""

    id: str
    kind: str
    url: str
    body: bytes
    event_type: str | None
    job_id: str | None
    batch_id: str | None
    secret_ref: str | None
    state: DeliveryState
    attempts: int
    next_attempt_at: float
    lease_owner: str | None
    lease_expires: float | None
    created_at: float
    finished_at: float | None
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One recorded try at a delivery."""

    delivery_id: str
    attempt: int
    at: float
    status: int | None  # HTTP status, None when no answer
    error: str | None  # never contains the URL's query string or credentials
    duration_ms: float


@dataclass(slots=True)
class DropItem:
    """A dropped object's job, and the drop batch of its folder it joins (None: no batch)."""

    job: NewJob
    batch: NewBatch | None = None  # template; its group_key finds the batch still settling
    settle_seconds: float = 5.0  # the batch closes when no image came for this long ...
    max_settle_seconds: float = 300.0  # ... or this long after it opened


@runtime_checkable
class Ledger(Protocol):
    """Durable state. Every method commits before it returns."""

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and apply migrations."""

    async def close(self) -> None:
        """Close connections."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be claimable (a hint), or after `timeout` seconds."""

    # -- jobs -----------------------------------------------------------------------------
    async def create_jobs(self, jobs: list[NewJob]) -> list[tuple[Job, bool]]:
        """Record jobs; for a dedupe_key already recorded, return that job and False."""

    async def get_job(self, job_id: str, *, with_input: bool = True) -> Job | None:
        """One job, or None; `with_input=False` leaves the inline image out (status reads)."""

    async def claim_jobs(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` due queued jobs (or running ones whose lease expired).

        Claims prefer single jobs, then interleave batches by `seq`, so a large batch cannot
        starve single-image jobs. Each claim increments `attempts` and sets `started_at`.
        """

    async def renew_leases(self, owner: str, job_ids: list[str], lease_seconds: float) -> None:
        """Extend the leases `owner` holds on these jobs, and on the object versions they hold
        (`claim_version`): one heartbeat keeps both."""

    async def claim_version(self, version_key: str, job_id: str, lease_seconds: float
                            ) -> str | None:
        """Hold an object version (+ recipe) for the running job `job_id`, so that no other job
        edits it meanwhile: None when this job holds it now, else the id of the live holder.

        A lease that lapsed (its holder's process died) or whose holder is no longer running
        is taken over; the same job claiming again keeps it. Renewed by `renew_leases`;
        released with the job's outcome (`complete_job`, `fail_job`, `retry_job`, `defer_job`,
        `release_jobs`) in the same transaction, or by `release_version`.
        """

    async def release_version(self, version_key: str, job_id: str) -> None:
        """Give back a version `job_id` holds (nothing if another job holds it)."""

    async def complete_job(
        self, job_id: str, owner: str, result: dict[str, Any], deliveries: list[NewDelivery]
    ) -> bool:
        """Mark completed and record its deliveries in one transaction; False if not owned.
        The inline image is dropped: it is not needed any more (a failed job keeps it, so a
        replay can run it again)."""

    async def fail_job(
        self, job_id: str, owner: str, error: str, deliveries: list[NewDelivery]
    ) -> bool:
        """Mark failed with the reason and record its deliveries; False if not owned."""

    async def retry_job(self, job_id: str, owner: str, error: str, run_after: float) -> bool:
        """Put a running job back in the queue, due at `run_after`; False if not owned."""

    async def defer_job(self, job_id: str, owner: str, run_after: float, reason: str) -> bool:
        """Put a running job back in the queue, due at `run_after`, giving back the attempt its
        claim counted (it waits for another job; it did not fail); False if not owned."""

    async def release_jobs(self, owner: str) -> int:
        """Give back every job `owner` holds (graceful shutdown); returns how many."""

    async def list_jobs(
        self, *, batch_id: str | None = None, state: JobState | None = None, limit: int = 1000
    ) -> list[Job]:
        """Jobs filtered by batch and/or state, oldest first (input_data left out)."""

    # -- batches --------------------------------------------------------------------------
    async def create_batch(self, batch: NewBatch) -> Batch:
        """Record a batch."""

    async def get_batch(self, batch_id: str) -> Batch | None:
        """One batch, or None."""

    async def claim_listing(self, owner: str, lease_seconds: float) -> Batch | None:
        """Lease one batch whose listing is unfinished (new, or its lister died)."""

    async def release_listings(self, owner: str) -> int:
        """Give back the unfinished listings `owner` holds (graceful stop): another lister
        resumes them from their cursor at once instead of after the lease."""

    async def add_batch_jobs(
        self, batch_id: str, owner: str, jobs: list[NewJob], cursor: str, done: bool
    ) -> int:
        """Record one listed page's jobs and advance the cursor atomically; returns new jobs.

        Also renews the listing lease; raises nothing if the lease was lost but adds nothing.
        """

    async def batch_progress(self, batch_id: str) -> BatchProgress:
        """Counts over the batch's jobs."""

    async def finishable_batches(self, limit: int = 100) -> list[str]:
        """Batches whose listing is done and whose jobs are all final but that are not closed
        (their closer died between the last outcome and the summary): to be closed now."""

    async def finish_batch(
        self, batch_id: str, summary: dict[str, Any], deliveries: list[NewDelivery]
    ) -> bool:
        """Close a batch whose jobs are all final, once: True only for the call that closed it."""

    # -- dropped files (notifications, sweep) and replays ----------------------------------
    async def record_drops(self, items: list[DropItem]) -> list[tuple[Job, bool]]:
        """Record dropped objects' jobs idempotently (by dedupe_key), in one transaction.

        A new job joins the batch of its group that is still settling (created from the
        template if none is) and pushes that batch's settle deadline to now + settle_seconds,
        never past max_settle_seconds after it opened. A duplicate joins nothing.
        """

    async def close_settled_batches(self) -> list[str]:
        """Mark drop batches whose settle deadline passed as complete; returns their ids."""

    async def versions_with_jobs(
        self, bucket: str, versions: list[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """Which (key, etag) object versions of a bucket already have a job, of any recipe."""

    async def find_completed_version(self, version_key: str) -> Job | None:
        """The latest completed job that edited this object version with this recipe."""

    async def requeue_jobs(
        self, *, job_ids: list[str] | None = None, batch_id: str | None = None,
        bucket: str | None = None, prefix: str | None = None, include_completed: bool = False,
    ) -> list[Job]:
        """Queue final jobs again (failed ones; completed ones too when include_completed,
        bumping their generation so the edit is redone). Their finished batches reopen, so
        each sends a fresh summary. At least one filter is required. Returns the jobs."""

    async def requeue_deliveries(
        self, *, delivery_ids: list[str] | None = None, job_id: str | None = None,
        batch_id: str | None = None,
    ) -> list[Delivery]:
        """Make failed or disabled deliveries pending again: due now, a fresh retry schedule
        (attempt history kept). At least one filter is required. Returns the deliveries."""

    async def disable_endpoint(self, url: str, reason: str) -> None:
        """Stop delivering to a subscriber URL (it answered 410 Gone)."""

    async def enable_endpoint(self, url: str) -> bool:
        """Deliver to a disabled subscriber URL again; False if it was not disabled."""

    async def disabled_endpoints(self, urls: list[str]) -> dict[str, str]:
        """The given URLs that are disabled, with the reason."""

    # -- provider limits shared by every replica ---------------------------------------------
    async def take_edit_slot(self, key: str, per_minute: int) -> float:
        """Take a slot of the edit rate `key` allows (`per_minute`, with a burst of one
        second's worth, see `limits.take_slot`): 0.0 when taken, else the seconds to wait
        before asking again. Atomic across replicas."""

    async def pause_provider(self, key: str, until: float, reason: str) -> None:
        """Pause the provider `key` until `until` (a later deadline already set stays).
        `reason` starts with the provider's error code: `billing_hard_limit_reached: …`."""

    async def provider_pause(self, key: str) -> tuple[float, str] | None:
        """The pause in force for `key` as (until, reason), or None."""

    # -- deliveries -----------------------------------------------------------------------
    async def claim_deliveries(
        self, owner: str, limit: int, lease_seconds: float
    ) -> list[Delivery]:
        """Lease up to `limit` pending deliveries that are due."""

    async def record_attempt(
        self,
        delivery_id: str,
        owner: str,
        attempt: DeliveryAttempt,
        *,
        state: DeliveryState,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record one attempt and the new state (pending: retried at `next_attempt_at`)."""

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        """One delivery, or None."""

    async def list_deliveries(
        self, *, job_id: str | None = None, batch_id: str | None = None
    ) -> list[Delivery]:
        """Deliveries for a job or batch."""

    async def list_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        """Every recorded attempt of a delivery, in order."""


def open_ledger(database_url: str) -> Ledger:
    """The backend for a URL: `sqlite:///path` (or `sqlite://:memory:`), later `postgresql://`."""
    if database_url.startswith("sqlite:"):
        from imagedrop.ledger.sqlite import SqliteLedger

        return SqliteLedger.from_url(database_url)
    if database_url.startswith(("postgresql:", "postgres:")):
        try:
            from imagedrop.ledger.postgres import PostgresLedger
        except ModuleNotFoundError as exc:  # the module or its driver
            from imagedrop.errors import MissingDependencyError

            raise MissingDependencyError(
                "the PostgreSQL ledger needs its driver: pip install 'imagedrop[postgres]'"
            ) from exc
        return PostgresLedger.from_url(database_url)
    from imagedrop.errors import ConfigError

    scheme = database_url.split(":")[0]
    raise ConfigError(f"IMAGEDROP_DATABASE_URL: unsupported scheme {scheme!r}")


__all__ = [
    "Batch", "BatchProgress", "Delivery", "DeliveryAttempt", "DeliveryState", "DropItem", "Job",
    "JobKind",
    "JobState", "Ledger", "NewBatch", "NewDelivery", "NewJob", "open_ledger",
]
