"""MR_init training prefixes made like MSM's pseudo-labels (motion/mrinit_noise.py)."""

from __future__ import annotations

import numpy as np
import pytest

from posesyn_core.metrics import pa_mpjpe
from posesyn_core.motion.mrinit_noise import pseudo_label_like, tpe_like_guess
from posesyn_core.skeleton import PARENTS
from tests.caption.test_caption import STAND, lunge, rot_x, to_camera

BONES = np.arange(1, 22), np.array(PARENTS[1:])


def bone_vectors(pose: np.ndarray) -> np.ndarray:
    return pose[BONES[0]] - pose[BONES[1]]


def test_guess_flips_depths_and_scales_bones() -> None:
    pose = to_camera(rot_x(lunge(STAND), 20))
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(tpe_like_guess(pose, rng, 0.0, 0.0), pose, atol=1e-12)
    flipped = bone_vectors(tpe_like_guess(pose, rng, 1.0, 0.0))
    np.testing.assert_allclose(flipped[:, :2], bone_vectors(pose)[:, :2], atol=1e-12)  # the image plane is kept
    np.testing.assert_allclose(flipped[:, 2], -bone_vectors(pose)[:, 2], atol=1e-12)
    ratio = np.linalg.norm(bone_vectors(tpe_like_guess(pose, rng, 0.0, 0.2)), axis=1) / np.linalg.norm(
        bone_vectors(pose), axis=1
    )
    assert ratio.std() > 0.05 and ratio.min() >= 0.5


def test_without_noise_the_pose_comes_back_as_the_lift_sees_it() -> None:
    poses = np.stack([lunge(STAND), rot_x(STAND, 90)])  # a lunge and a person lying face down
    out = pseudo_label_like(poses, np.random.default_rng(1), 0.0, 0.0, 0.0)
    assert (pa_mpjpe(out, poses) < 10).all()  # only the lift's own image-scale estimate stretches a few bones
    np.testing.assert_allclose(out[:, :, 1].min(1), 0.0, atol=1e-12)  # on the floor
    np.testing.assert_allclose(out[:, 0, [0, 2]], 0.0, atol=1e-12)  # root at x = z = 0
    np.testing.assert_allclose(out[:, :, 1] - out[:, :1, 1], poses[:, :, 1] - poses[:, :1, 1], atol=0.02)  # y up kept


def test_noise_changes_depth_not_the_view_and_is_seeded() -> None:
    poses = np.repeat(lunge(STAND)[None], 64, 0)
    out = pseudo_label_like(poses, np.random.default_rng(2), depth_flip=0.3, bone_jitter=0.0, tilt_deg=0.0)
    errors = pa_mpjpe(out, poses)  # mm
    assert 20 < np.median(errors) < 300 and (errors < 1).mean() < 0.5  # wrong, but mostly the same body
    lengths = lambda p: np.linalg.norm(bone_vectors(p), axis=-1)  # noqa: E731
    ratio = np.array([lengths(p) for p in out]) / lengths(poses[0])  # flips keep lengths; the lift may stretch
    assert ratio.min() > 1 - 1e-6 and np.median(ratio) < 1.05 and ratio.max() < 1.3
    tilted = pseudo_label_like(poses[:16], np.random.default_rng(3), 0.0, 0.0, tilt_deg=30.0)
    torso = tilted[:, 12] - tilted[:, 0]
    lean = np.degrees(np.arccos(torso[:, 1] / np.linalg.norm(torso, axis=1)))
    assert lean.max() > 8 and lean.max() < 45  # the camera's tilt stays in the pose
    again = pseudo_label_like(poses, np.random.default_rng(2), depth_flip=0.3, bone_jitter=0.0, tilt_deg=0.0)
    np.testing.assert_array_equal(out, again)
    with pytest.raises(ValueError, match=r"\(B, 22, 3\)"):
        pseudo_label_like(poses[0], np.random.default_rng(0), 0.1, 0.1, 10.0)
