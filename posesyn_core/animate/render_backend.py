"""The offline animation backend: fitted bodies rendered into their reference scenes, with exact labels.

One `MotionJob` = one fitted motion (all its frames) and its reference. `RenderAnimator` (one per worker
process) owns a body model, one `MeshRenderer` per image size and a small cache of prepared references, so a
job costs one batched body forward plus one vertex-buffer update and draw per frame. The renderer uses the
reference intrinsics with an identity extrinsic (retarget posed the body in the camera frame) and the same
pixel-centre convention as the labels (`animate.jobs`, `render.mesh_renderer`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from posesyn_core.animate.config import RenderBackend
from posesyn_core.animate.jobs import BodySpec, MotionJob, bbox_of, frame_sample, posed_vertices
from posesyn_core.animate.reference import ReferenceScene, prepare_reference, vertex_colors
from posesyn_core.data.dataset import PoseSample, decode_image, encode_image
from posesyn_core.geometry import project

_REFERENCE_CACHE = 64


@dataclass
class RenderedFrame:
    sample: PoseSample
    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    mask: np.ndarray = field(repr=False)  # (H, W) bool, the rendered person


def random_lighting(rng: np.random.Generator, opts: RenderBackend):
    """A key light from above/front in the camera frame (y down, z away) with random colour temperature."""
    from posesyn_core.render.mesh_renderer import Lighting

    direction = np.array([rng.uniform(-1, 1), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)])
    warm = rng.uniform(-0.2, 0.2)
    color = np.clip(np.array([1 + warm, 1.0, 1 - warm]), 0, 1)
    return Lighting(direction, float(rng.uniform(*opts.light_intensity)), color, float(rng.uniform(*opts.ambient)))


class RenderAnimator:
    """Renders MotionJobs; build once per process (loads the body model and OpenGL contexts lazily)."""

    def __init__(self, opts: RenderBackend, body: BodySpec, image_ext: str = "jpg"):
        from posesyn_core.body import load_body_model

        self.opts, self.image_ext = opts, image_ext
        self.body = load_body_model(body.model, body.model_path, decimate_cell=opts.decimate_cell)
        self._renderers: dict[tuple[int, int], object] = {}
        self._scenes: OrderedDict[str, ReferenceScene] = OrderedDict()

    def renderer(self, width: int, height: int):
        from posesyn_core.render.mesh_renderer import MeshRenderer

        if (width, height) not in self._renderers:
            self._renderers[(width, height)] = MeshRenderer(width, height, self.body.faces, self.body.num_vertices)
        return self._renderers[(width, height)]

    def scene(self, job: MotionJob) -> ReferenceScene:
        key = job.row["reference_id"]
        if key not in self._scenes:
            image = decode_image(job.reference_image, key)
            self._scenes[key] = prepare_reference(image, job.reference_joints2d, job.reference_joint_set,
                                                  self.opts.mask_dilate_px, self.opts.inpaint_radius)  # fmt: skip
            while len(self._scenes) > _REFERENCE_CACHE:
                self._scenes.popitem(last=False)
        return self._scenes[key]

    def __call__(self, job: MotionJob) -> list[RenderedFrame]:
        """Every frame of the job, composited over the reference scene, with its dataset record."""
        import cv2

        from posesyn_core.render.camera import Camera

        # 1. The reference scene (person removed) and this motion's look: colours from the reference, a light.
        scene = self.scene(job)
        rng = np.random.default_rng([job.seed, job.index])
        colors = vertex_colors(self.body.vertex_part, scene.colors, rng)
        lighting = random_lighting(rng, self.opts)
        width, height = job.size
        if scene.background.shape[:2] != (height, width):
            raise ValueError(f"reference {job.row['reference_id']}: image is {scene.background.shape[1]}x"
                             f"{scene.background.shape[0]}, retarget placed it as {width}x{height}")  # fmt: skip
        camera = Camera(np.asarray(job.camera, np.float64), np.eye(3), np.zeros(3))
        renderer = self.renderer(width, height)
        verts = posed_vertices(self.body, job)
        frames = []
        for k in range(len(job.row["frames"])):
            # 2. Render and composite with a 1-pixel soft edge.
            layer = renderer.render(verts[k], colors, camera, lighting)
            alpha = cv2.GaussianBlur(layer.mask.astype(np.float32), (3, 3), 0)[..., None]
            alpha = np.maximum(alpha, layer.mask[..., None])  # keep the person's own pixels opaque
            image = (alpha * layer.rgb + (1 - alpha) * scene.background).round().astype(np.uint8)
            # 3. Labels: the rendered parameters' joints and their projection.
            sample = frame_sample(job, k, bbox_of(layer.mask, project(job.joints3d[k], job.camera)), self.image_ext)
            frames.append(RenderedFrame(sample, image, layer.mask))
        return frames


# Worker-process state for the pool (one animator per process, built by the initializer).
_WORKER: RenderAnimator | None = None


def init_worker(opts: RenderBackend, body: BodySpec, image_ext: str) -> None:
    import os

    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    import torch

    torch.set_num_threads(1)
    global _WORKER
    _WORKER = RenderAnimator(opts, body, image_ext)


def render_job(job: MotionJob) -> list[tuple[PoseSample, bytes]]:
    """Pool entry point (masks stay in the worker: only what is written travels back)."""
    assert _WORKER is not None, "init_worker was not called"
    return [(f.sample, encode_image(f.image, _WORKER.image_ext)) for f in _WORKER(job)]
