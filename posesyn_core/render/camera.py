"""Cameras in OpenCV convention (geometry.py): extrinsics map world -> camera (x right, y down, z forward),
intrinsics (fx, fy, cx, cy) with pixel centres at integer coordinates.

A person-centred crop is a change of intrinsics only (scale and shift), so labels stay exact: we render the crop
directly with `crop_intrinsics` instead of rendering a big frame and cutting it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posesyn_core.geometry import project


@dataclass
class Camera:
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy in pixels
    rotation: np.ndarray  # (3, 3) world -> camera
    translation: np.ndarray  # (3,) world -> camera

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> camera frame."""
        return points @ self.rotation.T + self.translation

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 2) pixels."""
        return project(self.to_camera(points_world), self.intrinsics)

    def as_dict(self) -> dict[str, float]:
        fx, fy, cx, cy = (float(v) for v in self.intrinsics)
        return {"fx": fx, "fy": fy, "cx": cx, "cy": cy}


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> tuple:
    """OpenCV extrinsics (R, t) of a camera at `eye` looking at `target` with world `up` (default +y) pointing up
    in the image."""
    up = np.array([0.0, 1.0, 0.0]) if up is None else up
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)  # image right = forward x up (then y = z x x points down in the image)
    if np.linalg.norm(x) < 1e-6:  # looking straight up/down: any horizontal right vector will do
        x = np.array([1.0, 0.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])  # rows: camera axes in world coordinates
    return rot, -rot @ eye


def crop_intrinsics(intrinsics: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Intrinsics of the square crop `box` (x0, y0, side) resampled to size x size pixels."""
    fx, fy, cx, cy = intrinsics
    x0, y0, side = box
    s = size / side
    # Pixel centres: crop pixel i covers source [x0 + i / s, x0 + (i + 1) / s); its centre maps back exactly.
    return np.array([fx * s, fy * s, (cx - x0 + 0.5) * s - 0.5, (cy - y0 + 0.5) * s - 0.5])


def square_box(points2d: np.ndarray, pad: float = 1.25) -> np.ndarray:
    """(x0, y0, side) of the square around `points2d` (N, 2), enlarged by `pad` around its centre."""
    lo, hi = points2d.min(0), points2d.max(0)
    centre = (lo + hi) / 2
    side = float((hi - lo).max() * pad)
    return np.array([centre[0] - side / 2, centre[1] - side / 2, side])
