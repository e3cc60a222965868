"""Frames and projections shared by every stage.

- World frame (motions, body models): metres, y up, floor at y = 0 (HumanML3D).
- Camera frame (dataset labels, TPE outputs): OpenCV, x right, y down, z forward, metres.
- Pinhole projection: u = fx * X / Z + cx, v = fy * Y / Z + cy (no distortion).
- Weak perspective (TPE): a crop-normalized projection of root-relative joints, x_n = s * X + tx,
  y_n = s * Y + ty, with (x_n, y_n) in [-1, 1] over the square crop; `weak_perspective_to_image` maps it to pixels.
"""

from __future__ import annotations

import numpy as np

# World (y up) -> camera (y down) flips y and z; a camera looking along world -z at the origin sees +x right.
WORLD_TO_CAMERA_AXES = np.diag([1.0, -1.0, -1.0])


def project(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Pinhole projection of (..., 3) camera-frame points with camera (..., 4) = fx, fy, cx, cy -> (..., 2)."""
    camera = np.asarray(camera)
    z = np.maximum(points[..., 2:3], 1e-6)
    f = camera[..., None, :2] if camera.ndim > 1 else camera[:2]
    c = camera[..., None, 2:4] if camera.ndim > 1 else camera[2:4]
    return points[..., :2] / z * f + c


def weak_perspective_to_image(joints_rel: np.ndarray, cam: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """(..., J, 3) root-relative joints + (..., 3) weak-perspective (s, tx, ty) + square crop box (..., 4) x y w h
    -> (..., J, 2) image pixels. The crop is the box made square around its centre (side = max(w, h))."""
    s, tx, ty = cam[..., 0:1, None], cam[..., 1:2, None], cam[..., 2:3, None]
    xn = s * joints_rel[..., 0:1] + tx
    yn = s * joints_rel[..., 1:2] + ty
    cx = bbox[..., 0:1, None] + bbox[..., 2:3, None] / 2
    cy = bbox[..., 1:2, None] + bbox[..., 3:4, None] / 2
    half = np.maximum(bbox[..., 2:3, None], bbox[..., 3:4, None]) / 2
    return np.concatenate([cx + xn * half, cy + yn * half], axis=-1)


def rotation_y(angle: float | np.ndarray) -> np.ndarray:
    """Rotation matrix (..., 3, 3) about the world up axis."""
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def procrustes_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Best similarity transform (rotation, scale, translation) of (..., J, 3) source onto target, applied to source.
    Degenerate (all-equal) poses are left unscaled instead of dividing by zero."""
    mu_s, mu_t = source.mean(-2, keepdims=True), target.mean(-2, keepdims=True)
    xs, xt = source - mu_s, target - mu_t
    var_s = (xs**2).sum((-2, -1))
    h = np.swapaxes(xs, -1, -2) @ xt
    u, sig, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    e = np.ones_like(sig)
    e[..., -1] = d
    r = np.swapaxes(vt, -1, -2) @ (e[..., :, None] * np.swapaxes(u, -1, -2))
    scale = np.where(var_s > 1e-12, (sig * e).sum(-1) / np.maximum(var_s, 1e-12), 1.0)
    return scale[..., None, None] * xs @ np.swapaxes(r, -1, -2) + mu_t
