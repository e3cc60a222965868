"""The GPU animation backend: Wan2.2-Animate re-poses the reference person, in their own scene, along the motion.

Per motion (`MotionJob`), `WanAnimatePipeline` (diffusers, animation mode) gets three inputs:
- the **reference image**: the non-challenging sample the motion was placed in (retarget put the fitted body in
  its camera), resized to the working size: `resolution` on the longer side, the reference's aspect ratio, both
  sides multiples of 16 (the pipeline's own resizing would pad or stretch, and the labels would drift);
- the **pose video**: the fitted body's skeleton drawn in Wan-Animate's style (`pose_guidance`, `wan-animate`)
  from the reference intrinsics rescaled to the working size, one frame per fitted frame;
- the **face video**: the reference person's own face crop, held for every frame, so the face encoder carries
  the reference's identity and expression (a fitted body has no face to drive it with).
The pipeline generates `segment_frames` at a time, each segment conditioned on the last `prev_segment_frames` of
the one before, until the motion's L frames exist; frames are resized back to the reference size, so the labels
are the fitted body's own (3D joints, camera, their projection) exactly as in the render backend, and the box is
the projected mesh's.

Weights come only from a local diffusers folder (`local_files_only`), checked before any work: a missing
component or weight shard fails with the path and what is missing. bfloat16 on CUDA (the VAE optionally
float32), float32 on CPU (the tests run tiny random components, `wan_tiny`).

Reference: Cheng et al. 2025, "Wan-Animate: Unified Character Animation and Replacement with Holistic
Replication" (arXiv 2509.14055); diffusers `pipelines/wan/pipeline_wan_animate.py`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from posesyn_core.animate.config import WanAnimateBackend
from posesyn_core.animate.jobs import BodySpec, MotionJob, frame_sample, mesh_bbox, posed_vertices, scaled_camera
from posesyn_core.animate.pose_guidance import draw_pose_guidance
from posesyn_core.animate.reference import canonical_2d
from posesyn_core.data.dataset import PoseSample, decode_image, encode_image
from posesyn_core.errors import ConfigError

PIPELINE_CLASS = "WanAnimatePipeline"
# Component -> files it needs besides weights ("*" = one of the names). Models also need weights (below).
_COMPONENT_FILES = {
    "tokenizer": ("tokenizer_config.json",),
    "text_encoder": ("config.json",),
    "vae": ("config.json",),
    "scheduler": ("scheduler_config.json",),
    "image_processor": ("preprocessor_config.json",),
    "image_encoder": ("config.json",),
    "transformer": ("config.json",),
}
_MODELS = ("text_encoder", "vae", "image_encoder", "transformer")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_REFERENCE_CACHE = 16


def _missing_weights(folder: Path) -> list[str]:
    """Weight files a model subfolder lacks: none at all, or shards its index lists but the folder does not have."""
    indexes = [p for p in folder.iterdir() if p.name.endswith((".safetensors.index.json", ".bin.index.json"))]
    if indexes:
        missing = []
        for index in indexes:
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError) as err:
                return [f"{index.name} (unreadable: {err})"]
            missing += [s for s in sorted(shards) if not (folder / s).is_file()]
        return [f"{folder.name}/{s}" for s in missing]
    if any(p.name.endswith(_WEIGHT_SUFFIXES) for p in folder.iterdir()):
        return []
    return [f"{folder.name}/*.safetensors (no weights)"]


def check_weights_folder(path: str | None) -> Path:
    """The Wan-Animate diffusers folder at `path`, or ConfigError naming the path and every missing piece."""
    key = "animate.wan_animate.model_path"
    if not path:
        raise ConfigError(f"{key} must name a local diffusers folder of Wan2.2-Animate for backend 'wan-animate'")
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{key}: {path} is not a folder")
    index_file = folder / "model_index.json"
    try:
        index = json.loads(index_file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} has no model_index.json (not a diffusers pipeline folder)") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: {index_file} is unreadable: {err}") from None
    if index.get("_class_name") != PIPELINE_CLASS:
        raise ConfigError(f"{key}: {index_file} is a {index.get('_class_name')!r}, not a {PIPELINE_CLASS}")
    missing = []
    for name, files in _COMPONENT_FILES.items():
        sub = folder / name
        if not index.get(name) or not sub.is_dir():
            missing.append(f"{name}/")
            continue
        missing += [f"{name}/{f}" for f in files if not (sub / f).is_file()]
        if name in _MODELS:
            missing += _missing_weights(sub)
    if missing:
        raise ConfigError(f"{key}: {path} is incomplete, missing: {', '.join(missing)} (an unfinished download?)")
    return folder


def load_pipeline(opts: WanAnimateBackend, device: str):
    """WanAnimatePipeline from the checked local folder on `device`, with the configured precision and offload."""
    import torch
    from diffusers import WanAnimatePipeline

    folder = check_weights_folder(opts.model_path)
    cuda = device.startswith("cuda")
    dtype = {"default": torch.bfloat16 if cuda else torch.float32}
    if opts.vae_fp32:
        dtype["vae"] = torch.float32
    try:
        pipe = WanAnimatePipeline.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"animate.wan_animate.model_path: {folder} could not be loaded: {err}") from None
    if cuda and opts.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif cuda and opts.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def working_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(width, height) of the generated video: the longer side ~resolution, the aspect ratio kept, multiples of 16."""
    scale = resolution / max(width, height)
    new_width, new_height = (max(16, round(side * scale / 16) * 16) for side in (width, height))
    return new_width, new_height


def _interpolation(src: tuple[int, int], dst: tuple[int, int]) -> int:
    """OpenCV's area averaging to shrink (no aliasing), bicubic to enlarge."""
    import cv2

    return cv2.INTER_AREA if dst[0] * dst[1] < src[0] * src[1] else cv2.INTER_CUBIC


def face_crop(image: np.ndarray, joints2d: np.ndarray, joint_set: str, size: int) -> np.ndarray:
    """(size, size, 3) crop of the reference person's face: a square around the head joint twice the neck-to-head
    distance (Wan's preprocessing crops the face box grown 1.3x), black where it leaves the image; the top of
    the keypoints' box when the head is not visible."""
    import cv2

    joints = canonical_2d(np.asarray(joints2d, np.float64), joint_set)
    h, w = image.shape[:2]
    if joints[15, 2] > 0 and joints[12, 2] > 0:
        centre = joints[15, :2]
        side = 2.0 * np.linalg.norm(joints[15, :2] - joints[12, :2])
    else:
        vis = joints[joints[:, 2] > 0, :2]
        vis = vis if len(vis) else np.array([[w / 2, h / 2]])
        side = max(np.ptp(vis, axis=0).max() / 4, 1.0)
        centre = np.array([vis[:, 0].mean(), vis[:, 1].min() + side / 2])
    side = max(side, 8.0)
    x0, y0 = (centre - side / 2).round().astype(int)
    n = int(round(side))
    crop = np.zeros((n, n, 3), np.uint8)
    xs, ys = slice(max(x0, 0), min(x0 + n, w)), slice(max(y0, 0), min(y0 + n, h))
    if xs.start < xs.stop and ys.start < ys.stop:
        crop[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = image[ys, xs]
    return cv2.resize(crop, (size, size), interpolation=_interpolation((n, n), (size, size)))


class WanAnimator:
    """MotionJob -> [(sample, encoded image)], one pipeline call per motion; build once per process (or GPU slot)."""

    def __init__(self, opts: WanAnimateBackend, body: BodySpec, device: str, image_ext: str, pipeline=None):
        from posesyn_core.body import load_body_model

        self.opts, self.device, self.image_ext = opts, device, image_ext
        self.pipe = pipeline if pipeline is not None else load_pipeline(opts, device)
        self.body = load_body_model(body.model, body.model_path)
        self._references: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def reference(self, job: MotionJob, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(reference image at the working size, face crop), decoded and prepared once per reference."""
        import cv2

        key = job.row["reference_id"]
        if key not in self._references:
            image = decode_image(job.reference_image, key)
            if image.shape[:2] != job.size[::-1]:
                raise ValueError(f"reference {key}: image is {image.shape[1]}x{image.shape[0]}, retarget placed it "
                                 f"as {job.size[0]}x{job.size[1]}")  # fmt: skip
            face_size = self.pipe.transformer.config.motion_encoder_size
            self._references[key] = (cv2.resize(image, size, interpolation=_interpolation(job.size, size)),
                                     face_crop(image, job.reference_joints2d, job.reference_joint_set, face_size))
            while len(self._references) > _REFERENCE_CACHE:
                self._references.popitem(last=False)
        return self._references[key]

    def pose_video(self, job: MotionJob, size: tuple[int, int]) -> np.ndarray:
        """(L, H', W', 3) uint8 skeleton frames of the fitted body at the working size."""
        camera = scaled_camera(np.asarray(job.camera, np.float64), *job.size, *size)
        return np.stack([draw_pose_guidance(j, camera, size[1], size[0], style="wan-animate") for j in job.joints3d])

    def generate(self, job: MotionJob) -> np.ndarray:
        """(L, H, W, 3) uint8 frames at the reference size."""
        import cv2
        import torch
        from PIL import Image

        opts, width, height = self.opts, *job.size
        size = working_size(width, height, opts.resolution)
        frames = len(job.joints3d)
        if frames <= opts.prev_segment_frames:
            raise ValueError(f"motion {job.row['motion']}: {frames} frames, but Wan-Animate needs more than "
                             f"prev_segment_frames={opts.prev_segment_frames}")  # fmt: skip
        # 1. Inputs: reference at the working size, the pose video, the reference's face held for every frame.
        reference, face = self.reference(job, size)
        pose = [Image.fromarray(p) for p in self.pose_video(job, size)]
        face_video = [Image.fromarray(face)] * frames
        prompt = opts.prompt.format(caption=job.row.get("caption") or "").strip()
        # 2. Segments that continue each other, seeded per motion (CPU generator: the same noise on any device).
        generator = torch.Generator("cpu").manual_seed(int(job.seed) * 1_000_003 + job.index)
        video = self.pipe(
            image=Image.fromarray(reference), pose_video=pose, face_video=face_video, prompt=prompt,
            negative_prompt=opts.negative_prompt, height=size[1], width=size[0],
            segment_frame_length=opts.segment_frames, prev_segment_conditioning_frames=opts.prev_segment_frames,
            num_inference_steps=opts.steps, guidance_scale=opts.guidance_scale, generator=generator,
            output_type="np",
        ).frames[0]  # fmt: skip
        if len(video) != frames:
            raise RuntimeError(f"motion {job.row['motion']}: Wan-Animate returned {len(video)} frames for {frames}")
        # 3. Back to the reference size: the fitted body's labels are the labels of these pixels.
        video = (np.clip(video, 0, 1) * 255).round().astype(np.uint8)
        interp = _interpolation(size, job.size)
        return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in video])

    def __call__(self, job: MotionJob) -> list[tuple[PoseSample, bytes]]:
        images = self.generate(job)
        width, height = job.size
        verts = posed_vertices(self.body, job)
        return [(frame_sample(job, k, mesh_bbox(verts[k], job.camera, width, height), self.image_ext),
                 encode_image(image, self.image_ext)) for k, image in enumerate(images)]  # fmt: skip


def device_slots(device: str, pipelines_per_device: int) -> list[str]:
    """One device per animator process: `pipelines_per_device` on each visible GPU for `cuda`, on the named device
    otherwise (`cuda:N`, `cpu`)."""
    count = 0
    if device == "cuda":
        import torch

        count = torch.cuda.device_count()
    devices = [f"cuda:{i}" for i in range(count)] or [device]  # no GPU: loading fails with torch's own message
    return [d for d in devices for _ in range(pipelines_per_device)]


# Worker-process state for the pool (one animator per process, on the device slot it took from the queue).
_WORKER: WanAnimator | None = None


def init_worker(slots, opts: WanAnimateBackend, body: BodySpec, image_ext: str) -> None:
    global _WORKER
    _WORKER = WanAnimator(opts, body, slots.get(), image_ext)


def animate_job(job: MotionJob) -> list[tuple[PoseSample, bytes]]:
    assert _WORKER is not None, "init_worker was not called"
    return _WORKER(job)
