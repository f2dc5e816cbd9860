#!/usr/bin/env python3
"""Sample images drawn by code (no third-party photos): a few plates of food, products, a
cluttered snapshot and a street scene, small enough to edit in well under a second each.

    python examples/make_samples.py OUT_DIR [--size 256] [--only food]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

Painter = Callable[[ImageDraw.ImageDraw, int, random.Random], None]


def _burger(d: ImageDraw.ImageDraw, s: int, rng: random.Random) -> None:
    d.ellipse((s * 0.1, s * 0.2, s * 0.9, s * 0.95), fill=(235, 235, 228))  # the plate
    d.chord((s * 0.25, s * 0.25, s * 0.75, s * 0.65), 180, 360, fill=(205, 140, 60))  # bun
    for _ in range(12):  # sesame seeds
        x, y = rng.uniform(0.32, 0.68) * s, rng.uniform(0.3, 0.42) * s
        d.ellipse((x, y, x + s * 0.015, y + s * 0.01), fill=(250, 240, 200))
    d.rectangle((s * 0.24, s * 0.45, s * 0.76, s * 0.5), fill=(70, 160, 60))  # lettuce
    d.rectangle((s * 0.26, s * 0.5, s * 0.74, s * 0.58), fill=(110, 55, 35))  # patty
    d.rounded_rectangle((s * 0.25, s * 0.58, s * 0.75, s * 0.66), s * 0.03, fill=(205, 140, 60))


def _salad(d: ImageDraw.ImageDraw, s: int, rng: random.Random) -> None:
    d.ellipse((s * 0.08, s * 0.12, s * 0.92, s * 0.92), fill=(245, 245, 240))  # bowl
    for _ in range(40):  # leaves, tomatoes, croutons
        x, y = rng.uniform(0.2, 0.75) * s, rng.uniform(0.25, 0.75) * s
        r = rng.uniform(0.03, 0.07) * s
        colour = rng.choice([(60, 150, 50), (90, 180, 70), (210, 40, 40), (220, 180, 100)])
        d.ellipse((x, y, x + r, y + r), fill=colour)


def _mug(d: ImageDraw.ImageDraw, s: int, rng: random.Random) -> None:
    d.rectangle((0, s * 0.7, s, s), fill=(150, 120, 90))  # a wooden table
    d.rounded_rectangle((s * 0.3, s * 0.3, s * 0.65, s * 0.8), s * 0.04, fill=(30, 90, 160))
    d.arc((s * 0.55, s * 0.4, s * 0.8, s * 0.65), 270, 90, fill=(30, 90, 160), width=int(s * 0.04))
    d.text((s * 0.36, s * 0.5), "imagedrop", fill=(255, 255, 255))


def _sneaker(d: ImageDraw.ImageDraw, s: int, rng: random.Random) -> None:
    for i in range(0, s, max(1, s // 16)):  # a busy background to clean up
        d.line((i, 0, s - i, s), fill=(rng.randrange(120, 200),) * 3, width=2)
    d.polygon([(s * 0.15, s * 0.7), (s * 0.4, s * 0.45), (s * 0.6, s * 0.5), (s * 0.85, s * 0.62),
               (s * 0.85, s * 0.72)], fill=(230, 60, 50))
    d.rectangle((s * 0.15, s * 0.72, s * 0.85, s * 0.77), fill=(250, 250, 250))  # the sole


def _street(d: ImageDraw.ImageDraw, s: int, rng: random.Random) -> None:
    d.rectangle((0, 0, s, s * 0.55), fill=(140, 190, 235))  # sky
    d.rectangle((0, s * 0.75, s, s), fill=(90, 90, 95))  # road
    for x in range(0, s, max(1, s // 5)):  # houses with windows
        h = rng.uniform(0.25, 0.45) * s
        d.rectangle((x, s * 0.75 - h, x + s * 0.18, s * 0.75), fill=(200, 170, 140))
        d.rectangle((x + s * 0.05, s * 0.75 - h * 0.7, x + s * 0.11, s * 0.75 - h * 0.5),
                    fill=(250, 220, 120))


#: name -> (painter, background, format). Names hint at which example manifest they suit.
SAMPLES: dict[str, tuple[Painter, tuple[int, int, int], str]] = {
    "burger.jpg": (_burger, (120, 85, 60), "JPEG"),
    "salad.jpg": (_salad, (90, 70, 55), "JPEG"),
    "mug.png": (_mug, (236, 232, 225), "PNG"),
    "sneaker.png": (_sneaker, (180, 180, 180), "PNG"),
    "street.jpg": (_street, (140, 190, 235), "JPEG"),
}
GROUPS = {"food": ["burger.jpg", "salad.jpg"], "products": ["mug.png", "sneaker.png"],
          "campaign": ["street.jpg"]}


def draw(name: str, size: int = 256) -> Image.Image:
    """One sample image; the same name and size always give the same pixels."""
    painter, background, _ = SAMPLES[name]
    image = Image.new("RGB", (size, size), background)
    painter(ImageDraw.Draw(image), size, random.Random(name))
    return image.filter(ImageFilter.SMOOTH)  # soften the hard edges a little, like a photo


def write_samples(folder: Path, names: list[str] | None = None, size: int = 256) -> list[Path]:
    """Write the named samples (default: all) into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or list(SAMPLES):
        path = folder / name
        draw(name, size).save(path, SAMPLES[name][2], **({"quality": 90}
                                                         if SAMPLES[name][2] == "JPEG" else {}))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the images into")
    parser.add_argument("--size", type=int, default=256, help="width and height in pixels")
    parser.add_argument("--only", choices=sorted(GROUPS), help="only one group of samples")
    args = parser.parse_args(argv)
    for path in write_samples(args.out, GROUPS[args.only] if args.only else None, args.size):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
