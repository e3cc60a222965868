"""The two export layouts, each written one shard at a time (the unit of resume).

WebDataset (the `webdataset` library's tar layout): `shard-<k>.tar` holds, per sample, `<key>.<jpg|png>` (the
frame's bytes as stored, not re-encoded) and `<key>.json` (its record, `records.Item.record`); `<key>` is the
sample id with dots replaced (webdataset splits a member name at its first dot). Tar members carry a fixed mtime
and owner, so the same export gives the same bytes.

COCO-3D (for trainers that read COCO): `images/<id>.<ext>` and `annotations.json` with the usual `images`,
`annotations` (bbox, area, `keypoints` in COCO-17 with visibility 2 / 0, `num_keypoints`) and `categories`, plus
per annotation `keypoints_3d` (COCO-17, camera frame, metres), `cam_param` (`focal`, `princpt`, `R`, `t`, the
Human3.6M-in-COCO convention) and `posesyn` (the whole record). Shards are `parts/part-<k>.json`;
`annotations.json` is streamed from them at the end, so neither side holds the set in memory.

After a shard's payload, `<shard>.done.json` records its sample ids' count and what was skipped: its presence marks
the shard complete.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from abc import ABC, abstractmethod

from posesyn_core.export.records import Item
from posesyn_core.storage import Store

_MTIME = 1_700_000_000  # fixed member times: reproducible tars


class ShardWriter(ABC):
    """Writes shards of (item, image bytes) to `store`; `finish` writes what needs every shard."""

    name: str

    def __init__(self, store: Store, joint_sets: tuple[str, ...]):
        self.store, self.joint_sets = store, joint_sets

    def done_key(self, k: int) -> str:
        return f"{self.shard_name(k)}.done.json"

    def is_done(self, k: int) -> bool:
        return self.store.exists(self.done_key(k))

    @abstractmethod
    def shard_name(self, k: int) -> str: ...

    @abstractmethod
    def payload_key(self, k: int) -> str:
        """The object shard k's samples are in."""

    @abstractmethod
    def write_shard(self, k: int, items: list[tuple[Item, bytes]]) -> None: ...

    def finish(self, num_shards: int) -> None:  # noqa: B027 (optional hook)
        """Called once after every shard is done."""


class WebDatasetWriter(ShardWriter):
    name = "webdataset"

    def shard_name(self, k: int) -> str:
        return f"shard-{k:06d}"

    def payload_key(self, k: int) -> str:
        return f"{self.shard_name(k)}.tar"

    def write_shard(self, k: int, items: list[tuple[Item, bytes]]) -> None:
        # The tar goes to a local temp file first, then up in one atomic upload (S3: a completed multipart).
        fd, tmp = tempfile.mkstemp(suffix=".tar")
        os.close(fd)
        try:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for item, image in items:
                    key = item.sample.id.replace(".", "_")
                    record = json.dumps(item.record(self.joint_sets), sort_keys=True).encode()
                    for name, data in ((f"{key}.{item.image_ext}", image), (f"{key}.json", record)):
                        info = tarfile.TarInfo(name)
                        info.size, info.mtime, info.mode = len(data), _MTIME, 0o644
                        tar.addfile(info, io.BytesIO(data))
            self.store.upload(tmp, self.payload_key(k))
        finally:
            os.unlink(tmp)


class Coco3dWriter(ShardWriter):
    name = "coco3d"
    CATEGORY = {"id": 1, "name": "person", "supercategory": "person"}

    def shard_name(self, k: int) -> str:
        return f"parts/part-{k:06d}"

    def payload_key(self, k: int) -> str:
        return f"{self.shard_name(k)}.json"

    def annotation(self, item: Item, image_id: int) -> dict:
        record = item.record(self.joint_sets)
        s = item.sample
        coco = record["joints"].get("coco17")
        keypoints, keypoints_3d, visible = [], None, 0
        if coco is not None:
            for u, v, vis in coco["2d"]:
                keypoints += [u, v, 2 if vis else 0]
            visible = int(sum(1 for p in coco["2d"] if p[2]))
            keypoints_3d = [c for point in coco.get("3d", []) for c in point] or None
        cam = None
        if s.camera is not None:
            cam = {"focal": [s.camera["fx"], s.camera["fy"]], "princpt": [s.camera["cx"], s.camera["cy"]],
                   "R": record["camera"]["extrinsics"]["R"], "t": record["camera"]["extrinsics"]["t"]}  # fmt: skip
        return {"id": image_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": record["bbox"],
                "area": round(float(s.bbox[2] * s.bbox[3]), 3), "num_keypoints": visible, "keypoints": keypoints,
                "keypoints_3d": keypoints_3d, "cam_param": cam, "posesyn": record}  # fmt: skip

    def write_shard(self, k: int, items: list[tuple[Item, bytes]]) -> None:
        images, annotations = [], []
        for item, data in items:
            image_id = item.index + 1  # COCO ids are positive
            file_name = f"images/{item.sample.id}.{item.image_ext}"
            self.store.write_bytes(file_name, data)
            images.append({"id": image_id, "file_name": file_name, "width": item.sample.width,
                           "height": item.sample.height})  # fmt: skip
            annotations.append(self.annotation(item, image_id))
        self.store.write_json(self.payload_key(k), {"images": images, "annotations": annotations})

    def finish(self, num_shards: int) -> None:
        """annotations.json from the parts, one part in memory at a time (each is read twice)."""
        from posesyn_core.export.records import EXPORT_JOINT_SETS

        categories = [{**self.CATEGORY, "keypoints": list(EXPORT_JOINT_SETS["coco17"])}]
        head = {"info": {"description": "PoseSyn synthetic set (COCO layout with 3D fields)", "version": "1.0"},
                "categories": categories}  # fmt: skip
        with self.store.open_write("annotations.json") as out:
            out.write(json.dumps(head)[:-1].encode())
            for field in ("images", "annotations"):
                out.write(f', "{field}": ['.encode())
                first = True
                for k in range(num_shards):
                    for entry in self.store.read_json(self.payload_key(k))[field]:
                        out.write((b"" if first else b", ") + json.dumps(entry, sort_keys=True).encode())
                        first = False
                out.write(b"]")
            out.write(b"}")


WRITERS: dict[str, type[ShardWriter]] = {"webdataset": WebDatasetWriter, "coco3d": Coco3dWriter}
