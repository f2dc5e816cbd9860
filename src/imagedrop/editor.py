"""The edit step: the configured provider, within the limits every replica shares.

Before each provider call the editor takes a slot of the global edit rate. A billing stop
(`billing_hard_limit_reached`) pauses the provider for every replica sharing the ledger: edits
go to the local provider meanwhile. `insufficient_quota` pauses it too, but jobs then fail with
the reason (SPEC §5: a quota is not silently replaced). Every other error propagates unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from imagedrop.config import SpendSettings
from imagedrop.errors import (
    BillingLimitReached,
    BudgetReached,
    ProviderPermanent,
    ProviderTransient,
    TransientError,
)
from imagedrop.ledger import BudgetLimit, BudgetTake, Ledger
from imagedrop.limits import BILLING, QUOTA, EditLimiter, PauseGate, pause_code
from imagedrop.metrics import Metrics
from imagedrop.prices import PriceList
from imagedrop.providers import EditResult, EditSpec, ImageProvider
from imagedrop.recipes import BudgetRule

log = structlog.get_logger(__name__)


class Editor:
    """Edits through `primary`; after a billing stop, through `fallback` for `billing_pause` s.

    With a `ledger`, the pause and the `edits_per_minute` rate are shared by every process on
    it; without one (the one-shot CLI edit) the pause is this process's alone.
    """

    def __init__(
        self, primary: ImageProvider, fallback: ImageProvider, *, billing_pause: float,
        clock: Callable[[], float] = time.time, ledger: Ledger | None = None,
        edits_per_minute: int = 0, pause_ttl: float = 1.5, metrics: Metrics | None = None,
        prices: PriceList | None = None, spend: SpendSettings | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.prices = prices or PriceList()
        self._ledger = ledger
        spend = spend or SpendSettings()
        self._service_budget = None if not (spend.edits_per_day or spend.usd_per_day) else (
            BudgetLimit("service", edits_per_day=spend.edits_per_day or None,
                        usd_per_day=spend.usd_per_day or None))
        self._service_over = spend.over
        self.primary = primary
        self.fallback = fallback
        self._pause = billing_pause
        self._clock = clock
        key = f"provider:{primary.name}"
        self.limiter = EditLimiter(ledger, key, edits_per_minute)
        self.pauses = PauseGate(ledger, key, ttl=pause_ttl, clock=clock)

    @property
    def billing_paused(self) -> bool:
        """True while this process knows the primary provider to be paused by a billing stop."""
        known = self.pauses.cached()
        return known is not None and pause_code(known[1]) == BILLING

    async def edit(
        self, image: bytes, mime: str, filename: str, spec: EditSpec, *,
        fallback_allowed: bool = True, provider: str | None = None,
        budget: BudgetRule | None = None, folder: str | None = None,
    ) -> tuple[EditResult, bool]:
        """The edited image and whether the local fallback made it. With `fallback_allowed`
        False (a manifest's `fallback: fail`), a billing stop fails the edit instead.
        `provider` (a manifest's choice) picks "local" or insists on the configured one."""
        if provider == "local":
            return await self._call(self.fallback, image, mime, filename, spec), False
        if provider is not None and provider != self.primary.name:
            raise ProviderPermanent(
                f"the manifest asks for provider {provider!r} but this service edits with "
                f"{self.primary.name!r} (set OPENAI_API_KEY to enable openai)",
                code="provider_unavailable")
        if self.primary is self.fallback:  # the local provider: no rate, no pause
            return await self._call(self.primary, image, mime, filename, spec), False
        pause = await self.pauses.current()
        if pause is None:
            await self.limiter.acquire()  # a short wait inside this attempt, not a failure
            # The wait for a rate slot may be long: another replica may have stopped the
            # provider meanwhile.
            pause = await self.pauses.current()
        if pause is None:
            try:
                return await self._paid(image, mime, filename, spec, budget, folder), False
            except BillingLimitReached as exc:
                await self.pauses.pause(self._pause, f"{BILLING}: {exc}")
                log.warning("billing_limit_reached", fallback="local", pause_seconds=self._pause)
                if not fallback_allowed:
                    raise
            except ProviderPermanent as exc:
                if exc.code == QUOTA:
                    await self.pauses.pause(self._pause, f"{QUOTA}: {exc}")
                    log.warning("provider_quota_exhausted", pause_seconds=self._pause)
                raise
        else:
            until, reason = pause
            left = max(0, round(until - self._clock()))
            if pause_code(reason) == QUOTA:
                raise ProviderPermanent(f"{reason} (the provider is paused for every replica, "
                                        f"about {left} s left)", code=QUOTA)
            if not fallback_allowed:
                raise BillingLimitReached(f"{BILLING}: the provider is paused after a billing "
                                          "stop and this folder's manifest says fallback: fail",
                                          code=BILLING)
        return await self._call(self.fallback, image, mime, filename, spec), True

    def cost(self, result: EditResult) -> float | None:
        """What `result` cost in US dollars: 0 for a local edit, None when the provider did
        not report usage or the price table does not know the model."""
        if result.provider == "local":
            return 0.0
        if result.usage is None:
            return None
        return self.prices.cost(result.model, result.usage)

    def budget_limits(self, budget: BudgetRule | None, folder: str | None = None
                      ) -> list[BudgetLimit]:
        """The budgets an edit for a job with `budget` counts against (the service's too). A
        folder without a budget is counted all the same, without a limit: its spend per day
        is on /metrics like every other folder's."""
        limits = [lim for lim in (self._service_budget, _limit(budget)) if lim is not None]
        if folder is not None and budget is None:
            limits.append(BudgetLimit(folder))
        return limits

    async def check_budget(self, spec: EditSpec, budget: BudgetRule | None,
                           provider: str | None, folder: str | None = None) -> None:
        """Raise BudgetReached now if an edit for `spec` would be refused, counting nothing:
        a job over budget is held before its image is fetched or a rate slot taken."""
        limits = self.budget_limits(budget)  # the ones with a limit
        if (self._ledger is None or provider == "local" or self.primary is self.fallback
                or not limits):
            return
        estimate = self._estimate(spec, budget)
        taken = await self._ledger.take_budget(limits, estimate, count=False, folder=folder)
        self._refuse(taken, budget)

    async def _paid(self, image: bytes, mime: str, filename: str, spec: EditSpec,
                    budget: BudgetRule | None, folder: str | None = None) -> EditResult:
        """One call to the paid provider, counted against the folder's and the service's
        budgets first (all replicas share them through the ledger): BudgetReached when it would
        take one past its limit. The estimate counted is settled with the real cost after, and
        given back only when the provider surely did not bill (an error answer)."""
        limits = self.budget_limits(budget, folder)
        if not limits or self._ledger is None:
            result = await self._call(self.primary, image, mime, filename, spec)
            self._count_cost(result)
            return result
        estimate = self._estimate(spec, budget)
        taken = await self._ledger.take_budget(limits, estimate, folder=folder)
        self._refuse(taken, budget)
        scopes = [lim.scope for lim in limits]
        try:
            result = await self._call(self.primary, image, mime, filename, spec)
        except (ProviderPermanent, ProviderTransient) as exc:
            if not exc.maybe_billed:  # an error answer: not billed
                await self._settle(scopes, taken.day, -estimate, -1)
            raise
        cost = self._count_cost(result)
        if cost is not None and abs(cost - estimate) > 1e-9:
            await self._settle(scopes, taken.day, cost - estimate, 0)
        return result

    def _estimate(self, spec: EditSpec, budget: BudgetRule | None) -> float:
        """The expected cost of an edit; PermanentError when a dollar budget applies and the
        price table does not know the model (it could not be held to the budget)."""
        if self.prices.price(spec.model) is None and any(
                lim.usd_per_day is not None for lim in self.budget_limits(budget)):
            raise ProviderPermanent(
                f"a budget in US dollars applies but the price table has no price for model "
                f"{spec.model!r}: add it with IMAGEDROP_PRICES", code="unpriced_model")
        return self.prices.estimate(spec.model, spec.quality, spec.size, spec.prompt)

    def _refuse(self, taken: BudgetTake, budget: BudgetRule | None) -> None:
        refused = taken.refused
        if refused is None:
            return
        over = self._service_over if refused.scope == "service" else (
            budget.over if budget is not None else "hold")
        raise BudgetReached(refused.reason, scope=refused.scope,
                            over="fail" if refused.never else over, until=refused.until,
                            first=refused.first, day=taken.day)

    async def _settle(self, scopes: list[str], day: str, usd: float, edits: int) -> None:
        """Correct a budget's count; never raises: a paid edit's result must not be lost to
        a ledger hiccup (the count is off by one edit's estimate then, and says so)."""
        assert self._ledger is not None  # only a budgeted edit is settled
        try:
            await self._ledger.settle_budget(scopes, day, usd, edits)
        except Exception as exc:
            log.warning("budget_settle_failed", scopes=scopes, day=day, usd=usd, edits=edits,
                        error=str(exc))

    def _count_cost(self, result: EditResult) -> float | None:
        cost = self.cost(result)
        if cost:
            self.metrics.provider_cost.labels(result.model).inc(cost)
        return cost

    async def _call(self, provider: ImageProvider, image: bytes, mime: str, filename: str,
                    spec: EditSpec) -> EditResult:
        """One provider call, timed by provider and outcome."""
        started, outcome = time.perf_counter(), "ok"
        try:
            return await provider.edit(image, mime, filename, spec)
        except BillingLimitReached:
            outcome = "billing"
            raise
        except ProviderPermanent as exc:
            outcome = "quota" if exc.code == QUOTA else "permanent"
            raise
        except TransientError:
            outcome = "transient"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            self.metrics.provider_seconds.labels(provider.name, outcome).observe(
                time.perf_counter() - started)


def _limit(rule: BudgetRule | None) -> BudgetLimit | None:
    if rule is None:
        return None
    return BudgetLimit(rule.scope, edits_per_day=rule.edits_per_day, usd_per_day=rule.usd_per_day)
