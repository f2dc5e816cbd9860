"""Memory benchmark (SPEC §6): a 24-megapixel JPEG edited with peak RSS ≤ 600 MB.

Run: `.venv/bin/python -m bench.memory` (writes bench/results/memory.json and docs/benchmarks.md).
Runs `imagedrop edit` (local provider) in a child process and reads the child's peak RSS.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import harness
from bench.harness import ROOT


def big_jpeg(path: Path, width: int = 6000, height: int = 4000) -> None:
    """A 24-megapixel photo-like JPEG (gradients and noise, so it does not compress away)."""
    from PIL import Image

    noise = Image.effect_noise((width, height), 40).convert("RGB")
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    Image.blend(noise, gradient, 0.5).save(path, "JPEG", quality=90)


def edit_peak_rss(image: Path, out: Path) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of one `imagedrop edit` in a fresh child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COS_"))}
    env["IMAGEDROP_DATA_DIR"] = str(out.parent / "data")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imagedrop", "edit", str(image), "--prompt", "warmer",
                    "-o", str(out)], env=env, cwd=ROOT, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    # The largest finished child's peak (KB on Linux): this is the benchmark's only child.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


async def collect() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "big.jpg"
        await asyncio.to_thread(big_jpeg, image)
        rss, seconds = await asyncio.to_thread(edit_peak_rss, image, Path(tmp) / "out.png")
        return {"megapixels": 24, "input_mb": round(image.stat().st_size / 1e6, 1),
                "peak_rss_mb": rss, "seconds": seconds}


if __name__ == "__main__":
    from bench.report import write_memory_section

    harness.main("memory", __doc__, collect, write_memory_section)
