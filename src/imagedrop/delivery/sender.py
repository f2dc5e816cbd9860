"""The delivery loop: claim due callbacks from the ledger, POST them, record every attempt.

Policy (rewrites, address checks), signing and retry timing live in their own pure modules;
this one only does the I/O and decides the delivery's next state from their answers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import structlog

from imagedrop import __version__
from imagedrop.config import HOOK_SECRET_PREFIX, CallbackSettings
from imagedrop.delivery import backoff, policy, signing
from imagedrop.errors import CallbackRefused, ConfigError, DeliveryTransient
from imagedrop.ledger import Delivery, DeliveryAttempt, DeliveryState, Ledger, NewDelivery
from imagedrop.metrics import Metrics
from imagedrop.payloads import DeliveryExhaustedEvent, ExhaustedData
from imagedrop.subscribers import timestamp
from imagedrop.tracing import Tracing

log = structlog.get_logger(__name__)

_USER_AGENT = f"imagedrop/{__version__}"


class Deliverer:
    """Delivers pending callbacks for one process (`owner`), `settings.concurrency` at a time."""

    name = "deliverer"

    def __init__(
        self,
        ledger: Ledger,
        session: aiohttp.ClientSession,
        settings: CallbackSettings,
        *,
        owner: str,
        secrets: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
        lease_seconds: float | None = None,
        resolve: policy.Resolver | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._tracing = tracing or Tracing()
        self._ledger = ledger
        self._session = session
        self._settings = settings
        self._owner = owner
        self._secrets = secrets
        self._clock = clock
        self._poll_interval = poll_interval
        # A claim must outlive the slowest attempt, or another process would send it twice.
        self._lease = lease_seconds or max(60.0, settings.timeout * 2 + 30.0)
        self._resolve = resolve
        self._stopping = False
        self._wake = asyncio.Event()
        self._running: asyncio.Future[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._next_due: float | None = None  # earliest retry this process scheduled

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Claim and send due deliveries until `stop()` is called."""
        self._running = asyncio.get_running_loop().create_future()
        try:
            while not self._stopping:
                self._wake.clear()  # before claiming, so a slot freed meanwhile is not missed
                # Listen for the ledger's hint before looking, so a delivery recorded between
                # the claim and the wait still wakes us (the hint is edge-triggered).
                hint = self._ledger.wait_for_work(self._idle_timeout(), "deliveries")
                free = self._settings.concurrency - len(self._in_flight)
                claimed = await self._claim(free) if free > 0 else 0
                if self._stopping or (free > 0 and claimed == free):
                    await _cancel(hint)  # a full page: more may be due right now
                    continue
                await self._idle(hint)
            await self._drain()
        finally:
            self._running.set_result(None)

    async def stop(self) -> None:
        """Stop claiming, let in-flight sends finish (bounded by the send timeout), return."""
        self._stopping = True
        self._wake.set()
        if self._running is not None:
            await asyncio.shield(self._running)

    async def _claim(self, free: int) -> int:
        try:
            deliveries = await self._ledger.claim_deliveries(self._owner, free, self._lease)
        except Exception:
            log.exception("delivery.claim_failed", owner=self._owner)
            return 0
        for delivery in deliveries:
            task = asyncio.create_task(self._send_logged(delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._finished)
        return len(deliveries)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if len(self._in_flight) + 1 >= self._settings.concurrency:
            self._wake.set()  # the loop was full and idling: a slot is free now

    def _idle_timeout(self) -> float:
        """The poll interval, shortened to reach the earliest retry this process scheduled."""
        timeout = self._poll_interval
        if self._next_due is not None:
            timeout = max(0.0, min(timeout, self._next_due - self._clock()))
            if timeout == 0.0:
                self._next_due = None  # due now: the next claim takes it
        return timeout

    async def _idle(self, hint: asyncio.Future[None]) -> None:
        """Wait for the ledger's hint (or its timeout), a freed slot, or stop()."""
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((hint, woken), return_when=asyncio.FIRST_COMPLETED)
            if hint.done() and not hint.cancelled() and hint.exception() is not None:
                # A broken ledger must not turn this loop into a busy spin.
                log.error("delivery.wait_failed", error=repr(hint.exception()))
                await asyncio.wait((woken,), timeout=self._poll_interval)
        finally:
            await _cancel(hint, woken)

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(set(self._in_flight), timeout=self._settings.timeout + 5)
        for task in pending:  # their leases expire and another claim sends them again
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _send_logged(self, delivery: Delivery) -> None:
        try:
            await self.send(delivery)
        except Exception:
            log.exception("delivery.send_crashed", delivery_id=delivery.id)

    # -- one attempt ----------------------------------------------------------------------
    async def send(self, delivery: Delivery) -> DeliveryAttempt:
        """Make one attempt at `delivery`, record it and the delivery's new state.

        The delivery must be leased to this `owner` (claimed) for its state to move on.
        """
        with structlog.contextvars.bound_contextvars(request_id=delivery.request_id), \
                self._tracing.span("callback.deliver", parent=delivery.traceparent,
                                   kind="client", **{"imagedrop.delivery_id": delivery.id,
                                                     "imagedrop.kind": delivery.kind}
                                   ) as traceparent:
            return await self._send(delivery, traceparent)

    async def _send(self, delivery: Delivery, traceparent: str | None) -> DeliveryAttempt:
        attempt, url, final_error, retry_after = await self._attempt(delivery, traceparent)
        status = attempt.status
        state, next_at = self._next_state(attempt, final_error, retry_after)
        outcome = _outcome(state, final_error, status)
        follow_up = []
        if outcome == "exhausted" and self._settings.ops_webhook and delivery.kind != "ops":
            follow_up.append(self._exhausted(delivery, attempt))  # an alert never alerts
        await self._ledger.record_attempt(
            delivery.id, self._owner, attempt, state=state, next_attempt_at=next_at,
            follow_up=follow_up)
        if next_at is not None and (self._next_due is None or next_at < self._next_due):
            self._next_due = next_at
        if state is DeliveryState.DISABLED and delivery.kind == "webhook":
            await self._disable_endpoint(delivery)
        self._metrics.deliveries.labels(delivery.kind, outcome).inc()
        log.info(
            "delivery.attempt",
            delivery_id=delivery.id,
            kind=delivery.kind,
            event_type=delivery.event_type,
            url=policy.redact(url),
            attempt=attempt.attempt,
            status=status,
            state=str(state),
            error=attempt.error,
            next_attempt_at=next_at,
        )
        return attempt

    def _exhausted(self, delivery: Delivery, attempt: DeliveryAttempt) -> NewDelivery:
        """The ops webhook's delivery.exhausted event about `delivery`."""
        assert self._settings.ops_webhook is not None
        event = DeliveryExhaustedEvent(timestamp=timestamp(self._clock()), data=ExhaustedData(
            delivery_id=delivery.id, kind=delivery.kind, url=policy.redact(delivery.url),
            event_type=delivery.event_type, job_id=delivery.job_id, batch_id=delivery.batch_id,
            attempts=attempt.attempt, last_status=attempt.status, last_error=attempt.error))
        return NewDelivery(kind="ops", url=self._settings.ops_webhook, body=event.to_body(),
                           event_type=event.type, job_id=delivery.job_id,
                           batch_id=delivery.batch_id)

    async def probe(self, new: NewDelivery) -> DeliveryAttempt:
        """One attempt at a delivery that is not in the ledger (a test event): the same policy
        checks, signatures and timeout as any other, nothing recorded."""
        now = self._clock()
        delivery = Delivery(
            id=new.id or f"test_{uuid.uuid4().hex}", kind=new.kind, url=new.url, body=new.body,
            event_type=new.event_type, job_id=None, batch_id=None, secret_ref=new.secret_ref,
            state=DeliveryState.PENDING, attempts=0, next_attempt_at=now, lease_owner=None,
            lease_expires=None, created_at=now, finished_at=None, last_status=None,
            last_error=None)
        attempt, url, _, _ = await self._attempt(delivery)
        log.info("delivery.test", url=policy.redact(url), status=attempt.status,
                 error=attempt.error)
        return attempt

    async def _attempt(self, delivery: Delivery, traceparent: str | None = None
                       ) -> tuple[DeliveryAttempt, str, str | None, float | None]:
        """POST `delivery` once: the attempt, the URL used, a final error (refused: no retry)
        and the Retry-After the receiver asked for."""
        started, at = time.monotonic(), self._clock()
        url = delivery.url  # until a rewrite rule applies; logged redacted either way
        status: int | None = None
        retry_after: float | None = None
        final_error: str | None = None  # set → FAILED without retrying
        error: str | None = None
        try:
            # In the try: a bad operator rule fails the attempt, not the send (re-claimed forever).
            url, rewritten = policy.apply_rewrites(delivery.url, self._settings.rewrites)
            with self._metrics.cpu("callback"):
                headers = self._headers(delivery)
            if traceparent and self._tracing.enabled:  # the receiver may continue the trace
                headers["traceparent"] = traceparent
            # Covers IP literals, which the connector's PolicyResolver never sees (it re-checks
            # the address connected to for names, against DNS rebinding).
            subscriber = delivery.kind == "webhook"
            if subscriber:
                policy.check_subscriber_host(url, self._settings.subscriber_hosts)
            await policy.check_destination(
                url,
                allow_private=self._settings.allow_private_subscribers if subscriber
                else self._settings.allow_private,
                # The ops webhook is the operator's own setting: trusted like a rewrite target.
                rewritten=rewritten or delivery.kind == "ops",
                resolve=self._resolve,
                setting=policy.SUBSCRIBERS_SETTING if subscriber else policy.CALLBACKS_SETTING,
            )
            if delivery.spool is not None and not delivery.body:
                raise CallbackRefused("the callback body is no longer stored (its file beside "
                                      "the ledger was removed)")
            status, retry_after, error = await self._post(url, headers, delivery.body)
        except (CallbackRefused, ConfigError) as exc:
            final_error = str(exc)
        except DeliveryTransient as exc:
            error = str(exc)

        attempt = DeliveryAttempt(
            delivery_id=delivery.id,
            attempt=delivery.attempts + 1,
            at=at,
            status=status,
            error=final_error or error,
            duration_ms=(time.monotonic() - started) * 1000,
        )
        return attempt, url, final_error, retry_after

    async def _disable_endpoint(self, delivery: Delivery) -> None:
        """A subscriber answered 410 Gone: stop creating deliveries to its URL."""
        try:
            await self._ledger.disable_endpoint(delivery.url, "410 Gone")
        except Exception:
            # The attempt is recorded; the next event to this URL gets 410 and tries again.
            log.exception("delivery.disable_endpoint_failed", delivery_id=delivery.id,
                          url=policy.redact(delivery.url))

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            "webhook-id": delivery.id,  # receivers dedupe on it, signed or not
        }
        if delivery.kind == "ops" and self._settings.ops_webhook_secret:
            headers |= signing.signature_headers(
                self._settings.ops_webhook_secret, delivery.id, int(self._clock()), delivery.body)
        elif delivery.kind == "webhook" and delivery.secret_ref:
            # Several names (comma-separated) during a rotation: one signature each.
            secrets = []
            for name in delivery.secret_ref.split(","):
                name = name.strip().removeprefix("env:")
                if not self._settings.secret_allowed(name):
                    raise CallbackRefused(
                        f"signing secret {name} is not allowed: manifests may only name "
                        f"variables called {HOOK_SECRET_PREFIX}* or listed in "
                        "IMAGEDROP_HOOK_SECRETS_ALLOWED")
                secret = self._secrets.get(name)
                if not secret:
                    raise CallbackRefused(
                        f"signing secret {name} is not set in the service's environment")
                secrets.append((name, secret))
            for name, secret in secrets:
                try:
                    signing.sign(secret, delivery.id, 0, b"")
                except ValueError:
                    raise CallbackRefused(
                        f"signing secret {name} is not a whsec_ base64 secret") from None
            headers |= signing.signature_headers(
                [secret for _, secret in secrets], delivery.id, int(self._clock()), delivery.body)
        return headers

    async def _post(
        self, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int | None, float | None, str | None]:
        """POST once: (status, Retry-After seconds, short redacted error)."""
        timeout = self._settings.timeout
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,  # 3xx is a failure; following it could leave the policy
            ) as resp:
                status = resp.status
                retry_after = backoff.parse_retry_after(
                    resp.headers.get("Retry-After"), now=self._clock()
                )
        except TimeoutError:
            return None, None, f"timeout after {timeout:g}s"
        except aiohttp.ClientConnectorCertificateError:
            return None, None, "cannot connect: TLS certificate not trusted"
        except aiohttp.ClientSSLError:
            return None, None, "cannot connect: TLS handshake failed"
        except aiohttp.ClientConnectorError as exc:
            return None, None, f"cannot connect: {_connect_reason(exc.os_error)}"
        except aiohttp.ClientError as exc:
            # aiohttp's messages can embed the full URL; the class name is enough and safe.
            return None, None, type(exc).__name__
        if backoff.classify(status) is backoff.Verdict.DELIVERED:
            return status, None, None
        return status, retry_after, f"HTTP {status}"

    def _next_state(
        self, attempt: DeliveryAttempt, final_error: str | None, retry_after: float | None
    ) -> tuple[DeliveryState, float | None]:
        if final_error is not None:
            return DeliveryState.FAILED, None
        outcome = backoff.classify(attempt.status)
        if outcome is not backoff.Verdict.RETRY:  # delivered, disabled (410), refused for good
            return DeliveryState(outcome.value), None
        next_at = backoff.next_attempt_at(
            self._settings.schedule, attempt.attempt, now=self._clock(), retry_after=retry_after
        )
        if next_at is None:
            return DeliveryState.FAILED, None
        return DeliveryState.PENDING, next_at


def _outcome(state: DeliveryState, final_error: str | None, status: int | None) -> str:
    """The metric's outcome: a failure after the schedule ran out is "exhausted"."""
    if state is DeliveryState.PENDING:
        return "retry"
    if state is DeliveryState.FAILED and final_error is None and (
            status is None or backoff.classify(status) is backoff.Verdict.RETRY):
        return "exhausted"
    return str(state)


def _connect_reason(err: OSError) -> str:
    """A short reason without the address (strerror texts can embed it)."""
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.gaierror):
        return "cannot resolve host"
    if err.errno and err.errno > 0:
        return os.strerror(err.errno).lower()
    return type(err).__name__


async def _cancel(*futures: asyncio.Future[Any]) -> None:
    """Cancel helpers and collect their outcome (our own cancellation still propagates)."""
    for future in futures:
        future.cancel()
    await asyncio.gather(*futures, return_exceptions=True)
