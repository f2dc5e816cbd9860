"""The provider loop thread: same results and errors as the provider it wraps, off our loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
import structlog

from imagedrop.errors import BillingLimitReached, ConfigError, ProviderTransient
from imagedrop.providers import EditSpec
from imagedrop.providers.openai import OpenAIProvider
from imagedrop.providers.threaded import LoopThreadProvider
from tests.fixtures import images


def _spec(prompt: str) -> EditSpec:
    return EditSpec(prompt=prompt, model="gpt-image-2")


@pytest.fixture(name="threaded")
async def _threaded(fake_openai):
    provider = LoopThreadProvider(lambda: OpenAIProvider(fake_openai.provider_settings()),
                                  name="openai")
    yield provider
    await provider.close()


class TestLoopThreadProvider:
    """Edits run on the private loop; results, errors and cancellation cross back intact."""

    async def test_edit_runs_on_another_thread(self, threaded, fake_openai):
        result = await threaded.edit(images.png(), "image/png", "a.png", _spec("x"))
        assert result.provider == "openai" and result.mime_type == "image/png"
        assert threaded._thread.is_alive() and threaded._thread is not threading.current_thread()
        assert len(fake_openai.calls) == 1

    async def test_errors_keep_their_type(self, threaded):
        with pytest.raises(BillingLimitReached):
            await threaded.edit(images.png(), "image/png", "a.png", _spec("[billing]"))
        with pytest.raises(ProviderTransient) as err:
            await threaded.edit(images.png(), "image/png", "a.png", _spec("[ratelimit]"))
        assert err.value.retry_after == pytest.approx(1.0)

    async def test_cancel_reaches_the_call(self, threaded, fake_openai):
        fake_openai.latency = 30
        task = asyncio.create_task(threaded.edit(images.png(), "image/png", "a.png", _spec("s")))
        await fake_openai.wait_for_calls(1, timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def test_close_stops_the_thread(self, fake_openai):
        provider = LoopThreadProvider(
            lambda: OpenAIProvider(fake_openai.provider_settings()), name="openai")
        await provider.edit(images.png(), "image/png", "a.png", _spec("x"))
        await provider.close()
        assert not provider._thread.is_alive() and provider._loop.is_closed()

    async def test_close_leaves_a_stuck_loop_open(self):
        """A loop thread that does not stop in time is left running, not closed under it."""
        gate = threading.Event()
        inner = _StuckOnClose(gate)
        provider = LoopThreadProvider(lambda: inner, name="stuck", join_timeout=0.1)
        try:
            with structlog.testing.capture_logs() as logs:
                await provider.close()  # must not raise "Cannot close a running event loop"
            assert inner.closed and provider._thread.is_alive()
            assert not provider._loop.is_closed()
            assert [e["event"] for e in logs] == ["provider.loop_thread_still_running"]
        finally:
            gate.set()
            await asyncio.to_thread(provider._thread.join, 10)
            assert not provider._thread.is_alive()
            provider._loop.close()


class _StuckOnClose:
    """A provider whose loop is blocked (until `gate` is set) right after its close() returns."""

    name = "stuck"

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.closed = False

    async def edit(self, image, mime_type, filename, spec):  # pragma: no cover - never called
        raise NotImplementedError

    async def close(self) -> None:
        self.closed = True
        # A timer due now runs after close()'s result is handed back to the caller's loop (the
        # task's done callbacks are queued first), and before the stop request can be handled.
        asyncio.get_running_loop().call_later(0, self.gate.wait)


def test_a_refused_provider_leaves_no_thread() -> None:
    """A provider that refuses to start (bad settings) leaves no loop thread running."""
    def refuse() -> OpenAIProvider:
        raise ConfigError("no")

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ConfigError):
        LoopThreadProvider(refuse, name="refusing")
    assert "imagedrop-refusing-loop" not in {t.name for t in threading.enumerate()} - before
