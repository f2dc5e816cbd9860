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

from imagedrop.errors import BillingLimitReached, ProviderPermanent, TransientError
from imagedrop.ledger import Ledger
from imagedrop.limits import BILLING, QUOTA, EditLimiter, PauseGate, pause_code
from imagedrop.metrics import Metrics
from imagedrop.providers import EditResult, EditSpec, ImageProvider

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
    ) -> None:
        self.metrics = metrics or Metrics()
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
                return await self._call(self.primary, image, mime, filename, spec), False
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
