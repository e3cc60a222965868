"""Shared back end of the real 2D dataset readers (COCO keypoints, MPII): checks, crops and writes pose datasets.

A reader turns its annotation file into `Annotation`s (one per person); `import_annotations` then
1. quarantines what cannot be used, with a reason and without reading the image: file names escaping the image
   folder, missing image files, non-finite keypoints, visible keypoints far outside the image, no visible joint;
2. reads each remaining image once (grayscale and color, any size), crops the person's box enlarged by
   `crop_scale` (clipped to the image; long side capped at `max_side` pixels, keypoints moved along) and writes
   the pose dataset in parts (resumable: existing parts are skipped).

Rejected annotations go to `<dest>/rejected.jsonl` (`{"id", "reason", ...}`), the same shape stages use.
Visibility in the output is 1 where the source annotated a position (COCO v >= 1, MPII joints_vis = 1): the
position is known even when occluded, which is what a 2D error needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posesyn_core.data.dataset import (
    PoseSample,
    check_sample_id,
    decode_image,
    finish_dataset,
    part_exists,
    part_key,
    write_part,
)
from posesyn_core.errors import DataError
from posesyn_core.storage import Store, join


@dataclass
class Annotation:
    """One person as the source dataset describes it, before any check."""

    id: str  # output sample id (safe characters only)
    file_name: str  # image path relative to the image folder, as written in the annotation
    keypoints: np.ndarray  # (J, 3): x, y, visibility (> 0 = position annotated), source pixels
    bbox: list[float] | None  # x, y, w, h; None = derive from the visible keypoints
    width: int | None = None  # image size if the annotation states it (else read from the image)
    height: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportOptions:
    crop_scale: float = 1.3  # the saved crop is the bbox enlarged by this factor around its centre
    max_side: int = 512  # crops whose long side is larger are downscaled to it
    out_of_image_margin: float = 0.25  # visible keypoints further outside than this x image size are rejected
    part_size: int = 1000
    image_ext: str = "jpg"


def safe_image_path(image_dir: Path, file_name: str) -> Path | None:
    """The image's path, or None when the name is absolute or escapes `image_dir` (e.g. '../../etc/x')."""
    if not file_name or Path(file_name).is_absolute() or "\\" in file_name:
        return None
    root = image_dir.resolve()
    path = (root / file_name).resolve()
    return path if path.is_relative_to(root) else None


def _valid_id(sample_id: str) -> bool:
    try:
        check_sample_id(sample_id)
    except DataError:
        return False
    return True


def check_keypoints(kp: np.ndarray, width: int | None, height: int | None, margin: float) -> str | None:
    """Reason the keypoints are unusable, or None. Only annotated (visible) joints are checked for position."""
    vis = kp[:, 2] > 0
    if not np.isfinite(kp[vis]).all() or not np.isfinite(kp[:, 2]).all():
        return "non-finite keypoints"
    if not vis.any():
        return "no visible joints"
    if width is not None and height is not None:
        xy = kp[vis, :2]
        mx, my = margin * width, margin * height
        if (xy[:, 0] < -mx).any() or (xy[:, 0] > width + mx).any() or (xy[:, 1] < -my).any() or (
            xy[:, 1] > height + my
        ).any():
            return "keypoints far outside the image"
    return None


def crop_box(bbox: list[float], width: int, height: int, scale: float) -> tuple[int, int, int, int]:
    """Integer crop (x0, y0, x1, y1): the bbox enlarged by `scale` around its centre, clipped to the image."""
    x, y, w, h = bbox
    cx, cy, hw, hh = x + w / 2, y + h / 2, w * scale / 2, h * scale / 2
    x0, y0 = max(0, math.floor(cx - hw)), max(0, math.floor(cy - hh))
    x1, y1 = min(width, math.ceil(cx + hw)), min(height, math.ceil(cy + hh))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def keypoint_bbox(kp: np.ndarray) -> list[float]:
    xy = kp[kp[:, 2] > 0, :2]
    lo, hi = xy.min(0), xy.max(0)
    return [float(lo[0]), float(lo[1]), float(max(hi[0] - lo[0], 1.0)), float(max(hi[1] - lo[1], 1.0))]


def to_sample(ann: Annotation, image: np.ndarray, opts: ImportOptions) -> tuple[PoseSample, np.ndarray]:
    """Crop the person out of the full image and express keypoints and bbox in the crop's pixels."""
    import cv2

    height, width = image.shape[:2]
    kp = ann.keypoints.astype(np.float64).copy()
    kp[kp[:, 2] <= 0, :2] = 0.0  # unannotated positions carry no meaning (MPII writes -1, COCO 0)
    bbox = ann.bbox if ann.bbox is not None else keypoint_bbox(kp)
    x0, y0, x1, y1 = crop_box(bbox, width, height, opts.crop_scale)
    crop = image[y0:y1, x0:x1]
    factor = min(1.0, opts.max_side / max(crop.shape[:2]))
    if factor < 1.0:
        size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    vis = kp[:, 2] > 0
    kp[vis, 0] = (kp[vis, 0] - x0) * factor
    kp[vis, 1] = (kp[vis, 1] - y0) * factor
    kp[:, 2] = vis.astype(np.float64)
    box = [(bbox[0] - x0) * factor, (bbox[1] - y0) * factor, bbox[2] * factor, bbox[3] * factor]
    meta = {**ann.meta, "source_image": ann.file_name, "crop": [x0, y0, x1, y1], "crop_factor": factor}
    sample = PoseSample(
        id=ann.id,
        image=f"images/{ann.id}.{opts.image_ext}",
        width=int(crop.shape[1]),
        height=int(crop.shape[0]),
        bbox=[round(float(v), 3) for v in box],
        joints2d=[[round(float(x), 3), round(float(y), 3), float(v)] for x, y, v in kp],
        meta=meta,
    )
    return sample, crop


def import_annotations(
    annotations: Iterable[Annotation | tuple[str, str, dict]],
    image_dir: Path,
    store: Store,
    prefix: str,
    name: str,
    joint_set: str,
    opts: ImportOptions | None = None,
    max_bad_fraction: float = 1.0,
) -> dict:
    """Check, crop and write every annotation; a `(id, reason, details)` tuple in `annotations` is a rejection
    the reader already made (e.g. an unknown image id). Returns {"info", "accepted", "rejected", "reasons"}."""
    opts = opts or ImportOptions()
    image_dir = Path(image_dir)
    rejected: list[dict] = []
    accepted: list[Annotation] = []
    seen: set[str] = set()
    for ann in annotations:
        if isinstance(ann, tuple):
            sid, reason, details = ann
            rejected.append({"id": sid, "reason": reason, **details})
            continue
        path = safe_image_path(image_dir, ann.file_name)
        reason = (
            "invalid or duplicate sample id" if not _valid_id(ann.id) or ann.id in seen
            else "image path escapes the image folder" if path is None
            else "missing image file" if not path.is_file()
            else check_keypoints(ann.keypoints, ann.width, ann.height, opts.out_of_image_margin)
        )  # fmt: skip
        if reason:
            rejected.append({"id": ann.id, "reason": reason, "image": ann.file_name})
        else:
            accepted.append(ann)
            seen.add(ann.id)

    # Parts fill with successfully read samples in annotation order. Resume: an existing part is kept and the
    # annotations up to its last id are skipped (read-time rejections of kept parts are not re-listed).
    position = {ann.id: i for i, ann in enumerate(accepted)}
    pos = k = kept = 0
    cache: dict[str, np.ndarray | Exception] = {}
    while pos < len(accepted):
        if part_exists(store, prefix, k):
            rows = store.read_jsonl(part_key(prefix, "parts", k))
            pos, kept, k = position[rows[-1]["id"]] + 1, kept + len(rows), k + 1
            continue
        samples, crops = [], []
        while pos < len(accepted) and len(samples) < opts.part_size:
            ann = accepted[pos]
            pos += 1
            if ann.file_name not in cache:
                cache.clear()  # annotations of one image are adjacent in both sources: decode each file once
                try:
                    data = safe_image_path(image_dir, ann.file_name).read_bytes()  # type: ignore[union-attr]
                    cache[ann.file_name] = decode_image(data, ann.file_name)
                except (OSError, DataError) as e:
                    cache[ann.file_name] = e
            image = cache[ann.file_name]
            if isinstance(image, Exception):
                rejected.append({"id": ann.id, "reason": "unreadable image", "image": ann.file_name})
                continue
            reason = check_keypoints(ann.keypoints, image.shape[1], image.shape[0], opts.out_of_image_margin)
            if reason:
                rejected.append({"id": ann.id, "reason": reason, "image": ann.file_name})
                continue
            sample, crop = to_sample(ann, image, opts)
            samples.append(sample)
            crops.append(crop)
        if samples:
            write_part(store, prefix, k, samples, crops, opts.image_ext)
            kept, k = kept + len(samples), k + 1

    if rejected:
        store.write_jsonl(join(prefix, "rejected.jsonl"), rejected)
    total = kept + len(rejected)
    if kept == 0:
        where = f"; reasons in {store.url_for(join(prefix, 'rejected.jsonl'))}" if rejected else ""
        raise DataError(f"{name}: no usable person annotation ({len(rejected)} quarantined{where})")
    if len(rejected) / total > max_bad_fraction:
        raise DataError(
            f"{name}: {len(rejected)} of {total} annotations quarantined ({len(rejected) / total:.1%} > "
            f"max_bad_fraction {max_bad_fraction:.1%}); reasons in {store.url_for(join(prefix, 'rejected.jsonl'))}"
        )
    info = finish_dataset(store, prefix, name, joint_set, k)
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {"info": info, "accepted": kept, "rejected": len(rejected), "reasons": reasons}
