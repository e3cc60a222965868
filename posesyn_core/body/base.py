"""The body-model interface every PoseSyn stage uses (world, retarget, animate), whatever the model.

Pose convention (shared by ANNY and SMPL, so pose vectors and joint limits mean the same for both):
- `body_pose` (B, 21, 3) or (B, 63): SMPL-style axis-angle rotations of the 21 non-root canonical joints
  (`skeleton.SMPL22[1:]`), each expressed in a frame aligned with the world axes at rest (x left, y up,
  z forward); the zero pose is a T-pose facing +z.
- `global_orient` (B, 3): axis-angle of the whole body about its pelvis; `transl` (B, 3): pelvis position.
- Outputs are world-frame metres, y up (HumanML3D / `geometry.py`).

Joint limits are boxes on those axis-angle components (a common IK approximation): knees bend one way, elbows
one way, hips and shoulders within human ranges. Right-side limits mirror the left ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from posesyn_core.skeleton import NUM_JOINTS, PARENTS, SMPL22

NUM_BODY_JOINTS = NUM_JOINTS - 1  # pose parameters cover every joint but the root (global_orient)

# Left-side (and central) limits in radians, per axis (x = lateral/pitch, y = vertical/yaw, z = forward/roll).
# Signs in the world-aligned frame: hip flexion (thigh forward) is -x, knee flexion +x, spine forward bend +x,
# left arm raise +z, left arm forward -y, left elbow flexion -y.
_LIMITS_LEFT = {
    "left_hip": ((-2.3, 0.7), (-0.9, 1.3), (-0.6, 1.6)),  # external rotation (+y) reaches further when flexed
    "left_knee": ((0.0, 2.6), (-0.3, 0.3), (-0.15, 0.15)),
    "left_ankle": ((-0.8, 0.9), (-0.4, 0.4), (-0.4, 0.4)),
    "left_foot": ((-0.6, 0.6), (-0.2, 0.2), (-0.2, 0.2)),
    "spine1": ((-0.5, 0.9), (-0.6, 0.6), (-0.5, 0.5)),
    "spine2": ((-0.4, 0.7), (-0.5, 0.5), (-0.4, 0.4)),
    "spine3": ((-0.4, 0.7), (-0.5, 0.5), (-0.4, 0.4)),
    "neck": ((-0.6, 0.8), (-0.9, 0.9), (-0.5, 0.5)),
    "head": ((-0.5, 0.6), (-0.7, 0.7), (-0.4, 0.4)),
    "left_collar": ((-0.3, 0.3), (-0.4, 0.4), (-0.3, 0.6)),
    "left_shoulder": ((-1.6, 1.6), (-1.7, 0.9), (-1.7, 1.7)),
    "left_elbow": ((-1.0, 1.0), (-2.6, 0.0), (-0.2, 0.2)),
    "left_wrist": ((-1.0, 1.0), (-0.8, 0.8), (-0.8, 0.8)),
}


def _joint_limits() -> np.ndarray:
    """(21, 3, 2) lower/upper bounds per body joint and axis."""
    limits = np.zeros((NUM_BODY_JOINTS, 3, 2), np.float32)
    for j, name in enumerate(SMPL22[1:]):
        if name.startswith("right_"):
            (xl, xh), (yl, yh), (zl, zh) = _LIMITS_LEFT["left_" + name[6:]]
            limits[j] = ((xl, xh), (-yh, -yl), (-zh, -zl))  # mirror: axis-angle (x, y, z) -> (x, -y, -z)
        else:
            limits[j] = _LIMITS_LEFT[name]
    return limits


JOINT_LIMITS = _joint_limits()


def clamp_to_limits(body_pose: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Clamp (..., 21, 3) axis-angle pose components into `JOINT_LIMITS`."""
    if isinstance(body_pose, np.ndarray):
        return np.clip(body_pose, JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1])
    lim = torch.as_tensor(JOINT_LIMITS, dtype=body_pose.dtype, device=body_pose.device)
    return torch.minimum(torch.maximum(body_pose, lim[..., 0]), lim[..., 1])


@dataclass
class RestSkeleton:
    """A subject's 22 canonical joints at rest (T-pose, pelvis at the origin): every joint is the centre of its
    own rotation (true for SMPL and for our ANNY mapping), which is all forward kinematics needs."""

    joints: torch.Tensor  # (B, 22, 3)


def skeleton_fk(
    skeleton: RestSkeleton,
    body_pose: torch.Tensor,
    global_orient: torch.Tensor | None = None,
    transl: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forward kinematics of the 22 canonical joints: (B, 21, 3) pose -> (B, 22, 3) world joints. Equal to
    `BodyModel.forward(..., vertices=False).joints` for the skeleton's shape at a fraction of the cost (motion
    clips, IK). `skeleton` tensors broadcast against the pose batch."""
    from posesyn_core.body.rotations import axis_angle_to_matrix

    rots = axis_angle_to_matrix(_as_pose(body_pose))  # (B, 21, 3, 3)
    b = rots.shape[0]
    root = torch.eye(3, dtype=rots.dtype, device=rots.device).expand(b, 3, 3)
    if global_orient is not None:
        root = axis_angle_to_matrix(torch.as_tensor(global_orient, dtype=rots.dtype, device=rots.device))
    rest = skeleton.joints.expand(b, -1, -1)
    frames = [root]  # accumulated rotation A_i of each joint's segment
    pos = [rest[:, 0] * 0]  # pelvis at the origin before transl
    for i in range(1, NUM_JOINTS):
        p = PARENTS[i]
        pos.append(pos[p] + (frames[p] @ (rest[:, i] - rest[:, p])[..., None])[..., 0])
        frames.append(frames[p] @ rots[:, i - 1])
    joints = torch.stack(pos, 1)
    if transl is not None:
        joints = joints + torch.as_tensor(transl, dtype=joints.dtype, device=joints.device)[:, None]
    return joints


@dataclass
class BodyOutput:
    joints: torch.Tensor  # (B, 22, 3) world frame, SMPL22 order
    vertices: torch.Tensor | None  # (B, V, 3) world frame, or None when not asked for


def quads_to_triangles(faces: np.ndarray) -> np.ndarray:
    """(F, 3|4) faces -> (F', 3) triangles; quads split along their first diagonal, degenerate ones dropped."""
    faces = np.asarray(faces, np.int64)
    if faces.shape[1] == 4:
        faces = np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return faces[keep]


def cluster_decimate(
    rest_vertices: np.ndarray, triangles: np.ndarray, part: np.ndarray, cell: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation that keeps body parts apart (no compiled mesh simplifier is available).

    Vertices are grouped by (body part, grid cell of side `cell` metres) in the rest pose; each group keeps the
    vertex nearest its centroid, so the small mesh is posed by skinning those original vertices exactly.
    Returns (kept vertex indices (K,), triangles (F', 3) over the kept vertices).
    """
    cells = np.floor(rest_vertices / cell).astype(np.int64)
    keys = np.concatenate([part[:, None].astype(np.int64), cells], 1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.reshape(-1)
    n = group.max() + 1
    centroid = np.zeros((n, 3))
    np.add.at(centroid, group, rest_vertices)
    centroid /= np.bincount(group, minlength=n)[:, None]
    dist = np.linalg.norm(rest_vertices - centroid[group], axis=1)
    order = np.lexsort((dist, group))  # per group, nearest first
    first = np.ones(len(order), bool)
    first[1:] = group[order[1:]] != group[order[:-1]]
    keep = order[first]  # (n,), keep[g] is the representative of group g (groups come out sorted)
    tri = group[triangles]
    tri = tri[(tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])]
    _, first_seen = np.unique(np.sort(tri, 1), axis=0, return_index=True)  # drop duplicates, keep winding
    return keep, tri[np.sort(first_seen)]


def _as_pose(body_pose: torch.Tensor) -> torch.Tensor:
    """(B, 63) or (B, 21, 3) -> (B, 21, 3)."""
    if body_pose.ndim == 2 and body_pose.shape[1] == 3 * NUM_BODY_JOINTS:
        return body_pose.reshape(-1, NUM_BODY_JOINTS, 3)
    if body_pose.ndim != 3 or body_pose.shape[1:] != (NUM_BODY_JOINTS, 3):
        raise ValueError(f"body_pose must be (B, {NUM_BODY_JOINTS}, 3) or (B, {3 * NUM_BODY_JOINTS}), "
                         f"got {tuple(body_pose.shape)}")  # fmt: skip
    return body_pose


class BodyModel(ABC):
    """Pose parameters -> world-frame joints (B, 22, 3) and mesh vertices (B, V, 3); torch, batched and
    differentiable in every input (retarget runs IK through it)."""

    name: str
    num_pose_params = 3 * NUM_BODY_JOINTS
    num_shape_params: int
    faces: np.ndarray  # (F, 3) int64 triangles over the vertices `forward` returns
    vertex_part: np.ndarray  # (V,) canonical joint whose rotation moves each vertex (for clothing colours)

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    @abstractmethod
    def _forward_local(
        self, body_pose: torch.Tensor, shape: torch.Tensor | None, vertices: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Joints (B, 22, 3) and vertices (B, V, 3) in the body frame (pelvis at the origin, y up, facing +z)."""

    @abstractmethod
    def default_shape(self, batch: int) -> torch.Tensor:
        """(B, S) shape parameters of the average body."""

    @abstractmethod
    def random_shapes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, S) plausible, varied body shapes (one per subject)."""

    def forward(
        self,
        body_pose: torch.Tensor,
        shape: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        vertices: bool = True,
    ) -> BodyOutput:
        body_pose = _as_pose(torch.as_tensor(body_pose, dtype=torch.float32, device=self.device))
        joints, verts = self._forward_local(body_pose, shape, vertices)
        return BodyOutput(self.place(joints, global_orient, transl),
                          None if verts is None else self.place(verts, global_orient, transl))  # fmt: skip

    def place(
        self, points: torch.Tensor, global_orient: torch.Tensor | None, transl: torch.Tensor | None
    ) -> torch.Tensor:
        """Body-frame points (B, N, 3) -> the frame of `global_orient` (about the pelvis, the origin) and `transl`."""
        if global_orient is not None:
            from posesyn_core.body.rotations import axis_angle_to_matrix

            rot = axis_angle_to_matrix(torch.as_tensor(global_orient, dtype=points.dtype, device=self.device))
            points = points @ rot.transpose(-1, -2)
        if transl is not None:
            points = points + torch.as_tensor(transl, dtype=points.dtype, device=self.device)[:, None]
        return points

    __call__ = forward

    def rest_skeleton(self, shape: torch.Tensor | None = None) -> RestSkeleton:
        """The subjects' rest skeletons (B = len(shape), or 1 for the average body), for `skeleton_fk`."""
        joints, _ = self._forward_local(self.rest_pose(1 if shape is None else len(shape)), shape, False)
        return RestSkeleton(joints)

    def rest_pose(self, batch: int = 1) -> torch.Tensor:
        """(B, 21, 3) zero pose (T-pose)."""
        return torch.zeros(batch, NUM_BODY_JOINTS, 3, device=self.device)

    @property
    def joint_limits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds (21, 3) of every body-pose parameter (radians)."""
        lim = torch.as_tensor(JOINT_LIMITS, device=self.device)
        return lim[..., 0], lim[..., 1]

    def stand_on_floor(
        self,
        body_pose: torch.Tensor,
        shape: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        xz: torch.Tensor | None = None,
    ) -> tuple[BodyOutput, torch.Tensor]:
        """Pose the body and lift it so its lowest point (mesh vertex, or joint minus a 5 cm sole/skin margin
        when the model has no mesh) touches the floor y = 0. `xz` (B, 2) places the pelvis horizontally.
        Returns the output and the translation (B, 3) used."""
        out = self.forward(body_pose, shape, global_orient, vertices=True)
        sole = torch.tensor([0, 0.05, 0.0], device=out.joints.device)
        pts = out.vertices if out.vertices is not None else out.joints - sole
        lift = -pts[..., 1].min(dim=1).values
        transl = torch.zeros(len(lift), 3, dtype=lift.dtype, device=self.device)
        transl[:, 1] = lift
        if xz is not None:
            transl[:, [0, 2]] = torch.as_tensor(xz, dtype=lift.dtype, device=self.device)
        shift = transl[:, None]
        return BodyOutput(out.joints + shift, None if out.vertices is None else out.vertices + shift), transl
