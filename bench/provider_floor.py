"""The provider's floor for `bench.core`'s photos_40: waves of 16 edits through imagedrop's OpenAI
adapter (the real SDK, over the same HTTP client settings) against the same fake (1 s, ~1 MB PNG
answers), with nothing else of imagedrop in between.

Run: `.venv/bin/python -m bench.provider_floor` (about 10 s; prints, writes nothing).
"""

from __future__ import annotations

import asyncio
import time

from bench.harness import fake_provider, photo_jpeg, result_png
from imagedrop.config import ProviderSettings
from imagedrop.providers import EditSpec
from imagedrop.providers.openai import OpenAIProvider

WAVE = 16


async def main() -> None:
    image = photo_jpeg()
    spec = EditSpec(prompt="p", model="gpt-image-1")
    async with fake_provider(1.0, result=result_png()) as url:
        provider = OpenAIProvider(ProviderSettings(kind="openai", openai_api_key="sk-bench",
                                                   openai_base_url=url))

        async def one() -> float:
            started = time.perf_counter()
            await provider.edit(image, "image/jpeg", "photo.jpg", spec)
            return time.perf_counter() - started

        try:
            await asyncio.gather(*(one() for _ in range(4)))  # connections warm
            for _ in range(3):
                started = time.perf_counter()
                cpu = time.process_time()
                calls = await asyncio.gather(*(one() for _ in range(WAVE)))
                print(f"wave of {WAVE}: {time.perf_counter() - started:.3f} s "
                      f"(calls {min(calls):.3f}-{max(calls):.3f} s; CPU "
                      f"{(time.process_time() - cpu) * 1000 / WAVE:.1f} ms per call)")
        finally:
            await provider.close()


if __name__ == "__main__":
    asyncio.run(main())
