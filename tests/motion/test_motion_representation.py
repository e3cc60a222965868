"""HumanML3D features: exact round trip joints -> features -> joints, layout, static poses, normalization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from motion_synthetic import REST_OFFSETS, synthetic_motion

from posesyn_core.motion.representation import (
    FEATURE_DIM,
    FOOT_CONTACT,
    RIC,
    Normalizer,
    features_to_joints,
    joints_to_features,
    static_pose_features,
)
from posesyn_core.motion.stage import by_length
from posesyn_core.skeleton import PARENTS


@pytest.mark.parametrize("seed,turn", [(0, 2.5 * np.pi), (1, -3.0 * np.pi), (2, 0.0), (3, 0.7)])
def test_round_trip_world_frame_within_1mm(seed, turn):
    joints = synthetic_motion(120, seed=seed, turn=turn)
    feats, origin = joints_to_features(joints)
    assert feats.shape == (119, FEATURE_DIM) and np.isfinite(feats).all()
    back = features_to_joints(feats, origin)
    assert np.abs(back - joints[:-1]).max() < 1e-3
    # float32 storage (what the model sees) still round-trips within 1 mm
    back32 = features_to_joints(feats.astype(np.float32), origin)
    assert np.abs(back32 - joints[:-1]).max() < 1e-3


def test_canonical_frame_and_invariance():
    joints = synthetic_motion(60, seed=5)
    feats, _ = joints_to_features(joints)
    canon = features_to_joints(feats)
    assert np.allclose(canon[0, 0, [0, 2]], 0.0)  # root starts at the origin
    # rotating about y and shifting on the floor changes nothing in the features
    c, s = np.cos(1.3), np.sin(1.3)
    moved = joints @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]]) + np.array([3.0, 0.0, -2.0])
    feats2, origin2 = joints_to_features(moved)
    assert np.abs(feats2 - feats).max() < 1e-9
    assert np.abs(features_to_joints(feats2, origin2) - moved[:-1]).max() < 1e-9


def test_facing_exactly_minus_z_is_defined():
    rest = np.zeros((22, 3))
    for j, p in enumerate(PARENTS):
        rest[j] = REST_OFFSETS[j] + (rest[p] if p >= 0 else 0)
    turned = rest * np.array([-1.0, 1.0, -1.0])  # a half turn: facing -z
    feats, origin = joints_to_features(np.stack([turned, turned + [0, 0, -0.05]]))
    assert np.isfinite(feats).all()
    assert abs(abs(origin[2]) - np.pi) < 1e-6
    assert np.abs(features_to_joints(feats, origin)[0] - turned).max() < 1e-9


def test_static_pose_features_are_a_held_pose():
    pose = synthetic_motion(30, seed=7)[11]
    held = static_pose_features(pose, 16)
    assert held.shape == (16, FEATURE_DIM)
    assert np.array_equal(held, joints_to_features(np.repeat(pose[None], 17, 0))[0])
    assert np.all(held[:, FOOT_CONTACT] == 1.0) and np.allclose(held[:, :3], 0.0)


def test_leading_axes_are_independent_sequences_bit_for_bit():
    # MSM encodes thousands of held poses in one call: batched, each must be exactly what it is alone
    clips = np.stack([synthetic_motion(40, seed=s, turn=t) for s, t in ((0, 2.0), (1, -1.0), (2, 0.0))])
    feats, origin = joints_to_features(clips.reshape(3, 1, 40, 22, 3))
    assert feats.shape == (3, 1, 39, FEATURE_DIM) and origin.shape == (3, 1, 3)
    for i, clip in enumerate(clips):
        one, one_origin = joints_to_features(clip)
        assert np.array_equal(feats[i, 0], one) and np.array_equal(origin[i, 0], one_origin)
    poses = clips[:, ::9].reshape(-1, 22, 3)  # 15 poses, upright and turned
    held = static_pose_features(poses, 8)
    assert held.shape == (15, 8, FEATURE_DIM)
    assert all(np.array_equal(held[k], static_pose_features(p, 8)) for k, p in enumerate(poses))


def test_by_length_batches_equal_lengths_and_keeps_order():
    # motion-train computes every clip's features one call per length: same bytes, same order as clip by clip
    lengths = [40, 33, 40, 33, 40, 52, 40]
    clips = [synthetic_motion(n, seed=k, turn=0.3 * k) for k, n in enumerate(lengths)]
    calls = []

    def features(stack: np.ndarray) -> np.ndarray:
        calls.append(len(stack))
        return joints_to_features(stack)[0]

    out = by_length(clips, features, chunk=3)
    assert sorted(calls) == [1, 1, 2, 3]  # 40 x 4 in chunks of 3 and 1, 33 x 2, 52 x 1
    assert len(out) == len(clips)
    assert all(np.array_equal(o, joints_to_features(c)[0]) for o, c in zip(out, clips, strict=True))


def test_normalizer_groups_and_round_trip():
    feats = [joints_to_features(synthetic_motion(80, seed=s))[0] for s in range(4)]
    norm = Normalizer.fit(feats)
    assert len(np.unique(norm.std[RIC])) == 1  # one std per group, HumanML3D style
    x = norm.normalize(feats[0])
    assert x.dtype == np.float32 and np.allclose(norm.denormalize(x), feats[0], atol=1e-5)
    again = Normalizer.from_dict({k: torch.as_tensor(v).numpy() for k, v in norm.to_dict().items()})
    assert np.array_equal(again.std, norm.std)


def test_library_clips_round_trip():
    """Clips of the world stage's motion library (every family), posed on a synthetic rest skeleton."""
    motions = pytest.importorskip("posesyn_core.world.motions")
    from posesyn_core.body import RestSkeleton

    rest = np.zeros((22, 3))
    for j, p in enumerate(PARENTS):
        rest[j] = REST_OFFSETS[j] + (rest[p] if p >= 0 else 0)
    rest -= rest[0]
    skeleton = RestSkeleton(torch.as_tensor(rest[None], dtype=torch.float32))
    rng = np.random.default_rng(0)
    worst = 0.0
    for family in motions.all_families():
        joints, _ = motions.make_clip(skeleton, motions.sample_track(rng, family))
        feats, origin = joints_to_features(joints)
        assert np.isfinite(feats).all(), family
        worst = max(worst, np.abs(features_to_joints(feats, origin) - joints[:-1]).max())
    assert worst < 1e-3


def test_skeleton_strip_png():
    from posesyn_core.motion.plots import skeleton_strip_png

    png = skeleton_strip_png(synthetic_motion(30, seed=1), title="a person walks", panels=4)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(ValueError, match="joints must be"):
        skeleton_strip_png(np.zeros((0, 22, 3)))
