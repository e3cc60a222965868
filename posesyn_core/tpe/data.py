"""Pose datasets -> square crops and training batches for the TPE.

Coordinates: image pixels are continuous (the left edge of the image is x = 0, pixel i covers [i, i+1)), which is
what a pinhole projection u = fx * X / Z + cx with cx = W / 2 gives. Every crop is an affine map of the image
(`crop_square` returns it), and 2D labels go through the very same map, so images and labels never disagree.

Training keeps, per sample, one crop with extra context (`context` x the inference crop) in memory: uint8
(N, C, C, 3) with C = round(img_size * context), about 19 KB a sample at the defaults. Augmentation cuts the
training crop out of it per step (scale/translate jitter, horizontal flip with left/right joint swap, colour
jitter), so an unaugmented training crop equals the inference crop. Images are decoded part by part and dropped
after cropping (the dataset's images are never all held at once).

Labels are brought to the canonical joint set: 2D-only datasets in coco17/mpii16 fill the canonical joints they
share (`skeleton.shared_joints`) and mark the rest invisible, so the 2D loss compares shared joints only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.errors import DataError
from posesyn_core.skeleton import NUM_JOINTS, ROOT, flip_permutation, shared_joints
from posesyn_core.storage import Store, open_store

cv2.setNumThreads(1)  # parallelism comes from our thread pool; nested OpenCV threads only fight for 2 cores


def resolve(store: Store, path: str) -> tuple[Store, str]:
    """A dataset/checkpoint location: a key under the run root (`world/lab3d`) or a full URL of its own
    (`s3://bucket/datasets/mpii`, `file:///data/coco`) -> (store, key prefix)."""
    if "://" in path:
        return open_store(path), ""
    return store, path


def resolve_file(store: Store, path: str) -> tuple[Store, str]:
    """A single object (a checkpoint): a key under the run root or a URL -> (store of its folder, name)."""
    if "://" in path:
        parent, _, name = path.rstrip("/").rpartition("/")
        return open_store(parent), name
    return store, path


def crop_box(bboxes: np.ndarray, pad: float) -> np.ndarray:
    """(..., 4) x y w h person boxes -> (..., 4) square boxes x y side side, centred on the box, side =
    pad * max(w, h)."""
    bboxes = np.asarray(bboxes, np.float64)
    cx, cy = bboxes[..., 0] + bboxes[..., 2] / 2, bboxes[..., 1] + bboxes[..., 3] / 2
    side = pad * np.maximum(np.maximum(bboxes[..., 2], bboxes[..., 3]), 1.0)
    return np.stack([cx - side / 2, cy - side / 2, side, side], -1)


def _warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Apply a continuous-coordinate affine m (2, 3) (dst = m @ [x, y, 1]) with OpenCV, whose integer
    coordinates are pixel centres: shift by half a pixel on both sides. Outside the image is black."""
    m_cv = m.copy()
    m_cv[:, 2] += 0.5 * (m[:, 0] + m[:, 1]) - 0.5
    return cv2.warpAffine(image, m_cv, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def crop_square(image: np.ndarray, box: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the square box (x, y, side, side) out of an RGB image, resized to (size, size, 3), and return it with
    the affine (2, 3) that maps image pixels to crop pixels. Large downscales first shrink the whole image with
    area averaging (no aliasing), then warp."""
    image = np.ascontiguousarray(image)
    x0, y0, side = float(box[0]), float(box[1]), float(box[2])
    k = size / side  # crop pixels per image pixel
    pre = np.eye(3)
    if k < 0.66:
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * k * 1.25)), max(1, round(h * k * 1.25))  # keep a bit more than needed
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        pre = np.diag([nw / w, nh / h, 1.0])
    m = np.array([[k, 0, -k * x0], [0, k, -k * y0], [0, 0, 1.0]])
    return _warp(image, (m @ np.linalg.inv(pre))[:2], size), m[:2]


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, 3) affine applied to (..., 2) points."""
    return points @ m[:, :2].T + m[:, 2]


def to_canonical_2d(joints2d: np.ndarray, joint_set: str) -> np.ndarray:
    """(N, J_set, 3) x y visibility -> (N, 22, 3); canonical joints the set lacks get visibility 0."""
    out = np.zeros((len(joints2d), NUM_JOINTS, 3), np.float32)
    canon, own = shared_joints(joint_set)
    out[:, canon] = joints2d[:, own]
    return out


@dataclass
class CropSet:
    """Training/evaluation crops of one or more datasets, labels in canonical joints, all in memory."""

    images: np.ndarray  # (N, C, C, 3) uint8 crops with context
    joints2d: np.ndarray  # (N, 22, 3) x y in crop pixels, visibility 0/1
    joints3d: np.ndarray  # (N, 22, 3) root-relative camera-frame metres (0 where absent)
    has3d: np.ndarray  # (N,) bool
    ids: list[str] = field(default_factory=list)
    context: float = 1.25  # crop side / inference crop side

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def concat(sets: Sequence[CropSet]) -> CropSet:
        if len({s.context for s in sets}) > 1 or len({s.images.shape[1:] for s in sets}) > 1:
            raise ValueError("crop sets differ in crop size or context")
        return CropSet(
            images=np.concatenate([s.images for s in sets]),
            joints2d=np.concatenate([s.joints2d for s in sets]),
            joints3d=np.concatenate([s.joints3d for s in sets]),
            has3d=np.concatenate([s.has3d for s in sets]),
            ids=[i for s in sets for i in s.ids],
            context=sets[0].context,
        )


def load_cropset(
    dataset: PoseDataset, img_size: int, crop_pad: float, context: float = 1.25,
    reject: Callable[[str, str], None] | None = None, advance: Callable[[int], None] | None = None,
    workers: int = 2, chunk: int = 256, limit: int | None = None,
) -> CropSet:  # fmt: skip
    """Decode and crop the first `limit` (default all) samples of `dataset`, chunk by chunk with `workers`
    threads (OpenCV releases the GIL).
    A sample whose image cannot be decoded or whose labels are unusable is passed to `reject(id, reason)` and
    left out (no `reject`: it raises DataError)."""
    arrays = {k: v[:limit] for k, v in dataset.arrays.items()}
    n = len(arrays["ids"])
    size = round(img_size * context)
    boxes = crop_box(arrays["bboxes"], crop_pad * context)
    j2d = to_canonical_2d(arrays["joints2d"], dataset.joint_set)
    j3d = arrays["joints3d"].astype(np.float32)
    has3d = np.isfinite(j3d).all((1, 2))
    j3d = np.where(has3d[:, None, None], j3d - j3d[:, ROOT : ROOT + 1], 0.0).astype(np.float32)
    j2d[..., 2] = np.where(np.isfinite(j2d).all(-1) & (j2d[..., 2] > 0), 1.0, 0.0)
    j2d[..., :2] = np.nan_to_num(j2d[..., :2])

    def one(i: int) -> tuple[np.ndarray | None, np.ndarray | None, str]:
        sid = str(arrays["ids"][i])
        if not np.isfinite(boxes[i]).all() or boxes[i, 2] <= 1:
            return None, None, f"bad bbox {arrays['bboxes'][i].tolist()}"
        if not j2d[i, :, 2].any() and not has3d[i]:
            return None, None, "no visible joint and no 3D label"
        try:
            crop, m = crop_square(dataset.image(i), boxes[i], size)
        except DataError as e:
            return None, None, str(e)
        return crop, m, sid

    keep, crops, mats = [], [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, n, chunk):
            idx = range(start, min(n, start + chunk))
            for i, (crop, m, msg) in zip(idx, pool.map(one, idx), strict=True):
                if crop is None:
                    if reject is None:
                        raise DataError(f"{dataset.store.url_for(dataset.prefix)}: sample {arrays['ids'][i]}: {msg}")
                    reject(str(arrays["ids"][i]), msg)
                    continue
                keep.append(i)
                crops.append(crop)
                mats.append(m)
            if advance is not None:
                advance(len(idx))
    keep_arr = np.array(keep, np.int64)
    out2d = j2d[keep_arr].copy()
    if keep:
        out2d[..., :2] = apply_affine_batch(np.stack(mats), out2d[..., :2])
    return CropSet(
        images=np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        joints2d=out2d, joints3d=j3d[keep_arr], has3d=has3d[keep_arr],
        ids=[str(arrays["ids"][i]) for i in keep], context=context,
    )  # fmt: skip


def apply_affine_batch(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2, 3) affines applied to (N, J, 2) points."""
    return np.einsum("njk,nik->nij", m[:, :, :2], points) + m[:, None, :, 2]


@dataclass
class Augment:
    """Per-sample augmentation ranges (all off = the inference crop)."""

    flip: float = 0.5  # probability of a horizontal flip (image mirrored, left/right joints swapped, X negated)
    scale: float = 0.15  # zoom factor drawn from [1 - scale, 1 + scale]
    translate: float = 0.08  # shift of the crop centre, in fractions of the crop side
    color: float = 0.3  # brightness, contrast and saturation factors drawn from [1 - color, 1 + color]


_FLIP = flip_permutation()


def make_batch(cs: CropSet, idx: np.ndarray, img_size: int, aug: Augment | None, rng: np.random.Generator
               ) -> dict[str, np.ndarray]:  # fmt: skip
    """Cut (augmented) training crops for samples `idx`. Returns numpy arrays: images (B, S, S, 3) float32 in
    [0, 1], joints2d (B, 22, 2) crop-normalized [-1, 1], visible (B, 22), joints3d (B, 22, 3), has3d (B,)."""
    b, c, s = len(idx), cs.images.shape[1], img_size
    aug = aug or Augment(0, 0, 0, 0)
    zoom = 1 + rng.uniform(-aug.scale, aug.scale, b)
    shift = rng.uniform(-aug.translate, aug.translate, (b, 2)) * s
    flip = rng.random(b) < aug.flip
    k = s * cs.context / c * zoom  # output pixels per cached pixel
    images = np.empty((b, s, s, 3), np.uint8)
    j2 = cs.joints2d[idx, :, :2].astype(np.float64)
    j3 = cs.joints3d[idx].copy()
    vis = cs.joints2d[idx, :, 2].copy()
    for n in range(b):
        # Zoom about the cached crop's centre, then shift; a flip mirrors the output about its centre.
        m = np.array([[k[n], 0, s / 2 - k[n] * c / 2 + shift[n, 0]], [0, k[n], s / 2 - k[n] * c / 2 + shift[n, 1]]])
        if flip[n]:
            m[0] = [-m[0, 0], 0, s - m[0, 2]]
        images[n] = _warp(cs.images[idx[n]], m, s)
        j2[n] = apply_affine(m, j2[n])
    j2[flip], vis[flip] = j2[flip][:, _FLIP], vis[flip][:, _FLIP]
    j3[flip] = j3[flip][:, _FLIP] * np.array([-1.0, 1.0, 1.0], np.float32)
    img = images.astype(np.float32)
    img /= 255.0
    if aug.color > 0:  # contrast, saturation, brightness, per sample
        f = rng.uniform(1 - aug.color, 1 + aug.color, (3, b, 1, 1, 1)).astype(np.float32)
        # In place and with a contiguous gray: the same float32 operations, in the same order, as
        # img = (img - mean) * f0 + mean; gray = img.mean(-1); img = clip((gray + (img - gray) * f1) * f2)
        # but 4x faster (numpy is slow to broadcast a trailing axis of 1 over 3 channels).
        mean = img.mean((1, 2, 3), keepdims=True)
        img -= mean
        img *= f[0]
        img += mean
        gray = (img[..., 0] + img[..., 1] + img[..., 2]) / np.float32(3)
        gray = np.repeat(gray[..., None], 3, axis=-1)
        img -= gray
        img *= f[1]
        img += gray
        img *= f[2]
        np.clip(img, 0.0, 1.0, out=img)
    return {
        "images": img,
        "joints2d": (j2 / (s / 2) - 1).astype(np.float32),
        "visible": vis.astype(np.float32),
        "joints3d": j3.astype(np.float32),
        "has3d": cs.has3d[idx],
    }


def mix_counts(batch_size: int, fractions: Sequence[float]) -> list[int]:
    """Split a batch among sources by fractions (sum 1), exactly and deterministically (largest remainder)."""
    raw = np.asarray(fractions, np.float64) * batch_size
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: batch_size - counts.sum()]:
        counts[i] += 1
    return counts.tolist()
