"""The EEM error (PoseSyn eq. 1), batched in numpy:

    Err = sum_{n != root} w_n * v_n * || (P_n - P_root) - (G_n - G_root) ||  /  (sum_n w_n v_n)  /  scale

P = the TPE's 3D prediction projected to the image (its weak-perspective camera), G = GT 2D, v_n = GT visibility.
With `alignment: similarity` the root-relative P is first rotated and scaled in the image plane about the root to
fit G best (weighted least squares), so a body the TPE got upside down or tilted but articulated right costs
little and the score measures the articulation, the 2D counterpart of PA-MPJPE.
Only the joints the dataset's set shares with SMPL22 count (`skeleton.shared_joints`); the root is the pelvis, or
the mid-hip where the set has none (`root_2d` / `canonical_root_2d`), and must be visible in the GT (an occluded
pelvis falls back to the mid-hip of two visible hips). The two
normalizations (weight of the joints used, person's 2D size) are config switches; off, it is the paper's sum in
pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posesyn_core.eem.config import JointWeights
from posesyn_core.skeleton import (
    ARM_JOINTS,
    LEFT_HIP,
    LEG_JOINTS,
    NUM_JOINTS,
    RIGHT_HIP,
    ROOT,
    SMPL22,
    canonical_root_2d,
    root_2d,
    shared_joints,
)

# The in-set joints that define the root, and the in-set (left, right) hips: a sample is scored when its root is
# visible, or else both hips (then the mid-hip is the root on both sides).
_ROOT_JOINTS = {"coco17": (11, 12), "mpii16": (6,), "smpl22": (ROOT,)}
_HIPS = {"coco17": (11, 12), "mpii16": (3, 2), "smpl22": (LEFT_HIP, RIGHT_HIP)}


def weight_vector(weights: JointWeights) -> np.ndarray:
    """(22,) w_n for the canonical joints: group weights, then per-joint overrides."""
    w = np.full(NUM_JOINTS, weights.torso, np.float64)
    w[list(ARM_JOINTS)] = weights.arms
    w[list(LEG_JOINTS)] = weights.legs
    for name, value in weights.overrides.items():
        w[SMPL22.index(name)] = value
    return w


@dataclass
class Scores:
    error: np.ndarray  # (N,) the ranked score (NaN = not scorable)
    error_px: np.ndarray  # (N,) weighted mean pixel error (before the scale normalization)
    joints_used: np.ndarray  # (N,) visible shared joints that entered the sum


def person_scale(gt2d: np.ndarray, bboxes: np.ndarray, mode: str) -> np.ndarray:
    """(N,) the person's 2D size in pixels for `mode` bbox | joints | none."""
    if mode == "none":
        return np.ones(len(gt2d))
    if mode == "bbox":
        return np.maximum(bboxes[:, 2:4].max(1), 1.0)
    vis = gt2d[..., 2] > 0
    lo = np.where(vis[..., None], gt2d[..., :2], np.inf).min(1)
    hi = np.where(vis[..., None], gt2d[..., :2], -np.inf).max(1)
    extent = np.where(np.isfinite(hi - lo), hi - lo, 0.0).max(1)
    return np.maximum(extent, 1.0)


def eem_errors(
    pred2d: np.ndarray, gt2d: np.ndarray, joint_set: str, weights: np.ndarray, bboxes: np.ndarray,
    normalize_by_weight: bool = True, scale: str = "bbox", min_joints: int = 4, alignment: str = "root",
) -> Scores:  # fmt: skip
    """pred2d (N, 22, 2) canonical joints in pixels; gt2d (N, J, 3) in `joint_set` with visibility."""
    canon, in_set = shared_joints(joint_set)
    keep = canon != ROOT  # the root's own term is zero by construction
    canon, in_set = canon[keep], in_set[keep]
    pred_root = canonical_root_2d(pred2d, joint_set).copy()  # (N, 2); copies: the fallback writes into them
    gt_root = root_2d(gt2d, joint_set).copy()
    root_ok = (gt2d[:, list(_ROOT_JOINTS[joint_set]), 2] > 0).all(1)
    hips = _HIPS[joint_set]
    hips_ok = (gt2d[:, list(hips), 2] > 0).all(1)
    fallback = ~root_ok & hips_ok  # occluded pelvis, both hips seen: use the mid-hip on both sides
    gt_root[fallback] = gt2d[fallback][:, list(hips), :2].mean(1)
    pred_root[fallback] = pred2d[fallback][:, [LEFT_HIP, RIGHT_HIP]].mean(1)
    root_ok = root_ok | hips_ok
    p = pred2d[:, canon] - pred_root[:, None]  # (N, K, 2)
    g = gt2d[:, in_set, :2] - gt_root[:, None]  # (N, K, 2)
    vis = (gt2d[:, in_set, 2] > 0) & np.isfinite(g).all(-1)  # (N, K)
    w = weights[canon][None] * vis
    if alignment == "similarity":
        p = similarity_align_2d(p, np.nan_to_num(g), w)
    dist = np.linalg.norm(np.nan_to_num(p - g), axis=-1)  # (N, K)
    raw = (w * dist).sum(1)
    wsum = w.sum(1)
    used = vis.sum(1)
    ok = root_ok & (used >= min_joints) & (wsum > 0) & np.isfinite(pred2d).all((1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        px = np.where(ok, raw / np.maximum(wsum, 1e-12), np.nan)
        err = (raw / np.maximum(wsum, 1e-12) if normalize_by_weight else raw) / person_scale(gt2d, bboxes, scale)
    return Scores(np.where(ok, err, np.nan), px, used)


def similarity_align_2d(p: np.ndarray, g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N, K, 2) root-relative points p rotated and scaled about the origin to fit g with weights w (N, K).

    As complex numbers a similarity about the origin is one multiplication, p -> z p, and the weighted least-squares
    z is sum(w conj(p) g) / sum(w |p|^2): no reflection, no SVD."""
    pc, gc = p[..., 0] + 1j * p[..., 1], g[..., 0] + 1j * g[..., 1]
    den = (w * np.abs(pc) ** 2).sum(1, keepdims=True)
    z = np.where(den > 0, (w * np.conj(pc) * gc).sum(1, keepdims=True) / np.maximum(den, 1e-12), 1.0)
    q = z * pc
    return np.stack([q.real, q.imag], -1)


def full_body_in_image(gt2d: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(N,) every joint of the set visible and inside the image: a usable full-body animation reference."""
    x, y, v = gt2d[..., 0], gt2d[..., 1], gt2d[..., 2]
    inside = (x >= 0) & (y >= 0) & (x < width[:, None]) & (y < height[:, None])
    return ((v > 0) & inside).all(1)
