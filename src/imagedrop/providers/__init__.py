"""Image-edit providers: one Protocol, two backends (OpenAI images.edit and local Pillow).

`open_provider(settings)` picks one; the caller (pipeline) owns retries and fallback.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from imagedrop.config import ProviderSettings
from imagedrop.prices import Usage


@dataclass(frozen=True, slots=True)
class EditSpec:
    """What to do to one image; defaults come from settings, a manifest may override."""

    prompt: str
    model: str
    quality: str = "auto"
    size: str = "auto"
    output_format: str = "png"  # png | jpeg | webp


@dataclass(frozen=True, slots=True)
class EditResult:
    """An edited image: its bytes, or the base64 text a provider answered with (checked, kept
    as it came so that a base64 callback sends it on without a decode/encode round trip)."""

    mime_type: str
    provider: str  # "openai" or "local"
    model: str
    raw: bytes | None = None
    b64: bytes | None = None  # ASCII base64, when the provider answered so
    usage: Usage | None = None  # tokens, as the provider reported them (OpenAI's gpt-image)

    @property
    def data(self) -> bytes:
        """The image's bytes (decoded from base64 when that is what came: CPU work)."""
        if self.raw is not None:
            return self.raw
        assert self.b64 is not None
        return binascii.a2b_base64(self.b64)

    def base64(self) -> bytes:
        """The image as ASCII base64 (encoded from bytes when that is what came)."""
        if self.b64 is not None:
            return self.b64
        assert self.raw is not None
        return binascii.b2a_base64(self.raw, newline=False)

    @property
    def size(self) -> int:
        """The image's size in bytes, without decoding it."""
        if self.raw is not None:
            return len(self.raw)
        assert self.b64 is not None
        return len(self.b64) * 3 // 4 - self.b64[-2:].count(b"=")  # no copy of megabytes


@runtime_checkable
class ImageProvider(Protocol):
    """Edits one image. Raises ProviderTransient, ProviderPermanent or BillingLimitReached."""

    name: str

    async def edit(self, image: bytes, mime_type: str, filename: str, spec: EditSpec) -> EditResult:
        """Edit `image` (already checked and converted by imaging) as `spec` says."""

    async def close(self) -> None:
        """Release clients and threads."""


def spec_from_settings(
    settings: ProviderSettings, prompt: str, **overrides: str | None
) -> EditSpec:
    """An EditSpec with settings' defaults; None overrides are ignored."""
    values = {
        "model": settings.model,
        "quality": settings.quality,
        "size": settings.size,
        "output_format": settings.output_format,
    }
    values.update({k: v for k, v in overrides.items() if v})
    return EditSpec(prompt=prompt, **values)


def open_provider(settings: ProviderSettings) -> ImageProvider:
    """The configured provider (OpenAI when chosen, else local)."""
    if settings.kind == "openai":
        from imagedrop.providers.openai import OpenAIProvider
        from imagedrop.providers.threaded import LoopThreadProvider

        return LoopThreadProvider(lambda: OpenAIProvider(settings), name="openai")
    from imagedrop.providers.local import LocalProvider

    return LocalProvider()


__all__ = ["EditResult", "EditSpec", "ImageProvider", "open_provider", "spec_from_settings"]
