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

import structlog

from imagedrop import subscribers
from imagedrop.config import ProviderSettings
from imagedrop.errors import RequestInvalid
from imagedrop.ledger import Batch, DropItem, JobKind, NewBatch, NewJob
from imagedrop.listing import IMAGE_EXTENSIONS, jobs_for_page
from imagedrop.manifests import MANIFEST_NAMES, ManifestResolver, Resolved
from imagedrop.payloads import ManifestRef
from imagedrop.providers import spec_from_settings
from imagedrop.recipes import SPEC_FIELDS, BudgetRule, Recipe, folder_scope
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


@dataclass(frozen=True, slots=True)
class TriggerPlan:
    """How a folder trigger runs: its batch's recipe and where its results go."""

    recipe: Recipe
    output_bucket: str
    output_prefix: str


def recipe_for(resolved: Resolved, defaults: ProviderSettings) -> Recipe:
    """A job's recipe from its manifest: the edit spec, plus what the outcome needs."""
    manifest = resolved.manifest
    assert manifest is not None
    return Recipe.of(
        manifest.edit_spec(defaults), fallback=manifest.fallback, provider=manifest.provider,
        subscribers=subscribers.subscriber_refs(manifest.subscribers),
        manifest=ManifestRef(bucket=resolved.bucket, key=resolved.source_key,
                             etag=resolved.etag, revision=manifest.revision),
        budget=None if manifest.budget is None else BudgetRule(
            scope=folder_scope(resolved.bucket, resolved.source_key),
            edits_per_day=manifest.budget.edits_per_day,
            usd_per_day=manifest.budget.usd_per_day, over=manifest.budget.over),
    )


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
                                                       recipe.output_format or "png",
                                                       when=self.clock())
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
            recipe=Recipe(prompt=manifest.prompt, subscribers=recipe.subscribers,
                          manifest=recipe.manifest),
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
            recipe=Recipe(manifest_error=reason),
            dedupe_key=drop_dedupe_key(bucket, key, etag), source_bucket=bucket,
            source_key=key, source_etag=etag, max_attempts=1,
            blocked_by=f"{resolved.bucket}\x1f{resolved.source_key}\x1f{resolved.etag}",
        ))

    async def plan_trigger_page(self, batch: Batch, page: list[ObjectInfo], first_seq: int
                                ) -> list[NewJob]:
        """A folder trigger's jobs for one listed page: each object as its manifest says
        (with the trigger's overrides), keyed by object version so that versions already
        edited with the same recipe are counted, not edited again."""
        if batch.recipe.mode == "prompt":  # no manifest: the request's own recipe
            return jobs_for_page(batch, page, first_seq=first_seq,
                                 max_attempts=self.max_attempts, outputs=self.outputs)
        override = batch.recipe.override or {}
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
            recipe = job.recipe.overridden(override)
            version = f"{job.version_key}\x1f{tag}" if override and job.version_key else (
                job.version_key)
            jobs.append(replace(
                job, kind=JobKind.BATCH, batch_id=batch.id, seq=first_seq + len(jobs),
                dedupe_key=f"batch:{batch.id}:{info.key}", recipe=recipe, version_key=version,
                request_id=batch.request_id, traceparent=batch.traceparent))
        return jobs

    async def plan_trigger(self, bucket: str, prefix: str, overrides: dict[str, str], *,
                           batch_id: str, default_output: tuple[str, str]) -> TriggerPlan:
        """How POST /trigger edits the folder `prefix`: as the manifest governing it says
        (`overrides` — spec fields the request gave — replacing its own), or, with no manifest,
        with the request's prompt into `default_output` (bucket, prefix) + the batch id.
        RequestInvalid when the manifest is broken, or there is none and no prompt."""
        # "photos/food" names the folder photos/food/ when it has a manifest, else whatever
        # governs photos/.
        probes = [prefix + "/x"] if prefix and not prefix.endswith("/") else []
        probes.append(prefix.rsplit("/", 1)[0] + "/x" if "/" in prefix.rstrip("/") or
                      prefix.endswith("/") else "x")
        resolved = None
        for probe in probes:
            resolved = await self.resolver.resolve(bucket, probe.lstrip("/"))
            if resolved is not None:
                break
        if resolved is not None and resolved.error is not None:
            raise RequestInvalid(f"the folder's manifest is invalid: {resolved.error}", "prefix")
        if resolved is not None and resolved.manifest is not None:
            manifest = resolved.manifest
            return TriggerPlan(
                Recipe(mode="manifest", override=overrides,
                       prompt=overrides.get("prompt") or manifest.prompt,
                       subscribers=subscribers.subscriber_refs(manifest.subscribers)),
                manifest.output.bucket or bucket, manifest.output_prefix(resolved.folder))
        if "prompt" not in overrides:
            raise RequestInvalid(f"no imagedrop.yaml governs {bucket}/{prefix} and no prompt "
                                 "was given: add a manifest to the folder or send a prompt",
                                 "prompt")
        spec = spec_from_settings(self.defaults, overrides["prompt"],
                                  **{k: overrides.get(k) for k in SPEC_FIELDS if k != "prompt"})
        out_bucket, out_prefix = default_output
        return TriggerPlan(Recipe.of(spec, mode="prompt"), out_bucket, f"{out_prefix}{batch_id}/")
