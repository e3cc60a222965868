"""The motion-dataset format: joint sequences at 20 fps in the canonical joint set, each with texts.

Under one storage prefix:

    info.json             {"name", "num_clips", "num_parts", "fps", "format_version"}; written last
    clips.jsonl           one row per clip: {"id", "family", "texts": [...], "num_frames", "part", "meta": {}}
    parts/part-<k>.npz    joints (sum of frames, 22, 3) float32, offsets (clips+1,) int64, ids (clips,) str

Joints are in the world frame: metres, y up, floor at y = 0 (HumanML3D's convention), SMPL22 order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posesyn_core.data.dataset import check_sample_id
from posesyn_core.errors import DataError
from posesyn_core.skeleton import NUM_JOINTS
from posesyn_core.storage import Store, join

FPS = 20
FORMAT_VERSION = 1


@dataclass
class MotionClip:
    id: str
    family: str
    joints: np.ndarray  # (T, 22, 3) world frame, metres, y up
    texts: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_sample_id(self.id)
        if self.joints.ndim != 3 or self.joints.shape[1:] != (NUM_JOINTS, 3):
            raise DataError(f"motion {self.id}: joints must be (T, {NUM_JOINTS}, 3), got {self.joints.shape}")
        if not np.isfinite(self.joints).all():
            raise DataError(f"motion {self.id}: non-finite joint positions")


def _part_key(prefix: str, k: int) -> str:
    return join(prefix, "parts", f"part-{k:05d}.npz")


def motion_part_exists(store: Store, prefix: str, k: int) -> bool:
    return store.exists(_part_key(prefix, k)) and store.exists(join(prefix, "parts", f"part-{k:05d}.jsonl"))


def write_motion_part(store: Store, prefix: str, k: int, clips: Sequence[MotionClip]) -> None:
    lengths = [len(c.joints) for c in clips]
    store.save_npz(
        _part_key(prefix, k),
        joints=np.concatenate([c.joints for c in clips]).astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        ids=np.array([c.id for c in clips], dtype=str),
    )
    rows = [{"id": c.id, "family": c.family, "texts": list(c.texts), "num_frames": len(c.joints), "part": k,
             "meta": c.meta} for c in clips]  # fmt: skip
    store.write_jsonl(join(prefix, "parts", f"part-{k:05d}.jsonl"), rows)


def finish_motions(store: Store, prefix: str, name: str, num_parts: int) -> dict:
    rows = []
    for k in range(num_parts):
        key = join(prefix, "parts", f"part-{k:05d}.jsonl")
        if not store.exists(key):
            raise DataError(f"{store.url_for(key)}: motion part {k} of {num_parts} is missing")
        rows.extend(store.read_jsonl(key))
    store.write_jsonl(join(prefix, "clips.jsonl"), rows)
    info = {"name": name, "num_clips": len(rows), "num_parts": num_parts, "fps": FPS, "format_version": FORMAT_VERSION}
    store.write_json(join(prefix, "info.json"), info)
    return info


def write_motions(store: Store, prefix: str, name: str, clips: Sequence[MotionClip], part_size: int = 500) -> dict:
    num_parts = max(1, -(-len(clips) // part_size))
    for k in range(num_parts):
        write_motion_part(store, prefix, k, clips[k * part_size : (k + 1) * part_size])
    return finish_motions(store, prefix, name, num_parts)


def read_motions(store: Store, prefix: str) -> list[MotionClip]:
    """Every clip of a motion dataset, in order."""
    info_key = join(prefix, "info.json")
    if not store.exists(info_key):
        raise DataError(f"{store.url_for(prefix)}: not a complete motion dataset (no info.json)")
    info = store.read_json(info_key)
    rows = store.read_jsonl(join(prefix, "clips.jsonl"))
    clips: list[MotionClip] = []
    for k in range(info["num_parts"]):
        part = store.load_npz(_part_key(prefix, k))
        offsets = part["offsets"]
        for i in range(len(part["ids"])):
            row = rows[len(clips)]
            clips.append(MotionClip(row["id"], row["family"], part["joints"][offsets[i] : offsets[i + 1]],
                                    row["texts"], row.get("meta", {})))  # fmt: skip
    return clips
