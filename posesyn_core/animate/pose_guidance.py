"""Skeleton images drawn from the fitted body, in the style each pose-guided model was trained on.

The 18 OpenPose (COCO-18) keypoints are built in 3D from the canonical joints, then projected: the face points
(nose, eyes, ears) do not exist in SMPL22, so they are placed around the head joint along the head's own
forward/left/up axes, which keeps the face turned the way the body faces. Two styles:
- `openpose`: the renderer used to train the public OpenPose ControlNet (lllyasviel/ControlNet
  `annotator/openpose/util.py`): 18 points, stick width 4 px at 512.
- `wan-animate`: Wan2.2-Animate's pose videos (Wan2.2 `wan/modules/animate/preprocess`, `draw_aapose_new`): the
  same 18 points and colours plus a toe per foot (SMPL22's foot joints) drawn from the ankle, and its thinner
  "v2" stick width, max(min(H, W) / 200 - 1, 1). Hands are left out: SMPL22 ends at the wrists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from posesyn_core.geometry import project

OPENPOSE18 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye",
    "right_ear", "left_ear",
)  # fmt: skip
# OpenPose index -> SMPL22 index for the body points both have.
_FROM_SMPL22 = {1: 12, 2: 17, 3: 19, 4: 21, 5: 16, 6: 18, 7: 20, 8: 2, 9: 5, 10: 8, 11: 1, 12: 4, 13: 7}
# Limbs as (a, b) OpenPose indices, in the order of the reference renderer (its colours are per limb).
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))  # fmt: skip
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))  # fmt: skip
# Wan-Animate's two toe points (indices 18, 19: left, right) <- SMPL22 left_foot / right_foot, drawn from the
# ankles with the next two colours of its palette.
_TOES = {18: 10, 19: 11}
_TOE_LIMBS = ((13, 18), (10, 19))
_TOE_COLORS = ((200, 200, 0), (100, 100, 0))
# Face offsets in metres in the head frame (forward, left, up), for an average adult head.
_FACE = {0: (0.09, 0.0, 0.0), 14: (0.075, -0.035, 0.035), 15: (0.075, 0.035, 0.035),
         16: (0.0, -0.075, 0.02), 17: (0.0, 0.075, 0.02)}  # fmt: skip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def openpose_from_smpl22(joints3d: np.ndarray) -> np.ndarray:
    """(..., 22, 3) canonical joints (camera frame, y down) -> (..., 18, 3) OpenPose keypoints in 3D."""
    out = np.zeros((*joints3d.shape[:-2], 18, 3), joints3d.dtype)
    for op, smpl in _FROM_SMPL22.items():
        out[..., op, :] = joints3d[..., smpl, :]
    head, neck = joints3d[..., 15, :], joints3d[..., 12, :]
    up = _unit(head - neck)
    left = joints3d[..., 16, :] - joints3d[..., 17, :]  # right shoulder -> left shoulder
    left = _unit(left - (left * up).sum(-1, keepdims=True) * up)
    # Right-handed body frame: forward = left x up (a body facing the camera: (+x) x (-y) = -z, towards it).
    forward = np.cross(left, up)
    for op, (f, side, u) in _FACE.items():
        out[..., op, :] = head + f * forward + side * left + u * up
    return out


@dataclass(frozen=True)
class SkeletonStyle:
    limbs: tuple[tuple[int, int], ...]  # (a, b) point indices, in drawing order (colour i for limb i)
    colors: tuple[tuple[int, int, int], ...]  # RGB per limb and per point

    @property
    def num_points(self) -> int:
        return 1 + max(max(limb) for limb in self.limbs)


STYLES = {
    "openpose": SkeletonStyle(LIMBS, COLORS),
    "wan-animate": SkeletonStyle(LIMBS + _TOE_LIMBS, COLORS + _TOE_COLORS),
}


def _stick_width(style: str, height: int, width: int) -> int:
    if style == "wan-animate":
        return max(int(min(height, width) / 200) - 1, 1)
    return max(1, round(4 * max(height, width) / 512))


def skeleton_points(joints3d: np.ndarray, style: str = "openpose") -> np.ndarray:
    """(22, 3) canonical joints (camera frame) -> (P, 3) the style's keypoints in 3D."""
    points = openpose_from_smpl22(joints3d)
    if style == "wan-animate":
        points = np.concatenate([points, joints3d[list(_TOES.values())]])
    return points


def draw_pose_guidance(
    joints3d: np.ndarray, camera: np.ndarray, height: int, width: int, stick_width: int | None = None,
    style: Literal["openpose", "wan-animate"] = "openpose",
) -> np.ndarray:  # fmt: skip
    """The skeleton image (H, W, 3) uint8 of one body: black background, coloured limbs and points. Points
    behind the camera are left out."""
    import cv2

    spec = STYLES[style]
    points3d = skeleton_points(joints3d, style)
    uv = project(points3d, np.asarray(camera, np.float64))
    valid = points3d[:, 2] > 1e-3
    canvas = np.zeros((height, width, 3), np.uint8)
    stick = stick_width or _stick_width(style, height, width)
    for i, (a, b) in enumerate(spec.limbs):
        if not (valid[a] and valid[b]):
            continue
        (x0, y0), (x1, y1) = uv[a], uv[b]
        length = float(np.hypot(x1 - x0, y1 - y0))
        angle = float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))
        center = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
        poly = cv2.ellipse2Poly(center, (int(length / 2), stick), int(angle), 0, 360, 1)
        # The reference renderer draws limbs at 60% intensity, then points at full intensity on top.
        cv2.fillConvexPoly(canvas, poly, tuple(int(c * 0.6) for c in spec.colors[i]))
    for k in range(spec.num_points):
        if valid[k]:
            cv2.circle(canvas, (int(round(uv[k, 0])), int(round(uv[k, 1]))), stick, spec.colors[k], thickness=-1)
    return canvas
