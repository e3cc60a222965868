"""The `caption` stage: one or more descriptions per challenging sample of `eem/challenging.jsonl`.

Writes `caption/captions.jsonl` ({"id", "index", "captions": [...], "method", "posecodes"?}) in the challenging
set's order, and `caption/examples.json` (the first few, for the report).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from posesyn_core.caption.posecodes import caption_pose
from posesyn_core.eem.pseudo_label import fit_to_2d
from posesyn_core.errors import DataError
from posesyn_core.stages import StageContext


def person_crop(image: np.ndarray, bbox: list[float], scale: float) -> np.ndarray:
    """The bbox enlarged by `scale` around its centre, clipped to the image (what a VLM should look at)."""
    from posesyn_core.data.import2d import crop_box

    x0, y0, x1, y1 = crop_box(bbox, image.shape[1], image.shape[0], scale)
    return image[y0:y1, x0:x1]


def run(ctx: StageContext) -> None:
    cfg = ctx.config
    rows = ctx.store.read_jsonl(ctx.input_key("eem", "challenging.jsonl"))
    ctx.counts["samples_in"] = len(rows)
    progress = ctx.progress(len(rows), "samples")
    out: list[dict] = []
    if cfg.method == "posecodes":
        for k, row in enumerate(rows):
            joints = np.asarray(row["joints3d"], np.float64)
            if joints.shape != (22, 3) or not np.isfinite(joints).all():
                ctx.reject(row["id"], "pseudo-label is not a finite (22, 3) pose")
                continue
            joints = fit_to_2d(joints, row.get("joints2d"), row.get("joint_set", "smpl22"), cfg.fit_to_2d)
            captions, codes = caption_pose(joints, ctx.rng(k), cfg.num_captions)
            out.append({"id": row["id"], "index": row["index"], "captions": captions, "method": "posecodes",
                        "posecodes": asdict(codes)})  # fmt: skip
            progress.advance()
    else:
        from posesyn_core.caption.vlm import VlmCaptioner
        from posesyn_core.eem.stage import open_dataset

        captioner = VlmCaptioner(cfg.vlm, ctx.device)
        datasets: dict = {}
        crops, kept = [], []
        for row in rows:
            ds = datasets.setdefault(row["dataset"], open_dataset(ctx.store, row["dataset"]))
            try:
                crops.append(person_crop(ds.image(row["index"]), row["bbox"], cfg.crop_scale))
                kept.append(row)
            except DataError as e:
                ctx.reject(row["id"], f"unreadable image ({e})")
        for row, captions in zip(kept, captioner(crops, cfg.num_captions, ctx.seed), strict=True):
            out.append({"id": row["id"], "index": row["index"], "captions": captions, "method": "vlm"})
            progress.advance()
    ctx.store.write_jsonl(ctx.key("captions.jsonl"), out)
    ctx.store.write_json(ctx.key("examples.json"), [{"id": r["id"], "captions": r["captions"]} for r in out[:12]])
    ctx.counts["captioned"] = len(out)
    if rows and not out:
        raise DataError("caption: no challenging sample could be captioned")
