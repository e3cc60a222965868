"""The canonical joint set (the 22 SMPL body joints in HumanML3D order) and its mappings to 2D dataset sets.

Everything 3D in PoseSyn (TPE outputs, motions, body models, labels) uses `SMPL22`. Real 2D datasets keep their
own joint sets (`coco17`, `mpii16`); comparisons use only the joints both sets share (`shared_joints`), and the
root is the pelvis, or the mid-hip where a set has no pelvis.
"""

from __future__ import annotations

import numpy as np

SMPL22 = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip
NUM_JOINTS = len(SMPL22)
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
# HumanML3D's kinematic chains (right leg, left leg, spine, right arm, left arm).
KINEMATIC_CHAIN = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20))
ROOT = 0
LEFT_HIP, RIGHT_HIP = 1, 2
NECK = 12
FOOT_JOINTS = (7, 10, 8, 11)  # left ankle, left foot, right ankle, right foot
# Left/right pairs, for horizontal-flip augmentation.
FLIP_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21))
ARM_JOINTS = (16, 17, 18, 19, 20, 21)
LEG_JOINTS = (4, 5, 7, 8, 10, 11)

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
MPII16 = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist",
)  # fmt: skip

# Joints of a 2D set that correspond to a canonical joint: {set joint index: SMPL22 index}. Face joints of
# COCO and MPII's upper-neck/head-top have no SMPL body counterpart and are left out.
_TO_SMPL22 = {
    "smpl22": {i: i for i in range(NUM_JOINTS)},
    "coco17": {5: 16, 6: 17, 7: 18, 8: 19, 9: 20, 10: 21, 11: 1, 12: 2, 13: 4, 14: 5, 15: 7, 16: 8},
    "mpii16": {0: 8, 1: 5, 2: 2, 3: 1, 4: 4, 5: 7, 6: 0, 7: 12, 10: 21, 11: 19, 12: 17, 13: 16, 14: 18, 15: 20},
}
JOINT_SETS = {"smpl22": SMPL22, "coco17": COCO17, "mpii16": MPII16}


def check_joint_set(joint_set: str) -> str:
    if joint_set not in JOINT_SETS:
        raise ValueError(f"unknown joint set {joint_set!r}; known: {sorted(JOINT_SETS)}")
    return joint_set


def shared_joints(joint_set: str) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (canonical, in-set) of the joints a set shares with SMPL22, in canonical order."""
    pairs = sorted((c, s) for s, c in _TO_SMPL22[check_joint_set(joint_set)].items())
    return np.array([c for c, _ in pairs]), np.array([s for _, s in pairs])


def root_2d(joints: np.ndarray, joint_set: str) -> np.ndarray:
    """Root of (..., J, >=2) joints in their own set: the pelvis, or the mid-hip where there is none."""
    joint_set = check_joint_set(joint_set)
    if joint_set == "coco17":
        return 0.5 * (joints[..., 11, :2] + joints[..., 12, :2])
    if joint_set == "mpii16":
        return joints[..., 6, :2]
    return joints[..., ROOT, :2]


def canonical_root_2d(joints: np.ndarray, joint_set: str) -> np.ndarray:
    """The same root computed from canonical (SMPL22) joints, so both sides of a comparison agree."""
    if check_joint_set(joint_set) == "coco17":
        return 0.5 * (joints[..., LEFT_HIP, :2] + joints[..., RIGHT_HIP, :2])
    return joints[..., ROOT, :2]


def flip_permutation() -> np.ndarray:
    """Index permutation that swaps left and right joints (apply after mirroring x)."""
    perm = np.arange(NUM_JOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm
