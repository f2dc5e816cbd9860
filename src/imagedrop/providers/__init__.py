"""Image-edit providers: one Protocol, two backends (OpenAI images.edit and local Pillow).

`open_provider(settings)` picks one; the caller (pipeline) owns retries and fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from imagedrop.config import ProviderSettings


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
    """An edited image."""

    data: bytes
    mime_type: str
    provider: str  # "openai" or "local"
    model: str


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
