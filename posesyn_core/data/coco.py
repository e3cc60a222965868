"""COCO keypoints reader (`person_keypoints_*.json`) -> pose dataset in the `coco17` joint set.

Format (cocodataset.org, "Keypoint Detection"): `images` [{id, file_name, width, height}], `annotations`
[{id, image_id, category_id, keypoints [x1, y1, v1, ... x17, y17, v17], num_keypoints, bbox [x, y, w, h],
iscrowd}]. v = 0 not labelled, 1 labelled but occluded, 2 visible; v >= 1 becomes visibility 1 here.
One sample per non-crowd person annotation, id `coco-<annotation id>`. Unknown image ids and crowd regions are
quarantined by the reader; everything else by `import2d.import_annotations`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from posesyn_core.data.import2d import Annotation, ImportOptions, import_annotations
from posesyn_core.errors import DataError
from posesyn_core.storage import Store

NUM_COCO_JOINTS = 17


def read_coco(annotation_file: Path) -> Iterator[Annotation | tuple[str, str, dict]]:
    """Yield one `Annotation` per person (grouped by image), or `(id, reason, details)` for a rejected one."""
    try:
        data = json.loads(Path(annotation_file).read_text())
        images = {img["id"]: img for img in data["images"]}
        annotations = data["annotations"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{annotation_file}: not a COCO keypoints file ({type(e).__name__}: {e})") from None
    # Group by image (stable), so the importer decodes each image once.
    order = sorted(range(len(annotations)), key=lambda i: (str(annotations[i].get("image_id")), i))
    for i in order:
        a = annotations[i]
        sid = f"coco-{a.get('id', f'row{i}')}"
        img = images.get(a.get("image_id"))
        if img is None:
            yield sid, "unknown image id", {"image_id": a.get("image_id")}
            continue
        if a.get("iscrowd", 0):
            yield sid, "crowd region", {"image": img.get("file_name")}
            continue
        kp = np.asarray(a.get("keypoints") or [], dtype=np.float64)
        if kp.size != NUM_COCO_JOINTS * 3:
            yield sid, "wrong number of keypoints", {"count": int(kp.size)}
            continue
        kp = kp.reshape(NUM_COCO_JOINTS, 3)
        kp[:, 2] = np.where(np.isfinite(kp[:, 2]), (kp[:, 2] >= 1).astype(np.float64), np.nan)
        bbox = a.get("bbox")
        usable_box = bbox is not None and len(bbox) == 4 and np.isfinite(bbox).all() and bbox[2] > 1 and bbox[3] > 1
        yield Annotation(
            id=sid,
            file_name=str(img.get("file_name", "")),
            keypoints=kp,
            bbox=[float(v) for v in bbox] if usable_box else None,
            width=img.get("width"),
            height=img.get("height"),
            meta={"source": "coco", "image_id": a.get("image_id"), "annotation_id": a.get("id")},
        )


def import_coco(
    annotation_file: Path, image_dir: Path, store: Store, prefix: str, name: str = "coco",
    opts: ImportOptions | None = None, max_bad_fraction: float = 1.0,
) -> dict:  # fmt: skip
    """Convert a COCO keypoints file + image folder into a pose dataset at `prefix` of `store`."""
    return import_annotations(read_coco(annotation_file), image_dir, store, prefix, name, "coco17", opts,
                              max_bad_fraction)  # fmt: skip
