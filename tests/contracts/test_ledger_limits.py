"""The Ledger contract for provider limits (every backend): the shared edit rate and pauses,
and the editor that uses them across two connections, as two replicas would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from imagedrop.editor import Editor
from imagedrop.errors import BillingLimitReached, ProviderPermanent
from imagedrop.ledger import Ledger
from imagedrop.providers import EditSpec
from imagedrop.providers.local import LocalProvider
from imagedrop.providers.openai import OpenAIProvider
from tests.contracts.ledger_backends import FakeClock, LedgerBackend
from tests.fixtures import images

KEY = "provider:openai"


class TestEditSlots:
    """A token bucket (GCRA) per key: one second's burst, then the configured rate."""

    async def test_first_slot_is_free_the_next_waits_one_interval(
            self, ledger: Ledger, clock: FakeClock):
        assert await ledger.take_edit_slot(KEY, 60) == 0.0
        assert await ledger.take_edit_slot(KEY, 60) == pytest.approx(1.0, abs=1e-3)
        clock.advance(0.4)
        assert await ledger.take_edit_slot(KEY, 60) == pytest.approx(0.6, abs=1e-3)
        clock.advance(0.6)
        assert await ledger.take_edit_slot(KEY, 60) == 0.0

    async def test_burst_is_one_seconds_worth(self, ledger: Ledger, clock: FakeClock):
        waits = [await ledger.take_edit_slot(KEY, 300) for _ in range(6)]
        assert waits[:5] == [0.0] * 5 and waits[5] == pytest.approx(0.2, abs=1e-3)

    async def test_keys_are_independent(self, ledger: Ledger):
        assert await ledger.take_edit_slot(KEY, 60) == 0.0
        assert await ledger.take_edit_slot("provider:other", 60) == 0.0
        assert await ledger.take_edit_slot(KEY, 60) > 0

    async def test_rate_holds_over_time(self, ledger: Ledger, clock: FakeClock):
        """Asking every 50 ms for 10 s at 120/min: at most burst + 10 s × 2/s slots."""
        granted = []
        for _ in range(200):
            if await ledger.take_edit_slot(KEY, 120) == 0.0:
                granted.append(clock.now)
            clock.advance(0.05)
        assert len(granted) == 2 + 19  # burst 2, then one per 0.5 s (the last at 9.5 s)
        for i, at in enumerate(granted):
            for j in range(i + 1, len(granted)):
                assert j - i <= 2 + (granted[j] - at) * 2 + 1e-9

    async def test_concurrent_asks_from_two_connections_share_one_bucket(
            self, ledger: Ledger, second: Ledger):
        asks = [(ledger if i % 2 else second).take_edit_slot(KEY, 600) for i in range(30)]
        waits = await asyncio.gather(*asks)
        assert sum(w == 0.0 for w in waits) == 10  # the burst of 600/min, no more

    async def test_state_survives_reopening(self, ledger: Ledger, backend: LedgerBackend):
        assert await ledger.take_edit_slot(KEY, 60) == 0.0
        reopened = backend.make()
        await reopened.open()
        try:
            assert await reopened.take_edit_slot(KEY, 60) == pytest.approx(1.0, abs=1e-3)
        finally:
            await reopened.close()


class TestProviderPause:
    """A pause set through one connection is seen through every other until it ends."""

    async def test_none_until_paused(self, ledger: Ledger, second: Ledger, clock: FakeClock):
        assert await ledger.provider_pause(KEY) is None
        await ledger.pause_provider(KEY, clock.now + 60, "billing_hard_limit_reached: x")
        assert await second.provider_pause(KEY) == (clock.now + 60,
                                                    "billing_hard_limit_reached: x")
        assert await second.provider_pause("provider:other") is None
        clock.advance(60)
        assert await second.provider_pause(KEY) is None

    async def test_a_shorter_pause_does_not_cut_a_longer_one(
            self, ledger: Ledger, clock: FakeClock):
        await ledger.pause_provider(KEY, clock.now + 60, "insufficient_quota: a")
        await ledger.pause_provider(KEY, clock.now + 10, "billing_hard_limit_reached: b")
        assert await ledger.provider_pause(KEY) == (clock.now + 60, "insufficient_quota: a")
        await ledger.pause_provider(KEY, clock.now + 90, "billing_hard_limit_reached: c")
        assert await ledger.provider_pause(KEY) == (clock.now + 90,
                                                    "billing_hard_limit_reached: c")

    async def test_an_ended_pause_can_be_set_again(self, ledger: Ledger, clock: FakeClock):
        await ledger.pause_provider(KEY, clock.now + 5, "billing_hard_limit_reached: a")
        clock.advance(10)
        await ledger.pause_provider(KEY, clock.now + 5, "insufficient_quota: b")
        assert await ledger.provider_pause(KEY) == (clock.now + 5, "insufficient_quota: b")


def _spec(prompt: str) -> EditSpec:
    return EditSpec(prompt=prompt, model="gpt-image-2", quality="low", size="auto",
                    output_format="png")


@pytest.fixture(name="editors")
async def _editors(ledger: Ledger, second: Ledger, fake_openai, clock: FakeClock
                   ) -> AsyncIterator[tuple[Editor, Editor]]:
    """Two editors on two connections to one ledger, as two replicas have."""
    providers = [OpenAIProvider(fake_openai.provider_settings()) for _ in range(2)]
    local = LocalProvider()
    editors = tuple(Editor(p, local, billing_pause=300, clock=clock, ledger=led, pause_ttl=0)
                    for p, led in zip(providers, (ledger, second), strict=True))
    yield editors  # type: ignore[misc]
    for provider in providers:
        await provider.close()
    await local.close()


class TestEditorAcrossReplicas:
    """The editor consults the shared pause: a stop one replica hit sends the others local."""

    async def test_billing_stop_sends_the_other_replica_to_the_fallback(
            self, editors, fake_openai, clock: FakeClock):
        one, two = editors
        result, fallback = await one.edit(images.png(), "image/png", "a.png",
                                          _spec("[billing] x"))
        assert fallback and result.provider == "local" and len(fake_openai.calls) == 1
        result, fallback = await two.edit(images.png(), "image/png", "b.png", _spec("fine"))
        assert fallback and result.provider == "local"
        assert len(fake_openai.calls) == 1  # the other replica never called the provider
        with pytest.raises(BillingLimitReached, match="fallback: fail"):
            await two.edit(images.png(), "image/png", "c.png", _spec("fine"),
                           fallback_allowed=False)
        clock.advance(301)
        _, fallback = await two.edit(images.png(), "image/png", "d.png", _spec("fine"))
        assert not fallback and len(fake_openai.calls) == 2

    async def test_insufficient_quota_fails_on_every_replica_without_calling(
            self, editors, fake_openai):
        one, two = editors
        with pytest.raises(ProviderPermanent) as first:
            await one.edit(images.png(), "image/png", "a.png", _spec("[quota] x"))
        assert first.value.code == "insufficient_quota"
        with pytest.raises(ProviderPermanent, match="quota") as second:
            await two.edit(images.png(), "image/png", "b.png", _spec("fine"))
        assert second.value.code == "insufficient_quota"
        assert len(fake_openai.calls) == 1  # no local stand-in, and no second paid call

    async def test_rate_is_shared(self, ledger: Ledger, second: Ledger, fake_openai):
        """Two editors at 600/min: the burst of 10 is shared, then a wait inside the edit."""
        settings = fake_openai.provider_settings()
        providers = [OpenAIProvider(settings) for _ in range(2)]
        editors = [Editor(p, LocalProvider(), billing_pause=0, ledger=led,
                          edits_per_minute=600)
                   for p, led in zip(providers, (ledger, second), strict=True)]
        try:
            for i in range(10):
                await editors[i % 2].edit(images.png(), "image/png", "a.png", _spec("x"))
            assert await ledger.take_edit_slot("provider:openai", 600) > 0  # bucket empty
        finally:
            for provider in providers:
                await provider.close()
