"""The OpenAI images.edit provider: one HTTP call per edit, SDK retries off, errors classified here.

Retrying is the pipeline's job (durable, with backoff); this adapter only says which kind of
failure happened: ProviderTransient (with retry_after), ProviderPermanent or BillingLimitReached.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import email.utils
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

import aiohttp
import openai
import orjson

from imagedrop.config import ProviderSettings
from imagedrop.errors import (
    BillingLimitReached,
    ConfigError,
    ProviderPermanent,
    ProviderTransient,
)
from imagedrop.imaging import CheckedBase64, checked_base64, sniff, sniff_base64
from imagedrop.jsoncut import cut_base64
from imagedrop.prices import Usage
from imagedrop.providers import EditResult, EditSpec

# OpenAI echoes part of a wrong key in its 401 message ("Incorrect API key provided: sk-ab***yz").
_KEY_LIKE = re.compile(r"\b(sk|sess|org|proj)-[A-Za-z0-9_*\-]{4,}")


class OpenAIProvider:
    """Edits images with `client.images.edit` (gpt-image models, base64 results)."""

    name = "openai"

    def __init__(self, settings: ProviderSettings) -> None:
        if not settings.openai_api_key:
            raise ConfigError("OPENAI_API_KEY: required for the OpenAI provider")
        if not _PRINTABLE_ASCII.fullmatch(settings.openai_api_key):
            # It travels in a header: anything else fails every call, before it is sent.
            raise ConfigError("OPENAI_API_KEY: must be printable ASCII without spaces (check "
                              "for a pasted invisible character or line break)")
        self._key = settings.openai_api_key
        self._closed = False
        self._timeout = settings.timeout
        # max_retries=0: the SDK would retry 429s (even insufficient_quota) and 5xx with no
        # idempotency key, paying twice; the pipeline retries durably instead.
        # Over aiohttp (the SDK's own option): a 1.35 MB answer is read by aiohttp's parser into
        # one buffer, where httpx's default transport takes ~40 reads through the loop, each with
        # a timeout scope. With a wave of answers arriving together that halved the time until
        # the last was read (the edits' critical path). It words some failures wrongly (a refused
        # connection as a timeout); _mapped_errors reads the cause instead.
        http = openai.DefaultAioHttpClient(
            timeout=settings.timeout,
            event_hooks={"request": [_whole_body], "response": [_answered]})
        self._client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url or None,
            max_retries=0,
            timeout=settings.timeout,
            http_client=http,
        )
        if _socks_proxy(http, self._client.base_url):
            raise ConfigError("the proxy the environment sets for OpenAI's calls (HTTPS_PROXY, "
                              "ALL_PROXY or their lower-case forms) is a SOCKS proxy, which "
                              "the HTTP client cannot speak; use an HTTP proxy, or NO_PROXY")

    async def edit(self, image: bytes, mime_type: str, filename: str, spec: EditSpec) -> EditResult:
        """One images.edit call; raises ProviderTransient, ProviderPermanent or
        BillingLimitReached."""
        _SENT.set(False)
        _ANSWERED.set(False)
        with self._mapped_errors():
            # The raw answer, read here (read_answer): the SDK's own parsing (stdlib json, then
            # a pydantic model around a 1.35 MB string) cost ~1.5 ms more per edit, on the
            # edits' critical path when a wave of them answers together.
            # One deadline for the whole call: the transport bounds each read, but not an upload
            # the far end stops reading, nor an answer dripped a byte at a time.
            async with asyncio.timeout(self._timeout):
                raw = await self._client.images.with_raw_response.edit(
                    image=(filename, image, mime_type),
                    prompt=spec.prompt,
                    model=spec.model,
                    # The SDK's Literals lag behind the API: newer values pass through unchecked.
                    quality=cast(Any, spec.quality), size=spec.size,
                    output_format=cast(Any, spec.output_format), n=1,
                )
        response, b64_json = read_answer(raw.content)
        if not b64_json:
            raise ProviderPermanent("provider returned no image", code="no_image",
                                    maybe_billed=True)
        # The bytes say what they are; output_format is only what was asked for. Canonical
        # base64 (what the API sends) is kept as it came; anything else is decoded here.
        b64 = b64_json if isinstance(b64_json, bytes) else checked_base64(b64_json)
        if b64 is not None:
            mime = sniff_base64(b64)
            result = EditResult(mime_type=mime or "", provider="openai", model=spec.model, b64=b64)
        else:
            try:
                data = base64.b64decode(b64_json, validate=True)
            except (binascii.Error, ValueError):
                data = b""
            mime = sniff(data)
            result = EditResult(mime_type=mime or "", provider="openai", model=spec.model,
                                raw=data)
        if mime is None:
            raise ProviderPermanent("provider returned an invalid image", code="bad_image",
                                    maybe_billed=True)
        return replace(result, usage=_usage(response.get("usage")))

    async def close(self) -> None:
        self._closed = True
        await self._client.close()

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Translate every SDK exception once into imagedrop's error tree."""
        try:
            yield
        # APITimeoutError included; and what the SDK's aiohttp transport leaves unmapped (an
        # answer that is not HTTP).
        except (openai.APIConnectionError, aiohttp.ClientError) as exc:
            # Not billed only when nothing reached OpenAI: no connection was ever made, and no
            # answer came first (a redirect followed to a host that then refused).
            billed = _ANSWERED.get() or not _never_connected(exc)
            raise ProviderTransient(_unanswered(exc, self._timeout, self._key),
                                    maybe_billed=billed) from exc
        except TimeoutError as exc:  # the call's own deadline
            raise ProviderTransient(f"OpenAI did not answer within {self._timeout:g} s",
                                    maybe_billed=True) from exc
        except UnicodeError as exc:
            if _SENT.get():  # the transport re-encoding a status line that is not UTF-8
                raise ProviderTransient("OpenAI's answer could not be read "
                                        f"({type(exc).__name__})", maybe_billed=True) from exc
            # The request itself (e.g. a file name with undecodable bytes): nothing was sent.
            raise ProviderPermanent(f"the request to OpenAI could not be encoded ({exc})",
                                    code="bad_request") from exc
        except openai.APIStatusError as exc:
            raise classify(exc, redact=self._key) from exc
        except openai.OpenAIError as exc:  # response validation and other client-side failures
            raise ProviderPermanent(
                f"OpenAI client error: {_redact(str(exc), self._key)}", code="client_error"
            ) from exc
        except RuntimeError as exc:
            if not self._closed:
                raise
            # Shutting down mid-edit: another attempt (or process) will do it.
            raise ProviderTransient("the OpenAI client was closed during the edit",
                                    maybe_billed=True) from exc


def read_answer(content: bytes) -> tuple[dict[str, Any], str | CheckedBase64 | None]:
    """An images answer's JSON (empty when it is not an object) and its first image's base64:
    ASCII bytes when canonical, cut out of `content` rather than parsed (`cut_base64`: orjson
    spends ~1.1 ms of GIL-held CPU on a 1.35 MB string, on the edits' critical path when a wave
    of answers lands together). Otherwise that value as parsed (None when missing)."""
    with contextlib.suppress(orjson.JSONDecodeError):
        if cut := cut_base64(content, "b64_json", _first_image, orjson.loads):
            return cut
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:  # e.g. a proxy's HTML page
        doc = None
    if not isinstance(doc, dict):
        return {}, None
    value = _first_image(doc)
    return doc, value if isinstance(value, str) else None


def _first_image(doc: object) -> object:
    items = doc.get("data") if isinstance(doc, dict) else None
    item = items[0] if isinstance(items, list) and items else None
    return item.get("b64_json") if isinstance(item, dict) else None


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions under it (`__cause__` links), outermost first."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__
    return chain


# Failures before a connection to OpenAI existed (refused, DNS, TLS, a proxy's refusal, the
# connect timing out): nothing was sent, so nothing can be billed.
_NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError,
                  aiohttp.ConnectionTimeoutError)


def _never_connected(exc: BaseException) -> bool:
    return any(isinstance(e, _NOT_CONNECTED) for e in _causes(exc))


def _unanswered(exc: Exception, timeout: float, key: str = "") -> str:
    """Why no answer came, from the exceptions under the SDK's: its aiohttp transport calls a
    refused or dropped connection a timeout."""
    chain = _causes(exc)
    # Only timers' timeouts (asyncio, aiohttp); an OSError with ETIMEDOUT is the network's.
    if any(isinstance(e, TimeoutError) and e.errno is None for e in chain) or (
            isinstance(exc, openai.APITimeoutError) and len(chain) == 1):
        return f"OpenAI did not answer within {timeout:g} s"
    root = chain[-1]
    if root is exc and isinstance(exc, openai.APIConnectionError):
        return "could not reach OpenAI (connection error)"
    detail = type(root).__name__
    if isinstance(root, aiohttp.ClientResponseError) and root.message:  # e.g. a proxy's refusal
        said = _redact(root.message.splitlines()[0].rstrip(": "), key)[:200]
        # Its words, but only printable ASCII: a status line may carry any byte.
        detail += ": " + _CONTROLS.sub("?", said.encode("ascii", "backslashreplace").decode())
    return f"could not reach OpenAI ({detail})"


_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def _socks_proxy(http: Any, base_url: object) -> bool:
    """Whether the client would reach `base_url` through a SOCKS proxy from the environment
    (it reads the proxy variables itself, and over aiohttp would speak HTTP to a SOCKS port).
    Asks the client which transport it chose, so the answer follows its own precedence and
    NO_PROXY rules; a client without that (private) lookup is not checked."""
    lookup = getattr(http, "_transport_for_url", None)
    try:
        transport = lookup(base_url) if lookup is not None else None
    except Exception:  # the lookup moved or changed: the start goes on unchecked
        return False
    proxy = getattr(transport, "proxy", None)
    scheme = str(getattr(getattr(proxy, "url", None), "scheme", "") or "")
    return scheme.lower().startswith("socks")


# Whether this call's request was complete and handed to the transport (set by _whole_body):
# an encoding error after that is the answer's, before it the request's.
_SENT: contextvars.ContextVar[bool] = contextvars.ContextVar("imagedrop_openai_sent",
                                                            default=False)
# Whether any answer came during this call (set by _answered): then the request got somewhere.
_ANSWERED: contextvars.ContextVar[bool] = contextvars.ContextVar("imagedrop_openai_answered",
                                                                default=False)
_PRINTABLE_ASCII = re.compile(r"[!-~]+")


async def _whole_body(request: Any) -> None:
    """Request hook: the SDK's multipart form (~30 parts: a boundary, headers and value for each
    field) is read into one buffer and sent in one write. Streamed, each part was a write of its
    own with a trip through the loop, and with a wave of 1.35 MB answers being read on the same
    loop, a 215 KB upload took 160 ms to reach the provider instead of a few."""
    await request.aread()
    _SENT.set(True)


async def _answered(response: Any) -> None:
    """Response hook: an answer came (a redirect included)."""
    _ANSWERED.set(True)


def _usage(reported: object) -> Usage | None:
    """The token counts of an images answer's `usage` (None when it has none)."""
    if not isinstance(reported, dict):
        return None
    details = reported.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}
    text, image = _count(details.get("text_tokens")), _count(details.get("image_tokens"))
    if text is None and image is None:  # no breakdown: bill it all at the image rate
        text, image = 0, _count(reported.get("input_tokens"))
    return Usage(text_in=text or 0, image_in=image or 0,
                 image_out=_count(reported.get("output_tokens")) or 0)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def classify(exc: openai.APIStatusError, *, redact: str = "") -> Exception:
    """The imagedrop error for an HTTP error answer from OpenAI (pure; used by the adapter)."""
    status, code, body = exc.status_code, exc.code, exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = _redact(str(message or exc.message), redact)
    where = f" [request {exc.request_id}]" if exc.request_id else ""
    if code == "billing_hard_limit_reached":
        return BillingLimitReached(f"OpenAI billing hard limit reached{where}", code=code)
    if code == "moderation_blocked":
        details = body.get("moderation_details") if isinstance(body, dict) else None
        categories = details.get("categories") if isinstance(details, dict) else None
        found = f" (categories: {', '.join(map(str, categories))})" if categories else ""
        return ProviderPermanent(f"OpenAI moderation blocked the edit{found}{where}", code=code)
    if status == 429 and "insufficient_quota" in (code, exc.type):
        return ProviderPermanent(f"OpenAI quota exhausted: {text}{where}",
                                 code="insufficient_quota")
    retry_after = parse_retry_after(exc.response.headers)
    if status in (408, 409, 429) or status >= 500:  # the statuses the SDK itself would retry
        return ProviderTransient(f"OpenAI answered {status}: {text}{where}",
                                 retry_after=retry_after)
    return ProviderPermanent(f"OpenAI refused the edit ({status} {code or exc.type or ''}".rstrip()
                             + f"): {text}{where}", code=code or f"http_{status}")


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        raw = lowered.get("retry-after")
        if raw is None:
            return None
        try:
            return max(0.0, float(raw))
        except ValueError:
            when = email.utils.parsedate_to_datetime(raw).timestamp()
            return max(0.0, when - (time.time() if now is None else now))
    except (ValueError, TypeError, OverflowError):
        return None


def _redact(text: str, key: str) -> str:
    if key:
        text = text.replace(key, "***")
    return _KEY_LIKE.sub(lambda m: f"{m.group(1)}-***", text)
