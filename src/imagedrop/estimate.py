"""What a folder trigger would do and cost, without doing it (POST /trigger dry_run): the
folder listed page by page and planned exactly as a trigger plans it, versions already edited
with the same recipe counted as done, the rest priced from the price table. Nothing is
recorded, no provider is called; memory stays one page whatever the folder's size."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from imagedrop.drops import DropPlanner
from imagedrop.ledger import Batch, Ledger
from imagedrop.listing import is_candidate
from imagedrop.prices import PriceList
from imagedrop.providers import EditSpec
from imagedrop.records import NewJob
from imagedrop.storage import ObjectStore


@dataclass(frozen=True, slots=True)
class FolderEstimate:
    """The answer of a dry run."""

    images: int  # image files in the folder (outputs and manifests aside)
    to_edit: int  # those a trigger would send to the provider now
    already_done: int  # edited before with the same recipe: reused, not paid again
    skipped: int  # image files the folder's manifest does not take
    estimated_cost_usd: float
    prices_as_of: str
    unpriced_models: tuple[str, ...] = ()  # models the price table does not know (cost 0)


async def estimate_folder(
    *, storage: ObjectStore, ledger: Ledger, planner: DropPlanner, prices: PriceList,
    bucket: str, prefix: str, overrides: dict[str, str], default_output: tuple[str, str],
    defaults: Callable[[], EditSpec], local: bool, page_size: int = 1000,
) -> FolderEstimate:
    """Plan POST /trigger for `bucket`/`prefix` with `overrides` and count, page by page.
    `local`: the service edits locally (every edit costs 0)."""
    batch_id = f"dry-run-{uuid.uuid4()}"
    plan = await planner.plan_trigger(bucket, prefix, overrides, batch_id=batch_id,
                                      default_output=default_output)
    batch = Batch(id=batch_id, kind="trigger", bucket=bucket, prefix=prefix,
                  output_bucket=plan.output_bucket, output_prefix=plan.output_prefix,
                  recipe=plan.recipe, callback_url=None, listing_cursor="", listing_done=False,
                  lease_owner=None, lease_expires=None, created_at=0.0, finished_at=None,
                  summary=None, extra={})
    images = to_edit = done = 0
    cost = 0.0
    unpriced: set[str] = set()
    by_recipe: dict[str, float] = {}
    where = [(plan.output_bucket, plan.output_prefix), *planner.outputs]
    async for page in storage.list(bucket, prefix, page_size=page_size):
        images += sum(1 for info in page if is_candidate(info, outputs=where))
        jobs = await planner.plan_trigger_page(batch, page, 0)
        versions = [job.version_key for job in jobs if job.version_key]
        edited = await ledger.completed_versions(versions) if versions else set()
        for job in jobs:
            if job.version_key in edited or job.recipe.manifest_error:
                done += job.version_key in edited
                continue
            to_edit += 1
            if not local and job.recipe.provider != "local":
                cost += _price(job, prices, defaults, by_recipe, unpriced)
    return FolderEstimate(images=images, to_edit=to_edit, already_done=done,
                          skipped=max(0, images - to_edit - done),
                          estimated_cost_usd=round(cost, 6), prices_as_of=prices.as_of,
                          unpriced_models=tuple(sorted(unpriced)))


def _price(job: NewJob, prices: PriceList, defaults: Callable[[], EditSpec],
           cache: dict[str, float], unpriced: set[str]) -> float:
    key = job.recipe.to_json()
    if key not in cache:
        base = defaults()
        fields = job.recipe.spec_fields()
        model = fields.get("model", base.model)
        if prices.price(model) is None:
            unpriced.add(model)
        cache[key] = prices.estimate(model, fields.get("quality", base.quality),
                                     fields.get("size", base.size),
                                     fields.get("prompt", base.prompt))
    return cache[key]
