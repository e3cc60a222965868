"""MPII Human Pose reader -> pose dataset in the `mpii16` joint set.

The official annotation is a MATLAB struct (`mpii_human_pose_v1_u12_1.mat`); nearly every PyTorch pose code
base reads a JSON conversion of it instead, and so does this reader. Two layouts are accepted (a JSON list of
person rows, or `{"root": [...]}`):

- HRNet / microsoft "human-pose-estimation.pytorch" `annot/{train,valid,trainval}.json`:
  `{"image": "015601864.jpg", "center": [cx, cy], "scale": s, "joints": [[x, y] x16], "joints_vis": [0|1 x16]}`
- bearpaw "pytorch-pose" `mpii_annotations.json`:
  `{"img_paths": ..., "objpos": [cx, cy], "scale_provided": s, "joint_self": [[x, y, vis] x16], ...}`

Both keep MATLAB's 1-based pixel coordinates, so 1 is subtracted (`one_based=True`, as HRNet's loader does).
Joint order is MPII's (r-ankle ... l-wrist, `skeleton.MPII16`); unlabelled joints have vis 0 (their -1
coordinates are ignored). The person box is the square of side `200 * scale` around `center` (MPII's scale is
the person's height / 200 px). Sample ids are `mpii-<row index>`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from posesyn_core.data.import2d import Annotation, ImportOptions, import_annotations
from posesyn_core.errors import DataError
from posesyn_core.storage import Store

NUM_MPII_JOINTS = 16
MPII_SCALE_PX = 200.0  # MPII `scale` unit: the person's height is about scale * 200 px


def _row_fields(row: dict) -> tuple[str, list, float, np.ndarray]:
    """(image, center, scale, (16, 3) keypoints) from either JSON layout; raises KeyError/ValueError."""
    if "joints" in row:
        xy = np.asarray(row["joints"], dtype=np.float64).reshape(NUM_MPII_JOINTS, -1)[:, :2]
        vis = np.asarray(row["joints_vis"], dtype=np.float64).reshape(NUM_MPII_JOINTS)
        return str(row["image"]), row["center"], float(row["scale"]), np.concatenate([xy, vis[:, None]], 1)
    kp = np.asarray(row["joint_self"], dtype=np.float64).reshape(NUM_MPII_JOINTS, 3)
    return str(row["img_paths"]), row["objpos"], float(row["scale_provided"]), kp


def read_mpii(annotation_file: Path, one_based: bool = True) -> Iterator[Annotation | tuple[str, str, dict]]:
    """Yield one `Annotation` per person row, or `(id, reason, details)` for a row that cannot be parsed."""
    try:
        data = json.loads(Path(annotation_file).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{annotation_file}: not an MPII JSON annotation file ({e})") from None
    rows = data.get("root") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise DataError(f"{annotation_file}: expected a list of person rows (or {{'root': [...]}})")
    for i, row in enumerate(rows):
        sid = f"mpii-{i:06d}"
        try:
            image, center, scale, kp = _row_fields(row)
            cx, cy = float(center[0]), float(center[1])
        except (KeyError, ValueError, TypeError, IndexError) as e:
            yield sid, "malformed annotation row", {"error": f"{type(e).__name__}: {e}"}
            continue
        kp[:, 2] = np.where(np.isfinite(kp[:, 2]), (kp[:, 2] > 0).astype(np.float64), np.nan)
        offset = 1.0 if one_based else 0.0
        kp[:, :2] -= offset
        side = MPII_SCALE_PX * scale
        bbox = [cx - offset - side / 2, cy - offset - side / 2, side, side] if np.isfinite(side) and side > 1 else None
        meta = {"source": "mpii", "row": i}
        if "isValidation" in row:
            meta["is_validation"] = bool(row["isValidation"])
        yield Annotation(id=sid, file_name=image, keypoints=kp, bbox=bbox, meta=meta)


def import_mpii(
    annotation_file: Path, image_dir: Path, store: Store, prefix: str, name: str = "mpii",
    opts: ImportOptions | None = None, max_bad_fraction: float = 1.0, one_based: bool = True,
) -> dict:  # fmt: skip
    """Convert an MPII JSON annotation file + image folder into a pose dataset at `prefix` of `store`."""
    return import_annotations(read_mpii(annotation_file, one_based), image_dir, store, prefix, name, "mpii16",
                              opts, max_bad_fraction)  # fmt: skip
