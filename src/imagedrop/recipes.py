"""What a job is to do and what it came to, as typed records: `Recipe`, `SubscriberRef` and
`JobResult`. The ledger stores them as JSON (the same shape as ever); pure data, no I/O.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from imagedrop.payloads import ManifestRef
from imagedrop.prices import Usage

EventName = Literal["image.completed", "image.failed", "batch.completed", "budget.reached"]
EVENT_TYPES: tuple[EventName, ...] = ("image.completed", "image.failed", "batch.completed",
                                      "budget.reached")
#: The EditSpec fields a recipe carries (and a trigger may override).
SPEC_FIELDS = ("prompt", "model", "quality", "size", "output_format")

_RECORD = ConfigDict(frozen=True, extra="ignore")


class _Stored(BaseModel):
    model_config = _RECORD

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict stored in the ledger: fields at their defaults left out."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


class SubscriberRef(_Stored):
    """What a job keeps of one of its manifest's subscribers."""

    url: str
    events: tuple[EventName, ...] = EVENT_TYPES
    secret_ref: str | None = None  # the NAME of the environment variable holding whsec_…


def folder_scope(bucket: str, manifest_key: str) -> str:
    """The budget scope of the folder a manifest governs (its spend is counted under it)."""
    return f"folder:{bucket}/{manifest_key}"


class BudgetRule(_Stored):
    """A folder's daily budget (its manifest's `budget`), as a job carries it."""

    scope: str  # folder:<bucket>/<manifest key>
    edits_per_day: int | None = None
    usd_per_day: float | None = None
    over: Literal["hold", "fail"] = "hold"


class Recipe(_Stored):
    """A job's (or a batch's) recipe: the edit, and what its outcome must do.

    Job recipes carry the edit spec (prompt and provider options), the fallback policy, the
    provider a manifest asked for, the subscribers and the manifest followed; a broken
    manifest's job carries only `manifest_error`. Folder-trigger batches carry `mode` (follow
    the manifests, or the request's own prompt) and the request's `override`s.
    """

    prompt: str = ""
    model: str | None = None
    quality: str | None = None
    size: str | None = None
    output_format: str | None = None
    fallback: Literal["local", "fail"] = "local"
    provider: str | None = None
    subscribers: tuple[SubscriberRef, ...] = ()
    manifest: ManifestRef | None = None
    manifest_error: str | None = None
    budget: BudgetRule | None = None
    mode: Literal["manifest", "prompt"] | None = None
    override: dict[str, str] | None = None

    @classmethod
    def of(cls, spec: _Spec, **rest: Any) -> Recipe:
        """A recipe for the edit `spec`, with the other fields in `rest`."""
        return cls(prompt=spec.prompt, model=spec.model, quality=spec.quality, size=spec.size,
                   output_format=spec.output_format, **rest)

    def spec_fields(self) -> dict[str, str]:
        """The edit spec fields this recipe sets (EditSpec's, by name)."""
        return {name: value for name in SPEC_FIELDS
                if (value := getattr(self, name)) is not None}

    def overridden(self, changes: dict[str, str]) -> Recipe:
        """This recipe with some spec fields replaced (a trigger's overrides)."""
        return self.model_copy(update={k: v for k, v in changes.items() if k in SPEC_FIELDS})


class _Spec(Protocol):
    """An edit spec (`providers.EditSpec`): what `Recipe.of` takes the edit from."""

    @property
    def prompt(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def quality(self) -> str: ...
    @property
    def size(self) -> str: ...
    @property
    def output_format(self) -> str: ...


class JobResult(_Stored):
    """What a completed job came to: where the edited image is and who made it."""

    provider: str | None = None  # openai, local; unknown for a reused output of old
    model: str | None = None
    mime_type: str | None = None
    fallback_local: bool = False  # the local provider stood in after a billing stop
    size: int | None = None
    bucket: str | None = None  # None: not stored (the base64 endpoint)
    key: str | None = None
    reused: bool = False  # an identical earlier edit was used instead of a new one
    reused_from: str | None = None  # ... made by this job
    usage: Usage | None = None  # tokens the provider reported for the edit
    cost_usd: float | None = None  # from usage and the price table; 0 local; None: unknown
