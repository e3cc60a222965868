"""Place a fitted motion in a reference image's camera, standing where and as the reference person stands.

The paper aligns the animated body's global orientation to the reference person. Here the whole clip gets one
rigid world -> camera transform (R, t), so the motion itself is untouched:

- Orientation: the world's up axis goes to the reference's up direction (pelvis -> neck of its 3D pseudo-label;
  references are plain standing people, so that is the gravity direction in their camera), and the clip's facing
  at its anchor frame (the horizontal part of its hip/shoulder left-right axis) goes to the reference's facing.
- Position: the reference's root in the camera is solved from its 2D joints and its root-relative 3D pseudo-label
  (least squares, linear in the translation); the clip's floor point under its anchor pelvis goes to the
  reference's floor point (its root moved down along up to its lowest foot joint). Feet therefore meet the
  reference's floor, and a jump leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posesyn_core.skeleton import FOOT_JOINTS, LEFT_HIP, RIGHT_HIP, ROOT, shared_joints

_NECK, _LEFT_SHOULDER, _RIGHT_SHOULDER = 12, 16, 17


@dataclass
class Reference:
    """What placement needs from a reference (non-challenging) sample."""

    id: str
    joints3d: np.ndarray  # (22, 3) root-relative pseudo-label, camera frame (y down), metres
    joints2d: np.ndarray  # (J, 3) x, y, visibility in its own joint set
    joint_set: str
    camera: np.ndarray  # (4,) fx fy cx cy
    width: int
    height: int


def default_camera(width: int, height: int) -> np.ndarray:
    """Intrinsics for images without a camera: a ~53 degree field of view over the longer side."""
    f = 1.0 * max(width, height)
    return np.array([f, f, (width - 1) / 2, (height - 1) / 2])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def body_frame(up: np.ndarray, left: np.ndarray) -> np.ndarray:
    """(3, 3) columns = (left, up, forward) of a body, left made orthogonal to up."""
    up = _unit(up)
    left = _unit(left - np.dot(left, up) * up)
    return np.stack([left, up, np.cross(left, up)], 1)


def _left_axis(joints: np.ndarray) -> np.ndarray:
    return joints[LEFT_HIP] - joints[RIGHT_HIP] + joints[_LEFT_SHOULDER] - joints[_RIGHT_SHOULDER]


def solve_root(ref: Reference) -> np.ndarray:
    """Camera-frame root position (3,) that projects the root-relative pseudo-label onto the 2D joints.

    For each visible joint with offset P (from the root) and pixel (u, v): fx (Px + tx) = (u - cx)(Pz + tz) and
    the same for y; stacked, these are linear in t. The reference's own root (mid-hip for COCO) is matched to
    the same root computed from the canonical joints, so both sides agree."""
    fx, fy, cx, cy = ref.camera
    canon, own = shared_joints(ref.joint_set)
    origin = _set_root_3d(ref.joints3d, ref.joint_set)  # the set's root, which t will locate
    p = ref.joints3d[canon] - origin
    uv, vis = ref.joints2d[own, :2], ref.joints2d[own, 2] > 0
    rows, rhs = [], []
    for (px, py, pz), (u, v) in zip(p[vis], uv[vis], strict=True):
        rows += [[fx, 0.0, -(u - cx)], [0.0, fy, -(v - cy)]]
        rhs += [(u - cx) * pz - fx * px, (v - cy) * pz - fy * py]
    if len(rows) < 6:
        raise ValueError(f"reference {ref.id}: fewer than 3 visible joints to place the body")
    t, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    if t[2] <= 0.1:
        raise ValueError(f"reference {ref.id}: the solved body depth {t[2]:.2f} m is not in front of the camera")
    return t + ref.joints3d[ROOT] - origin  # back to the canonical root (the pelvis)


def _set_root_3d(joints3d: np.ndarray, joint_set: str) -> np.ndarray:
    """3D position of the set's root computed from canonical joints (pelvis, or mid-hip for COCO)."""
    if joint_set == "coco17":
        return 0.5 * (joints3d[LEFT_HIP] + joints3d[RIGHT_HIP])
    return joints3d[ROOT]


def place(joints_world: np.ndarray, anchor: int, ref: Reference) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (R (3, 3), t (3,)) for a clip of world joints (T, 22, 3) so that its frame `anchor` stands
    like the reference person. Camera points: X_cam = R @ X_world + t."""
    rel = ref.joints3d - ref.joints3d[ROOT]
    frame_ref = body_frame(rel[_NECK], _left_axis(rel))  # pelvis -> neck is "up" for a standing person
    world_up = np.array([0.0, 1.0, 0.0])
    frame_clip = body_frame(world_up, _left_axis(joints_world[anchor]))
    rot = frame_ref @ frame_clip.T  # maps the clip's (left, up, forward) onto the reference's
    # Floor points: under the anchor pelvis at the clip's lowest foot height, and under the reference's root.
    floor_y = joints_world[:, list(FOOT_JOINTS), 1].min()
    clip_floor = np.array([joints_world[anchor, ROOT, 0], floor_y, joints_world[anchor, ROOT, 2]])
    root_cam = solve_root(ref)
    up = frame_ref[:, 1]
    ref_drop = max(float(np.dot(rel[ROOT] - rel[list(FOOT_JOINTS)], up).max()), 0.0)  # root height over feet
    ref_floor = root_cam - ref_drop * up
    return rot, ref_floor - rot @ clip_floor
