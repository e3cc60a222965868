"""Inverse kinematics and placement on the real ANNY body model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posesyn_core.body import JOINT_LIMITS, load_body_model
from posesyn_core.geometry import WORLD_TO_CAMERA_AXES, project, rotation_y
from posesyn_core.retarget.ik import IKConfig, analytic_init, fit_clips
from posesyn_core.retarget.placement import Reference, place, solve_root
from posesyn_core.retarget.stage import sample_frames, without_travel


@pytest.fixture(scope="module")
def body():
    return load_body_model("anny")


def random_motions(body, clips: int, frames: int, seed: int = 0) -> np.ndarray:
    """(C, T, 22, 3) smooth in-limit motions of randomly shaped, randomly turned bodies standing on the floor."""
    rng = np.random.default_rng(seed)
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    a, b = (lo + (hi - lo) * rng.uniform(0.25, 0.75, (clips, 1, 21, 3)) for _ in range(2))
    s = np.linspace(0, 1, frames)[None, :, None, None]
    pose = torch.as_tensor((a * (1 - s) + b * s).reshape(-1, 21, 3), dtype=torch.float32)
    shape = torch.as_tensor(np.repeat(body.random_shapes(rng, clips), frames, 0))
    orient = torch.zeros(clips * frames, 3)
    orient[:, 1] = torch.as_tensor(np.repeat(rng.uniform(-np.pi, np.pi, clips), frames), dtype=torch.float32)
    with torch.no_grad():
        out, _ = body.stand_on_floor(pose, shape, orient)
    return out.joints.numpy().reshape(clips, frames, 22, 3)


def test_analytic_init_is_exact_for_the_same_body(body):
    """With the right bone lengths, aligning bones down the tree recovers the joints almost exactly."""
    target = torch.as_tensor(random_motions(body, 1, 8)[0])
    shape = body.default_shape(8)
    # Re-pose the default body to the same joint directions: its own joints are then reachable exactly.
    rest = body.forward(body.rest_pose(8), shape, vertices=False).joints
    pose, orient, transl = analytic_init(rest, target)
    fitted = body.forward(pose, shape, orient, transl, vertices=False).joints
    same = analytic_init(rest, fitted)  # fitted is a default-shape body: now the init must reproduce it
    again = body.forward(same[0], shape, same[1], same[2], vertices=False).joints
    assert (again - fitted).norm(dim=-1).mean() * 1000 < 3


def test_fit_error_below_20mm_on_varied_bodies(body):
    targets = random_motions(body, clips=4, frames=12, seed=1)
    fit = fit_clips(body, targets, IKConfig(window=8))  # two windows: the second is warm-started
    assert fit.body_pose.shape == (4, 12, 21, 3) and fit.shape.shape == (4, 6)
    assert fit.error_mm.mean() < 20, fit.error_mm.mean(1)
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    excess = np.maximum(lo - fit.body_pose, 0) + np.maximum(fit.body_pose - hi, 0)
    assert excess.max() < 0.3  # in-limit targets are fitted (nearly) within the limits


@pytest.mark.slow
def test_fit_error_below_20mm_on_library_motions(body):
    """One clip of every motion-library family (the world's 33 families, random subjects), 8 frames each."""
    from posesyn_core.world.motions import all_families, make_clip, sample_track

    rng = np.random.default_rng(0)
    clips = []
    for name in all_families():
        joints, _ = make_clip(body.rest_skeleton(torch.as_tensor(body.random_shapes(rng, 1))), sample_track(rng, name))
        clips.append(joints[sample_frames(len(joints), 8, None)])
    fit = fit_clips(body, np.stack(clips))
    per_family = dict(zip(all_families(), fit.error_mm.mean(1).round(1), strict=True))
    assert fit.error_mm.mean() < 20 and max(per_family.values()) < 20, per_family


def test_frames_and_travel():
    idx = sample_frames(40, 5, must=17)
    assert len(idx) == 5 and 17 in idx and idx[0] == 0 and idx[-1] == 39
    assert list(sample_frames(3, 5, None)) == [0, 0, 1, 2, 2]  # short clips repeat frames
    walk = np.zeros((10, 22, 3))
    walk[:, :, 0] = np.arange(10)[:, None] * 0.1
    walk[:, :, 1] = np.arange(10)[:, None] * 0.01
    still = without_travel(walk)
    assert np.allclose(still[..., 0], 0) and np.allclose(still[..., 1], walk[..., 1])


def test_placement_puts_the_body_where_the_reference_stands(body):
    """Placing the reference's own (world) body into its camera reproduces its 3D joints and 2D keypoints."""
    pose = body.rest_pose(1)
    pose[:, 15, 2], pose[:, 16, 2] = -1.2, 1.2  # a plain standing person, arms down
    with torch.no_grad():
        out, _ = body.stand_on_floor(pose, body.default_shape(1))
    world = out.joints.numpy().astype(np.float64)  # (1, 22, 3), facing +z
    rot = WORLD_TO_CAMERA_AXES @ rotation_y(0.4)  # a camera on the +z side looking back at it, turned a little
    cam_joints = world[0] @ rot.T + np.array([0.1, 0.5, 4.0])
    camera = np.array([150.0, 150.0, 64.0, 64.0])
    uv = project(cam_joints, camera)
    ref = Reference("ref", cam_joints - cam_joints[0], np.concatenate([uv, np.ones((22, 1))], 1), "smpl22",
                    camera, 128, 128)  # fmt: skip
    np.testing.assert_allclose(solve_root(ref), cam_joints[0], atol=1e-6)
    # A clip of that body, turned and moved elsewhere in the world, lands on the reference. Not exactly: the
    # reference's up is its pelvis -> neck direction, which leans a few degrees forward of gravity.
    moved = world @ rotation_y(-1.1).T + np.array([2.0, 0.0, -3.0])
    r, shift = place(moved, 0, ref)
    placed = moved[0] @ r.T + shift
    np.testing.assert_allclose(placed, cam_joints, atol=0.03)
    np.testing.assert_allclose(project(placed, camera), uv, atol=1.0)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(r), 1)
