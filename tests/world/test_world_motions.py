"""Motion library: enough families, plausible clips (floor, bone lengths, limits, contacts), texts, determinism."""

import numpy as np
import pytest

from posesyn_core.body import load_body_model
from posesyn_core.body.base import JOINT_LIMITS
from posesyn_core.data.motions import FPS
from posesyn_core.skeleton import PARENTS
from posesyn_core.world.motions import CLEARANCE, FAMILIES, common_families, make_clip, sample_track
from posesyn_core.world.scenes import facing


@pytest.fixture(scope="module")
def skeleton():
    body = load_body_model("anny")
    return body.rest_skeleton(None)


def test_library_size_and_split():
    assert len(FAMILIES) >= 30
    common = set(common_families())
    assert {"walk", "wave", "raise_arms"} <= common
    assert {"cartwheel", "handstand", "downward_dog", "crawl", "kneel", "lie_down"} <= set(FAMILIES) - common
    assert all(len(f.texts) >= 4 for f in FAMILIES.values())


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_clips_are_plausible(name, skeleton):
    rng = np.random.default_rng(7)
    track = sample_track(rng, name)
    joints, transl = make_clip(skeleton, track)
    fam = FAMILIES[name]
    assert fam.duration[0] * FPS - 1 <= len(joints) <= fam.duration[1] * FPS + 1
    # Joint limits hold, bone lengths are constant, nothing goes through the floor.
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    assert (track.body_pose >= lo - 1e-6).all() and (track.body_pose <= hi + 1e-6).all()
    bones = np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1)  # (T, 21)
    assert np.ptp(bones, 0).max() < 1e-5
    surface = (joints[..., 1] - CLEARANCE).min(1)
    assert surface.min() > -1e-6
    grounded = track.lift < 1e-9
    assert np.abs(surface[grounded]).max() < 1e-6  # touching the floor unless airborne
    # Three distinct texts.
    assert len(set(track.texts)) == 3 and all(t and "{" not in t for t in track.texts)


def test_walking_moves_forward_without_skating(skeleton):
    rng = np.random.default_rng(3)
    for _ in range(20):
        track = sample_track(rng, "walk")
        if track.meta["dir"] != "forward":
            continue
        joints, transl = make_clip(skeleton, track)
        travel = transl[-1, [0, 2]] - transl[0, [0, 2]]
        speed = np.linalg.norm(travel) / (len(joints) / FPS)
        assert 0.4 < speed < 2.0  # m/s
        assert travel @ facing(joints[0])[[0, 2]] > 0
        # Feet on the floor barely slide compared with the body's speed.
        feet = joints[:, [7, 8]]  # ankles
        on_floor = (feet[1:, :, 1] - CLEARANCE[7] < 0.005) & (feet[:-1, :, 1] - CLEARANCE[7] < 0.005)
        slide = np.linalg.norm(feet[1:, :, [0, 2]] - feet[:-1, :, [0, 2]], axis=-1)[on_floor] * FPS
        assert np.median(slide) < 0.1 * speed
        return
    pytest.fail("no straight walk sampled")


def test_tracks_are_deterministic():
    a, b = (sample_track(np.random.default_rng(11), "cartwheel") for _ in range(2))
    assert np.array_equal(a.body_pose, b.body_pose) and a.texts == b.texts
