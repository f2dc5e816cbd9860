#!/usr/bin/env python3
"""A subscriber for imagedrop's callbacks: checks each Standard Webhooks signature, answers 401 to
anything unsigned, stale or forged, and prints one line per event.

    IMAGEDROP_HOOK_SECRET_MAIN=whsec_... python examples/receiver.py --port 9000
    # its URL: http://HOST:9000/hooks

Give imagedrop the same `IMAGEDROP_HOOK_SECRET_MAIN` in its environment and name it in the
manifest (`secret: env:IMAGEDROP_HOOK_SECRET_MAIN`). Verification is written out here with the
standard library, so this file can be copied into a project that does not install imagedrop.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

TOLERANCE = 300  # seconds either way, as Standard Webhooks suggests
EventHandler = Callable[[dict[str, Any], str], None]  # (event body, webhook-id)
RECEIVED = web.AppKey("received", list)


class BadSignature(Exception):
    """Raised when a request's webhook headers do not prove it came from imagedrop."""


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
           tolerance: int = TOLERANCE) -> str:
    """Check one request; return its webhook-id, or raise BadSignature saying why not."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise BadSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise BadSignature("webhook-timestamp is not an integer") from None
    if abs(now - timestamp) > tolerance:  # a replay of an old message, or a wrong clock
        raise BadSignature("webhook-timestamp is outside the tolerance")
    raw = secret.removeprefix("whsec_")
    key = base64.b64decode(raw + "=" * (-len(raw) % 4))
    expected = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    matched = False
    for candidate in signatures.split():  # several during a key rotation; any v1 will do
        version, _, value = candidate.partition(",")
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched |= version == "v1" and hmac.compare_digest(expected, given)
    if not matched:
        raise BadSignature("no matching v1 signature")
    return msg_id


def describe(event: Mapping[str, Any]) -> str:
    """One human line for an imagedrop event."""
    kind, data = event.get("type", "?"), event.get("data") or {}
    source = data.get("source") or {}
    where = f"{source.get('bucket')}/{source.get('key')}" if source else data.get("filename")
    if kind == "image.completed":
        result = data.get("result") or {}
        extra = ", local fallback" if result.get("fallback_local") else ""
        extra += ", reused an earlier edit" if result.get("reused") else ""
        return (f"{kind:<16} {where} -> {result.get('bucket')}/{result.get('key')} "
                f"({result.get('provider')}{extra})")
    if kind == "image.failed":
        return f"{kind:<16} {where}: {data.get('error')}"
    if kind == "batch.completed":
        return (f"{kind:<16} {data.get('bucket')}/{data.get('prefix')}: {data.get('status')}, "
                f"{data.get('processed')} processed, {data.get('failed')} failed, "
                f"{data.get('fallback_local')} local fallback, "
                f"{data.get('duration_seconds')} s")
    return f"{kind:<16} {json.dumps(data)[:200]}"


def make_app(secret: str, *, path: str = "/hooks", on_event: EventHandler | None = None,
             clock: Callable[[], float] = time.time) -> web.Application:
    """The receiver as an aiohttp app; `app[RECEIVED]` lists (webhook-id, event) in order."""
    seen: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            msg_id = verify(secret, request.headers, body, now=clock())
        except BadSignature as exc:
            print(f"rejected         {request.remote}: {exc}", flush=True)
            return web.json_response({"error": str(exc)}, status=401)
        # imagedrop retries until it gets a 2xx, keeping the webhook-id: do the work once.
        if msg_id not in seen:
            seen.add(msg_id)
            event = json.loads(body)
            request.app[RECEIVED].append((msg_id, event))
            (on_event or _print)(event, msg_id)
        return web.Response(status=204)

    app = web.Application()
    app[RECEIVED] = []
    app.router.add_post(path, hook)
    return app


def _print(event: dict[str, Any], msg_id: str) -> None:
    print(describe(event), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--path", default="/hooks")
    parser.add_argument("--secret-env", default="IMAGEDROP_HOOK_SECRET_MAIN",
                        help="environment variable holding the whsec_ secret")
    args = parser.parse_args(argv)
    secret = os.environ.get(args.secret_env, "")
    if not secret.startswith("whsec_"):
        print(f"receiver: set {args.secret_env} to the whsec_... secret imagedrop signs with",
              file=sys.stderr)
        return 2
    print(f"listening on http://{args.host}:{args.port}{args.path}", flush=True)
    web.run_app(make_app(secret, path=args.path), host=args.host, port=args.port,
                print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
