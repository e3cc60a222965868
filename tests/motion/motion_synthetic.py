"""Smooth synthetic joint motions for the motion tests: an SMPL-like rest skeleton posed by forward kinematics
along the parent chain with slowly varying joint rotations, a walking root that turns more than 360 degrees."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from posesyn_core.skeleton import NUM_JOINTS, PARENTS

# Rest offsets (metres) of each joint from its parent, body facing +z, left = +x (SMPL-like proportions).
REST_OFFSETS = np.array(
    [[0, 0.93, 0], [0.07, -0.09, 0], [-0.07, -0.09, 0], [0, 0.11, -0.02], [0.03, -0.38, 0], [-0.03, -0.38, 0],
     [0, 0.13, 0.01], [-0.01, -0.40, -0.04], [0.01, -0.40, -0.04], [0, 0.06, 0.02], [0.02, -0.05, 0.12],
     [-0.02, -0.05, 0.12], [0, 0.21, -0.03], [0.08, 0.12, -0.01], [-0.08, 0.12, -0.01], [0, 0.09, 0.05],
     [0.11, 0.04, -0.02], [-0.11, 0.04, -0.02], [0.26, 0, -0.01], [-0.26, 0, -0.01], [0.25, 0, 0],
     [-0.25, 0, 0]], dtype=np.float64,
)  # fmt: skip


def synthetic_motion(frames: int = 80, seed: int = 0, turn: float = 2.5 * np.pi, speed: float = 1.2) -> np.ndarray:
    """(frames, 22, 3) world-frame joints at 20 fps: smooth limb swings, a root that walks and turns by `turn`."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 20.0
    amp = rng.uniform(0.1, 0.6, (NUM_JOINTS, 3))
    freq = rng.uniform(0.3, 1.5, (NUM_JOINTS, 3))
    phase = rng.uniform(0, 2 * np.pi, (NUM_JOINTS, 3))
    rotvec = amp[None] * np.sin(2 * np.pi * freq[None] * t[:, None, None] + phase[None])  # (T, 22, 3)
    start_yaw = rng.uniform(-np.pi, np.pi)
    yaw = start_yaw + turn * t / max(t[-1], 1e-9)
    rotvec[:, 0] = 0.0
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(frames, NUM_JOINTS, 3, 3)
    local[:, 0] = Rotation.from_euler("y", yaw[:, None]).as_matrix()
    glob = np.zeros_like(local)
    pos = np.zeros((frames, NUM_JOINTS, 3))
    heading = np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], -1)
    root_xz = np.cumsum(heading * speed / 20.0, axis=0) + rng.uniform(-2, 2, 3) * np.array([1, 0, 1])
    for j in range(NUM_JOINTS):
        p = PARENTS[j]
        if p < 0:
            glob[:, j] = local[:, j]
            pos[:, j] = root_xz + REST_OFFSETS[0] + np.array([0, 0.03, 0]) * np.sin(2 * np.pi * t)[:, None]
        else:
            glob[:, j] = glob[:, p] @ local[:, j]
            pos[:, j] = pos[:, p] + np.einsum("tij,j->ti", glob[:, p], REST_OFFSETS[j])
    return pos


def standing_pose(seed: int = 0) -> np.ndarray:
    """(22, 3) one frame of a synthetic motion (a hard-ish pose)."""
    return synthetic_motion(frames=30, seed=seed)[17]
