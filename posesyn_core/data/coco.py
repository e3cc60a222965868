"""COCO keypoints reader (`person_keypoints_*.json`) -> pose dataset in the `coco17` joint set.

Format (cocodataset.org, "Keypoint Detection"): `images` [{id, file_name, width, height}], `annotations`
[{id, image_id, category_id, keypoints [x1, y1, v1, ... x17, y17, v17], num_keypoints, bbox [x, y, w, h],
iscrowd}]. v = 0 not labelled, 1 labelled but occluded, 2 visible; v >= 1 becomes visibility 1 here.
One sample per non-crowd person annotation, id `coco-<annotation id>`. Unknown image ids and crowd regions are
quarantined by the reader; everything else by `import2d.import_annotations`.

A detector's keypoints instead of labels (`read_coco_detections`): a COCO keypoint *results* file, the format
every COCO keypoint detector writes for the benchmark ([{image_id, category_id, keypoints [x, y, score] x 17,
score}]), read with the `images` of a COCO file. One sample per person detection scoring at least `min_score`, id
`coco-det<position in the file>`; a keypoint counts as visible when its own score is at least
`min_keypoint_score`. Such a dataset is what `eem` needs to run on a photo set without 2D labels.
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


def _load_images(annotation_file: Path) -> tuple[dict, dict]:
    try:
        data = json.loads(Path(annotation_file).read_text())
        return data, {img["id"]: img for img in data["images"]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{annotation_file}: not a COCO keypoints file ({type(e).__name__}: {e})") from None


def read_coco(annotation_file: Path) -> Iterator[Annotation | tuple[str, str, dict]]:
    """Yield one `Annotation` per person (grouped by image), or `(id, reason, details)` for a rejected one."""
    data, images = _load_images(annotation_file)
    if not isinstance(data.get("annotations"), list):
        raise DataError(f"{annotation_file}: not a COCO keypoints file (no annotations list)")
    yield from _annotations(data["annotations"], images, "coco")


def read_coco_detections(annotation_file: Path, detections_file: Path, min_score: float = 0.0,
                         min_keypoint_score: float = 0.2) -> Iterator[Annotation | tuple[str, str, dict]]:  # fmt: skip
    """A detector's person keypoints (COCO results format) on the images of `annotation_file`, as annotations: see
    the module docstring. Its own labels are never read."""
    _, images = _load_images(annotation_file)
    try:
        detections = json.loads(Path(detections_file).read_text())
        if not isinstance(detections, list) or not all(isinstance(d, dict) for d in detections):
            raise TypeError("expected a list of detections")
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise DataError(f"{detections_file}: not a COCO keypoint results file ({type(e).__name__}: {e})") from None
    rows = []
    for i, d in enumerate(detections):
        score = d.get("score", 1.0)
        if not isinstance(score, int | float) or score < min_score:
            continue
        kp = np.asarray(d.get("keypoints") or [], dtype=np.float64)
        if kp.size == NUM_COCO_JOINTS * 3:
            kp = kp.reshape(NUM_COCO_JOINTS, 3)
            kp[:, 2] = np.where(np.isfinite(kp[:, 2]), np.where(kp[:, 2] >= min_keypoint_score, 2.0, 0.0), np.nan)
            kp = kp.reshape(-1)
        rows.append({**d, "id": f"det{i}", "keypoints": kp.tolist(), "iscrowd": 0, "detection_score": score})
    yield from _annotations(rows, images, "coco-detections")


def _annotations(annotations: list[dict], images: dict, source: str) -> Iterator[Annotation | tuple[str, str, dict]]:
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
            meta={"source": source, "image_id": a.get("image_id"), "annotation_id": a.get("id"),
                  **({"score": a["detection_score"]} if "detection_score" in a else {})},
        )  # fmt: skip


def import_coco(
    annotation_file: Path, image_dir: Path, store: Store, prefix: str, name: str = "coco",
    opts: ImportOptions | None = None, max_bad_fraction: float = 1.0,
    detections: Path | None = None, min_score: float = 0.0, min_keypoint_score: float = 0.2,
) -> dict:  # fmt: skip
    """Convert a COCO keypoints file + image folder into a pose dataset at `prefix` of `store`; with `detections`,
    a detector's keypoints on that file's images instead of its labels (`read_coco_detections`)."""
    annotations = (read_coco(annotation_file) if detections is None else
                   read_coco_detections(annotation_file, detections, min_score, min_keypoint_score))  # fmt: skip
    return import_annotations(annotations, image_dir, store, prefix, name, "coco17", opts,
                              max_bad_fraction)  # fmt: skip
