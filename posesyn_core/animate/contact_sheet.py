"""A contact sheet of labelled samples: each image with its 3D skeleton projected through its camera.

Drawing joints3d through the camera (not the stored joints2d) shows at a glance whether the 3D labels, the
camera and the pixels agree, which is the point of synthetic data. Samples without 3D labels or a camera fall
back to their 2D keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posesyn_core.data.dataset import PoseDataset, encode_image
from posesyn_core.geometry import project
from posesyn_core.skeleton import KINEMATIC_CHAIN

# One colour per kinematic chain (right leg, left leg, spine, right arm, left arm), RGB.
_CHAIN_COLORS = ((230, 60, 60), (60, 110, 230), (240, 200, 40), (230, 120, 40), (60, 200, 230))


def draw_skeleton(image: np.ndarray, joints2d: np.ndarray) -> np.ndarray:
    """Lines along the canonical kinematic chains on a copy of `image` (points (22, 2) in its pixels)."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    pts = np.round(joints2d[:, :2]).astype(int)
    width = max(1, round(max(image.shape[:2]) / 128))
    for chain, color in zip(KINEMATIC_CHAIN, _CHAIN_COLORS, strict=True):
        for a, b in zip(chain[:-1], chain[1:], strict=True):
            cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), color, width, cv2.LINE_AA)
    for p in pts:
        cv2.circle(out, tuple(map(int, p)), width, (255, 255, 255), -1, cv2.LINE_AA)
    return out


def contact_sheet(dataset: PoseDataset, indices: Sequence[int], columns: int = 8, tile: int = 192) -> bytes:
    """PNG bytes of a grid of `indices` samples, each resized to tile x tile with its projected 3D skeleton
    (its id and caption under it)."""
    import cv2

    arrays = dataset.arrays
    rows = -(-len(indices) // columns)
    label_h = 28
    sheet = np.full((rows * (tile + label_h), columns * tile, 3), 255, np.uint8)
    for n, i in enumerate(indices):
        img = dataset.image(i)
        scale = tile / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        j3, cam = arrays["joints3d"][i], arrays["cameras"][i]
        if np.isfinite(j3).all() and np.isfinite(cam).all():
            # Resizing maps pixel centres u -> (u + 0.5) * scale - 0.5.
            pts = (project(j3.astype(np.float64), cam.astype(np.float64)) + 0.5) * scale - 0.5
        else:
            pts = (arrays["joints2d"][i][:, :2] + 0.5) * scale - 0.5 if dataset.joint_set == "smpl22" else None
        if pts is not None:
            img = draw_skeleton(img, pts)
        r, c = divmod(n, columns)
        y0, x0 = r * (tile + label_h), c * tile
        sheet[y0 : y0 + img.shape[0], x0 : x0 + img.shape[1]] = img
        sample = dataset.samples[i]
        for line, text in enumerate((sample.id[-28:], (sample.caption or "")[:30])):
            cv2.putText(sheet, text, (x0 + 3, y0 + tile + 11 + 12 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                        (40, 40, 40), 1, cv2.LINE_AA)  # fmt: skip
    return encode_image(sheet, "png")
