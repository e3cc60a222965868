"""Renderer: labels are exact projections, the rendered silhouette agrees with them, renders are deterministic."""

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import cv2
import numpy as np
import pytest
import torch

from posesyn_core.body import load_body_model
from posesyn_core.geometry import project
from posesyn_core.render.appearance import subject_colors
from posesyn_core.render.camera import Camera, look_at
from posesyn_core.render.frame import render_frame
from posesyn_core.render.mesh_renderer import MeshRenderer

SIZE = 128


@pytest.fixture(scope="module")
def scene():
    body = load_body_model("anny", decimate_cell=0.03)
    rng = np.random.default_rng(0)
    pose = torch.as_tensor(rng.normal(0, 0.3, (6, 21, 3)), dtype=torch.float32)
    shapes = torch.as_tensor(body.random_shapes(rng, 6))
    out, _ = body.stand_on_floor(pose, shapes)
    renderer = MeshRenderer(SIZE, SIZE, body.faces, body.num_vertices)
    yield body, renderer, out.vertices.numpy(), out.joints.numpy(), subject_colors(rng, body.vertex_part)
    renderer.close()


def camera(azimuth: float) -> Camera:
    eye = np.array([3.0 * np.sin(azimuth), 1.3, 3.0 * np.cos(azimuth)])
    rot, t = look_at(eye, np.array([0.0, 0.9, 0.0]))
    return Camera(np.array([700.0, 700, 320, 240]), rot, t)


def test_joints2d_are_exact_projections_and_match_the_render(scene):
    body, renderer, verts, joints, colors = scene
    for i in range(len(verts)):
        f = render_frame(renderer, verts[i], joints[i], colors, camera(i * 1.1), "lab", np.random.default_rng(i))
        # Labels: the stored camera projects the stored camera-frame joints onto joints2d.
        err = np.abs(project(f.joints3d, f.camera.intrinsics) - f.joints2d[:, :2]).max()
        assert err < 0.5 and err < 1e-6
        # Render: the silhouette equals the rasterized projected triangles (same pixel-centre convention).
        # Rasterize at 8x with cv2 (hi-res pixel k of low-res pixel i covers [i - 0.5 + k / 8, ...)), keep
        # low-res pixels more than half covered.
        hires = (f.camera.project(verts[i]) + 0.5) * 8 - 0.5
        raster = np.zeros((SIZE * 8, SIZE * 8), np.uint8)
        for t in np.round(hires[body.faces] * 16).astype(np.int32):  # 4 bits of sub-pixel precision
            cv2.fillConvexPoly(raster, t, 1, lineType=cv2.LINE_8, shift=4)
        raster = raster.reshape(SIZE, 8, SIZE, 8).mean((1, 3)) > 0.5
        iou = (raster & f.mask).sum() / (raster | f.mask).sum()
        assert iou > 0.95, iou
        centroid = lambda m: np.argwhere(m).mean(0)  # noqa: E731
        assert np.abs(centroid(raster) - centroid(f.mask)).max() < 0.35  # a half-pixel convention slip gives ~0.7


def test_visible_joints_fall_inside_the_mask(scene):
    _, renderer, verts, joints, colors = scene
    for i in range(len(verts)):
        f = render_frame(renderer, verts[i], joints[i], colors, camera(i * 0.7), "lab", np.random.default_rng(i))
        vis = f.joints2d[:, 2] > 0
        assert vis.all()  # whole body in a padded crop, no occluders
        mask = cv2.dilate(f.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        px = np.round(f.joints2d[vis, :2]).astype(int)
        assert mask[px[:, 1], px[:, 0]].all()
        # Depth agrees: every joint lies behind the visible surface at its pixel (it is inside the body).
        assert (f.joints3d[vis, 2] >= f.depth[px[:, 1], px[:, 0]] - 0.03).all()


def test_occluders_hide_joints_and_renders_are_deterministic(scene):
    _, renderer, verts, joints, colors = scene
    frames = [render_frame(renderer, verts[0], joints[0], colors, camera(0.3), "wild", np.random.default_rng(s),
                           occluders=4, jitter=0.1) for s in (5, 5)]  # fmt: skip
    assert np.array_equal(frames[0].image, frames[1].image)
    assert np.array_equal(frames[0].joints2d, frames[1].joints2d)
    hidden = sum((render_frame(renderer, verts[0], joints[0], colors, camera(0.3), "wild",
                               np.random.default_rng(s), occluders=4).joints2d[:, 2] == 0).sum() for s in range(10))
    assert hidden > 0  # some joints end up behind occluders


def test_shader_programs_are_compiled_once(scene):
    _, renderer, verts, joints, colors = scene
    cache = renderer._renderer._renderer._program_cache._program_cache
    render_frame(renderer, verts[0], joints[0], colors, camera(0.0), "lab", np.random.default_rng(0))
    before = len(cache)
    for i in range(5):
        render_frame(renderer, verts[i], joints[i], colors, camera(0.0), "lab", np.random.default_rng(i))
    assert len(cache) == before  # a program per frame used to leak ~3 MB each
