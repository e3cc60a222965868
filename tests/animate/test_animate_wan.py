"""retarget -> animate with the wan-animate backend, from a diffusers folder of tiny random Wan2.2-Animate
components (`wan_tiny`), on CPU: the real stage, the real pipeline class, the real folder layout, no weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_animate_render import make_motions, make_references

from posesyn_core.animate.jobs import scaled_camera
from posesyn_core.animate.pose_guidance import draw_pose_guidance
from posesyn_core.animate.wan_animate import check_weights_folder, face_crop, working_size
from posesyn_core.animate.wan_tiny import save_tiny_wan_animate
from posesyn_core.data.dataset import PoseDataset
from posesyn_core.errors import ConfigError
from posesyn_core.geometry import project
from posesyn_core.pipeline import RunConfig
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store

NUM_MOTIONS, FRAMES, SEGMENT = 3, 7, 5  # 7 frames in segments of 5 continuing from 1: two segments, 2 padded


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory):
    return save_tiny_wan_animate(tmp_path_factory.mktemp("wan") / "Wan2.2-Animate-tiny")


def _wan_run(root, model_path) -> RunConfig:
    return RunConfig.model_validate({
        "name": "wan-test", "root": root.as_uri(), "stages": ["retarget", "animate"], "device": "cpu",
        "retarget": {"references": "refs/references.jsonl", "frames_per_motion": FRAMES, "motions_per_chunk": 4},
        "animate": {"backend": "wan-animate", "frames_per_part": 14, "image_ext": "png",
                    "wan_animate": {"model_path": str(model_path), "resolution": 32, "steps": 2,
                                    "segment_frames": SEGMENT}},
    })  # fmt: skip


@pytest.fixture(scope="module")
def wan_run(tmp_path_factory, tiny_wan):
    from posesyn_core.body import load_body_model

    root = tmp_path_factory.mktemp("wan-run")
    store = open_store(root.as_uri())
    body = load_body_model("anny", decimate_cell=0.02)
    make_references(store, body)
    make_motions(store, body, NUM_MOTIONS)
    run = _wan_run(root, tiny_wan)
    execute_stage(run, "retarget", store=store)
    execute_stage(run, "animate", store=store)
    return run, store


def test_every_fitted_frame_is_animated_with_its_labels(wan_run):
    _, store = wan_run
    ds = PoseDataset(store, "animate/dataset")
    fits = store.read_jsonl("retarget/fits.jsonl")
    assert len(ds) == NUM_MOTIONS * FRAMES and ds.info["num_parts"] == 2  # 14 frames per part: 2 motions
    for fit in fits:  # exactly L frames per motion, across the two segments, in order
        mine = [s for s in ds.samples if s.meta["motion_id"] == fit["motion"]]
        assert [s.meta["frame"] for s in mine] == fit["frames"]
    a = ds.arrays
    np.testing.assert_allclose(a["joints2d"][..., :2], project(a["joints3d"], a["cameras"]), atol=1e-3)
    chunk = store.load_npz(fits[0]["chunk"])
    np.testing.assert_allclose(a["joints3d"][:FRAMES], chunk["joints3d"][fits[0]["row"]], atol=1e-5)
    for k in range(len(ds)):
        s = ds.samples[k]
        x, y, w, h = s.bbox
        vis = np.asarray(s.joints2d)
        vis = vis[vis[:, 2] > 0, :2]  # the mesh's box holds every visible joint
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128 and w > 5 and h > 5
        assert (vis >= [x - 1, y - 1]).all() and (vis <= [x + w + 1, y + h + 1]).all()
    assert ds.image(0).shape == (128, 128, 3)
    summary = store.read_json("animate/summary.json")
    assert summary["backend"] == "wan-animate" and summary["frames"] == NUM_MOTIONS * FRAMES


def test_same_seed_same_bytes(wan_run):
    run, store = wan_run
    before = {k: store.read_bytes(k) for k in store.list("animate/dataset/images")}
    execute_stage(run, "animate", store=store, force=True)
    after = {k: store.read_bytes(k) for k in store.list("animate/dataset/images")}
    assert len(before) == NUM_MOTIONS * FRAMES and before == after


def test_two_pipelines_per_device_give_the_same_bytes(wan_run):
    """The pool path (a spawned process per pipeline, motions handed out in turn) writes what one pipeline does."""
    run, store = wan_run
    before = {k: store.read_bytes(k) for k in store.list("animate/dataset/images")}
    wan = run.animate.wan_animate.model_copy(update={"pipelines_per_device": 2})
    pooled = run.model_copy(update={"animate": run.animate.model_copy(update={"wan_animate": wan})})
    execute_stage(pooled, "animate", store=store, force=True)
    assert {k: store.read_bytes(k) for k in store.list("animate/dataset/images")} == before


def test_the_pose_video_reaches_the_model(wan_run, tiny_wan):
    """Same reference, seed and slot; another motion's body -> other pixels. The same motion -> the same ones."""
    from posesyn_core.animate.jobs import BodySpec
    from posesyn_core.animate.stage import JobSource
    from posesyn_core.animate.wan_animate import WanAnimator

    run, store = wan_run
    fits = store.read_jsonl("retarget/fits.jsonl")
    source = JobSource(store, fits, seed=0)
    animator = WanAnimator(run.animate.wan_animate, BodySpec("anny"), "cpu", "png")
    job = source.job(0)
    frames = animator.generate(job)
    np.testing.assert_array_equal(animator.generate(job), frames)
    other = source.job(1)
    job.joints3d = other.joints3d  # another motion placed in the same reference, same seed and index
    moved = animator.generate(job)
    assert moved.shape == frames.shape == (FRAMES, 128, 128, 3)
    diff = np.abs(moved.astype(int) - frames.astype(int))
    assert diff.mean() > 0.2 and diff.max() >= 3, (diff.mean(), diff.max())  # 0.46 / 12 here; 0.001 / 1 when
    # the tiny VAE was too narrow to carry the skeleton


def test_incomplete_weights_fail_before_work_with_the_path(wan_run, tiny_wan, tmp_path):
    run, _ = wan_run
    broken = tmp_path / "wan-broken"
    shutil.copytree(tiny_wan, broken)
    next((broken / "transformer").glob("*.safetensors")).unlink()
    with pytest.raises(ConfigError, match=rf"{broken} is incomplete, missing: transformer/\*\.safetensors"):
        check_weights_folder(str(broken))
    shutil.rmtree(broken / "image_processor")
    # The same run (retarget done, animate not started) pointed at the broken folder: a clear error, no _SUCCESS.
    root = tmp_path / "run"
    shutil.copytree(run.root.removeprefix("file://"), root, ignore=shutil.ignore_patterns("animate"))
    store = open_store(root.as_uri())
    with pytest.raises(ConfigError, match=r"missing: image_processor/, transformer/\*\.safetensors"):
        execute_stage(_wan_run(root, broken), "animate", store=store)
    assert store.exists("retarget/_SUCCESS") and not store.exists("animate/_SUCCESS")
    assert not list(store.list("animate/dataset"))  # no frame was generated
    with pytest.raises(ConfigError, match="not a folder"):
        check_weights_folder(str(tmp_path / "nowhere"))


def test_working_size_and_face_crop():
    assert working_size(128, 128, 32) == (32, 32)
    assert working_size(1920, 1080, 1280) == (1280, 720)
    assert working_size(640, 480, 1280) == (1280, 960)
    w, h = working_size(333, 500, 100)
    assert w % 16 == 0 and h % 16 == 0 and h == 96 and w == 64
    image = np.zeros((100, 80, 3), np.uint8)
    image[10:30, 30:50] = 255  # a bright face around (40, 20)
    joints = np.zeros((22, 3))
    joints[15], joints[12] = [40, 20, 1], [40, 30, 1]  # head, neck
    face = face_crop(image, joints, "smpl22", 16)
    assert face.shape == (16, 16, 3) and face.mean() > 200  # 20 x 20 crop centred on the face
    joints[15] = [2, 2, 1]  # half outside: black there, no error
    assert face_crop(image, joints, "smpl22", 16).shape == (16, 16, 3)


def test_wan_skeleton_style_has_toes_and_thinner_sticks():
    from test_animate_diffusion import _standing_joints

    camera = np.array([600.0, 600.0, 256.0, 256.0])
    openpose = draw_pose_guidance(_standing_joints(), camera, 512, 512)
    wan = draw_pose_guidance(_standing_joints(), camera, 512, 512, style="wan-animate")
    toe_colour = (wan == [100, 100, 0]).all(-1)  # the right toe point, a colour OpenPose never draws
    assert toe_colour.any() and not (openpose == [100, 100, 0]).all(-1).any()
    assert wan.any(-1).sum() < openpose.any(-1).sum()  # stick width 1 px at 512 vs 4 px
    big = scaled_camera(camera, 512, 512, 1024, 512)
    assert big[0] == 1200 and big[1] == 600 and big[2] == 512.5 and big[3] == 256
