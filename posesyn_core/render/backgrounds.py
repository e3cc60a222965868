"""Procedural backgrounds and occluders, drawn with numpy/OpenCV from a seeded generator.

"lab": plain studio backdrops (a smooth light gradient with a soft floor line), like motion-capture footage.
"wild": outdoor/indoor-like clutter: sky/ground or wall/floor splits, noise textures at several scales, random
rectangles, stripes and blobs, colour casts; `add_occluders` pastes random objects over the person afterwards.
"""

from __future__ import annotations

import cv2
import numpy as np


def _noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """(h, w) smooth noise in [0, 1]: random values on a coarse grid, resized with cubic interpolation."""
    grid = rng.random((max(2, h // scale), max(2, w // scale))).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def studio_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 plain backdrop: a grey/beige vertical gradient and a slightly darker floor."""
    base = rng.uniform(150, 225) * np.array([1.0, rng.uniform(0.96, 1.02), rng.uniform(0.9, 1.03)])
    ramp = np.linspace(1.05, 0.9, h)[:, None, None]
    img = np.broadcast_to(base * ramp, (h, w, 3)).copy()
    horizon = int(h * rng.uniform(0.7, 0.85))
    img[horizon:] *= rng.uniform(0.78, 0.9)
    return np.clip(img, 0, 255).astype(np.uint8)


def wild_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 cluttered scene."""
    # 1. Two regions (sky/ground or wall/floor) split at a random horizon, each with its own colour and texture.
    horizon = int(h * rng.uniform(0.3, 0.8))
    top, bottom = rng.uniform(30, 230, 3), rng.uniform(20, 200, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:horizon], img[horizon:] = top, bottom
    for _ in range(2):
        tex = _noise(rng, h, w, int(rng.integers(2, 24)))[..., None] - 0.5
        img += tex * rng.uniform(20, 90) * rng.uniform(0.5, 1.0, 3)
    # 2. Clutter: rectangles (furniture, buildings), stripes, ellipses (bushes, balls).
    for _ in range(int(rng.integers(3, 10))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(4, w // 2)), y + int(rng.integers(4, h // 2))), color, -1)
        elif kind == 1:
            cv2.ellipse(img, (x, y), (int(rng.integers(3, w // 4)), int(rng.integers(3, h // 4))),
                        float(rng.uniform(0, 180)), 0, 360, color, -1)  # fmt: skip
        else:
            angle = rng.uniform(0, np.pi)
            d = np.array([np.cos(angle), np.sin(angle)]) * (w + h)
            cv2.line(img, (int(x - d[0]), int(y - d[1])), (int(x + d[0]), int(y + d[1])), color,
                     int(rng.integers(1, max(2, w // 16))))  # fmt: skip
    # 3. A global colour cast and brightness.
    img = img * rng.uniform(0.6, 1.25, 3) + rng.uniform(-20, 20)
    return np.clip(img, 0, 255).astype(np.uint8)


def add_occluders(rng: np.random.Generator, img: np.ndarray, count: int) -> np.ndarray:
    """Draw `count` opaque objects (boxes, poles, discs) over `img` in place; returns their mask (h, w) bool."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(count):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        layer = np.zeros((h, w), np.uint8)
        if kind == 0:  # a box entering from an edge, covering up to ~40% of the crop
            bw, bh = int(rng.uniform(0.2, 0.5) * w), int(rng.uniform(0.15, 0.4) * h)
            x = int(rng.choice([rng.integers(-bw // 2, w // 4), rng.integers(3 * w // 4 - bw // 2, w)]))
            y = int(rng.integers(h // 3, h - bh // 2))
            cv2.rectangle(layer, (x, y), (x + bw, y + bh), 1, -1)
        elif kind == 1:  # a vertical pole
            x, t = int(rng.integers(0, w)), int(rng.integers(max(2, w // 20), max(3, w // 7)))
            cv2.rectangle(layer, (x, 0), (x + t, h), 1, -1)
        else:  # a disc (ball, sign)
            r = int(rng.uniform(0.08, 0.2) * w)
            cv2.circle(layer, (int(rng.integers(0, w)), int(rng.integers(0, h))), r, 1, -1)
        on = layer.astype(bool)
        shade = 0.75 + 0.5 * _noise(rng, h, w, 8)[on][:, None]
        img[on] = np.clip(np.asarray(color, np.float32) * shade, 0, 255).astype(np.uint8)
        mask |= layer
    return mask.astype(bool)
