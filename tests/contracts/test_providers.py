"""Providers: OpenAI through the real SDK against the fake API, the local Pillow provider, and
the fake server's own stand-alone mode (benchmarks depend on it)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import httpx2
import openai
import pytest
import yarl
from multidict import CIMultiDict, CIMultiDictProxy
from PIL import Image

from imagedrop.config import ProviderSettings
from imagedrop.errors import (
    BillingLimitReached,
    ConfigError,
    ProviderPermanent,
    ProviderTransient,
)
from imagedrop.providers import EditSpec, ImageProvider, open_provider
from imagedrop.providers.local import LABEL, LocalProvider
from imagedrop.providers.openai import (
    OpenAIProvider,
    _never_connected,
    _unanswered,
    _whole_body,
    parse_retry_after,
)
from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.fixtures import images

ROOT = Path(__file__).resolve().parents[2]


def _spec(prompt: str = "make it pop", **kw: str) -> EditSpec:
    return EditSpec(prompt=prompt, model=kw.pop("model", "gpt-image-2"), **kw)


@pytest.fixture(name="provider")
async def _provider(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(fake_openai.provider_settings(timeout=10.0))
    yield provider
    await provider.close()


@contextlib.contextmanager
def _raw_server(answer: bytes | None, *, read: bool = True, drip: float = 0.0
                ) -> Iterator[int]:
    """A TCP server for one request: reads it (unless not `read`: then it only waits), sends
    `answer` (None: nothing; `drip`: a byte every `drip` seconds), then hangs up."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(30)
    done = threading.Event()

    def recv(conn: socket.socket) -> bytes:
        chunk = conn.recv(65536)
        if not chunk:  # the client hung up
            raise ConnectionError
        return chunk

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                if not read:
                    done.wait(30)
                    return
                received = b""
                while b"\r\n\r\n" not in received:  # the headers, then the body
                    received += recv(conn)
                head, _, body = received.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                while len(body) < length:
                    body += recv(conn)
                data = answer or b""
                step = 1 if drip else max(1, len(data))
                for i in range(0, len(data), step):
                    conn.sendall(data[i:i + step])
                    if drip and done.wait(drip):
                        return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting
        server.close()
        thread.join(10)
        assert not thread.is_alive()


async def _edit(provider: ImageProvider, prompt: str = "make it pop", **kw: str):
    return await provider.edit(images.png(), "image/png", "photo.png", _spec(prompt, **kw))


class TestOpenAISuccess:
    """A successful edit returns the decoded image and sends the spec as configured."""

    async def test_result_and_fields(self, provider: OpenAIProvider, fake_openai) -> None:
        spec = _spec("warm light", quality="high", size="1024x1024", output_format="webp")
        result = await provider.edit(images.png(), "image/png", "photo.png", spec)
        im = Image.open(io.BytesIO(result.data))
        assert (im.format, im.size) == ("WEBP", (1024, 1024))
        assert (result.mime_type, result.provider, result.model) == (
            "image/webp", "openai", "gpt-image-2"
        )
        [call] = fake_openai.calls
        assert (call.prompt, call.model, call.quality, call.size, call.output_format, call.n) == (
            "warm light", "gpt-image-2", "high", "1024x1024", "webp", "1"
        )
        assert (call.image_field, call.image_filename, call.image_content_type) == (
            "image", "photo.png", "image/png"
        )
        assert call.headers["Authorization"] == f"Bearer {API_KEY}"

    async def test_open_provider_picks_openai(self, fake_openai: FakeOpenAI) -> None:
        provider = open_provider(fake_openai.provider_settings())
        try:
            assert isinstance(provider, ImageProvider) and provider.name == "openai"
            assert (await _edit(provider)).mime_type == "image/png"
        finally:
            await provider.close()

    def test_missing_key_is_a_config_error(self, fake_openai: FakeOpenAI) -> None:
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            OpenAIProvider(fake_openai.provider_settings(openai_api_key=None))


class TestOpenAIErrors:
    """SDK errors become imagedrop errors, after exactly one HTTP call each."""

    async def test_billing_limit(self, provider, fake_openai) -> None:
        with pytest.raises(BillingLimitReached) as info:
            await _edit(provider, "[billing] edit")
        assert info.value.code == "billing_hard_limit_reached"
        assert len(fake_openai.calls) == 1

    async def test_moderation(self, provider, fake_openai) -> None:
        with pytest.raises(ProviderPermanent, match="violence") as info:
            await _edit(provider, "[moderation] edit")
        assert info.value.code == "moderation_blocked"
        assert not isinstance(info.value, BillingLimitReached)

    async def test_insufficient_quota_is_permanent(self, provider, fake_openai) -> None:
        with pytest.raises(ProviderPermanent) as info:
            await _edit(provider, "[quota] edit")
        assert info.value.code == "insufficient_quota"
        assert len(fake_openai.calls) == 1  # the SDK would have retried it twice

    async def test_rate_limit_is_transient_with_retry_after(self, provider, fake_openai) -> None:
        with pytest.raises(ProviderTransient) as info:
            await _edit(provider, "[ratelimit] edit")
        assert info.value.retry_after == pytest.approx(1.0)
        assert len(fake_openai.calls) == 1
        assert (await _edit(provider, "[ratelimit] edit")).provider == "openai"

    async def test_server_error_is_transient(self, provider, fake_openai) -> None:
        with pytest.raises(ProviderTransient, match="500"):
            await _edit(provider, "[flaky] edit")
        assert len(fake_openai.calls) == 1
        assert (await _edit(provider, "[flaky] edit")).provider == "openai"
        assert [c.status for c in fake_openai.calls] == [500, 200]

    @pytest.mark.parametrize("status", [502, 503, 408, 409])
    async def test_retryable_statuses_are_transient(self, provider, fake_openai, status) -> None:
        fake_openai.script([status])
        with pytest.raises(ProviderTransient):
            await _edit(provider)

    @pytest.mark.parametrize("status", [400, 403, 404, 422])
    async def test_other_4xx_are_permanent(self, provider, fake_openai, status) -> None:
        fake_openai.script([status])
        with pytest.raises(ProviderPermanent, match=f"{status}.*req_") as info:
            await _edit(provider)
        assert info.value.code == f"http_{status}"

    async def test_wrong_key_is_permanent_and_not_echoed(self, fake_openai) -> None:
        wrong = "sk-wrong-secret-0123456789abcdef"
        provider = OpenAIProvider(fake_openai.provider_settings(openai_api_key=wrong))
        try:
            with pytest.raises(ProviderPermanent) as info:
                await _edit(provider)
        finally:
            await provider.close()
        assert info.value.code == "invalid_api_key"
        assert "0123" not in str(info.value) and "cdef" not in str(info.value)

    async def test_timeout_is_transient(self, fake_openai) -> None:
        provider = OpenAIProvider(fake_openai.provider_settings(timeout=0.3))
        try:
            with pytest.raises(ProviderTransient, match="did not answer"):
                await _edit(provider, "[slow] edit")
        finally:
            await provider.close()
        assert len(fake_openai.calls) == 1

    async def test_unreachable_is_transient(self, fake_openai) -> None:
        settings = fake_openai.provider_settings(openai_base_url="http://127.0.0.1:9/v1")
        provider = OpenAIProvider(settings)
        try:
            with pytest.raises(ProviderTransient, match="could not reach") as info:
                await _edit(provider)
        finally:
            await provider.close()
        assert not info.value.maybe_billed  # nothing was sent: nothing to pay for

    @pytest.mark.parametrize(("answer", "cause"), [
        (None, "ServerDisconnectedError"),  # hangs up after reading the request
        (b"NOT HTTP AT ALL\r\n\r\n", "BadStatusLine"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n"
         b'{"data": [{"b64_json": "iVBOR', "ContentLengthError"),  # cut off mid-answer
    ])
    async def test_broken_answers_say_what_broke(self, fake_openai, answer, cause) -> None:
        """Transient, named by what went wrong; not a timeout (the SDK's aiohttp transport maps
        a dropped connection to one), and no raw transport exception."""
        with _raw_server(answer) as port:
            provider = OpenAIProvider(fake_openai.provider_settings(
                openai_base_url=f"http://127.0.0.1:{port}/v1", timeout=30.0))
            try:
                with pytest.raises(ProviderTransient) as info:
                    await _edit(provider)
            finally:
                await provider.close()
        assert str(info.value) == f"could not reach OpenAI ({cause})"
        assert info.value.maybe_billed

    async def test_a_refusal_after_a_redirect_may_be_billed(self, fake_openai) -> None:
        """The request reached a server that answered (here a redirect, followed to a host
        that refuses): it may have been done, so it is not given back."""
        redirect = (b"HTTP/1.1 307 Temporary Redirect\r\nLocation: "
                    b"http://127.0.0.1:9/v1/images/edits\r\nContent-Length: 0\r\n\r\n")
        with _raw_server(redirect) as port:
            provider = OpenAIProvider(fake_openai.provider_settings(
                openai_base_url=f"http://127.0.0.1:{port}/v1", timeout=30.0))
            try:
                with pytest.raises(ProviderTransient, match="could not reach") as info:
                    await _edit(provider)
            finally:
                await provider.close()
        assert info.value.maybe_billed

    async def test_a_non_utf8_status_line_is_transient(self, fake_openai) -> None:
        """The transport re-encodes the reason phrase; its failure stays inside the adapter."""
        answer = b"HTTP/1.1 502 Mauvaise passerelle \xe9\r\nContent-Length: 0\r\n\r\n"
        with _raw_server(answer) as port:
            provider = OpenAIProvider(fake_openai.provider_settings(
                openai_base_url=f"http://127.0.0.1:{port}/v1", timeout=30.0))
            try:
                with pytest.raises(ProviderTransient, match="could not be read"):
                    await _edit(provider)
            finally:
                await provider.close()

    @pytest.mark.parametrize("stall", ["upload not read", "answer dripped"])
    async def test_the_timeout_bounds_the_whole_call(self, fake_openai, stall) -> None:
        """`timeout` is what one edit may take: also when the far end stops reading a large
        upload (the transport has no write timeout) or drips its answer (each read is quick)."""
        drip = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n{}"
        image = images.png() + bytes(8 * 1024 * 1024)  # more than the socket buffers hold
        reading = stall == "answer dripped"
        with _raw_server(drip if reading else None, read=reading, drip=0.2) as port:
            provider = OpenAIProvider(fake_openai.provider_settings(
                openai_base_url=f"http://127.0.0.1:{port}/v1", timeout=1.0))
            started = time.monotonic()
            try:
                with pytest.raises(ProviderTransient, match="did not answer within 1 s"):
                    await provider.edit(image if not reading else images.png(), "image/png",
                                        "photo.png", _spec())
            finally:
                await provider.close()
        assert time.monotonic() - started < 10

    @pytest.mark.parametrize(("env", "refused"), [
        ({"HTTPS_PROXY": "socks5://user:secret@127.0.0.1:1080"}, True),
        ({"all_proxy": "socks5://user:secret@127.0.0.1:1080"}, True),
        # what the client would really use decides: the scheme's own proxy before ALL_PROXY,
        # and NO_PROXY as the client reads it
        ({"HTTPS_PROXY": "http://127.0.0.1:3128", "ALL_PROXY": "socks5://127.0.0.1:1080"}, False),
        ({"ALL_PROXY": "socks5://127.0.0.1:1080", "NO_PROXY": "localhost,*"}, False),
        ({"HTTPS_PROXY": "socks5://127.0.0.1:1080", "NO_PROXY": "api.openai.com"}, False),
    ])
    def test_a_socks_proxy_is_refused_at_start(self, fake_openai, monkeypatch, env,
                                               refused) -> None:
        for name in [k for k in os.environ if k.lower().endswith("_proxy")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = fake_openai.provider_settings(openai_base_url="https://api.openai.com/v1")
        if refused:
            with pytest.raises(ConfigError, match="SOCKS") as info:
                OpenAIProvider(settings)
            assert "secret" not in str(info.value) and "1080" not in str(info.value)
        else:
            asyncio.run(OpenAIProvider(settings).close())

    @pytest.mark.parametrize("bypass", [False, True])
    async def test_calls_go_through_the_environments_http_proxy(self, fake_openai, monkeypatch,
                                                                bypass: bool) -> None:
        """The proxy the environment names for the URL's scheme carries the call, unless
        NO_PROXY names the host (a plain forwarding proxy, counting what it forwards)."""
        forwarded: list[str] = []

        async def forward(request: aiohttp.web.Request) -> aiohttp.web.Response:
            forwarded.append(str(request.url))
            async with aiohttp.ClientSession() as http, http.request(
                    request.method, str(request.url), data=await request.read(),
                    headers={k: v for k, v in request.headers.items()
                             if k.lower() not in ("host", "proxy-connection")}) as answer:
                return aiohttp.web.Response(status=answer.status, body=await answer.read(),
                                            content_type=answer.content_type)

        app = aiohttp.web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        for name in [k for k in os.environ if k.lower().endswith("_proxy")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        if bypass:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        provider = OpenAIProvider(fake_openai.provider_settings())
        try:
            result = await _edit(provider)
        finally:
            await provider.close()
            await runner.cleanup()
        assert result.provider == "openai" and len(fake_openai.calls) == 1
        assert forwarded == ([] if bypass else [f"{fake_openai.base_url}/images/edits"])

    @pytest.mark.parametrize("key", ["sk-abc\u200b", "sk-a b", "sk-abc\r\nX-Evil: 1", "sk-é"])
    def test_a_key_that_cannot_be_a_header_is_refused_at_start(self, fake_openai, key) -> None:
        with pytest.raises(ConfigError, match="printable ASCII") as info:
            OpenAIProvider(fake_openai.provider_settings(openai_api_key=key))
        assert key not in str(info.value)

    async def test_a_request_that_cannot_be_encoded_is_permanent(self, provider,
                                                                 fake_openai) -> None:
        """Nothing was sent (a file name with undecodable bytes, read from a local folder):
        not retried, not billed, and not called an unreadable answer."""
        with pytest.raises(ProviderPermanent, match="could not be encoded") as info:
            await provider.edit(images.png(), "image/png", "caf\udce9.png", _spec())
        assert not info.value.maybe_billed
        assert fake_openai.calls == []

    def test_the_networks_own_timeout_is_not_called_ours(self) -> None:
        """ETIMEDOUT from the kernel (a connect given up) is a TimeoutError in Python, but not
        the call's deadline."""
        exc = openai.APIConnectionError(request=httpx2.Request("POST", "http://x"))
        exc.__cause__ = OSError(errno.ETIMEDOUT, "Connection timed out")
        assert _unanswered(exc, 300.0) == "could not reach OpenAI (TimeoutError)"
        late = openai.APITimeoutError(request=httpx2.Request("POST", "http://x"))
        late.__cause__ = TimeoutError()
        assert _unanswered(late, 300.0) == "OpenAI did not answer within 300 s"

    def test_a_proxys_words_are_cleaned(self) -> None:
        """A refusal's reason phrase may carry any byte, or echo the key: neither is kept."""
        info = aiohttp.RequestInfo(yarl.URL("http://x"), "POST", CIMultiDictProxy(CIMultiDict()),
                                   yarl.URL("http://x"))
        refused = aiohttp.ClientHttpProxyError(
            info, (), status=403, message="denied sk-proj-ABCDEFGH12345 \udce9\x1b[31m\nmore")
        reason = _unanswered(refused, 300.0, key="sk-other")
        assert reason == ("could not reach OpenAI (ClientHttpProxyError: denied sk-*** "
                          "\\udce9?[31m)")
        reason.encode("utf-8")  # storable
        assert _never_connected(refused)  # the proxy refused: OpenAI never saw it, nor billed

    async def test_closed_mid_edit_is_transient(self, fake_openai) -> None:
        fake_openai.latency = 30.0
        provider = OpenAIProvider(fake_openai.provider_settings())
        task = asyncio.create_task(_edit(provider))
        await fake_openai.wait_for_calls(1, timeout=10)
        await provider.close()
        with pytest.raises(ProviderTransient):
            await asyncio.wait_for(task, 10)

    async def test_edit_after_close_is_transient(self, fake_openai) -> None:
        provider = OpenAIProvider(fake_openai.provider_settings())
        await provider.close()
        with pytest.raises(ProviderTransient, match="closed"):
            await _edit(provider)

    @pytest.mark.parametrize("kind", ["no_image", "bad_json"])
    async def test_response_without_image_is_permanent(self, provider, fake_openai, kind) -> None:
        fake_openai.script([kind])
        with pytest.raises(ProviderPermanent):
            await _edit(provider)


class TestFakeServer:
    """The fixture records calls as they arrive and plays scripted answers in order."""

    async def test_wait_for_calls_sees_a_call_in_flight(self, provider, fake_openai) -> None:
        fake_openai.latency = 30.0
        task = asyncio.create_task(_edit(provider, "held"))
        try:
            [call] = await fake_openai.wait_for_calls(1, timeout=10)
            assert call.prompt == "held" and call.status is None
            assert fake_openai.stats()["in_flight"] == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def test_wait_for_calls_times_out(self, fake_openai) -> None:
        with pytest.raises(AssertionError, match="expected 1 calls"):
            await fake_openai.wait_for_calls(1, timeout=0.05)

    def test_wait_for_calls_blocks_in_plain_code(self, fake_openai) -> None:
        provider = OpenAIProvider(fake_openai.provider_settings())

        async def edit_twice() -> None:
            try:
                await _edit(provider, "first")
                await _edit(provider, "second")
            finally:
                await provider.close()

        worker = threading.Thread(target=asyncio.run, args=(edit_twice(),))
        worker.start()
        try:
            calls = fake_openai.wait_for_calls(2, timeout=30)
        finally:
            worker.join(30)
        assert [c["prompt"] for c in calls] == ["first", "second"]
        assert calls[1]["time"] >= calls[0]["time"]

    async def test_script_is_consumed_in_order(self, provider, fake_openai) -> None:
        fake_openai.script(["quota", "ok", 503])
        with pytest.raises(ProviderPermanent):
            await _edit(provider)
        await _edit(provider)
        with pytest.raises(ProviderTransient):
            await _edit(provider)
        await _edit(provider)
        assert [c.status for c in fake_openai.calls] == [429, 200, 503, 200]


class TestRequestBody:
    """The SDK's multipart form goes out in one write, not a write per part."""

    async def test_the_form_is_one_chunk(self) -> None:
        def form() -> httpx2.Request:
            return httpx2.Request(
                "POST", "http://127.0.0.1/v1/images/edits",
                headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
                data={"prompt": "p", "model": "m", "n": "1"},
                files={"image": ("photo.png", images.png() + bytes(300_000), "image/png")})

        streamed, hooked = form(), form()
        await _whole_body(hooked)
        parts = [chunk async for chunk in streamed.stream]  # type: ignore[union-attr]
        whole = [chunk async for chunk in hooked.stream]  # type: ignore[union-attr]
        assert len(parts) > 10 and len(whole) == 1
        assert whole[0] == b"".join(parts)
        assert hooked.headers["Content-Length"] == str(len(whole[0]))


class TestParseRetryAfter:
    """parse_retry_after reads the headers OpenAI and proxies send."""

    def test_forms(self) -> None:
        assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
        assert parse_retry_after({"Retry-After": "2"}) == 2.0
        assert parse_retry_after({}) is None
        assert parse_retry_after({"retry-after": "soon"}) is None

    def test_http_date(self) -> None:
        now = time.time()
        date = email.utils.formatdate(now + 30, usegmt=True)
        assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)


class TestLocalProvider:
    """The local provider edits visibly, deterministically, in the requested format."""

    @pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
    async def test_format_and_determinism(self, fmt: str, pil: str) -> None:
        provider = LocalProvider()
        source = images.png(320, 240, "RGBA")
        first = await provider.edit(source, "image/png", "a.png", _spec(output_format=fmt))
        again = await provider.edit(source, "image/png", "a.png", _spec(output_format=fmt))
        assert first.data == again.data
        im = Image.open(io.BytesIO(first.data))
        assert (im.format, im.size) == (pil, (320, 240))
        assert (first.provider, first.model) == ("local", "local-pillow")
        assert first.mime_type == f"image/{fmt}"

    async def test_differs_from_input_and_by_prompt(self) -> None:
        provider = LocalProvider()
        source = images.png(320, 240)
        a = await provider.edit(source, "image/png", "a.png", _spec("warm"))
        b = await provider.edit(source, "image/png", "a.png", _spec("golden hour"))
        original = Image.open(io.BytesIO(source)).convert("RGB").tobytes()
        assert Image.open(io.BytesIO(a.data)).convert("RGB").tobytes() != original
        assert a.data != b.data
        assert LABEL == "imagedrop local edit"


class TestFakeServerCli:
    """`python -m tests.fakes.openai_server` serves, reports the port and counts, stops on TERM."""

    async def test_cli(self, tmp_path: Path) -> None:
        port_file = tmp_path / "port"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fakes.openai_server", "--port", "0",
            "--port-file", str(port_file), "--latency", "0",
            cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():  # polling a condition, with a deadline
                assert proc.returncode is None, "fake exited early"
                assert time.monotonic() < deadline, "fake did not start"
                await asyncio.sleep(0.05)
            base = f"http://127.0.0.1:{port_file.read_text()}"
            provider = OpenAIProvider(ProviderSettings(
                kind="openai", openai_api_key="sk-any", openai_base_url=f"{base}/v1"))
            try:
                await _edit(provider)
                await _edit(provider)
            finally:
                await provider.close()
            stats = await asyncio.to_thread(
                lambda: json.load(urllib.request.urlopen(f"{base}/_stats", timeout=10))
            )
            assert stats["calls"] == 2 and list(stats["by_image"].values()) == [2]
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(proc.wait(), 30)
        assert returncode == 0
