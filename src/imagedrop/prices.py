"""What an edit costs: a dated price table per model (overridable), the provider's reported
token usage turned into dollars, and the estimate made before a call (pure; no I/O).

Prices are US dollars per million tokens, as OpenAI bills the gpt-image models: text input,
image input and image output apart. Local edits cost nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

#: When the table below was last checked against the published prices.
PRICES_AS_OF = "2026-11-05"


class Price(BaseModel):
    """One model's rates, in US dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    text_in: float = Field(ge=0, description="Text (prompt) input tokens.")
    image_in: float = Field(ge=0, description="Image input tokens.")
    image_out: float = Field(ge=0, description="Image output tokens.")


# Sources: OpenAI's model pages (gpt-image-1, gpt-image-1-mini) and its pricing page as listed
# on 2026-11-05. gpt-image-2's image-input rate is taken as published by resellers at the same
# time; set IMAGEDROP_PRICES when your invoice says otherwise (negotiated rates, new models).
DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-image-2": Price(text_in=5.00, image_in=8.00, image_out=30.00),
    "gpt-image-1": Price(text_in=5.00, image_in=10.00, image_out=40.00),
    "gpt-image-1-mini": Price(text_in=2.00, image_in=2.50, image_out=8.00),
}

# Output image tokens by quality and size (the gpt-image-1 table; the later models bill a
# comparable count). "auto" is taken as medium at 1024x1024, what the API picks for most edits.
_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
#: Image input tokens of one ~1 MP input (65 + 129 per 512-pixel tile, 4 tiles).
INPUT_IMAGE_TOKENS = 581


class Usage(BaseModel):
    """Tokens one edit used, as the provider reported them."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    text_in: int = Field(0, ge=0, description="Text (prompt) input tokens.")
    image_in: int = Field(0, ge=0, description="Image input tokens.")
    image_out: int = Field(0, ge=0, description="Image output tokens.")


class PriceList:
    """The price table in force: the defaults, with the operator's overrides on top."""

    def __init__(self, overrides: Mapping[str, Price] | None = None,
                 as_of: str | None = None) -> None:
        self.prices = {**DEFAULT_PRICES, **(overrides or {})}
        self.as_of = as_of or PRICES_AS_OF

    def price(self, model: str) -> Price | None:
        return self.prices.get(model)

    def cost(self, model: str, usage: Usage) -> float | None:
        """Dollars for `usage` on `model`; None for a model the table does not know."""
        price = self.price(model)
        if price is None:
            return None
        return round((usage.text_in * price.text_in + usage.image_in * price.image_in
                      + usage.image_out * price.image_out) / 1_000_000, 6)

    def estimate(self, model: str, quality: str, size: str, prompt: str) -> float:
        """Dollars one edit is expected to cost before it is made (0 for an unknown model:
        it is reported as such, not guessed)."""
        return self.cost(model, estimated_usage(quality, size, prompt)) or 0.0


def estimated_usage(quality: str, size: str, prompt: str) -> Usage:
    """The tokens an edit of one ~1 MP image is expected to use."""
    by_size = _OUTPUT_TOKENS.get(quality, _OUTPUT_TOKENS["medium"])
    if size in by_size:
        out = by_size[size]
    elif "x" in size:  # another WxH: scale by pixels against the square
        try:
            w, h = (int(v) for v in size.lower().split("x"))
            out = math.ceil(by_size["1024x1024"] * (w * h) / (1024 * 1024))
        except ValueError:
            out = by_size["1024x1024"]
    else:
        out = by_size["1024x1024"]
    return Usage(text_in=max(1, math.ceil(len(prompt) / 4)), image_in=INPUT_IMAGE_TOKENS,
                 image_out=out)


# -- budget windows ----------------------------------------------------------------------------

DAY = 86400.0


def utc_day(now: float) -> str:
    """The UTC day `now` falls in, as YYYY-MM-DD: a budget's window."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def next_day(now: float) -> float:
    """When the UTC day after `now`'s begins: a held job's time to go on."""
    return (now // DAY + 1) * DAY
