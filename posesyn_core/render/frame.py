"""One labelled image of a person: crop camera, mesh layer, background, occluders, exact 2D joints.

The crop is rendered directly (crop intrinsics), so joints2d = pinhole projection of the camera-frame joints3d
with the stored intrinsics, exactly; the renderer uses the same pixel-centre convention (tests check both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from posesyn_core.render.backgrounds import add_occluders, studio_background, wild_background
from posesyn_core.render.camera import Camera, crop_intrinsics, square_box
from posesyn_core.render.mesh_renderer import Lighting, MeshRenderer

Style = Literal["lab", "wild"]


@dataclass
class Frame:
    image: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) bool, the person (before occluders)
    depth: np.ndarray  # (S, S) float32 metres, 0 off the person
    joints2d: np.ndarray  # (22, 3) pixels x, y + visibility (in the crop and not behind an occluder)
    joints3d: np.ndarray  # (22, 3) camera frame, metres
    camera: Camera  # the crop's camera


def random_lighting(rng: np.random.Generator, style: Style) -> Lighting:
    """Lab: soft frontal-overhead white light. Wild: any direction, colour temperature and strength."""
    if style == "lab":
        d = np.array([rng.uniform(-0.3, 0.3), -1.0, rng.uniform(-1.0, -0.4)])
        return Lighting(d, float(rng.uniform(2.5, 3.5)), np.ones(3), float(rng.uniform(0.35, 0.45)))
    d = np.array([rng.uniform(-1, 1), -rng.uniform(0.1, 1.0), rng.uniform(-1, 1)])
    warm = rng.uniform(-0.25, 0.25)
    color = np.clip(np.array([1 + warm, 1.0, 1 - warm]), 0, 1)
    return Lighting(d, float(rng.uniform(1.0, 6.0)), color, float(rng.uniform(0.1, 0.5)))


def render_frame(
    renderer: MeshRenderer,
    vertices: np.ndarray,
    joints: np.ndarray,
    colors: np.ndarray,
    camera: Camera,
    style: Style,
    rng: np.random.Generator,
    occluders: int = 0,
    pad: float = 1.2,
    jitter: float = 0.0,
) -> Frame:
    """Render world-frame `vertices` (V, 3) / `joints` (22, 3) seen by `camera` (any intrinsics; only its
    projection centre and focal length matter) into a square person-centred crop of the renderer's size.
    `jitter` shifts the crop centre by up to that fraction of its side (wild crops are less tidy)."""
    size = renderer.width
    # 1. Crop camera around the projected mesh.
    box = square_box(camera.project(vertices), pad)
    box[:2] += rng.uniform(-jitter, jitter, 2) * box[2] if jitter else 0.0
    cam = Camera(crop_intrinsics(camera.intrinsics, box, size), camera.rotation, camera.translation)
    # 2. Person layer over a background.
    layer = renderer.render(vertices, colors, cam, random_lighting(rng, style))
    background = studio_background(rng, size, size) if style == "lab" else wild_background(rng, size, size)
    image = np.where(layer.mask[..., None], layer.rgb, background)
    hidden = add_occluders(rng, image, occluders) if occluders else np.zeros((size, size), bool)
    # 3. Labels.
    joints3d = cam.to_camera(joints)
    uv = cam.project(joints)
    px = np.round(uv).astype(int)
    inside = (px >= 0).all(1) & (px < size).all(1) & (joints3d[:, 2] > 0)
    visible = inside.copy()
    visible[inside] &= ~hidden[px[inside, 1], px[inside, 0]]
    joints2d = np.concatenate([uv, visible[:, None].astype(np.float64)], 1)
    return Frame(image, layer.mask, layer.depth, joints2d, joints3d, cam)
