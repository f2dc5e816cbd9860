"""The deliverer against the real SQLite ledger and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook

from imagedrop import __version__
from imagedrop.config import CallbackSettings
from imagedrop.delivery.policy import PolicyResolver, make_connector, rewrite_targets
from imagedrop.delivery.sender import Deliverer
from imagedrop.delivery.signing import generate_secret, verify
from imagedrop.ledger import Delivery, DeliveryState, JobKind, NewDelivery, NewJob
from imagedrop.ledger.sqlite import SqliteLedger
from imagedrop.recipes import JobResult, Recipe
from tests.fakes.receiver import Receiver

OWNER = "sender-test"
BODY = json.dumps({"type": "image.completed", "timestamp": "2026-01-01T00:00:00Z",
                   "data": {"job_id": "j1"}}).encode()


@pytest.fixture(name="ledger")
async def _ledger(tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    ledger = SqliteLedger.from_url(f"sqlite:///{tmp_path}/l.db")
    await ledger.open()
    try:
        yield ledger
    finally:
        await ledger.close()


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(name="closed_port")
def _closed_port() -> Iterator[int]:
    """A port nothing listens on: bound then released, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


class StaticResolver(AbstractResolver):
    """An aiohttp resolver answering one address for any name (a rebinding DNS server)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked.append(host)
        return [ResolveResult(hostname=host, host=self.address, port=port,
                              family=socket.AF_INET, proto=0, flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        pass


async def public_lookup(host: str, port: int) -> list[str]:
    """check_destination's lookup as a rebinding name answers it first: a public address."""
    return ["93.184.216.34"]


def settings(**overrides: Any) -> CallbackSettings:
    values: dict[str, Any] = {"allow_private": True, "allow_private_subscribers": True,
                              "schedule": (0, 0.05, 0.1), "timeout": 5}
    return CallbackSettings(**(values | overrides))


def deliverer(
    ledger: SqliteLedger, session: aiohttp.ClientSession, cfg: CallbackSettings | None = None,
    **kwargs: Any,
) -> Deliverer:
    kwargs.setdefault("secrets", {})
    kwargs.setdefault("poll_interval", 0.05)
    return Deliverer(ledger, session, cfg or settings(), owner=OWNER, **kwargs)


async def add_delivery(ledger: SqliteLedger, url: str, **fields: Any) -> str:
    """Record a delivery the way the pipeline does: as part of completing a job."""
    [(job, _)] = await ledger.create_jobs([NewJob(kind=JobKind.B64, filename="a.png",
                                                  recipe=Recipe())])
    [_claimed] = await ledger.claim_jobs("worker", 1, 60)
    values: dict[str, Any] = {"kind": "callback", "url": url, "body": BODY} | fields
    assert await ledger.complete_job(job.id, "worker", JobResult(), [NewDelivery(**values)])
    [delivery] = await ledger.list_deliveries(job_id=job.id)
    return delivery.id


async def claim_one(ledger: SqliteLedger) -> Delivery:
    [delivery] = await ledger.claim_deliveries(OWNER, 10, 60)
    return delivery


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    """Poll a condition under a deadline (the ledger offers no change feed to wait on)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


async def wait_for_state(ledger: SqliteLedger, delivery_id: str, state: DeliveryState) -> Delivery:
    async def reached() -> bool:
        found = await ledger.get_delivery(delivery_id)
        return found is not None and found.state is state

    await wait_until(reached)
    found = await ledger.get_delivery(delivery_id)
    assert found is not None
    return found


@asynccontextmanager
async def running(sender: Deliverer) -> AsyncIterator[Deliverer]:
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        await sender.stop()
        await asyncio.wait_for(task, 10)


class TestOutcomes:
    """Each answer leads to the right state and a recorded attempt."""

    async def test_retry_then_delivered(self, ledger, session, receiver: Receiver) -> None:
        """503 then 200: delivered after two recorded attempts with the same webhook-id."""
        receiver.respond("/cb", [503])
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        async with running(deliverer(ledger, session)):
            delivery = await wait_for_state(ledger, delivery_id, DeliveryState.DELIVERED)
        attempts = await ledger.list_attempts(delivery_id)
        assert [(a.attempt, a.status) for a in attempts] == [(1, 503), (2, 200)]
        assert attempts[0].error == "HTTP 503" and attempts[1].error is None
        assert delivery.attempts == 2 and delivery.last_status == 200
        requests = await receiver.await_requests(2, "/cb")
        assert {r.headers["webhook-id"] for r in requests} == {delivery_id}
        assert all(r.body == BODY for r in requests)

    async def test_gone_disables(self, ledger, session, receiver: Receiver) -> None:
        """410 disables the delivery and nothing more is tried."""
        receiver.respond("/cb", [410])
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        attempt = await deliverer(ledger, session).send(await claim_one(ledger))
        assert attempt.status == 410
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.DISABLED
        assert await ledger.claim_deliveries(OWNER, 10, 60) == []
        assert len(await ledger.list_attempts(delivery_id)) == 1

    async def test_webhook_gone_disables_endpoint(
        self, ledger, session, receiver: Receiver
    ) -> None:
        """A subscriber's 410 also disables its URL, so no new deliveries are made to it."""
        receiver.respond("/hook", [410])
        url = receiver.url("/hook")
        await add_delivery(ledger, url, kind="webhook", event_type="image.completed")
        await deliverer(ledger, session).send(await claim_one(ledger))
        assert await ledger.disabled_endpoints([url]) == {url: "410 Gone"}

    async def test_callback_gone_leaves_endpoints_alone(
        self, ledger, session, receiver: Receiver
    ) -> None:
        """A WXO callback's 410 disables that delivery only: callback URLs are not endpoints."""
        receiver.respond("/cb", [410])
        url = receiver.url("/cb")
        await add_delivery(ledger, url)
        await deliverer(ledger, session).send(await claim_one(ledger))
        assert await ledger.disabled_endpoints([url]) == {}

    @pytest.mark.parametrize("status", [400, 401, 404, 422])
    async def test_refusing_4xx_fails_at_once(
        self, ledger, session, receiver: Receiver, status: int
    ) -> None:
        """A 4xx refusal fails the delivery for good after one attempt, keeping the status."""
        receiver.respond("/cb", [status])
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        attempt = await deliverer(ledger, session).send(await claim_one(ledger))
        assert (attempt.status, attempt.error) == (status, f"HTTP {status}")
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.FAILED
        assert delivery.last_status == status and delivery.finished_at is not None
        assert await ledger.claim_deliveries(OWNER, 10, 60) == []

    async def test_a_lost_body_file_fails_without_sending(
        self, ledger, session, receiver: Receiver, tmp_path: Path
    ) -> None:
        """A large body lives in a file beside the ledger; if that file is removed, the
        delivery fails saying so, and nothing (an empty body) is sent."""
        big = json.dumps({"status": "completed", "result_image_base64": "A" * 100_000}).encode()
        delivery_id = await add_delivery(ledger, receiver.url("/cb"), body=big)
        [file] = (tmp_path / "l.db.uploads").iterdir()
        assert file.read_bytes() == big
        file.unlink()
        attempt = await deliverer(ledger, session).send(await claim_one(ledger))
        assert attempt.status is None and "no longer stored" in (attempt.error or "")
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.FAILED
        assert receiver.requests == []

    @pytest.mark.parametrize("status", [408, 409, 425, 429])
    async def test_not_now_4xx_is_retried(
        self, ledger, session, receiver: Receiver, status: int
    ) -> None:
        """408, 409, 425 and 429 mean "later": the delivery stays pending and then succeeds."""
        receiver.respond("/cb", [status])
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        async with running(deliverer(ledger, session)):
            await wait_for_state(ledger, delivery_id, DeliveryState.DELIVERED)
        assert [a.status for a in await ledger.list_attempts(delivery_id)] == [status, 200]

    async def test_connection_refused_is_retried(self, ledger, session, closed_port) -> None:
        """No answer: pending with a next attempt, and the error never shows the query."""
        url = f"http://user:pw@127.0.0.1:{closed_port}/cb?token=SECRET"
        delivery_id = await add_delivery(ledger, url)
        attempt = await deliverer(ledger, session).send(await claim_one(ledger))
        assert attempt.status is None
        assert attempt.error == "cannot connect: connection refused"
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.PENDING
        assert delivery.next_attempt_at >= attempt.at + 0.05
        for text in (attempt.error, delivery.last_error or ""):
            assert "SECRET" not in text and "pw" not in text

    async def test_retry_after_raises_delay(self, ledger, session, receiver: Receiver) -> None:
        """Retry-After: 2 pushes the next attempt past the schedule's 0.05 s."""
        receiver.respond("/cb", [(503, {"Retry-After": "2"}), 503])
        first = await add_delivery(ledger, receiver.url("/cb"))
        second = await add_delivery(ledger, receiver.url("/cb"))
        sender = deliverer(ledger, session, clock=lambda: 1000.0)
        for delivery in await ledger.claim_deliveries(OWNER, 10, 60):
            await sender.send(delivery)
        got = {d: await ledger.get_delivery(d) for d in (first, second)}
        assert got[first] is not None and got[first].next_attempt_at == 1002.0
        assert got[second] is not None and got[second].next_attempt_at == 1000.05

    async def test_schedule_exhausted_fails(self, ledger, session, receiver: Receiver) -> None:
        """When every scheduled attempt failed, the delivery fails with the last reason."""
        receiver.respond("/cb", [500, 502, 503])
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        async with running(deliverer(ledger, session)):
            delivery = await wait_for_state(ledger, delivery_id, DeliveryState.FAILED)
        assert [a.status for a in await ledger.list_attempts(delivery_id)] == [500, 502, 503]
        assert delivery.last_error == "HTTP 503" and delivery.finished_at is not None

    async def test_redirect_is_a_failure(self, ledger, session, receiver: Receiver) -> None:
        """A 3xx is not followed and counts as a failed attempt."""
        receiver.respond("/cb", [(302, {"Location": receiver.url("/elsewhere")})])
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        attempt = await deliverer(ledger, session).send(await claim_one(ledger))
        assert attempt.status == 302 and attempt.error == "HTTP 302"
        assert [r.path for r in receiver.requests] == ["/cb"]
        assert receiver.requests_for("/elsewhere") == []
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.PENDING

    async def test_timeout(self, ledger, session, receiver: Receiver) -> None:
        """A receiver slower than the timeout gives a short timeout error and a retry."""
        receiver.respond("/slow", [(200, {}, 5.0)])
        delivery_id = await add_delivery(ledger, receiver.url("/slow"))
        sender = deliverer(ledger, session, settings(timeout=0.2))
        attempt = await sender.send(await claim_one(ledger))
        assert (attempt.status, attempt.error) == (None, "timeout after 0.2s")
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.PENDING


class TestRequest:
    """What the receiver sees."""

    async def test_callback_headers(self, ledger, session, receiver: Receiver) -> None:
        """A WXO callback carries JSON, our User-Agent and webhook-id, but no signature."""
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        await deliverer(ledger, session).send(await claim_one(ledger))
        [request] = await receiver.await_requests(1, "/cb")
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == f"imagedrop/{__version__}"
        assert headers["webhook-id"] == delivery_id
        assert "webhook-signature" not in headers
        assert request.body == BODY

    async def test_webhook_is_signed(self, ledger, session, receiver: Receiver) -> None:
        """Subscriber webhooks verify with the reference library on every retry, same id."""
        secret = generate_secret()
        receiver.respond("/hook", [503])
        delivery_id = await add_delivery(
            ledger, receiver.url("/hook"), kind="webhook", secret_ref="IMAGEDROP_HOOK_SECRET_MAIN",
            event_type="image.completed",
        )
        sender = deliverer(ledger, session, secrets={"IMAGEDROP_HOOK_SECRET_MAIN": secret})
        async with running(sender):
            await wait_for_state(ledger, delivery_id, DeliveryState.DELIVERED)
        requests = await receiver.await_requests(2, "/hook")
        for request in requests:
            payload = Webhook(secret).verify(request.body, request.headers)
            assert payload["type"] == "image.completed"
            verify(secret, request.headers, request.body, now=time.time())
        assert {r.headers["webhook-id"] for r in requests} == {delivery_id}

    async def test_two_secrets_during_a_rotation(self, ledger, session,
                                                 receiver: Receiver) -> None:
        """A manifest naming the new and the old secret: the receiver may hold either."""
        new, old = generate_secret(), generate_secret()
        await add_delivery(ledger, receiver.url("/hook"), kind="webhook",
                           secret_ref="IMAGEDROP_HOOK_SECRET_NEW,IMAGEDROP_HOOK_SECRET_OLD",
                           event_type="image.completed")
        sender = deliverer(ledger, session, secrets={"IMAGEDROP_HOOK_SECRET_NEW": new,
                                                     "IMAGEDROP_HOOK_SECRET_OLD": old})
        await sender.send(await claim_one(ledger))
        [request] = await receiver.await_requests(1, "/hook")
        for secret in (new, old):
            assert Webhook(secret).verify(request.body, request.headers)["type"] == (
                "image.completed")

    async def test_missing_secret_fails(self, ledger, session, receiver: Receiver) -> None:
        """A secret_ref with no secret fails at once, naming the variable, sending nothing."""
        delivery_id = await add_delivery(
            ledger, receiver.url("/hook"), kind="webhook", secret_ref="IMAGEDROP_HOOK_SECRET_MAIN"
        )
        sender = deliverer(ledger, session, secrets={"OTHER": generate_secret()})
        attempt = await sender.send(await claim_one(ledger))
        assert attempt.error is not None and "IMAGEDROP_HOOK_SECRET_MAIN" in attempt.error
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.FAILED
        assert receiver.requests == []


    @pytest.mark.parametrize(("name", "allowed"), [
        ("OPENAI_API_KEY", ()), ("COS_SECRET_ACCESS_KEY", ()), ("IMAGEDROP_HOOK_SECRET_", ()),
        ("LEGACY_HOOK", ("OTHER",))])
    async def test_secret_outside_the_allowed_names_fails(
            self, ledger, session, receiver: Receiver, name: str, allowed: tuple[str, ...]
    ) -> None:
        """A bucket writer cannot have deliveries signed with any whsec_ variable of the
        service: only IMAGEDROP_HOOK_SECRET_* and IMAGEDROP_HOOK_SECRETS_ALLOWED names."""
        await add_delivery(ledger, receiver.url("/hook"), kind="webhook", secret_ref=name)
        sender = deliverer(ledger, session, settings(hook_secrets_allowed=allowed),
                           secrets={name: generate_secret()})
        attempt = await sender.send(await claim_one(ledger))
        assert attempt.error is not None and "not allowed" in attempt.error
        assert receiver.requests == []

    async def test_secret_listed_as_allowed_signs(self, ledger, session, receiver: Receiver
                                                  ) -> None:
        await add_delivery(ledger, receiver.url("/hook"), kind="webhook",
                           secret_ref="LEGACY_HOOK", event_type="image.completed")
        sender = deliverer(ledger, session, settings(hook_secrets_allowed=("LEGACY_HOOK",)),
                           secrets={"LEGACY_HOOK": generate_secret()})
        attempt = await sender.send(await claim_one(ledger))
        assert attempt.error is None, attempt.error


class TestPolicy:
    """Address policy and operator rewrites apply before anything is sent."""

    async def test_private_refused(self, ledger, session, receiver: Receiver) -> None:
        """Without allow_private, a loopback receiver is refused for good, not retried."""
        delivery_id = await add_delivery(ledger, receiver.url("/cb") + "?token=SECRET")
        sender = deliverer(ledger, session, settings(allow_private=False))
        attempt = await sender.send(await claim_one(ledger))
        assert attempt.error is not None and "loopback" in attempt.error
        assert "SECRET" not in attempt.error
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.FAILED
        assert receiver.requests == []

    async def test_rewrite_allows_its_target(self, ledger, session, receiver: Receiver) -> None:
        """An operator rewrite sends wxo-server:4321 to the local receiver, private or not."""
        rules = (("wxo-server:4321", f"127.0.0.1:{receiver.port}"),)
        delivery_id = await add_delivery(ledger, "http://wxo-server:4321/cb?x=1")
        sender = deliverer(ledger, session, settings(allow_private=False, rewrites=rules))
        attempt = await sender.send(await claim_one(ledger))
        assert attempt.status == 200
        [request] = await receiver.await_requests(1, "/cb")
        assert request.headers["webhook-id"] == delivery_id


    async def test_bad_rewrite_rule_fails_the_attempt(
        self, ledger, session, receiver: Receiver
    ) -> None:
        """A malformed operator rule records a failed attempt instead of crashing the send."""
        rules = (("wxo-server:abc", f"127.0.0.1:{receiver.port}"),)
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        sender = deliverer(ledger, session, settings(rewrites=rules))
        attempt = await sender.send(await claim_one(ledger))
        assert attempt.error is not None and "IMAGEDROP_CALLBACK_REWRITES" in attempt.error
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.FAILED
        assert len(await ledger.list_attempts(delivery_id)) == 1
        assert receiver.requests == []

    async def test_dns_rebinding_refused_at_connect(
        self, ledger, session, receiver: Receiver
    ) -> None:
        """A name that is public when checked but loopback when connecting is refused for good."""
        inner = StaticResolver("127.0.0.1")  # what the connector's lookup answers
        connector = aiohttp.TCPConnector(
            resolver=PolicyResolver(allow_private=False, inner=inner))
        delivery_id = await add_delivery(ledger, f"http://rebind.example:{receiver.port}/cb")
        async with aiohttp.ClientSession(connector=connector) as guarded:
            sender = deliverer(ledger, guarded, settings(allow_private=False),
                               resolve=public_lookup)
            attempt = await sender.send(await claim_one(ledger))
        assert inner.asked == ["rebind.example"]
        assert attempt.status is None and attempt.error is not None
        assert "loopback address 127.0.0.1" in attempt.error
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.FAILED
        assert receiver.requests == []

    async def test_guarded_connector_still_delivers(
        self, ledger, session, receiver: Receiver
    ) -> None:
        """Through make_connector, a rewrite target name may be private and is delivered to."""
        rules = (("wxo-server:4321", f"localhost:{receiver.port}"),)
        delivery_id = await add_delivery(ledger, "http://wxo-server:4321/cb")
        connector = make_connector(allow_private=False, trusted_hosts=rewrite_targets(rules))
        async with aiohttp.ClientSession(connector=connector) as guarded:
            sender = deliverer(ledger, guarded, settings(allow_private=False, rewrites=rules))
            attempt = await sender.send(await claim_one(ledger))
        assert attempt.status == 200, attempt.error
        [request] = await receiver.await_requests(1, "/cb")
        assert request.headers["webhook-id"] == delivery_id


class TestLoop:
    """run() and stop()."""

    async def test_stop_lets_in_flight_finish(self, ledger, session, receiver: Receiver) -> None:
        """stop() returns only after the send under way was recorded."""
        receiver.respond("/cb", [(200, {}, 0.3)])
        delivery_id = await add_delivery(ledger, receiver.url("/cb"))
        sender = deliverer(ledger, session)
        task = asyncio.create_task(sender.run())
        await receiver.await_requests(1, "/cb")
        await sender.stop()
        await asyncio.wait_for(task, 10)
        delivery = await ledger.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is DeliveryState.DELIVERED

    async def test_stop_before_run_returns(self, ledger, session) -> None:
        """Stopping a deliverer that never ran returns at once."""
        await asyncio.wait_for(deliverer(ledger, session).stop(), 5)

    async def test_picks_up_new_work(self, ledger, session, receiver: Receiver) -> None:
        """Deliveries recorded while the loop idles are sent too."""
        sender = deliverer(ledger, session, poll_interval=30)  # relies on the ledger's wake-up
        async with running(sender):
            ids = [await add_delivery(ledger, receiver.url(f"/cb{i}")) for i in range(3)]
            for delivery_id in ids:
                await wait_for_state(ledger, delivery_id, DeliveryState.DELIVERED)
        assert len(receiver.requests) == 3

    async def test_full_slots_refill_as_sends_finish(
        self, ledger, session, receiver: Receiver
    ) -> None:
        """With one slot, each finished send lets the loop claim the next one at once."""
        ids = [await add_delivery(ledger, receiver.url(f"/c{i}")) for i in range(3)]
        for i in range(3):
            receiver.respond(f"/c{i}", [(200, {}, 0.05)])
        sender = deliverer(ledger, session, settings(concurrency=1), poll_interval=30)
        async with running(sender):
            for delivery_id in ids:
                await wait_for_state(ledger, delivery_id, DeliveryState.DELIVERED)
        assert sorted(r.path for r in receiver.requests) == ["/c0", "/c1", "/c2"]

    async def test_logs_one_line_per_attempt(self, ledger, session, receiver: Receiver) -> None:
        """Each attempt logs delivery_id, kind, event_type, redacted url and status."""
        delivery_id = await add_delivery(
            ledger, receiver.url("/cb") + "?token=SECRET", event_type="batch.completed"
        )
        with structlog.testing.capture_logs() as logs:
            await deliverer(ledger, session).send(await claim_one(ledger))
        [line] = [e for e in logs if e["event"] == "delivery.attempt"]
        assert line["delivery_id"] == delivery_id and line["kind"] == "callback"
        assert line["event_type"] == "batch.completed" and line["status"] == 200
        assert line["url"] == receiver.url("/cb")


class TestReceiverFake:
    """The fake receiver itself, as a program for subprocess tests."""

    def test_standalone_records_jsonl(self, tmp_path: Path) -> None:
        """`python -m tests.fakes.receiver` writes its port, answers scripts, logs JSONL."""
        port_file, log = tmp_path / "port", tmp_path / "log.jsonl"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.receiver", "--port-file", str(port_file),
             "--log", str(log), "--respond", "/x=503"],
        )
        try:
            deadline = time.monotonic() + 15
            while not port_file.exists():
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            port = int(port_file.read_text())
            statuses = []
            for _ in range(2):
                with socket.create_connection(("127.0.0.1", port), 5) as s:
                    s.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                              b"Connection: close\r\n\r\nhi")
                    statuses.append(s.makefile("rb").readline().split()[1])
            assert statuses == [b"503", b"200"]
            lines = [json.loads(line) for line in log.read_text().splitlines()]
            assert [(x["path"], x["body"]) for x in lines] == [("/x", "hi"), ("/x", "hi")]
        finally:
            proc.terminate()
            proc.wait(10)
        assert proc.returncode == 0

    def test_wait_for_times_out_clearly(self, receiver: Receiver) -> None:
        """A wait that is not satisfied fails with the counts, at its deadline."""
        with pytest.raises(AssertionError, match="wanted 1"):
            receiver.wait_for(1, "/never", timeout=0.1)

    async def test_wait_for_refuses_to_block_a_running_loop(self, receiver: Receiver) -> None:
        """Async tests are pointed to await_requests instead of freezing their own loop."""
        with pytest.raises(RuntimeError, match="await_requests"):
            receiver.wait_for(1, timeout=0.1)


class TestSubscriberPolicy:
    """Manifest subscribers have their own private-address switch and an optional allowlist."""

    async def test_private_subscriber_refused_even_with_private_callbacks(self, ledger, session,
                                                                         receiver):
        url = receiver.url("/hook")
        await add_delivery(ledger, url, kind="webhook")
        deliverer = Deliverer(ledger, session, settings(allow_private_subscribers=False),
                              owner="sender", secrets={})
        attempt = await deliverer.send(await claim_one(ledger))
        assert "IMAGEDROP_ALLOW_PRIVATE_SUBSCRIBERS" in attempt.error
        assert receiver.requests_for("/hook") == []

    async def test_subscriber_outside_the_allowlist_is_refused(self, ledger, session, receiver):
        url = receiver.url("/hook")
        await add_delivery(ledger, url, kind="webhook")
        deliverer = Deliverer(ledger, session, settings(subscriber_hosts=("hooks.example.com",)),
                              owner="sender", secrets={})
        attempt = await deliverer.send(await claim_one(ledger))
        assert "IMAGEDROP_SUBSCRIBER_HOSTS" in attempt.error
        assert receiver.requests_for("/hook") == []
