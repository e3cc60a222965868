"""The unit of animation work (one fitted motion and its reference) and the labels every backend writes.

Labels are exact by construction: retarget posed the body in the reference's camera frame, so joints3d are the
body model's joints for the very parameters rendered and joints2d their pinhole projection with the stored
intrinsics; a backend only decides the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posesyn_core.data.dataset import PoseSample
from posesyn_core.geometry import project


@dataclass
class MotionJob:
    index: int  # the motion's position in retarget/fits.jsonl (seeds its lighting and colour jitter)
    row: dict  # its fits.jsonl row (provenance)
    body_pose: np.ndarray  # (F, 21, 3)
    global_orient: np.ndarray  # (F, 3) camera frame
    transl: np.ndarray  # (F, 3) camera frame
    shape: np.ndarray  # (S,)
    joints3d: np.ndarray  # (F, 22, 3) camera frame
    camera: np.ndarray  # (4,) fx fy cx cy
    size: tuple[int, int]  # width, height
    reference_image: bytes
    reference_joints2d: np.ndarray
    reference_joint_set: str
    seed: int = 0


@dataclass
class BodySpec:
    """Which body model retarget fitted (animate must pose the same one)."""

    model: str = "anny"
    model_path: str | None = None


def scaled_camera(camera: np.ndarray, width: int, height: int, new_width: int, new_height: int) -> np.ndarray:
    """Intrinsics after resizing a width x height image to new_width x new_height (pixel centres map exactly)."""
    fx, fy, cx, cy = camera
    sx, sy = new_width / width, new_height / height
    return np.array([fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5])


def posed_vertices(body, job: MotionJob) -> np.ndarray:
    """(F, V, 3) camera-frame mesh of every frame of a job: the body model at the fitted parameters, one batched
    forward."""
    import torch

    f = len(job.body_pose)
    with torch.no_grad():
        out = body.forward(torch.as_tensor(job.body_pose), torch.as_tensor(job.shape)[None].expand(f, -1),
                           torch.as_tensor(job.global_orient), torch.as_tensor(job.transl))  # fmt: skip
    return out.vertices.numpy()


def mesh_bbox(vertices: np.ndarray, camera: np.ndarray, width: int, height: int) -> list[float]:
    """x, y, w, h of a camera-frame mesh's silhouette (its projected vertices, clipped to the image), in the
    pixel-border convention of `bbox_of`; for backends whose pixels come with no mask."""
    front = vertices[vertices[:, 2] > 1e-3]
    if not len(front):
        return [0.0, 0.0, 0.0, 0.0]
    uv = project(front.astype(np.float64), np.asarray(camera, np.float64))
    lo = np.clip(np.floor(uv.min(0) + 0.5), 0, [width, height])  # pixel k spans [k - 0.5, k + 0.5)
    hi = np.clip(np.floor(uv.max(0) + 0.5) + 1, 0, [width, height])
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def bbox_of(mask: np.ndarray, fallback: np.ndarray) -> list[float]:
    """x, y, w, h of the mask's pixels (edges at pixel borders); of the 2D points when the mask is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs):
        return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    lo, hi = fallback.min(0), fallback.max(0)
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def frame_sample(job: MotionJob, k: int, bbox: list[float], image_ext: str) -> PoseSample:
    """The dataset record of frame slot k of a job: labels, camera, caption and provenance."""
    width, height = job.size
    joints3d = job.joints3d[k].astype(np.float64)
    camera = np.asarray(job.camera, np.float64)
    uv = project(joints3d, camera)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
    visible = inside & (joints3d[:, 2] > 0)
    frame = int(job.row["frames"][k])
    sample_id = f"{job.row['motion']}-f{frame:03d}"
    fx, fy, cx, cy = (float(v) for v in camera)
    return PoseSample(
        id=sample_id, image=f"images/{sample_id}.{image_ext}", width=width, height=height, bbox=bbox,
        joints2d=np.concatenate([uv, visible[:, None]], 1).round(4).tolist(), joints3d=joints3d.round(6).tolist(),
        camera={"fx": fx, "fy": fy, "cx": cx, "cy": cy}, caption=job.row.get("caption"),
        meta={"family": job.row.get("family"), "challenging_id": job.row.get("source_id"),
              "reference_id": job.row["reference_id"], "motion_id": job.row["motion"], "frame": frame,
              "synthetic": True, "fit": {"chunk": job.row["chunk"], "row": job.row["row"], "slot": k}},
    )  # fmt: skip
