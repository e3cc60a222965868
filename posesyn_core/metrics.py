"""Pose-estimation metrics, numpy, batched over any leading axes.

3D inputs are in metres, outputs in millimetres (what papers report); 2D inputs and thresholds are in pixels.
Every metric returns one value per sample (shape = the leading axes), so callers can average per dataset, per
motion family or per anything else without recomputing.

- MPJPE: mean Euclidean distance over joints, after nothing (absolute) or after moving both roots to the origin
  (`root_relative=True`, the usual protocol for monocular 3D estimators, which cannot know absolute depth).
- PA-MPJPE: MPJPE after the best similarity transform (rotation, uniform scale, translation) of the prediction
  onto the ground truth (Procrustes; `posesyn_core.geometry.procrustes_align`). It measures pose shape only.
- PCK: fraction of visible joints whose 2D error is below a per-sample threshold; PCKh uses alpha times the head
  segment length as threshold (MPII protocol, alpha = 0.5).
"""

from __future__ import annotations

import numpy as np

from posesyn_core.geometry import procrustes_align
from posesyn_core.skeleton import ROOT, check_joint_set

M_TO_MM = 1000.0


def _masked_mean(err: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Mean of (..., J) errors over joints where mask (..., J) is true; NaN for a sample with no joint."""
    if mask is None:
        return err.mean(-1)
    mask = np.broadcast_to(np.asarray(mask, bool), err.shape)
    count = mask.sum(-1)
    total = np.where(mask, err, 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def root_relative(joints: np.ndarray, root: int = ROOT) -> np.ndarray:
    """(..., J, 3) joints minus their root joint."""
    return joints - joints[..., root : root + 1, :]


def joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-joint Euclidean distance (..., J) of (..., J, D) arrays, in the inputs' unit."""
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)


def mpjpe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, relative: bool = False,
          root: int = ROOT) -> np.ndarray:  # fmt: skip
    """Mean per-joint position error in mm, per sample. pred, gt (..., J, 3) metres; mask (..., J) optional.
    With `relative` both poses are first translated so that joint `root` is at the origin."""
    if relative:
        pred, gt = root_relative(pred, root), root_relative(gt, root)
    return _masked_mean(joint_errors(pred, gt), mask) * M_TO_MM


def mpjpe_root_relative(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                        root: int = ROOT) -> np.ndarray:  # fmt: skip
    """Root-relative MPJPE in mm (the headline number of monocular 3D pose papers)."""
    return mpjpe(pred, gt, mask, relative=True, root=root)


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Procrustes-aligned MPJPE in mm, per sample: pred (..., J, 3) is rotated, scaled and translated onto gt
    (..., J, 3) before measuring. Root choice does not matter (the translation is free). Degenerate poses (all
    joints equal) are handled by procrustes_align without dividing by zero."""
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    return joint_errors(procrustes_align(pred, gt), gt).mean(-1) * M_TO_MM


def pck(pred2d: np.ndarray, gt2d: np.ndarray, visible: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """Fraction (0..1) of visible joints with 2D error below `threshold` (pixels; scalar or per sample (...,)).
    pred2d, gt2d (..., J, 2); visible (..., J) bool/0-1. NaN for a sample with no visible joint."""
    err = joint_errors(pred2d[..., :2], gt2d[..., :2])
    thr = np.asarray(threshold, np.float64)[..., None]
    return _masked_mean((err <= thr).astype(np.float64), np.asarray(visible) > 0)


def head_size(joints2d: np.ndarray, joint_set: str) -> np.ndarray:
    """Head segment length (...,) in pixels for PCKh. MPII: head top to upper neck (the protocol's definition).
    SMPL22 has no head-top joint: twice the neck-to-head-centre distance approximates the same segment."""
    joint_set = check_joint_set(joint_set)
    if joint_set == "mpii16":
        return joint_errors(joints2d[..., 9, :2], joints2d[..., 8, :2])
    if joint_set == "smpl22":
        return 2.0 * joint_errors(joints2d[..., 15, :2], joints2d[..., 12, :2])
    raise ValueError(f"PCKh needs a head segment; joint set {joint_set!r} has none (use pck with a bbox threshold)")


def pckh(pred2d: np.ndarray, gt2d: np.ndarray, visible: np.ndarray, head: np.ndarray, alpha: float = 0.5
         ) -> np.ndarray:  # fmt: skip
    """PCKh@alpha: PCK with threshold alpha * head segment length (per sample, pixels; see `head_size`)."""
    return pck(pred2d, gt2d, visible, alpha * np.asarray(head, np.float64))


def pck_bbox(pred2d: np.ndarray, gt2d: np.ndarray, visible: np.ndarray, bboxes: np.ndarray, alpha: float = 0.1
             ) -> np.ndarray:  # fmt: skip
    """PCK@alpha with threshold alpha * max(bbox w, h) per sample; bboxes (..., 4) x y w h."""
    return pck(pred2d, gt2d, visible, alpha * np.maximum(bboxes[..., 2], bboxes[..., 3]))


def improvement_interval(candidate: np.ndarray, baseline: np.ndarray, level: float = 0.95, draws: int = 4000,
                         seed: int = 0, groups: np.ndarray | None = None) -> tuple[float, float]:  # fmt: skip
    """Paired bootstrap interval of 1 - mean(candidate) / mean(baseline) over samples (per-sample errors of two
    variants on the same samples). Why: a few hundred test or hard poses of very unequal difficulty (15 to 220 mm)
    make a percent difference of means noisy; the interval says whether a gain is more than the draw of samples.
    With `groups` (e.g. the seed each sample's run came from) samples are redrawn within their group, so every
    draw keeps each group's size. It does not cover the training randomness inside a run: that is what running
    several seeds measures."""
    candidate, baseline = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if candidate.shape != baseline.shape or candidate.ndim != 1 or not len(candidate):
        raise ValueError(f"need two equal-length per-sample lists, got {candidate.shape} and {baseline.shape}")
    groups = np.zeros(len(candidate), int) if groups is None else np.asarray(groups)
    if groups.shape != candidate.shape:
        raise ValueError(f"groups: need one per sample ({candidate.shape}), got {groups.shape}")
    rng = np.random.default_rng(seed)
    picks = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        picks.append(members[rng.integers(0, len(members), (draws, len(members)))])
    picks = np.concatenate(picks, axis=1)
    gains = 1.0 - candidate[picks].mean(1) / baseline[picks].mean(1)
    lo, hi = np.quantile(gains, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
