"""One job, start to finish: fetch → check → edit → write, then hand what it came to (a result
or an error) to `outcomes.OutcomeRecorder`, which records it with its callbacks.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from binascii import a2b_base64
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import structlog

from imagedrop import imaging
from imagedrop.batches import BatchCloser
from imagedrop.config import ImagingSettings, WorkerSettings
from imagedrop.editor import Editor
from imagedrop.errors import InputError, NotFound, PermanentError, VersionSuperseded
from imagedrop.ledger import Job, JobKind, Ledger
from imagedrop.metrics import Metrics
from imagedrop.outcomes import (
    DEFER_DELAY,
    Edited,
    Outcome,
    OutcomeRecorder,
    OutputNotInput,
    Superseded,
    VersionBusy,
)
from imagedrop.providers import EditResult, EditSpec
from imagedrop.recipes import JobResult, Recipe, folder_scope
from imagedrop.storage import ObjectStore
from imagedrop.tracing import Tracing

log = structlog.get_logger(__name__)

#: Metadata imagedrop writes next to OUTPUT_MARKER, so a rerun can recognise its own output.
JOB_META = "imagedrop-job"
SOURCE_META = "imagedrop-source"
#: A digest of the object version and recipe an output was made from: lets a job recognise an
#: identical earlier result even when the ledger that recorded it is gone (a wiped volume).
VERSION_META = "imagedrop-version"


def spec_from_recipe(recipe: Recipe) -> EditSpec:
    """The EditSpec stored in a job's recipe."""
    return EditSpec(**recipe.spec_fields())


class Pipeline:
    """Runs claimed jobs; shared by every worker task in a process."""

    def __init__(
        self, *, ledger: Ledger, storage: ObjectStore, editor: Editor,
        imaging_settings: ImagingSettings, worker_settings: WorkerSettings,
        presign_expires: int, executor: Executor | None = None,
        clock: Callable[[], float] = time.time, defer_delay: float = DEFER_DELAY,
        metrics: Metrics | None = None, tracing: Tracing | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.tracing = tracing or Tracing()
        self.ledger = ledger
        self.storage = storage
        self.editor = editor
        self.limits = imaging_settings
        self.retry = worker_settings
        self.executor = executor
        self.clock = clock
        self.batches = BatchCloser(ledger, clock=clock)
        self.outcomes = OutcomeRecorder(
            ledger=ledger, storage=storage, worker_settings=worker_settings,
            presign_expires=presign_expires, executor=executor, clock=clock,
            defer_delay=defer_delay, metrics=self.metrics)

    async def run(self, job: Job, owner: str, *,
                  edited: Callable[[], None] | None = None) -> Outcome:
        """Run one claimed job and record what happened. Never raises (but CancelledError).
        `edited()` is called once the editing is over, before the outcome is recorded."""
        started = self.clock()
        with structlog.contextvars.bound_contextvars(
            job_id=job.id, kind=str(job.kind), bucket=job.source_bucket, key=job.source_key,
            batch_id=job.batch_id, attempt=job.attempts, request_id=job.request_id,
        ), self.tracing.span("job.run", parent=job.traceparent, kind="consumer",
                             **_attributes(job)) as traceparent:
            if traceparent != job.traceparent:  # its callbacks continue this span
                job = replace(job, traceparent=traceparent)
            try:
                if job.attempts > job.max_attempts:
                    # Claimed again and again without an outcome: the process died while
                    # working on it each time (e.g. killed for memory). Stop the loop.
                    raise PermanentError(
                        f"gave up after {job.attempts - 1} attempts that never finished "
                        "(the process stopped while working on this image each time)")
                result, error = await self._execute(job), None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is recorded; the service keeps serving
                result, error = None, exc
            if edited is not None:
                edited()
            outcome = await self.outcomes.record(job, owner, result, error)
            log.info(
                "job_" + outcome.state, reason=outcome.reason,
                seconds=round(self.clock() - started, 3),
            )
            self.metrics.jobs.labels(str(job.kind), outcome.state).inc()
            if job.batch_id and outcome.state in ("completed", "failed"):
                await self.batches.maybe_finish(job.batch_id)
            return outcome

    # -- the work -------------------------------------------------------------------------
    async def _execute(self, job: Job) -> Edited:
        if job.recipe.manifest_error:
            raise ManifestRejected(job.recipe.manifest_error)
        spec = spec_from_recipe(job.recipe)
        if job.kind in (JobKind.BATCH, JobKind.DROP, JobKind.COS) and job.output_key:
            reused = await self._existing_output(job) or await self._earlier_edit(job)
            if reused is not None:
                return Edited(reused)
            if job.version_key and not job.generation:
                reused = await self._claim_version(job)
                if reused is not None:
                    return Edited(reused)
        # Over budget: held (or failed) before the image is fetched or a rate slot taken.
        folder = _job_folder(job)
        await self.editor.check_budget(spec, job.recipe.budget, job.recipe.provider, folder)
        source = await self._load_source(job)
        prepared = await self._in_executor(
            self.metrics.timed("check", imaging.prepare_for_provider), source,
            max_bytes=self.limits.max_bytes, max_pixels=self.limits.max_pixels,
        )
        edited, fallback = await self.editor.edit(
            prepared.data, prepared.mime, job.filename, spec,
            fallback_allowed=job.recipe.fallback == "local", provider=job.recipe.provider,
            budget=job.recipe.budget, folder=folder)
        result = JobResult(provider=edited.provider, model=edited.model,
                           mime_type=edited.mime_type, fallback_local=fallback,
                           size=edited.size, usage=edited.usage,
                           cost_usd=self.editor.cost(edited))
        if job.kind is JobKind.B64:
            # The image travels in the callback body; nothing to store. A provider's base64
            # passes through as it came; encoding bytes is CPU work: off the loop.
            image_b64 = edited.b64 if edited.b64 is not None else await self._in_executor(
                self.metrics.timed("result", edited.base64))
            return Edited(result, image_b64)
        assert job.output_bucket and job.output_key
        data: bytes = edited.raw if edited.raw is not None else await self._in_executor(
            self.metrics.timed("result", _image_bytes), edited)
        await self.storage.put(
            job.output_bucket, job.output_key, data, content_type=edited.mime_type,
            metadata=self._output_metadata(job, fallback),
        )
        return Edited(result.model_copy(update={"bucket": job.output_bucket,
                                                "key": job.output_key}))

    async def _load_source(self, job: Job) -> bytes:
        if job.input_data is not None:
            if job.input_base64:  # checked when it came; decoded now, off the caller's wait
                decoded: bytes = await self._in_executor(
                    self.metrics.timed("decode", a2b_base64), job.input_data)
                return decoded
            return job.input_data
        if not (job.source_bucket and job.source_key):
            raise PermanentError("the uploaded image is no longer stored (its job completed "
                                 "before, or its file beside the ledger was removed): send it "
                                 "again")
        try:
            # The job's own version, not whatever was written since: an edit recorded under
            # one ETag must have been made from that version.
            obj = await self.storage.get(job.source_bucket, job.source_key,
                                         max_bytes=self.limits.max_bytes,
                                         if_match=job.source_etag or None)
        except VersionSuperseded as exc:
            raise Superseded(superseded_reason(job)) from exc
        if obj.info.is_output:
            raise OutputNotInput("object was written by imagedrop; outputs are never inputs")
        return obj.data

    async def _existing_output(self, job: Job) -> JobResult | None:
        """The result already at this job's output place: written by an earlier attempt of it
        (a crash after the write), or from the same object version and recipe (the same edit,
        recorded in a ledger since lost). A forced replay never reuses."""
        assert job.output_bucket and job.output_key
        info = await self.storage.head(job.output_bucket, job.output_key)
        if info is None:
            return None
        same_job = info.metadata.get(JOB_META) == job_marker(job)
        same_edit = (not job.generation and job.version_key is not None
                     and info.metadata.get(VERSION_META) == version_digest(job.version_key))
        if not (same_job or same_edit):
            return None
        log.info("job_output_reused")
        return JobResult(
            provider=info.metadata.get("imagedrop-provider", "unknown"), model=job.recipe.model,
            mime_type=info.content_type,
            fallback_local=info.metadata.get("imagedrop-fallback") == "1", size=info.size,
            bucket=job.output_bucket, key=job.output_key, reused=True)

    async def _claim_version(self, job: Job) -> JobResult | None:
        """Hold the job's object version while editing it, so that another job for the same
        version and recipe (a second trigger, a trigger and a drop) waits for this result and
        reuses it instead of paying for the same edit. Raises VersionBusy when another running
        job holds it; returns the earlier result when one completed meanwhile."""
        assert job.version_key
        holder = await self.ledger.claim_version(job.version_key, job.id,
                                                 self.retry.lease_seconds)
        if holder is not None:
            raise VersionBusy(holder)
        # The holder may have completed between the look above and this claim.
        return await self._earlier_edit(job)

    async def _earlier_edit(self, job: Job) -> JobResult | None:
        """The same object version edited with the same recipe by another job: reuse it
        (copying it when this job's result goes elsewhere) instead of paying again."""
        if not job.version_key or job.generation:
            return None  # a forced replay edits again
        earlier = await self.ledger.find_completed_version(job.version_key)
        if earlier is None or earlier.id == job.id or not earlier.result:
            return None
        src_bucket, src_key = earlier.result.bucket, earlier.result.key
        if not src_bucket or not src_key:
            return None
        assert job.output_bucket and job.output_key
        if (src_bucket, src_key) != (job.output_bucket, job.output_key):
            try:
                obj = await self.storage.get(src_bucket, src_key)
            except NotFound:
                return None  # the earlier result is gone: edit again
            await self.storage.put(job.output_bucket, job.output_key, obj.data,
                                   content_type=obj.info.content_type or "image/png",
                                   metadata=self._output_metadata(
                                       job, earlier.result.fallback_local))
        elif await self.storage.head(src_bucket, src_key) is None:
            return None
        log.info("job_reused_earlier_edit", earlier_job=earlier.id)
        # Paid for once, by the earlier job: this one cost nothing.
        return earlier.result.model_copy(update={
            "bucket": job.output_bucket, "key": job.output_key, "reused": True,
            "reused_from": earlier.id, "usage": None, "cost_usd": 0.0})

    def _output_metadata(self, job: Job, fallback: bool) -> dict[str, str]:
        meta = {JOB_META: job_marker(job), "imagedrop-fallback": "1" if fallback else "0",
                **({VERSION_META: version_digest(job.version_key)} if job.version_key else {}),
                "imagedrop-provider": "local" if fallback else self.editor.primary.name}
        if job.source_key:
            # S3 user metadata must be ASCII; keys may not be.
            meta[SOURCE_META] = quote(f"{job.source_bucket}/{job.source_key}", safe="/")
            meta["imagedrop-source-etag"] = job.source_etag or ""
        return meta

    async def _in_executor(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))


def _job_folder(job: Job) -> str | None:
    """The budget scope of the job's folder (its manifest), or None for a job without one."""
    ref = job.recipe.manifest
    return folder_scope(ref.bucket, ref.key) if ref is not None else None


def _image_bytes(edited: EditResult) -> bytes:
    return edited.data


def _attributes(job: Job) -> dict[str, str | int]:
    """A job's span attributes."""
    return {"imagedrop.job_id": job.id, "imagedrop.kind": str(job.kind),
            "imagedrop.attempt": job.attempts}


def version_digest(version_key: str) -> str:
    """VERSION_META's value: ASCII and short, as S3 user metadata wants."""
    return hashlib.sha256(version_key.encode()).hexdigest()[:32]


def job_marker(job: Job) -> str:
    """What an output's JOB_META says: the job, and its generation once a replay forced it."""
    return job.id if not job.generation else f"{job.id}#{job.generation}"


def superseded_reason(job: Job) -> str:
    """Why a job whose object version was overwritten before it was read fails."""
    if job.kind is JobKind.DROP:
        return ("a newer version of the object was written before this one was edited; "
                "the newer version has its own job")
    return ("the object was overwritten after this job was planned, so the version it was "
            "planned for no longer exists; the newer version was not edited by this job")


class ManifestRejected(InputError):
    """Raised when the manifest governing a dropped image is invalid."""
