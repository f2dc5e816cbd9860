"""Durable callback delivery: WXO callbackUrl results and Standard-Webhooks-signed subscribers.

`signing`, `backoff` and `policy` are pure; `sender.Deliverer` claims due deliveries from the
ledger, POSTs them and records every attempt.
"""

from __future__ import annotations

from imagedrop.delivery.backoff import Outcome, classify, next_attempt_at, parse_retry_after
from imagedrop.delivery.policy import (
    apply_rewrites,
    check_destination,
    check_rules,
    check_syntax,
    redact,
)
from imagedrop.delivery.sender import Deliverer
from imagedrop.delivery.signing import (
    SignatureError,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

__all__ = [
    "Deliverer",
    "Outcome",
    "SignatureError",
    "apply_rewrites",
    "check_destination",
    "check_rules",
    "check_syntax",
    "classify",
    "generate_secret",
    "next_attempt_at",
    "parse_retry_after",
    "redact",
    "sign",
    "signature_headers",
    "verify",
]
