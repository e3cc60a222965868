"""HumanML3D's 263-dim motion features (Guo et al., CVPR 2022) from 22-joint sequences at 20 fps, and back.

A T-frame joint sequence gives T-1 feature frames (the last joint frame only provides velocities). Per frame t:

    [0]        root yaw velocity: half the yaw change t -> t+1 (radians; HumanML3D stores arcsin of the y
               component of the relative yaw quaternion, i.e. the half angle)
    [1:3]      root velocity on the floor (x, z), t -> t+1, in the facing frame of t+1
    [3]        root height (y)
    [4:67]     21 joint positions relative to the root's floor position, in the facing frame of t ("ric")
    [67:193]   21 local joint rotations as 6D (first two matrix columns), from HumanML3D's inverse kinematics
    [193:259]  22 joint velocities t -> t+1 in the facing frame of t
    [259:263]  foot contacts (left ankle, left foot, right ankle, right foot): squared displacement < 0.002 m^2

The computation is HumanML3D's `process_file`, with these documented differences:
- No skeleton retargeting (`uniform_skeleton`) and no floor shift: our joints are already in the world frame with
  the floor at y = 0, and retargeting would make the round trip lossy. Root heights are world heights (HumanML3D
  puts the lowest joint of a clip at y = 0, a few cm lower than SMPL ankles above a floor).
- Facing yaw comes from atan2 of HumanML3D's (smoothed) IK forward direction instead of a quaternion between
  forward and +z (NaN for a body facing exactly -z), and the yaw velocity is wrapped to (-pi/2, pi/2] (arcsin of
  the raw quaternion component flips sign when a step crosses +-180 degrees from the start). Both give
  HumanML3D's values wherever HumanML3D's are well defined.
- The features do not depend on where the clip starts on the floor or which way it faces there. `joints_to_features`
  returns that `origin` (root x, root z, facing yaw at frame 0) so `features_to_joints(f, origin)` lands back in
  the world frame; without it, joints come back in HumanML3D's canonical frame (root at x = z = 0, facing +z at
  frame 0), like HumanML3D's `recover_from_ric`, which is what `features_to_joints` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from posesyn_core.skeleton import KINEMATIC_CHAIN, NUM_JOINTS

FEATURE_DIM = 263
FPS = 20
# Feature groups (HumanML3D's layout for 22 joints).
ROOT_ROT_VEL = slice(0, 1)
ROOT_LIN_VEL = slice(1, 3)
ROOT_Y = slice(3, 4)
RIC = slice(4, 4 + (NUM_JOINTS - 1) * 3)  # 4:67
ROT6D = slice(RIC.stop, RIC.stop + (NUM_JOINTS - 1) * 6)  # 67:193
LOCAL_VEL = slice(ROT6D.stop, ROT6D.stop + NUM_JOINTS * 3)  # 193:259
FOOT_CONTACT = slice(LOCAL_VEL.stop, FEATURE_DIM)  # 259:263
GROUPS = (ROOT_ROT_VEL, ROOT_LIN_VEL, ROOT_Y, RIC, ROT6D, LOCAL_VEL, FOOT_CONTACT)

FOOT_THRESHOLD = 0.002  # HumanML3D's feet_thre (squared metres per frame)
FEET_LEFT, FEET_RIGHT = (7, 10), (8, 11)
FORWARD_SMOOTHING = 20.0  # Gaussian sigma (frames) on the IK facing direction, as HumanML3D's smooth_forward
# HumanML3D's rest bone directions (paramUtil.t2m_raw_offsets): the IK measures each bone against these.
RAW_OFFSETS = np.array(
    [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0],
     [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0],
     [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]], dtype=np.float64,
)  # fmt: skip


# --- quaternions (w, x, y, z) -------------------------------------------------------------------------------------
def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)  # fmt: skip


def _qinv(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _qbetween(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation taking direction u to direction v (HumanML3D's qbetween_np), defined for u = -v too."""
    axis = np.cross(u, v)
    w = np.sqrt((u**2).sum(-1) * (v**2).sum(-1)) + (u * v).sum(-1)
    q = np.concatenate([w[..., None], axis], -1)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    opposite = norm[..., 0] < 1e-9
    if opposite.any():  # half-turn about any axis perpendicular to u
        uo = u[opposite]
        helper = np.where(np.abs(uo[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
        perp = np.cross(uo, helper)
        q[opposite] = np.concatenate([np.zeros((len(uo), 1)), perp], -1)
        norm = np.linalg.norm(q, axis=-1, keepdims=True)
    return q / norm


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)  # fmt: skip


def _yaw_quat(yaw: np.ndarray) -> np.ndarray:
    z = np.zeros_like(yaw)
    return np.stack([np.cos(yaw / 2), z, np.sin(yaw / 2), z], -1)


def rotate_yaw(yaw: np.ndarray | float, v: np.ndarray) -> np.ndarray:
    """Rotate (..., 3) vectors about +y by `yaw` (broadcast): x' = x cos + z sin, z' = z cos - x sin."""
    c, s = np.cos(yaw), np.sin(yaw)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x * c + z * s, y, z * c - x * s], -1)


# --- joints -> features -------------------------------------------------------------------------------------------
def facing_yaw(joints: np.ndarray, smooth: bool = True) -> np.ndarray:
    """Per-frame yaw (..., T) of (..., T, 22, 3) joints that turns the body's forward direction to +z, as
    HumanML3D's IK root rotation.

    HumanML3D's IK takes across = (l_hip - r_hip) + (r_shoulder - l_shoulder) (its face_joint_indx unpacking makes
    the hip term point left and the shoulder term right; shoulders are wider, so across points right), forward =
    up x across, smoothed over time."""
    across = (joints[..., 1, :] - joints[..., 2, :]) + (joints[..., 17, :] - joints[..., 16, :])
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    if smooth:
        forward = gaussian_filter1d(forward, FORWARD_SMOOTHING, axis=-2, mode="nearest")
    return -np.arctan2(forward[..., 0], forward[..., 2])


def _initial_yaw(joints0: np.ndarray) -> np.ndarray:
    """HumanML3D's 'all initially face Z+' rotation of (..., 22, 3) first frames -> (...,) (unsmoothed, across =
    r_hip - l_hip + r_sh - l_sh)."""
    across = (joints0[..., 2, :] - joints0[..., 1, :]) + (joints0[..., 17, :] - joints0[..., 16, :])
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    return -np.arctan2(forward[..., 0], forward[..., 2])


def _local_rotations_6d(joints: np.ndarray, root_yaw: np.ndarray) -> np.ndarray:
    """HumanML3D's `inverse_kinematics_np` + `quaternion_to_cont6d_np`: (..., T, 22, 3) joints and (..., T) root
    yaw -> (..., T, 21, 6) rotations of joints 1..21."""
    root_quat = _yaw_quat(root_yaw)
    quats = np.zeros(joints.shape[:-1] + (4,))
    quats[..., 0, :] = root_quat
    for chain in KINEMATIC_CHAIN:
        r = root_quat
        for parent, child in zip(chain[:-1], chain[1:], strict=False):
            u = np.broadcast_to(RAW_OFFSETS[child], joints.shape[:-2] + (3,))
            v = joints[..., child, :] - joints[..., parent, :]
            v = v / np.linalg.norm(v, axis=-1, keepdims=True)
            local = _qmul(_qinv(r), _qbetween(u, v))
            quats[..., child, :] = local
            r = _qmul(r, local)
    mats = _quat_to_matrix(quats[..., 1:, :])
    return np.concatenate([mats[..., 0], mats[..., 1]], -1)


def joints_to_features(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., T, 22, 3) world-frame joints (metres, y up, floor y = 0, T >= 2) -> features (..., T-1, 263) float64
    and the origin (..., 3) = (root x, root z, facing yaw) at frame 0 that `features_to_joints` needs to return to
    the world. Leading axes are independent sequences (one call for many: MSM encodes thousands of held poses)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim < 3 or joints.shape[-2:] != (NUM_JOINTS, 3) or joints.shape[-3] < 2:
        raise ValueError(f"joints must be (..., T >= 2, {NUM_JOINTS}, 3), got {joints.shape}")
    t = joints.shape[-3]
    origin_xz = joints[..., :1, 0, :] * np.array([1.0, 0.0, 1.0])  # (..., 1, 3)
    # HumanML3D canonical frame: root at the origin, facing +z at frame 0. Only the IK rotations depend on it.
    initial_yaw = _initial_yaw(joints[..., 0, :, :])
    canon = rotate_yaw(initial_yaw[..., None, None], joints - origin_xz[..., None, :])
    yaw = facing_yaw(canon)  # (..., T) root rotation of each frame in the canonical frame
    root = canon[..., 0, :]  # (..., T, 3)

    dyaw = np.diff(yaw, axis=-1)
    rot_vel = (np.mod(dyaw + np.pi, 2 * np.pi) - np.pi) / 2  # half-angle, wrapped
    lin_vel = rotate_yaw(yaw[..., 1:], root[..., 1:, :] - root[..., :-1, :])[..., [0, 2]]
    root_y = root[..., :-1, 1:2]
    rel = canon - root[..., None, :] * np.array([1.0, 0.0, 1.0])
    frames = joints.shape[:-3] + (t - 1, -1)
    ric = rotate_yaw(yaw[..., None], rel)[..., :-1, 1:, :].reshape(frames)
    rot6d = _local_rotations_6d(canon, yaw)[..., :-1, :, :].reshape(frames)
    local_vel = rotate_yaw(yaw[..., :-1, None], canon[..., 1:, :, :] - canon[..., :-1, :, :]).reshape(frames)
    disp2 = ((canon[..., 1:, :, :] - canon[..., :-1, :, :]) ** 2).sum(-1)
    feet = (disp2[..., list(FEET_LEFT) + list(FEET_RIGHT)] < FOOT_THRESHOLD).astype(np.float64)
    features = np.concatenate([rot_vel[..., None], lin_vel, root_y, ric, rot6d, local_vel, feet], -1)
    # The recovered frame faces +z where this clip's IK yaw is zero; undo that yaw and the shift to reach the world.
    origin = np.stack([origin_xz[..., 0, 0], origin_xz[..., 0, 2], initial_yaw + yaw[..., 0]], -1)
    return features, origin


# --- features -> joints -------------------------------------------------------------------------------------------
def features_to_joints(features: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """(..., L, 263) features -> (..., L, 22, 3) joints: HumanML3D's `recover_from_ric` (root yaw and position
    integrated from the velocities, joints from the ric positions). With `origin` (..., 3) from
    `joints_to_features`, joints are in the world frame; without it, in the canonical frame."""
    f = np.asarray(features, dtype=np.float64)
    yaw = np.zeros(f.shape[:-1])
    yaw[..., 1:] = np.cumsum(2 * f[..., :-1, 0], axis=-1)  # (..., L) root yaw relative to frame 0
    step = np.zeros(f.shape[:-1] + (3,))
    step[..., 1:, 0] = f[..., :-1, 1]
    step[..., 1:, 2] = f[..., :-1, 2]
    root = np.cumsum(rotate_yaw(-yaw, step), axis=-2)
    root[..., 1] = f[..., 3]
    ric = f[..., RIC].reshape(f.shape[:-1] + (NUM_JOINTS - 1, 3))
    others = rotate_yaw(-yaw[..., None], ric) + (root * np.array([1.0, 0.0, 1.0]))[..., None, :]
    joints = np.concatenate([root[..., None, :], others], -2)
    if origin is not None:
        origin = np.asarray(origin, dtype=np.float64)
        shift = np.stack([origin[..., 0], np.zeros_like(origin[..., 0]), origin[..., 1]], -1)
        joints = rotate_yaw(-origin[..., 2, None, None], joints) + shift[..., None, None, :]
    return joints


def static_pose_features(poses: np.ndarray, frames: int) -> np.ndarray:
    """Poses (..., 22, 3) each held still for `frames` feature frames -> (..., frames, 263) (PoseSyn's MR_init input
    F(pose repeated T times))."""
    held = np.repeat(np.asarray(poses, dtype=np.float64)[..., None, :, :], 2, axis=-3)
    return np.repeat(joints_to_features(held)[0], frames, axis=-2)  # every frame of a held pose is the same


# --- normalization ------------------------------------------------------------------------------------------------
@dataclass
class Normalizer:
    """Dataset mean/std of the features, HumanML3D style (`cal_mean_variance`): one std per feature group (the mean
    of the per-dimension stds), foot contacts down-weighted by `feat_bias` 5, so groups are scaled as a whole."""

    mean: np.ndarray  # (263,) float32
    std: np.ndarray  # (263,) float32

    FEAT_BIAS = 5.0

    @classmethod
    def fit(cls, features: list[np.ndarray]) -> Normalizer:
        data = np.concatenate(features, 0)
        mean = data.mean(0)
        raw = data.std(0)
        std = np.empty_like(raw)
        for group in GROUPS:
            std[group] = raw[group].mean()
        std[FOOT_CONTACT] /= cls.FEAT_BIAS
        std = np.maximum(std, 1e-6)  # a group constant over the data set (e.g. no foot ever moves) must not blow up
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def normalize(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def denormalize(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict[str, np.ndarray]) -> Normalizer:
        mean, std = np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32)
        if mean.shape != (FEATURE_DIM,) or std.shape != (FEATURE_DIM,):
            raise ValueError(f"normalization stats must be ({FEATURE_DIM},), got {mean.shape} and {std.shape}")
        return cls(mean, std)
