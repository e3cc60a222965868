"""Body-model interface: ANNY -> SMPL22 mapping sanity, floor placement, gradients, limits, decimation."""

import numpy as np
import pytest
import torch

from posesyn_core.body import JOINT_LIMITS, clamp_to_limits, load_body_model
from posesyn_core.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from posesyn_core.errors import ConfigError
from posesyn_core.skeleton import FLIP_PAIRS, PARENTS, SMPL22


@pytest.fixture(scope="module")
def anny():
    return load_body_model("anny")


def idx(name: str) -> int:
    return SMPL22.index(name)


def test_anny_rest_pose_is_a_plausible_t_pose(anny):
    j = anny(anny.rest_pose(1), vertices=False).joints[0].numpy()
    assert np.allclose(j[0], 0, atol=1e-6)  # pelvis at the origin
    for name in SMPL22:
        if name.startswith("left_"):  # SMPL's left is +x when facing +z
            assert j[idx(name), 0] > 0.03, name
            assert np.allclose(j[idx(name)] * [-1, 1, 1], j[idx("right_" + name[5:])], atol=1e-3), name
    assert j[idx("head")][1] > j[idx("neck")][1] > j[idx("spine3")][1] > j[idx("spine1")][1] > j[0][1]
    assert j[idx("left_ankle")][1] < j[idx("left_knee")][1] < j[idx("left_hip")][1]
    # T-pose: arms horizontal, wrists far out.
    assert abs(j[idx("left_wrist")][1] - j[idx("left_shoulder")][1]) < 0.05
    bone = {name: np.linalg.norm(j[i] - j[PARENTS[i]]) for i, name in enumerate(SMPL22) if i}
    assert 0.33 < bone["left_knee"] < 0.5 and 0.33 < bone["left_ankle"] < 0.5  # thigh, shin
    assert 0.2 < bone["left_elbow"] < 0.35 and 0.18 < bone["left_wrist"] < 0.32  # upper arm, forearm
    assert 0.06 < bone["left_hip"] < 0.15 and 0.05 < bone["head"] < 0.25


def test_pose_convention_knee_and_hip_flexion(anny):
    pose = anny.rest_pose(2)
    pose[0, idx("left_knee") - 1, 0] = 1.2  # knee flexion: +x, shin swings backwards
    pose[1, idx("left_hip") - 1, 0] = -1.2  # hip flexion: -x, thigh swings forwards
    rest = anny(anny.rest_pose(1), vertices=False).joints[0]
    j = anny(pose, vertices=False).joints
    ankle = idx("left_ankle")
    assert j[0, ankle, 2] < rest[ankle, 2] - 0.2
    assert j[1, idx("left_knee"), 2] > rest[idx("left_knee"), 2] + 0.2
    # Rigid segments: bone lengths do not change with pose.
    for i in range(1, 22):
        d0 = (rest[i] - rest[PARENTS[i]]).norm()
        assert torch.allclose((j[:, i] - j[:, PARENTS[i]]).norm(dim=-1), d0.expand(2), atol=2e-3), SMPL22[i]


def test_stand_on_floor_global_orient_and_shapes(anny):
    rng = np.random.default_rng(0)
    shapes = torch.as_tensor(anny.random_shapes(rng, 3))
    orient = torch.tensor([[0, 1.0, 0], [0, 0, 0], [0, -2.0, 0]])
    out, transl = anny.stand_on_floor(anny.rest_pose(3), shapes, orient, xz=torch.tensor([[1.0, 2], [0, 0], [-1, 3]]))
    assert torch.allclose(out.vertices[..., 1].min(1).values, torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.joints[:, 0, [0, 2]], torch.tensor([[1.0, 2], [0, 0], [-1, 3]]), atol=1e-5)
    heights = out.vertices[..., 1].max(1).values
    assert (heights > 1.4).all() and (heights < 2.1).all() and heights.std() > 0.01  # varied adults


def test_gradients_flow_to_body_pose(anny):
    pose = (0.2 * torch.randn(2, 21, 3, generator=torch.Generator().manual_seed(0))).requires_grad_()
    out = anny(pose, global_orient=torch.zeros(2, 3), transl=torch.zeros(2, 3), vertices=False)
    out.joints[:, idx("left_wrist")].sum().backward()
    assert pose.grad is not None and pose.grad[:, idx("left_shoulder") - 1].abs().sum() > 0


def test_decimated_mesh(anny):
    small = load_body_model("anny", decimate_cell=0.03)
    assert small.num_vertices < anny.num_vertices / 4
    assert small.faces.min() >= 0 and small.faces.max() < small.num_vertices
    full = anny(anny.rest_pose(1)).vertices[0]
    dec = small(small.rest_pose(1)).vertices[0]
    assert torch.allclose(full.min(0).values, dec.min(0).values, atol=0.03)
    assert torch.allclose(full.max(0).values, dec.max(0).values, atol=0.03)
    assert anny.faces.shape[1] == 3 and anny.faces.max() < anny.num_vertices


def test_joint_limits_mirror_and_clamp():
    left, right = idx("left_shoulder") - 1, idx("right_shoulder") - 1
    assert np.allclose(JOINT_LIMITS[right, 0], JOINT_LIMITS[left, 0])
    assert np.allclose(JOINT_LIMITS[right, 1:], -JOINT_LIMITS[left, 1:, ::-1])
    assert JOINT_LIMITS[idx("left_knee") - 1, 0, 0] == 0  # knees bend one way
    wild = torch.full((1, 21, 3), 5.0)
    assert torch.equal(clamp_to_limits(wild)[0], torch.as_tensor(JOINT_LIMITS[..., 1]))
    assert all(a < b for a, b in FLIP_PAIRS)


def test_rotation_round_trip():
    aa = torch.randn(100, 3, generator=torch.Generator().manual_seed(1))
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.linspace(0, 3.13, 100)[:, None]
    back = matrix_to_axis_angle(axis_angle_to_matrix(aa))
    assert torch.allclose(axis_angle_to_matrix(back), axis_angle_to_matrix(aa), atol=5e-4)  # float32 near pi


def test_smpl_needs_model_files(tmp_path):
    with pytest.raises(ConfigError, match="model_path"):
        load_body_model("smpl")
    with pytest.raises(ConfigError, match="does not exist"):
        load_body_model("smpl", tmp_path / "missing.pkl")
    with pytest.raises(ConfigError, match="unknown body model"):
        load_body_model("mano")


def test_skeleton_fk_equals_the_body_model(anny):
    from posesyn_core.body import skeleton_fk

    g = torch.Generator().manual_seed(2)
    shapes = torch.as_tensor(anny.random_shapes(np.random.default_rng(2), 4))
    pose, orient, transl = 0.5 * torch.randn(4, 21, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(4, 3)
    full = anny(pose, shapes, orient, transl, vertices=False).joints
    fast = skeleton_fk(anny.rest_skeleton(shapes), pose, orient, transl)
    assert (full - fast).norm(dim=-1).max() < 1e-4


def test_shape_cache_overflow_keeps_shapes_of_the_batch(anny, monkeypatch):
    """A batch mixing a cached shape with new ones when the cache is full (a retarget run crashed on this)."""
    rng = np.random.default_rng(1)
    shapes = torch.as_tensor(anny.random_shapes(rng, 3))
    pose = anny.rest_pose(3)
    expected = anny(pose, shapes, vertices=False).joints
    anny._frame_cache.clear()
    anny(pose[:2], shapes[:2], vertices=False)  # shapes 0, 1 cached
    monkeypatch.setattr(anny, "frame_cache_size", 1)
    out = anny(pose, shapes, vertices=False).joints  # shape 2 overflows the cache
    assert torch.allclose(out, expected, atol=1e-6)
    assert len(anny._frame_cache) == 3  # cleared, then this batch's shapes
