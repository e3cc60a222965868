"""Contact sheets of world datasets: sample images with their 2D keypoints drawn, for a look by eye."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.errors import DataError
from posesyn_core.skeleton import PARENTS
from posesyn_core.storage import Store, join

_LEFT, _RIGHT, _CENTRE = (40, 220, 40), (230, 60, 40), (240, 200, 40)


def draw_keypoints(image: np.ndarray, joints2d: np.ndarray, scale: int = 2) -> np.ndarray:
    """The image enlarged `scale` times with the SMPL22 skeleton: left limbs green, right red, spine yellow;
    hidden (visibility 0) joints as hollow circles."""
    img = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    pts = (joints2d[:, :2] + 0.5) * scale - 0.5
    from posesyn_core.skeleton import SMPL22

    def color(i: int) -> tuple[int, int, int]:
        name = SMPL22[i]
        return _LEFT if name.startswith("left") else _RIGHT if name.startswith("right") else _CENTRE

    for i, p in enumerate(PARENTS):
        if p >= 0:
            a, b = tuple(np.round(pts[p]).astype(int)), tuple(np.round(pts[i]).astype(int))
            cv2.line(img, a, b, color(i), 1, cv2.LINE_AA)
    for i, (x, y) in enumerate(np.round(pts).astype(int)):
        cv2.circle(img, (int(x), int(y)), 2, color(i), -1 if joints2d[i, 2] > 0 else 1, cv2.LINE_AA)
    return img


def contact_sheet(store: Store, datasets: list[str], count: int, columns: int = 8, seed: int = 0) -> np.ndarray:
    """RGB grid of `count` random samples from each of `datasets` (prefixes under the root), one band each."""
    rng = np.random.default_rng(seed)
    rows = []
    for prefix in datasets:
        ds = PoseDataset(store, prefix)
        if len(ds) == 0:
            raise DataError(f"{store.url_for(prefix)}: empty dataset")
        picks = np.sort(rng.choice(len(ds), size=min(count, len(ds)), replace=False))
        tiles = []
        for i in picks:
            s = ds.samples[i]
            tile = draw_keypoints(ds.image(int(i)), np.asarray(s.joints2d))
            label = f"{s.meta.get('family', '')}"
            cv2.putText(tile, label, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(tile, label, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        h, w = tiles[0].shape[:2]
        while len(tiles) % columns:
            tiles.append(np.full((h, w, 3), 255, np.uint8))
        band = np.concatenate([np.concatenate(tiles[k : k + columns], 1) for k in range(0, len(tiles), columns)])
        title = np.full((18, band.shape[1], 3), 255, np.uint8)
        cv2.putText(title, prefix, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([title, band]))
    return np.concatenate(rows)


def write_preview(store: Store, out: Path, count: int = 16, outputs: tuple[str, ...] = ("lab3d", "wild2d")) -> Path:
    """Write the contact sheet of the world stage's `outputs` to `out` (PNG)."""
    sheet = contact_sheet(store, [join("world", o) for o in outputs], count)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.ascontiguousarray(sheet[..., ::-1])):
        raise DataError(f"{out}: could not write the PNG")
    return out
