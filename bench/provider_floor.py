"""The provider's floor for `bench.core`'s photos_40: waves of 16 edits through the real OpenAI
SDK against the same fake (1 s, ~1 MB PNG answers), with no imagedrop in between.

Run: `.venv/bin/python -m bench.provider_floor` (about 10 s; prints, writes nothing).
"""

from __future__ import annotations

import asyncio
import time

import openai
import orjson

from bench.harness import fake_provider, photo_jpeg, result_png

WAVE = 16


async def main() -> None:
    image = photo_jpeg()
    async with fake_provider(1.0, result=result_png()) as url:
        client = openai.AsyncOpenAI(api_key="sk-bench", base_url=url, max_retries=0)

        async def one() -> float:
            started = time.perf_counter()
            raw = await client.images.with_raw_response.edit(
                image=("photo.jpg", image, "image/jpeg"), prompt="p", model="gpt-image-1", n=1)
            orjson.loads(raw.content)  # as the provider adapter reads it
            return time.perf_counter() - started

        try:
            await asyncio.gather(*(one() for _ in range(4)))  # connections warm
            for _ in range(3):
                started = time.perf_counter()
                calls = await asyncio.gather(*(one() for _ in range(WAVE)))
                print(f"wave of {WAVE}: {time.perf_counter() - started:.3f} s "
                      f"(calls {min(calls):.3f}-{max(calls):.3f} s)")
        finally:
            await client.close()


if __name__ == "__main__":
    asyncio.run(main())
