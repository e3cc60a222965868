"""retarget -> animate (render backend) end to end on a tiny run: real ANNY, real renderer, real stages.

The references are standing people rendered by the world renderer (so their 3D pseudo-label is exact), the
motions are smooth interpolations between random in-limit poses of randomly shaped ANNY bodies.
"""

from __future__ import annotations

import numpy as np
import pytest

from posesyn_core.data.dataset import PoseDataset, PoseSample, decode_image, write_dataset
from posesyn_core.data.motions import MotionClip, write_motions
from posesyn_core.geometry import project
from posesyn_core.pipeline import RunConfig
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store

NUM_MOTIONS, FRAMES = 6, 5


def standing_pose(body, n: int):
    """(n, 21, 3) arms-down standing poses (zero is a T-pose)."""
    pose = body.rest_pose(n).clone()
    pose[:, 15, 2], pose[:, 16, 2] = -1.2, 1.2  # left/right shoulder: lower the arms
    return pose


def make_references(store, body, n: int = 3) -> None:
    """A smpl22 pose dataset of standing people and an eem-style references.jsonl over it."""
    import torch

    from posesyn_core.render.camera import Camera, look_at
    from posesyn_core.render.frame import render_frame
    from posesyn_core.render.mesh_renderer import MeshRenderer

    rng = np.random.default_rng(0)
    renderer = MeshRenderer(128, 128, body.faces, body.num_vertices)
    shapes = torch.as_tensor(body.random_shapes(rng, n))
    yaw = torch.zeros(n, 3)
    yaw[:, 1] = torch.as_tensor(rng.uniform(-0.6, 0.6, n), dtype=torch.float32)
    with torch.no_grad():
        out, _ = body.stand_on_floor(standing_pose(body, n), shapes, yaw)
    samples, images, rows = [], [], []
    for i in range(n):
        rot, trans = look_at(np.array([rng.uniform(-1, 1), 1.2, 4.0]), np.array([0.0, 0.9, 0.0]))
        cam = Camera(np.array([600.0, 600.0, 320.0, 240.0]), rot, trans)
        colors = np.tile([0.6, 0.4, 0.3, 1.0], (body.num_vertices, 1)).astype(np.float32)
        f = render_frame(renderer, out.vertices[i].numpy(), out.joints[i].numpy(), colors, cam, "wild", rng)
        ys, xs = np.nonzero(f.mask)
        bbox = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
        s = PoseSample(id=f"ref-{i}", image=f"images/ref-{i}.png", width=128, height=128, bbox=bbox,
                       joints2d=f.joints2d.tolist(), joints3d=f.joints3d.tolist(),
                       camera=f.camera.as_dict())  # fmt: skip
        samples.append(s)
        images.append(f.image)
        rows.append({"rank": i, "id": s.id, "index": i, "error": 0.0, "joints3d": (f.joints3d - f.joints3d[0]).tolist(),
                     "joints2d": s.joints2d, "joint_set": "smpl22", "bbox": bbox, "image": s.image,
                     "dataset": "refs", "width": 128, "height": 128, "family": None, "meta": {}})  # fmt: skip
    renderer.close()
    write_dataset(store, "refs", "refs", "smpl22", samples, images, image_ext="png")
    store.write_jsonl("refs/references.jsonl", rows)


def make_motions(store, body, n: int, frames: int = 30) -> list[MotionClip]:
    """Smooth random motions (world joints, on the floor) of randomly shaped bodies, in the motion format."""
    import torch

    from posesyn_core.body import JOINT_LIMITS

    rng = np.random.default_rng(1)
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    clips = []
    for c in range(n):
        length = frames + c  # clips of one chunk differ in length, as library motions do
        a, b = (lo + (hi - lo) * rng.uniform(0.3, 0.7, (21, 3)) for _ in range(2))
        s = np.linspace(0, 1, length)[:, None, None]
        pose = torch.as_tensor(a * (1 - s) + b * s, dtype=torch.float32)
        shape = torch.as_tensor(body.random_shapes(rng, 1)).expand(length, -1)
        orient = torch.zeros(length, 3)
        orient[:, 1] = float(rng.uniform(-np.pi, np.pi))
        with torch.no_grad():
            out, _ = body.stand_on_floor(pose, shape, orient)
        clips.append(MotionClip(f"hard-{c}-m0", "synthetic", out.joints.numpy(), [f"motion {c}"],
                                {"source_id": f"hard-{c}", "caption": f"a person doing motion {c}",
                                 "best_frame": length // 2}))  # fmt: skip
    write_motions(store, "msm/motions", "motions", clips)
    return clips


@pytest.fixture(scope="module")
def body():
    from posesyn_core.body import load_body_model

    return load_body_model("anny", decimate_cell=0.02)


@pytest.fixture(scope="module")
def animated_run(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("animate-run")
    store = open_store(root.as_uri())
    make_references(store, body)
    make_motions(store, body, NUM_MOTIONS)
    run = RunConfig.model_validate({
        "name": "animate-test", "root": root.as_uri(), "stages": ["retarget", "animate"],
        "retarget": {"references": "refs/references.jsonl", "frames_per_motion": FRAMES, "motions_per_chunk": 4},
        "animate": {"render": {"workers": 1}, "frames_per_part": 12},
    })  # fmt: skip
    execute_stage(run, "retarget", store=store)
    execute_stage(run, "animate", store=store)
    return run, store


def test_retarget_fits_and_places(animated_run):
    _, store = animated_run
    summary = store.read_json("retarget/summary.json")
    assert summary["motions"] == NUM_MOTIONS and summary["frames"] == NUM_MOTIONS * FRAMES
    assert summary["error_mm"]["mean"] < 20, summary
    fits = store.read_jsonl("retarget/fits.jsonl")
    assert {f["reference_id"] for f in fits} <= {"ref-0", "ref-1", "ref-2"}
    assert all(f["best_frame"] in f["frames"] for f in fits)


def test_animate_writes_a_labelled_dataset(animated_run):
    _, store = animated_run
    ds = PoseDataset(store, "animate/dataset")
    assert len(ds) == NUM_MOTIONS * FRAMES and ds.joint_set == "smpl22"
    assert ds.info["num_parts"] == 3  # 12 frames per part -> 2 motions of 5 frames per part
    a = ds.arrays
    # joints2d are the pinhole projection of joints3d with the stored camera.
    np.testing.assert_allclose(a["joints2d"][..., :2], project(a["joints3d"], a["cameras"]), atol=1e-3)
    s = ds.samples[0]
    assert s.meta["challenging_id"] == "hard-0" and s.meta["motion_id"] == "hard-0-m0"
    assert s.meta["reference_id"].startswith("ref-") and s.caption == "a person doing motion 0"
    img = ds.image(0)
    assert img.shape == (128, 128, 3)
    sheet = decode_image(store.read_bytes("animate/contact_sheet.png"))
    assert sheet.shape[0] > 128 and sheet.shape[1] > 128


def _rasterize(points2d: np.ndarray, faces: np.ndarray, h: int, w: int) -> np.ndarray:
    """Silhouette of a projected mesh: pixels whose centre (integer coordinates) lies inside any triangle."""
    mask = np.zeros((h, w), bool)
    for tri in points2d[faces]:  # (3, 2)
        lo = np.clip(np.ceil(tri.min(0)).astype(int), 0, [w - 1, h - 1])
        hi = np.clip(np.floor(tri.max(0)).astype(int), 0, [w - 1, h - 1])
        if (hi < lo).any():
            continue
        ys, xs = np.mgrid[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1]
        p = np.stack([xs, ys], -1).astype(np.float64)
        a, b, c = tri
        d = [np.cross(q1 - q0, p - q0) for q0, q1 in ((a, b), (b, c), (c, a))]  # edge functions
        inside = ((d[0] >= 0) & (d[1] >= 0) & (d[2] >= 0)) | ((d[0] <= 0) & (d[1] <= 0) & (d[2] <= 0))
        mask[ys[inside], xs[inside]] = True
    return mask


def test_labels_project_exactly_onto_the_rendered_body(animated_run, body):
    """The rendered silhouette is the projected mesh of the labelled body (sub-pixel), and every labelled joint
    falls on the rendered body."""
    import cv2
    import torch

    from posesyn_core.animate.config import RenderBackend
    from posesyn_core.animate.jobs import BodySpec
    from posesyn_core.animate.render_backend import RenderAnimator
    from posesyn_core.animate.stage import JobSource

    run, store = animated_run
    fits = store.read_jsonl("retarget/fits.jsonl")
    source = JobSource(store, fits, seed=0)
    animator = RenderAnimator(RenderBackend(), BodySpec("anny"))
    for i in range(2):
        job = source.job(i)
        frames = animator(job)
        with torch.no_grad():
            out = body.forward(torch.as_tensor(job.body_pose), torch.as_tensor(job.shape)[None].expand(FRAMES, -1),
                               torch.as_tensor(job.global_orient), torch.as_tensor(job.transl))  # fmt: skip
        # The labels are the rendered parameters' joints.
        np.testing.assert_allclose(out.joints.numpy(), job.joints3d, atol=5e-4)
        for k, frame in enumerate(frames):
            uv = project(out.vertices[k].numpy().astype(np.float64), job.camera)
            raster = _rasterize(uv, body.faces, 128, 128)
            iou = (raster & frame.mask).sum() / (raster | frame.mask).sum()
            assert iou > 0.98, iou
            centre = [np.argwhere(m).mean(0) for m in (raster, frame.mask)]
            assert np.abs(centre[0] - centre[1]).max() < 0.1, centre  # a half-pixel slip would show
            j2d = np.asarray(frame.sample.joints2d)
            px = np.round(j2d[j2d[:, 2] > 0, :2]).astype(int)
            grown = cv2.dilate(frame.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert grown[px[:, 1], px[:, 0]].all()  # every visible joint lies on the body (within 1 px)


def test_render_is_deterministic(animated_run):
    run, store = animated_run
    before = {k: store.read_bytes(k) for k in store.list("animate/dataset/images")}
    execute_stage(run, "animate", store=store, force=True)
    after = {k: store.read_bytes(k) for k in store.list("animate/dataset/images")}
    assert before.keys() == after.keys() and before == after


def test_diffusion_backend_refines_renders_and_keeps_their_labels(animated_run):
    """The GPU backend's plumbing on CPU with tiny random components: one frame per fitted frame, the render's
    labels, the reference size, deterministic."""
    from test_animate_diffusion import get_dummy_components

    from posesyn_core.animate.config import DiffusionBackend, RenderBackend
    from posesyn_core.animate.diffusion import PoseGuidedImg2ImgPipeline
    from posesyn_core.animate.diffusion_backend import DiffusionAnimator
    from posesyn_core.animate.jobs import BodySpec
    from posesyn_core.animate.stage import JobSource

    _, store = animated_run
    job = JobSource(store, store.read_jsonl("retarget/fits.jsonl"), seed=0).job(0)
    pipe = PoseGuidedImg2ImgPipeline(**get_dummy_components())
    pipe.set_progress_bar_config(disable=True)
    cfg = DiffusionBackend(resolution=64, steps=2, strength=1.0, batch_size=4)
    animator = DiffusionAnimator(cfg, RenderBackend(), BodySpec("anny"), "cpu", "png", pipeline=pipe)
    out = animator(job)
    rendered = animator.renderer(job)
    assert [s.to_json() for s, _ in out] == [f.sample.to_json() for f in rendered]
    assert all(decode_image(img).shape == (128, 128, 3) for _, img in out)
    assert [img for _, img in animator(job)] == [img for _, img in out]


def test_diffusion_backend_needs_model_paths(animated_run):
    from posesyn_core.errors import ConfigError

    run, store = animated_run
    diffusion = run.model_copy(update={"animate": run.animate.model_copy(update={"backend": "diffusion"})})
    with pytest.raises(ConfigError, match="model_path"):
        execute_stage(diffusion, "animate", store=store)
