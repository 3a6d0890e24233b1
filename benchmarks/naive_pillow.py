"""The naive Pillow pipeline most scripts use: chained Image.alpha_composite over full
frames, then Image.save with default settings (zlib level 6). Traits are decoded once
(kinder to it than scripts that reload per item). One process, one item at a time."""
from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image


def naive_items_per_s(layerset, combos: np.ndarray) -> dict:
    frames = []
    for layer in layerset.layers:
        row = []
        for t in layer.traits:
            full = np.zeros((layerset.height, layerset.width, 4), np.uint8)
            if t.box is not None:
                y0, x0, y1, x1 = t.box
                full[y0:y1, x0:x1] = t.pixels
            row.append(Image.fromarray(full, "RGBA"))
        frames.append(row)
    t0 = time.perf_counter()
    sizes = []
    for combo in combos:
        img = frames[0][combo[0]]
        for li in range(1, len(combo)):
            img = Image.alpha_composite(img, frames[li][combo[li]])
        buf = io.BytesIO()
        img.save(buf, "PNG")
        sizes.append(buf.tell())
    dt = time.perf_counter() - t0
    return {"items": len(combos), "seconds": dt, "items_per_s": len(combos) / dt, "avg_png_bytes": int(np.mean(sizes))}
