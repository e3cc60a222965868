"""What one exported sample says: its labels in every joint set that applies, its body-model parameters, its
camera, its provenance; and the streams of samples an export reads.

Frames are streamed part by part from the pose datasets (`parts/part-<k>.jsonl`, at most `frames_per_part`
records at a time), body-model parameters chunk by chunk from retarget (frames come in motion order, so one chunk
is open at a time), filter errors by a merge over `filter/errors.jsonl` (the kept frames are a subsequence of the
scored ones, in the same order): memory stays flat however large the set.

Joint sets, each with 3D (camera frame, metres) and 2D (pixels, x y visibility):
- `smpl22`: the labels themselves (the 22 SMPL body joints, HumanML3D order);
- `coco17`: the 12 body joints COCO shares with SMPL22, plus nose, eyes and ears placed on the head along its own
  axes (as the pose videos of the animator are drawn, `animate.pose_guidance`): derived, not annotated;
- `smpl24`: SMPL's own 24 joints (the 22 + both hands) from the fitted SMPL parameters, when retarget fitted SMPL.
Real samples (`--include-real`) keep their own 2D joint set and add `smpl22` where they have 3D.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posesyn_core.data.dataset import PoseSample, part_key
from posesyn_core.errors import DataError
from posesyn_core.geometry import project
from posesyn_core.skeleton import COCO17, JOINT_SETS, SMPL22
from posesyn_core.storage import Store, join

SMPL24 = (*SMPL22, "left_hand", "right_hand")
EXPORT_JOINT_SETS = {"smpl22": SMPL22, "coco17": COCO17, "smpl24": SMPL24}
# COCO-17 from the OpenPose-18 points built from SMPL22 (face points) and SMPL22 itself (body joints).
_COCO_FROM_OPENPOSE = {0: 0, 1: 15, 2: 14, 3: 17, 4: 16}  # nose, left/right eye, left/right ear
_COCO_FROM_SMPL22 = {5: 16, 6: 17, 7: 18, 8: 19, 9: 20, 10: 21, 11: 1, 12: 2, 13: 4, 14: 5, 15: 7, 16: 8}
CAMERA_CONVENTION = ("OpenCV pinhole: x right, y down, z forward; joints3d are in this camera's frame in metres, "
                     "so the extrinsics are the identity; no distortion")  # fmt: skip


def coco17_from_smpl22(joints3d: np.ndarray) -> np.ndarray:
    """(22, 3) canonical joints -> (17, 3) COCO keypoints in 3D."""
    from posesyn_core.animate.pose_guidance import openpose_from_smpl22

    openpose = openpose_from_smpl22(joints3d)
    out = np.zeros((17, 3), joints3d.dtype)
    for coco, op in _COCO_FROM_OPENPOSE.items():
        out[coco] = openpose[op]
    for coco, smpl in _COCO_FROM_SMPL22.items():
        out[coco] = joints3d[smpl]
    return out


def joints_2d(joints3d: np.ndarray, camera: dict, width: int, height: int) -> np.ndarray:
    """(J, 3) pixels + visibility (in the image and in front of the camera), as the synthetic labels are made."""
    cam = np.array([camera["fx"], camera["fy"], camera["cx"], camera["cy"]], np.float64)
    uv = project(joints3d.astype(np.float64), cam)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
    return np.concatenate([uv, (inside & (joints3d[:, 2] > 0))[:, None]], 1)


def _round(a: np.ndarray, digits: int) -> list:
    return np.round(np.asarray(a, np.float64), digits).tolist()


@dataclass
class Fit:
    """Body-model parameters of one frame (retarget's fitted body, posed in the reference camera)."""

    model: str
    body_pose: np.ndarray  # (21, 3) axis-angle
    global_orient: np.ndarray  # (3,) axis-angle, camera frame
    transl: np.ndarray  # (3,) camera frame, metres
    shape: np.ndarray  # (S,)
    joints24: np.ndarray | None = None  # (24, 3) SMPL's own joints, when the model is SMPL

    def to_json(self) -> dict:
        return {"name": self.model, "body_pose": _round(self.body_pose, 6),
                "global_orient": _round(self.global_orient, 6), "transl": _round(self.transl, 6),
                "shape": _round(self.shape, 6),
                "pose_format": "axis-angle, 21 body joints in SMPL order (no hands)"}  # fmt: skip


@dataclass
class Item:
    """One sample to export: its record, where its image is, and its label record (`record`)."""

    index: int  # position in the export (decides its shard)
    source: str  # "synthetic" | "real"
    dataset: str  # the pose dataset it comes from (URL)
    store: Store
    prefix: str
    sample: PoseSample
    joint_set: str  # the dataset's joint set (of joints2d)
    fit: Fit | None = None
    filter_error_mm: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def image_key(self) -> str:
        return join(self.prefix, self.sample.image)

    @property
    def image_ext(self) -> str:
        return self.sample.image.rsplit(".", 1)[-1].lower()

    def joints(self, joint_sets: tuple[str, ...]) -> dict[str, dict]:
        s, out = self.sample, {}
        j2d = np.asarray(s.joints2d, np.float64)
        if s.joints3d is None or s.camera is None:  # 2D only: the dataset's own set
            return {self.joint_set: {"2d": _round(j2d, 3)}}
        j3d = np.asarray(s.joints3d, np.float64)
        wanted = {"smpl22": j3d, "coco17": coco17_from_smpl22(j3d) if "coco17" in joint_sets else None,
                  "smpl24": self.fit.joints24 if self.fit is not None else None}  # fmt: skip
        for name in joint_sets:
            points = wanted.get(name)
            if points is not None:
                out[name] = {"3d": _round(points, 6), "2d": _round(joints_2d(points, s.camera, s.width, s.height), 3)}
        if self.joint_set != "smpl22":  # a real 3D set's own 2D annotation stays as it was
            out[self.joint_set] = {"2d": _round(j2d, 3)}
        return out

    def record(self, joint_sets: tuple[str, ...]) -> dict:
        """The sample's labels as one JSON object (the webdataset `.json`, the COCO annotation's extra fields)."""
        s, meta = self.sample, self.sample.meta
        camera = None
        if s.camera is not None:
            camera = {"intrinsics": {k: round(float(s.camera[k]), 6) for k in ("fx", "fy", "cx", "cy")},
                      "extrinsics": {"R": np.eye(3).tolist(), "t": [0.0, 0.0, 0.0]},
                      "convention": CAMERA_CONVENTION}  # fmt: skip
        return {
            "id": s.id, "source": self.source, "dataset": self.dataset,
            "image": {"width": s.width, "height": s.height, "format": self.image_ext},
            "bbox": _round(s.bbox, 3), "camera": camera, "joints": self.joints(joint_sets),
            "body_model": self.fit.to_json() if self.fit is not None else None,
            "hard_pose_id": meta.get("challenging_id"), "caption": s.caption, "motion_id": meta.get("motion_id"),
            "frame": meta.get("frame"), "family": meta.get("family"), "reference_id": meta.get("reference_id"),
            "filter_error_mm": self.filter_error_mm, **self.extra,
        }  # fmt: skip


def iter_dataset(store: Store, prefix: str) -> Iterator[PoseSample]:
    """Every sample of a pose dataset, one part in memory at a time."""
    info_key = join(prefix, "info.json")
    if not store.exists(info_key):
        raise DataError(f"{store.url_for(prefix)}: not a complete pose dataset (no info.json)")
    info = store.read_json(info_key)
    for k in range(int(info["num_parts"])):
        for row in store.read_jsonl(part_key(prefix, "parts", k)):
            yield PoseSample.from_json(row)


def iter_filter_errors(store: Store) -> Iterator[tuple[str, float]]:
    """(id, error_mm) of every frame filter scored, in dataset order, streamed."""
    import json

    if not store.exists("filter/errors.jsonl"):
        return
    with store.open_read("filter/errors.jsonl") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                yield row["id"], float(row["error_mm"])


class FitReader:
    """Body-model parameters of synthetic frames from retarget's chunks (one chunk open at a time)."""

    def __init__(self, store: Store, body_model: str, body_model_path: str | None):
        self.store, self.model, self.model_path = store, body_model, body_model_path
        self._key: str | None = None
        self._chunk: dict[str, np.ndarray] = {}
        self._joints24: np.ndarray | None = None  # (M, F, 24, 3) of the open chunk, SMPL only
        self._body = None

    def _smpl24(self, chunk: dict[str, np.ndarray]) -> np.ndarray:
        """SMPL's 24 joints for every frame of a chunk, one batched forward."""
        import torch

        from posesyn_core.body import load_body_model

        if self._body is None:
            self._body = load_body_model("smpl", self.model_path)
        m, f = chunk["body_pose"].shape[:2]
        with torch.no_grad():
            joints = self._body.joints24(
                torch.as_tensor(chunk["body_pose"]).reshape(m * f, 21, 3),
                torch.as_tensor(chunk["shape"])[:, None].expand(m, f, -1).reshape(m * f, -1),
                torch.as_tensor(chunk["global_orient"]).reshape(m * f, 3),
                torch.as_tensor(chunk["transl"]).reshape(m * f, 3),
            )  # fmt: skip
        return joints.numpy().reshape(m, f, 24, 3)

    def __call__(self, fit: dict) -> Fit:
        if fit["chunk"] != self._key:
            self._key, self._chunk = fit["chunk"], self.store.load_npz(fit["chunk"])
            self._joints24 = self._smpl24(self._chunk) if self.model == "smpl" else None
        a, r, k = self._chunk, int(fit["row"]), int(fit["slot"])
        return Fit(self.model, a["body_pose"][r, k], a["global_orient"][r, k], a["transl"][r, k], a["shape"][r],
                   None if self._joints24 is None else self._joints24[r, k])  # fmt: skip


def check_joint_sets(names: tuple[str, ...], body_model: str | None) -> tuple[str, ...]:
    unknown = [n for n in names if n not in EXPORT_JOINT_SETS]
    if unknown:
        from posesyn_core.errors import ConfigError

        raise ConfigError(f"--joint-sets: unknown {unknown}; known: {sorted(EXPORT_JOINT_SETS)}")
    if "smpl24" in names and body_model != "smpl":
        names = tuple(n for n in names if n != "smpl24")  # only SMPL fits have SMPL's hand joints
    return names


def joint_set_names(names: tuple[str, ...], real_sets: set[str]) -> dict[str, list[str]]:
    """Joint names of every set an export uses (written once, in the export's index)."""
    out = {n: list(EXPORT_JOINT_SETS[n]) for n in names}
    out.update({n: list(JOINT_SETS[n]) for n in sorted(real_sets)})
    return out
