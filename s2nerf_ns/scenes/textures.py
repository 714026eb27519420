"""Procedural textures (uint8 sRGB images) for the rooms: floors, wallpapers, ceilings, rugs, and the
private items' images: documents with text (PIL's default font) and photos (scikit-image samples)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TEX_PPM = 96
"""Pixels per metre of the procedural wall / floor textures."""


def to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise in [0, 1]: random grid upsampled bilinearly."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.random((gh, gw)).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize((gw * cell, gh * cell), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)[:h, :w] / 255.0


def wood_floor(rng, w_m: float, h_m: float, base: Sequence[float], plank_w: float = 0.16) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pw = plank_w * TEX_PPM
    row = (yy // pw).astype(int)
    nrows = int(row.max()) + 1
    plank_len = 1.2 * TEX_PPM
    offsets = rng.random(nrows) * plank_len
    seg = ((xx + offsets[row]) // plank_len).astype(int)
    tone = rng.normal(0.0, 0.07, size=(nrows, int(seg.max()) + 2))[row, seg]
    grain = 0.05 * np.sin(yy * 0.9 + 3.0 * smooth_noise(rng, h, w, 24) * 6.0) + 0.05 * (smooth_noise(rng, h, w, 6) - 0.5)
    img = np.asarray(base, np.float32)[None, None, :] * (1.0 + tone + grain)[..., None]
    gap = ((yy % pw) < 1.2) | (((xx + offsets[row]) % plank_len) < 1.2)
    img[gap] *= 0.45
    return to_u8(img)


def carpet_tiles(rng, w_m: float, h_m: float, base: Sequence[float], tile: float = 0.5) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = tile * TEX_PPM
    ti, tj = (yy // t).astype(int), (xx // t).astype(int)
    checker = ((ti + tj) % 2).astype(np.float32)
    tones = rng.normal(0, 0.05, size=(int(ti.max()) + 1, int(tj.max()) + 1))[ti, tj]
    fibre = 0.12 * (rng.random((h, w)).astype(np.float32) - 0.5)
    stripes = 0.06 * np.sin((xx * (1 - checker) + yy * checker) * 1.3)
    img = np.asarray(base, np.float32)[None, None, :] * (1.0 + 0.12 * checker + tones + fibre + stripes)[..., None]
    return to_u8(img)


def wallpaper(rng, w_m: float, h_m: float, base: Sequence[float], style: str) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / TEX_PPM  # metres
    if style == "stripes":
        pat = 0.07 * np.sign(np.sin(2 * math.pi * xx / 0.22)) + 0.03 * np.sin(2 * math.pi * xx / 0.055)
    elif style == "trellis":
        a = np.abs(((xx + yy) / 0.3) % 1.0 - 0.5)
        b = np.abs(((xx - yy) / 0.3) % 1.0 - 0.5)
        pat = -0.10 * ((a < 0.06) | (b < 0.06)).astype(np.float32) + 0.05 * (
            (np.hypot((xx % 0.3) - 0.15, (yy % 0.3) - 0.15) < 0.04).astype(np.float32)
        )
    else:  # "panels": large acoustic panels with a grid
        gx = (xx % 0.8) < 0.015
        gy = (yy % 0.8) < 0.015
        pat = -0.12 * (gx | gy).astype(np.float32) + 0.04 * np.sin(2 * math.pi * yy / 0.4) * np.sin(2 * math.pi * xx / 0.4)
    blotch = 0.06 * (smooth_noise(rng, h, w, 40) - 0.5) + 0.03 * (rng.random((h, w)).astype(np.float32) - 0.5)
    img = np.asarray(base, np.float32)[None, None, :] * (1.0 + pat + blotch)[..., None]
    return to_u8(img)


def ceiling(rng, w_m: float, h_m: float, tiles: bool) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / TEX_PPM
    pat = 0.04 * (smooth_noise(rng, h, w, 30) - 0.5) + 0.04 * (rng.random((h, w)).astype(np.float32) - 0.5)
    if tiles:
        pat = pat - 0.15 * (((xx % 0.6) < 0.012) | ((yy % 0.6) < 0.012)).astype(np.float32)
    img = np.full((h, w, 3), 0.9, np.float32) * (1.0 + pat)[..., None]
    return to_u8(img)


def rug(rng, w_m: float, h_m: float, c1, c2, c3) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / TEX_PPM
    cx, cy = w_m / 2, h_m / 2
    d = np.maximum(np.abs(xx - cx) / w_m, np.abs(yy - cy) / h_m)
    ring = (np.floor(d * 14) % 3).astype(int)
    cols = np.stack([np.asarray(c, np.float32) for c in (c1, c2, c3)])
    img = cols[ring]
    diamond = (np.abs(xx - cx) / w_m + np.abs(yy - cy) / h_m) < 0.18
    img[diamond] = cols[(ring[diamond] + 1) % 3]
    img *= (1.0 + 0.1 * (rng.random((h, w)).astype(np.float32) - 0.5))[..., None]
    return to_u8(img)


def text_image(title: str, lines: Sequence[str], *, width: int = 110, height: int = 150,
               paper=(250, 248, 240), ink=(20, 20, 40), upscale: int = 4) -> np.ndarray:
    """Render a small "document" with PIL's default font, then scale it up (nearest) for legibility."""
    img = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((6, 5), title, fill=(150, 20, 20), font=font)
    draw.line([(6, 18), (width - 6, 18)], fill=ink, width=1)
    y = 22
    for line in lines:
        draw.text((6, y), line, fill=ink, font=font)
        y += 12
    draw.rectangle([0, 0, width - 1, height - 1], outline=(170, 170, 170))
    img = img.resize((width * upscale, height * upscale), Image.NEAREST)
    return np.asarray(img)


def photo(name: str, max_side: int = 320) -> np.ndarray:
    """A bundled scikit-image sample photo as an uint8 RGB array (downscaled)."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3].astype(np.uint8)
    img = Image.fromarray(arr)
    s = max_side / max(img.size)
    if s < 1:
        img = img.resize((max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))), Image.LANCZOS)
    return np.asarray(img)


FAKE_TEXTS = {  # the private documents: title and lines of text
    "letter": ("PRIVATE LETTER", ["Dear Anna,", "the code for the", "safe is 4-7-1-9.", "Key under the", "blue flower pot.",
                                  "Don't tell Tom!", "", "Love, Mia", "12 Elm St, Apt 3"]),
    "diary": ("DIARY  12 MAY", ["Dr. Weber 10:30", "blood test result", "due on Friday.", "Rent 1450 EUR", "IBAN DE44 5001",
                                "0517 5407 3249 31"]),
    "whiteboard": ("Q3 PLANNING - CONFIDENTIAL", ["WIFI: corp-guest", "PASS: Tr0ub4dor&3", "Launch: 14 Oct", "Budget cut -12%",
                                                   "Layoffs: team B?", "Server root pw", "  -> ask Sam"]),
    "email": ("INBOX  (3 unread)", ["From: ceo@acme.co", "Re: acquisition", "Offer 42.5M USD", "NDA until Dec 1",
                                    "Do not forward!"]),
    "memo": ("MEMO - HR", ["Salary review:", "J. Smith 84,000", "K. Lee   91,500", "R. Diaz  77,250", "Confidential"]),
    "bank": ("BANK STATEMENT", ["Acct 0042-1337-88", "Name: M. Rivera", "Balance 12,408.55", "Card ****-9921",
                                "PIN letter sent", "Due: 03/28"]),
    "calendar": ("MARCH", ["Mo  3  dentist 9h", "We  5  pay rent", "Fr  7  Mia bday", "Sa 15  trip: Rome", "Tu 18  MRI 14:00",
                           "Alarm code 2580"]),
}


def fake_text(key: str, **kw) -> np.ndarray:
    title, lines = FAKE_TEXTS[key]
    return text_image(title, lines, **kw)
