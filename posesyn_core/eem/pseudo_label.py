"""A challenging sample's 3D pseudo-label made consistent with its GT 2D keypoints, for captions and MR_init.

The TPE's prediction on a hard image is wrong by definition (that is why EEM picked it), but the 2D labels that
revealed the error are right. Two corrections, both keeping what only the TPE knows (depth):

- `rotate`: turn the pose about the optical axis so its torso (root -> neck) points where the GT 2D torso
  points. A failing TPE tends to predict an upright person; the 2D says "upside down" or "lying".
- `lift`: `rotate`, then re-lift every bone whose two ends are seen in 2D (Taylor, "Reconstruction of
  articulated objects from point correspondences in a single uncalibrated image", CVIU 2000): the bone keeps
  the pseudo-label's length and the sign of its depth, and takes its image-plane direction and extent from the
  GT 2D (a bone longer in 2D than that length allows lies in the image plane at its 2D extent: the 2D is the
  measurement, the TPE's bone length a guess); bones not seen in 2D keep their pseudo-label offsets. On the
  mini-world's hard set this brings the pseudo-label's PA-MPJPE to the truth from ~244 to ~170 mm (an upright
  standing person scores ~241: the raw pseudo-label carries almost no pose).

`none` is the paper's raw pseudo-label. All functions take one camera-frame (22, 3) pose (metres, y down, as
the TPE predicts it) and the sample's 2D keypoints (J, 3) x, y, visibility in its joint set.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from posesyn_core.skeleton import NECK, NUM_JOINTS, PARENTS, ROOT, canonical_root_2d, root_2d, shared_joints

FitTo2d = Literal["none", "rotate", "lift"]

# In-set indices of the torso's ends (neck end, hip end) per joint set.
_NECK_2D = {"smpl22": (NECK,), "coco17": (5, 6), "mpii16": (7,)}
_HIPS_2D = {"smpl22": (ROOT,), "coco17": (11, 12), "mpii16": (6,)}
SCALE_PERCENTILE = 50.0  # of the 2D/3D bone-length ratios: the image scale (pixels per metre) at the person


def align_to_2d(joints_cam: np.ndarray, joints2d: np.ndarray, joint_set: str) -> np.ndarray:
    """The pose turned about the optical axis (around its root) so its torso points the way the GT 2D torso
    points. Unchanged when the GT torso is not seen."""
    j2d = np.asarray(joints2d, np.float64)
    ends = list(_NECK_2D[joint_set]) + list(_HIPS_2D[joint_set])
    if not (j2d[ends, 2] > 0).all():
        return joints_cam
    gt = j2d[list(_NECK_2D[joint_set]), :2].mean(0) - root_2d(j2d, joint_set)
    pred = joints_cam[NECK, :2] - canonical_root_2d(joints_cam, joint_set)
    if np.linalg.norm(gt) < 1e-6 or np.linalg.norm(pred) < 1e-6:
        return joints_cam
    a = np.arctan2(gt[1], gt[0]) - np.arctan2(pred[1], pred[0])
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return (joints_cam - joints_cam[ROOT]) @ rot.T + joints_cam[ROOT]


def lift_to_2d(joints_cam: np.ndarray, joints2d: np.ndarray, joint_set: str) -> np.ndarray:
    """The pose's bones seen in 2D re-lifted from the GT 2D (lengths and depth signs from the pose; module
    docstring). The image scale is the median ratio of 2D to 3D bone length: foreshortened bones pull it
    down, a longer-than-predicted limb up, so the median is the robust middle. Root position unchanged."""
    x = np.asarray(joints_cam, np.float64)
    j2d = np.asarray(joints2d, np.float64)
    canon, own = shared_joints(joint_set)
    uv = np.full((NUM_JOINTS, 2), np.nan)
    seen = j2d[own, 2] > 0
    uv[canon[seen]] = j2d[own[seen], :2]
    bones = [(j, PARENTS[j]) for j in range(1, NUM_JOINTS)]
    length = np.array([np.linalg.norm(x[j] - x[p]) for j, p in bones])
    in_2d = np.array([np.isfinite(uv[j]).all() and np.isfinite(uv[p]).all() for j, p in bones])
    if not in_2d.any():
        return x
    ratios = [np.linalg.norm(uv[j] - uv[p]) / max(length[j - 1], 1e-6) for j, p in bones if in_2d[j - 1]]
    scale = float(np.percentile(ratios, SCALE_PERCENTILE))
    if scale <= 1e-9:
        return x
    out = x.copy()
    for (j, p), seen_2d, bone in zip(bones, in_2d, length, strict=True):  # SMPL22: parents before children
        if seen_2d:
            dxy = (uv[j] - uv[p]) / scale
            dz = np.sqrt(max(bone**2 - float(dxy @ dxy), 0.0))
            out[j] = out[p] + np.array([dxy[0], dxy[1], dz if x[j, 2] >= x[p, 2] else -dz])
        else:
            out[j] = out[p] + (x[j] - x[p])
    return out


def fit_to_2d(joints_cam: np.ndarray, joints2d: np.ndarray | None, joint_set: str, mode: FitTo2d) -> np.ndarray:
    """`mode` applied to one pseudo-label (unchanged for `none` or without 2D keypoints)."""
    if mode == "none" or joints2d is None:
        return np.asarray(joints_cam, np.float64)
    turned = align_to_2d(np.asarray(joints_cam, np.float64), joints2d, joint_set)
    return lift_to_2d(turned, joints2d, joint_set) if mode == "lift" else turned
