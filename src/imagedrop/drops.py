"""From "an object was written" to a job: manifest lookup, filters, output place, dedupe keys.

Shared by notification intake, the sweep and folder triggers, so all three record the same
object version under the same keys — which is what makes them harmless to one another.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from imagedrop import subscribers
from imagedrop.config import ProviderSettings
from imagedrop.ledger import Batch, DropItem, JobKind, NewBatch, NewJob
from imagedrop.listing import IMAGE_EXTENSIONS, jobs_for_page
from imagedrop.manifests import MANIFEST_NAMES, ManifestResolver, Resolved
from imagedrop.storage import ObjectInfo

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Skip:
    """An object that starts nothing, and why (logged, and returned by /events). A manifest
    carries its ETag: its folder may have images to heal (`healing.Healer`)."""

    bucket: str
    key: str
    reason: str
    manifest_etag: str | None = None


def version_key(bucket: str, key: str, etag: str, revision: str) -> str:
    """One object version edited with one recipe (SPEC §4.5)."""
    return f"{bucket}\x1f{key}\x1f{etag}\x1f{revision}"


def drop_dedupe_key(bucket: str, key: str, etag: str) -> str:
    """The dedupe key of a dropped object's job: one job per object version. Not per recipe:
    replicas may briefly hold different revisions of a changed manifest, and a duplicate
    notification must not become a second edit; re-editing under a new recipe is /trigger's."""
    return f"drop\x1f{bucket}\x1f{key}\x1f{etag}"


def recipe_for(resolved: Resolved, defaults: ProviderSettings) -> dict[str, Any]:
    """A job's recipe from its manifest: the edit spec, plus what the outcome needs."""
    manifest = resolved.manifest
    assert manifest is not None
    recipe: dict[str, Any] = dict(manifest.recipe(defaults))
    recipe.update(
        fallback=manifest.fallback,
        subscribers=subscribers.subscriber_refs(manifest.subscribers),
        manifest={"bucket": resolved.bucket, "key": resolved.source_key, "etag": resolved.etag,
                  "revision": manifest.revision},
    )
    if manifest.provider:
        recipe["provider"] = manifest.provider
    return recipe


class DropPlanner:
    """Decides, per written object, the job to record — or why there is none."""

    def __init__(self, resolver: ManifestResolver, defaults: ProviderSettings, *,
                 max_attempts: int, max_settle: float, outputs: Sequence[tuple[str, str]] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.outputs = list(outputs)
        self.clock = clock
        self.resolver = resolver
        self.defaults = defaults
        self.max_attempts = max_attempts
        self.max_settle = max_settle

    async def plan(self, bucket: str, key: str, etag: str, size: int | None
                   ) -> DropItem | Skip:
        """The job for one written object version, or a Skip saying why not."""
        name = posixpath.basename(key)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
            return Skip(bucket, key.encode("unicode_escape").decode(), "the key holds control "
                        "characters; such objects are not taken")
        if name in MANIFEST_NAMES:
            self.resolver.invalidate(bucket, key, etag)
            return Skip(bucket, key, "a manifest: the folder's settings were refreshed",
                        manifest_etag=etag or None)
        if not name or posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            return Skip(bucket, key, "not an image file name")
        if not etag:
            return Skip(bucket, key, "the notification carries no ETag")
        resolved = await self.resolver.resolve(bucket, key)
        if resolved is None:
            return Skip(bucket, key, "no imagedrop.yaml governs this folder")
        if await self.resolver.is_output(bucket, key):
            return Skip(bucket, key, "under a manifest's output location: outputs never "
                                     "start work")
        if resolved.manifest is None:
            return self._broken(bucket, key, etag, resolved)
        taken, why = resolved.manifest.matches(resolved.relative(key), size)
        if not taken:
            return Skip(bucket, key, f"not taken by {resolved.source_key}: {why}")
        return self._item(bucket, key, etag, resolved)

    def _item(self, bucket: str, key: str, etag: str, resolved: Resolved) -> DropItem:
        manifest = resolved.manifest
        assert manifest is not None
        recipe = recipe_for(resolved, self.defaults)
        out_bucket, out_key = manifest.output_location(resolved.folder, key, bucket, etag,
                                                       recipe["output_format"], when=self.clock())
        revision = manifest.revision
        job = NewJob(
            kind=JobKind.DROP, filename=posixpath.basename(key), recipe=recipe,
            dedupe_key=drop_dedupe_key(bucket, key, etag),
            version_key=version_key(bucket, key, etag, revision), source_bucket=bucket,
            source_key=key, source_etag=etag, output_bucket=out_bucket, output_key=out_key,
            max_attempts=self.max_attempts,
        )
        if not manifest.settle_seconds:
            return DropItem(job=job)
        batch = NewBatch(
            kind="drop", bucket=bucket, prefix=resolved.folder, output_bucket=out_bucket,
            output_prefix=manifest.output_prefix(resolved.folder),
            recipe={"prompt": manifest.prompt, "subscribers": recipe["subscribers"],
                    "manifest": recipe["manifest"]},
            group_key=f"{bucket}\x1f{resolved.folder}\x1f{revision}",
        )
        return DropItem(job=job, batch=batch, settle_seconds=manifest.settle_seconds,
                        max_settle_seconds=self.max_settle)

    def _broken(self, bucket: str, key: str, etag: str, resolved: Resolved) -> DropItem:
        """A job that fails with the manifest's problems: the image is skipped, visibly."""
        problems = "; ".join(str(p) for p in resolved.error.problems) if resolved.error else ""
        reason = (f"skipped: the manifest is invalid: {problems} (fix it: the images it "
                  "skipped are queued again when its new version arrives)")
        return DropItem(job=NewJob(
            kind=JobKind.DROP, filename=posixpath.basename(key),
            recipe={"prompt": "", "manifest_error": reason},
            dedupe_key=drop_dedupe_key(bucket, key, etag), source_bucket=bucket,
            source_key=key, source_etag=etag, max_attempts=1,
            blocked_by=f"{resolved.bucket}\x1f{resolved.source_key}\x1f{resolved.etag}",
        ))

    async def plan_trigger_page(self, batch: Batch, page: list[ObjectInfo], first_seq: int
                                ) -> list[NewJob]:
        """A folder trigger's jobs for one listed page: each object as its manifest says
        (with the trigger's overrides), keyed by object version so that versions already
        edited with the same recipe are counted, not edited again."""
        if batch.recipe.get("mode") == "prompt":  # no manifest: the request's own recipe
            return jobs_for_page(batch, page, first_seq=first_seq,
                                 max_attempts=self.max_attempts, outputs=self.outputs)
        override = batch.recipe.get("override") or {}
        tag = hashlib.sha256(json.dumps(override, sort_keys=True).encode()).hexdigest()[:16]
        jobs: list[NewJob] = []
        for info in page:
            if info.is_output:
                continue
            plan = await self.plan(info.bucket, info.key, info.etag, info.size)
            if isinstance(plan, Skip):
                log.debug("trigger_skipped", key=info.key, reason=plan.reason)
                continue
            job = plan.job
            recipe = {**job.recipe, **override} if override else job.recipe
            version = f"{job.version_key}\x1f{tag}" if override and job.version_key else (
                job.version_key)
            jobs.append(replace(
                job, kind=JobKind.BATCH, batch_id=batch.id, seq=first_seq + len(jobs),
                dedupe_key=f"batch:{batch.id}:{info.key}", recipe=recipe, version_key=version))
        return jobs
