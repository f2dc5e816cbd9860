"""Errors arranged by who must react.

    ImagedropError
    ├── ConfigError                 operator's fault: start-up stops with one message
    ├── InputError                  caller's fault, never retried (HTTP 4xx)
    │   ├── RequestInvalid          well-formed, but not doable as asked (422, names the field)
    │   ├── ImageRejected           not an image, too large, too many pixels, bad base64
    │   ├── CallbackRefused         callback URL not allowed (private address, bad scheme)
    │   ├── NotFound                no such job/object
    │   └── (storage.names.InvalidObjectName: a bucket, key or prefix no store takes, 400)
    ├── TransientError              may succeed later: retried with backoff
    │   ├── StorageUnavailable
    │   ├── ProviderTransient       429 rate limit, 5xx, timeouts, connection errors
    │   └── DeliveryTransient
    └── PermanentError              will not succeed by retrying: the job fails with the reason
        ├── StorageError
        ├── VersionSuperseded       the object was overwritten: the job's version is gone
        ├── ProviderPermanent       400s, moderation_blocked, insufficient_quota
        │   └── BillingLimitReached billing_hard_limit_reached: fall back to the local provider
        └── MissingDependencyError  an optional backend's package is not installed
"""

from __future__ import annotations


class ImagedropError(Exception):
    """Root of every error imagedrop raises on purpose."""


class ConfigError(ImagedropError):
    """Raised when settings are missing or invalid; the message names every problem."""


class InputError(ImagedropError):
    """Raised when the caller sent something imagedrop cannot accept."""

    status = 400


class RequestInvalid(InputError):
    """Raised when a request is well-formed but cannot be done as asked: 422 by default, with
    the first offending field named."""

    def __init__(self, message: str, field: str | None = None, *, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class ImageRejected(InputError):
    """Raised when bytes are not an acceptable image (format, size, pixels, encoding)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class CallbackRefused(InputError):
    """Raised when a callback URL is refused by policy."""


class NotFound(InputError):
    """Raised when a job, batch or object does not exist."""

    status = 404


class TransientError(ImagedropError):
    """Raised for failures that may pass: the operation is retried later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageUnavailable(TransientError):
    """Raised when the object store cannot be reached or answers 5xx/throttling."""


class ProviderTransient(TransientError):
    """Raised when the image provider is rate limited, overloaded, slow or unreachable.
    `maybe_billed`: the request may have been processed (a timeout, a dropped connection)."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 maybe_billed: bool = False) -> None:
        super().__init__(message, retry_after=retry_after)
        self.maybe_billed = maybe_billed


class DeliveryTransient(TransientError):
    """Raised when a callback receiver answers 5xx, times out or cannot be reached."""


class PermanentError(ImagedropError):
    """Raised for failures that retrying will not fix."""


class BudgetReached(PermanentError):
    """Raised when an edit would take a spend budget past its limit: the job is held until
    `until` (over: hold) or fails with the reason (over: fail)."""

    def __init__(self, message: str, *, scope: str, over: str, until: float,
                 first: bool, day: str = "") -> None:
        super().__init__(message)
        self.scope, self.over, self.until, self.first, self.day = scope, over, until, first, day


class StorageError(PermanentError):
    """Raised when the object store refuses an operation (missing bucket, access denied)."""


class VersionSuperseded(PermanentError):
    """Raised when a read asked for one version of an object and a newer one has replaced it."""


class ProviderPermanent(PermanentError):
    """Raised when the provider refuses the edit (bad request, moderation, quota).
    `maybe_billed`: it answered 200 but with no usable image (the edit may be charged)."""

    def __init__(self, message: str, *, code: str | None = None,
                 maybe_billed: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.maybe_billed = maybe_billed


class BillingLimitReached(ProviderPermanent):
    """Raised when OpenAI answers billing_hard_limit_reached: the local provider takes over."""


class MissingDependencyError(PermanentError, ImportError):
    """Raised when an optional backend is chosen but its package is missing."""
