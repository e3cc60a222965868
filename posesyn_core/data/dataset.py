"""The pose-dataset format every stage reads and writes (real 2D sets, the mini-world, synthetic output).

Under one storage prefix:

    info.json                 {"name", "joint_set", "num_samples", "num_parts", "format_version"}; written last,
                              so a dataset without it is incomplete
    samples.jsonl             one JSON object per sample (see `PoseSample`), in part order
    images/<id>.<ext>         the images (JPEG/PNG), any size, grayscale or color
    arrays/part-<k>.npz       the same numbers as arrays for fast loading: ids (N,) str, joints2d (N, J, 3),
                              joints3d (N, 22, 3) (NaN where absent), cameras (N, 4) fx fy cx cy (NaN where
                              absent), bboxes (N, 4) x y w h
    parts/part-<k>.jsonl      per-part metadata; `finish_dataset` concatenates them into samples.jsonl

Writers add whole parts (`write_part`), each written atomically, so a producer killed midway resumes by skipping
the parts that exist. Coordinates: joints2d in image pixels (x, y, visibility 0/1) in the dataset's own joint
set; joints3d in the camera frame in metres, SMPL22 order; a pinhole camera without distortion.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from posesyn_core.errors import DataError
from posesyn_core.skeleton import JOINT_SETS, NUM_JOINTS, check_joint_set
from posesyn_core.storage import Store, join

FORMAT_VERSION = 1
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


def check_sample_id(sample_id: str) -> str:
    """Ids become file names: letters, digits, '_', '.', '-' only, no leading dot (no path traversal)."""
    if not isinstance(sample_id, str) or not _SAFE_ID.match(sample_id) or ".." in sample_id:
        raise DataError(f"invalid sample id {sample_id!r}: use letters, digits, '_', '.', '-' (no '..', no '/')")
    return sample_id


@dataclass
class PoseSample:
    id: str
    image: str  # key relative to the dataset prefix, e.g. "images/<id>.jpg"
    width: int
    height: int
    bbox: list[float]  # x, y, w, h in pixels
    joints2d: list[list[float]]  # (J, 3): x, y, visibility
    joints3d: list[list[float]] | None = None  # (22, 3) camera frame, metres
    camera: dict[str, float] | None = None  # fx, fy, cx, cy
    caption: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # family, subject, provenance ...

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict) -> PoseSample:
        return cls(**row)


def _camera_row(cam: dict | None) -> list[float]:
    return [cam["fx"], cam["fy"], cam["cx"], cam["cy"]] if cam else [np.nan] * 4


def encode_image(image: np.ndarray, ext: str) -> bytes:
    import cv2

    bgr = image[..., ::-1] if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if ext == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(f".{ext}", np.ascontiguousarray(bgr), params)
    if not ok:
        raise DataError(f"could not encode image as {ext}")
    return buf.tobytes()


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """RGB uint8 (H, W, 3) from encoded bytes; grayscale images are expanded to 3 channels."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{source}: not a decodable image")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.dtype != np.uint8:
        img = (img / max(1, img.max()) * 255).astype(np.uint8)
    return img


def part_key(prefix: str, kind: str, k: int) -> str:
    return join(prefix, kind, f"part-{k:05d}." + ("npz" if kind == "arrays" else "jsonl"))


def part_exists(store: Store, prefix: str, k: int) -> bool:
    return store.exists(part_key(prefix, "parts", k))


def write_part(
    store: Store,
    prefix: str,
    k: int,
    samples: Sequence[PoseSample],
    images: Sequence[np.ndarray | bytes | None],
    image_ext: str = "jpg",
) -> None:
    """Write part k: images first, then arrays, then the part's jsonl (its presence marks the part complete)."""
    if len(samples) != len(images):
        raise ValueError("samples and images differ in length")
    for s, img in zip(samples, images, strict=True):
        check_sample_id(s.id)
        if img is not None:
            data = img if isinstance(img, bytes) else encode_image(img, image_ext)
            store.write_bytes(join(prefix, s.image), data)
    n = len(samples)
    j = len(samples[0].joints2d) if n else 0
    joints3d = np.full((n, NUM_JOINTS, 3), np.nan, np.float32)
    for i, s in enumerate(samples):
        if s.joints3d is not None:
            joints3d[i] = s.joints3d
    buf = io.BytesIO()
    np.savez(
        buf,
        ids=np.array([s.id for s in samples], dtype=str),
        joints2d=np.array([s.joints2d for s in samples], np.float32).reshape(n, j, 3),
        joints3d=joints3d,
        cameras=np.array([_camera_row(s.camera) for s in samples], np.float32).reshape(n, 4),
        bboxes=np.array([s.bbox for s in samples], np.float32).reshape(n, 4),
    )
    store.write_bytes(part_key(prefix, "arrays", k), buf.getvalue())
    store.write_jsonl(part_key(prefix, "parts", k), (s.to_json() for s in samples))


def finish_dataset(store: Store, prefix: str, name: str, joint_set: str, num_parts: int) -> dict:
    """Concatenate the parts' metadata into samples.jsonl and write info.json (the completion marker)."""
    check_joint_set(joint_set)
    count = 0
    with store.open_write(join(prefix, "samples.jsonl")) as out:
        for k in range(num_parts):
            key = part_key(prefix, "parts", k)
            if not store.exists(key):
                raise DataError(f"{store.url_for(key)}: part {k} of {num_parts} is missing")
            data = store.read_bytes(key)
            count += data.count(b"\n")
            out.write(data)
    info = {"name": name, "joint_set": joint_set, "num_samples": count, "num_parts": num_parts,
            "format_version": FORMAT_VERSION}  # fmt: skip
    store.write_json(join(prefix, "info.json"), info)
    return info


def write_dataset(
    store: Store, prefix: str, name: str, joint_set: str, samples: Sequence[PoseSample],
    images: Sequence[np.ndarray | bytes | None], image_ext: str = "jpg", part_size: int = 2000,
) -> dict:  # fmt: skip
    """Write a whole dataset in parts of `part_size` samples."""
    num_parts = max(1, -(-len(samples) // part_size))
    for k in range(num_parts):
        sl = slice(k * part_size, (k + 1) * part_size)
        write_part(store, prefix, k, samples[sl], images[sl], image_ext)
    return finish_dataset(store, prefix, name, joint_set, num_parts)


class PoseDataset:
    """Read side. `arrays` gives every sample's numbers at once; `samples` the metadata; `image(i)` decodes."""

    def __init__(self, store: Store, prefix: str):
        self.store, self.prefix = store, prefix
        info_key = join(prefix, "info.json")
        if not store.exists(info_key):
            raise DataError(f"{store.url_for(prefix)}: not a complete pose dataset (no info.json)")
        self.info = store.read_json(info_key)
        if self.info.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{store.url_for(info_key)}: format_version {self.info.get('format_version')} "
                            f"is not {FORMAT_VERSION}")  # fmt: skip
        self.joint_set: str = self.info["joint_set"]
        self.name: str = self.info["name"]
        self._samples: list[PoseSample] | None = None
        self._arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.info["num_samples"])

    @property
    def num_joints(self) -> int:
        return len(JOINT_SETS[self.joint_set])

    @property
    def samples(self) -> list[PoseSample]:
        if self._samples is None:
            rows = self.store.read_jsonl(join(self.prefix, "samples.jsonl"))
            self._samples = [PoseSample.from_json(r) for r in rows]
        return self._samples

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            parts = [self.store.load_npz(part_key(self.prefix, "arrays", k)) for k in range(self.info["num_parts"])]
            self._arrays = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        return self._arrays

    def image(self, i: int) -> np.ndarray:
        s = self.samples[i]
        key = join(self.prefix, s.image)
        return decode_image(self.store.read_bytes(key), self.store.url_for(key))

    def iter_images(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        for i in indices:
            yield i, self.image(i)

    def index(self) -> dict[str, int]:
        return {s.id: i for i, s in enumerate(self.samples)}


def dumps_sample(sample: PoseSample) -> str:
    return json.dumps(sample.to_json(), sort_keys=True)
