"""Recording what one job came to: the ledger's outcome together with the callbacks and
subscriber events it causes, in one transaction. Retries are decided by `lifecycle.after_error`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from imagedrop import lifecycle, subscribers
from imagedrop.config import WorkerSettings
from imagedrop.errors import (
    BudgetReached,
    ImageRejected,
    InputError,
    PermanentError,
    TransientError,
    VersionSuperseded,
)
from imagedrop.ledger import Job, JobKind, Ledger, NewDelivery
from imagedrop.metrics import Metrics
from imagedrop.payloads import B64Completed, CosCompleted, ImageEventData, ImageFailed
from imagedrop.recipes import JobResult
from imagedrop.storage import ObjectStore

log = structlog.get_logger(__name__)

#: How long a job waits, at first and at most, before looking again for the result of another
#: job editing the same object version (it polls less often the longer it has waited).
DEFER_DELAY = 1.0
DEFER_DELAY_CAP = 10.0


@dataclass(frozen=True, slots=True)
class Edited:
    """What a run produced: its result, and (for the base64 endpoint) the image as base64,
    which travels in the callback only."""

    result: JobResult
    image_base64: bytes | None = None  # ASCII


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one run of a job came to (for logs and tests)."""

    state: str  # completed | failed | retry | deferred | held | lost (lease lost to another one)
    reason: str | None = None


class OutcomeRecorder:
    """Writes a job's outcome and the deliveries it causes; used by the Pipeline."""

    def __init__(
        self, *, ledger: Ledger, storage: ObjectStore, worker_settings: WorkerSettings,
        presign_expires: int, executor: Executor | None = None,
        clock: Callable[[], float], defer_delay: float = DEFER_DELAY,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.ledger = ledger
        self.storage = storage
        self.retry = worker_settings
        self.presign_expires = presign_expires
        self.executor = executor
        self.clock = clock
        self.defer_delay = defer_delay

    async def record(self, job: Job, owner: str, edited: Edited | None,
                     error: Exception | None) -> Outcome:
        """Record the outcome, retrying a busy ledger briefly; never raises."""
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientError), stop=stop_after_attempt(4),
                wait=wait_exponential(multiplier=0.2, max=2), reraise=True,
            ):
                with attempt:
                    return await self._outcome(job, owner, edited, error)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease lapses and the job runs again; its written output is reused then.
            log.exception("job_outcome_not_recorded")
        return Outcome("lost", "the outcome could not be recorded; the job will run again")

    async def _outcome(self, job: Job, owner: str, edited: Edited | None,
                       error: Exception | None) -> Outcome:
        if edited is not None:
            try:
                return await self._complete(job, owner, edited)
            except (InputError, PermanentError) as exc:
                error = exc  # e.g. no presigned URL possible: the job fails with that reason
        assert error is not None
        if isinstance(error, VersionBusy):
            return await self._defer(job, owner, error)
        if isinstance(error, BudgetReached):
            return await self._over_budget(job, owner, error)
        return await self._after_error(job, owner, error)

    async def _over_budget(self, job: Job, owner: str, exc: BudgetReached) -> Outcome:
        """Hold the job until the budget's next day (over: hold), or fail it with the reason;
        the first refusal of a budget's day tells the folder's subscribers (budget.reached)."""
        notices = await self._budget_notices(job, exc) if exc.first else []
        if exc.over == "hold":
            reason = f"held: {exc}; goes on at {subscribers.timestamp(exc.until)}"
            ok = await self.ledger.hold_job(job.id, owner, exc.until, reason, notices)
            return Outcome("held" if ok else "lost", reason)
        return await self._after_error(job, owner, exc, notices)

    async def _budget_notices(self, job: Job, exc: BudgetReached) -> list[NewDelivery]:
        subs = [s for s in job.recipe.subscribers if "budget.reached" in s.events]
        if not subs:
            return []
        disabled = await self.ledger.disabled_endpoints([s.url for s in subs])
        event = subscribers.budget_event(job, exc, now=self.clock())
        return subscribers.deliveries_for(event, subs, disabled=disabled, job_id=job.id,
                                          request_id=job.request_id,
                                          traceparent=job.traceparent)

    async def _defer(self, job: Job, owner: str, busy: VersionBusy) -> Outcome:
        """Wait for the job editing the same version: back in the queue, no attempt used."""
        waited = self.clock() - (job.started_at or self.clock())
        delay = min(DEFER_DELAY_CAP, max(self.defer_delay, waited / 4))
        ok = await self.ledger.defer_job(job.id, owner, self.clock() + delay, str(busy))
        return Outcome("deferred" if ok else "lost", str(busy))

    async def _complete(self, job: Job, owner: str, edited: Edited) -> Outcome:
        result = edited.result
        deliveries = []
        if job.callback_url:
            body = await self._completed_callback(job, edited)
            deliveries.append(NewDelivery(kind="callback", url=job.callback_url, body=body,
                                          job_id=job.id, request_id=job.request_id,
                                          traceparent=job.traceparent))
        if job.recipe.subscribers:
            url = await self._result_url(result)
            deliveries += await self._subscriber_deliveries(
                job, subscribers.image_data(job, result=result, result_url=url))
        ok = await self.ledger.complete_job(job.id, owner, result, deliveries)
        return Outcome("completed" if ok else "lost")

    async def _completed_callback(self, job: Job, edited: Edited) -> bytes:
        result = edited.result
        if job.kind is JobKind.B64:
            image, mime = edited.image_base64, result.mime_type
            assert image is not None and mime is not None  # the base64 endpoint's run sets both
            # The base64 is spliced into the body, not serialised again: one copy, off the loop.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self.metrics.timed(
                "callback", lambda: B64Completed.body_with_image(
                    image, job_id=job.id, filename=job.filename, result_mime_type=mime)))
        if not result.bucket or not result.key:
            raise PermanentError("the job's result was not stored, so it has no download link")
        url = await self.storage.presign_get(result.bucket, result.key, self.presign_expires)
        return CosCompleted(job_id=job.id, filename=job.filename, object_key=result.key,
                            result_url=url, expires_in=self.presign_expires).to_body()

    async def _after_error(self, job: Job, owner: str, exc: Exception,
                           notices: list[NewDelivery] | None = None) -> Outcome:
        decision = lifecycle.after_error(
            exc, attempts=job.attempts, max_attempts=job.max_attempts,
            base=self.retry.retry_base, cap=self.retry.retry_cap,
        )
        if isinstance(decision, lifecycle.Retry):
            ok = await self.ledger.retry_job(job.id, owner, decision.reason,
                                             self.clock() + decision.delay)
            return Outcome("retry" if ok else "lost", decision.reason)
        if isinstance(exc, TransientError):  # expected: store or ledger down, disk full
            log.warning("job_gave_up", error=decision.reason)
        elif not isinstance(exc, PermanentError | InputError):
            log.error("job_unexpected_error", exc_info=exc)
        deliveries = list(notices or [])
        if job.callback_url:
            body = ImageFailed(job_id=job.id, filename=job.filename,
                               error=decision.reason).to_body()
            deliveries.append(NewDelivery(kind="callback", url=job.callback_url, body=body,
                                          job_id=job.id, request_id=job.request_id,
                                          traceparent=job.traceparent))
        # Neither is news for subscribers: an output is not their image, and a superseded
        # version no longer exists (a dropped file's newer version has its own job and event).
        if job.recipe.subscribers and not isinstance(exc, OutputNotInput | Superseded):
            deliveries += await self._subscriber_deliveries(
                job, subscribers.image_data(job, error=decision.reason))
        ok = await self.ledger.fail_job(job.id, owner, decision.reason, deliveries)
        return Outcome("failed" if ok else "lost", decision.reason)

    async def _result_url(self, result: JobResult) -> str | None:
        """A download URL for subscribers, when the store can make one."""
        if not result.bucket or not result.key:
            return None
        try:
            return await self.storage.presign_get(result.bucket, result.key,
                                                  self.presign_expires)
        except PermanentError:
            return None  # e.g. COS with an IAM key only: no presigned URLs

    async def _subscriber_deliveries(self, job: Job, data: ImageEventData
                                     ) -> list[NewDelivery]:
        subs = job.recipe.subscribers
        disabled = await self.ledger.disabled_endpoints([s.url for s in subs])
        return subscribers.deliveries_for(subscribers.image_event(data, now=self.clock()), subs,
                                          disabled=disabled, job_id=job.id,
                                          request_id=job.request_id,
                                          traceparent=job.traceparent)


# The ways a run can end that the recorder treats specially; the pipeline raises them.
class OutputNotInput(ImageRejected):
    """Raised when a job's source turns out to be an output imagedrop wrote."""


class Superseded(VersionSuperseded):
    """Raised when the job's object version was overwritten before the job read it."""


class VersionBusy(Exception):
    """Raised when another running job is editing the same object version and recipe."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"waiting for job {holder}, which is editing the same object version")
        self.holder = holder
