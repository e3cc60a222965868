"""The GPU animation backend: the render backend's frame refined by diffusion under pose guidance.

Each frame is first rendered exactly as the offline backend does (reference scene with its person removed, the
fitted body painted with the reference person's colours), then `PoseGuidedImg2ImgPipeline` re-imagines it at
`resolution` (img2img from the render, SDEdit-style, so layout and colours carry over) while an OpenPose
ControlNet, fed the skeleton projected from the same fitted body, holds the person in the labelled pose. The
result is resized back to the reference size, so the labels of the render stay the labels of the frame.
"""

from __future__ import annotations

import numpy as np

from posesyn_core.animate.config import DiffusionBackend, RenderBackend
from posesyn_core.animate.jobs import BodySpec, MotionJob, scaled_camera
from posesyn_core.animate.pose_guidance import draw_pose_guidance
from posesyn_core.data.dataset import PoseSample, encode_image
from posesyn_core.errors import ConfigError


class DiffusionAnimator:
    """MotionJob -> [(sample, encoded image)], like the render backend's workers."""

    def __init__(
        self, cfg: DiffusionBackend, render: RenderBackend, body: BodySpec, device: str, image_ext: str,
        pipeline=None,
    ):  # fmt: skip
        import torch

        from posesyn_core.animate.diffusion import PoseGuidedImg2ImgPipeline
        from posesyn_core.animate.render_backend import RenderAnimator

        if pipeline is None:
            if not cfg.model_path or not cfg.controlnet_path:
                raise ConfigError("animate.diffusion.model_path and animate.diffusion.controlnet_path must name "
                                  "local diffusers folders for backend 'diffusion'")  # fmt: skip
            dtype = torch.float16 if cfg.half and device == "cuda" else torch.float32
            pipeline = PoseGuidedImg2ImgPipeline.from_local(cfg.model_path, cfg.controlnet_path, dtype).to(device)
            pipeline.set_progress_bar_config(disable=True)
        self.cfg, self.pipe, self.image_ext = cfg, pipeline, image_ext
        self.renderer = RenderAnimator(render, body, image_ext)

    def __call__(self, job: MotionJob) -> list[tuple[PoseSample, bytes]]:
        import cv2
        import torch

        cfg, size = self.cfg, self.cfg.resolution
        width, height = job.size
        # 1. Exact renders (init images) and the OpenPose guidance of the same bodies at the working size.
        rendered = self.renderer(job)
        init = np.stack([cv2.resize(f.image, (size, size), interpolation=cv2.INTER_CUBIC) for f in rendered])
        camera = scaled_camera(np.asarray(job.camera, np.float64), width, height, size, size)
        pose = np.stack([draw_pose_guidance(job.joints3d[k], camera, size, size) for k in range(len(rendered))])
        prompt = cfg.prompt.format(caption=job.row.get("caption") or "").strip()
        # 2. Diffusion in batches, seeded per motion.
        generator = torch.Generator("cpu").manual_seed(int(job.seed) * 1_000_003 + job.index)
        out = []
        for s in range(0, len(rendered), cfg.batch_size):
            n = len(init[s : s + cfg.batch_size])
            out.append(self.pipe(
                [prompt] * n, init[s : s + n], pose[s : s + n], negative_prompt=[cfg.negative_prompt] * n,
                strength=cfg.strength, num_inference_steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                controlnet_conditioning_scale=cfg.controlnet_scale, generator=generator,
            ))  # fmt: skip
        images = np.concatenate(out)
        # 3. Back to the reference size: the render's labels hold.
        small = (cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) for img in images)
        return [(f.sample, encode_image(img, self.image_ext)) for f, img in zip(rendered, small, strict=True)]
