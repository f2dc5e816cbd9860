"""The edit step: the configured provider, with the local fallback after a billing stop.

`billing_hard_limit_reached` switches this process to the local provider for a pause; every
other provider error propagates unchanged, so it is reported, never silently replaced.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from imagedrop.errors import BillingLimitReached, ProviderPermanent
from imagedrop.providers import EditResult, EditSpec, ImageProvider

log = structlog.get_logger(__name__)


class Editor:
    """Edits through `primary`; after a billing stop, through `fallback` for `billing_pause` s."""

    def __init__(
        self, primary: ImageProvider, fallback: ImageProvider, *, billing_pause: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self._pause = billing_pause
        self._clock = clock
        self._paused_until = 0.0

    @property
    def billing_paused(self) -> bool:
        """True while the primary provider is being skipped after a billing stop."""
        return self._clock() < self._paused_until

    async def edit(
        self, image: bytes, mime: str, filename: str, spec: EditSpec, *,
        fallback_allowed: bool = True, provider: str | None = None,
    ) -> tuple[EditResult, bool]:
        """The edited image and whether the local fallback made it. With `fallback_allowed`
        False (a manifest's `fallback: fail`), a billing stop fails the edit instead.
        `provider` (a manifest's choice) picks "local" or insists on the configured one."""
        if provider == "local":
            return await self.fallback.edit(image, mime, filename, spec), False
        if provider is not None and provider != self.primary.name:
            raise ProviderPermanent(
                f"the manifest asks for provider {provider!r} but this service edits with "
                f"{self.primary.name!r} (set OPENAI_API_KEY to enable openai)",
                code="provider_unavailable")
        if self.primary is self.fallback:
            return await self.primary.edit(image, mime, filename, spec), False
        if not self.billing_paused:
            try:
                return await self.primary.edit(image, mime, filename, spec), False
            except BillingLimitReached:
                self._paused_until = self._clock() + self._pause
                log.warning("billing_limit_reached", fallback="local", pause_seconds=self._pause)
                if not fallback_allowed:
                    raise
        elif not fallback_allowed:
            raise BillingLimitReached("billing_hard_limit_reached: the provider is paused after "
                                      "a billing stop and this folder's manifest says "
                                      "fallback: fail")
        return await self.fallback.edit(image, mime, filename, spec), True
