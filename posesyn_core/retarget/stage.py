"""The `retarget` stage: motions -> body-model parameters in a reference image's camera (sharded over motions).

Per shard, chunks of `motions_per_chunk` motions are written atomically and skipped on resume:

    retarget/shards/<i>-of-<n>/chunks/chunk-<c>.npz    per motion m, fitted frame f (camera frame, metres):
        body_pose (M, F, 21, 3), global_orient (M, F, 3), transl (M, F, 3), shape (M, S), joints3d (M, F, 22, 3),
        frames (M, F) motion frame indices, error_mm (M, F), camera (M, 4) fx fy cx cy, size (M, 2) width height
    retarget/shards/<i>-of-<n>/chunks/chunk-<c>.jsonl  per motion: provenance (motion id, challenging sample id,
        caption, best frame, reference id/dataset/index/image/keypoints) and the fit error

Finalize writes `retarget/fits.jsonl` (those rows plus `chunk`: the npz key and `row`: the motion's row in it)
and `retarget/summary.json` (body model, fit error statistics). The body is posed directly in the camera frame:
`body(body_pose, shape, global_orient, transl).joints == joints3d`, so animate renders with an identity extrinsic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from posesyn_core.data.motions import MotionClip, read_motions
from posesyn_core.errors import DataError
from posesyn_core.retarget.placement import Reference, default_camera, place
from posesyn_core.stages import StageContext

if TYPE_CHECKING:
    from posesyn_core.body import BodyModel
    from posesyn_core.retarget.config import RetargetSection

SUMMARY_PERCENTILES = (50, 90, 99)


def sample_frames(num_frames: int, count: int, must: int | None) -> np.ndarray:
    """`count` evenly spaced frame indices of a clip (repeats when it is shorter), the nearest one replaced by
    `must` (the hard pose's frame) so the frame the motion was made for is always rendered."""
    idx = np.round(np.linspace(0, num_frames - 1, count)).astype(np.int64)
    if must is not None and 0 <= must < num_frames and must not in idx:
        idx[np.argmin(np.abs(idx - must))] = must
    return np.sort(idx)


def without_travel(joints: np.ndarray, anchor: int = 0) -> np.ndarray:
    """(T, 22, 3) world joints with the root's horizontal travel since frame `anchor` removed (height kept), so a
    walking motion stays where its reference person stands."""
    shift = joints[:, :1, :].copy() - joints[anchor, :1, :]
    shift[..., 1] = 0.0
    return joints - shift


def load_references(ctx: StageContext) -> list[tuple[Reference, dict]]:
    """The references with their pinhole cameras (from their dataset when it has them, else a default)."""
    from posesyn_core.eem.stage import open_dataset

    rows = ctx.store.read_jsonl(ctx.config.references)
    if not rows:
        raise DataError(f"{ctx.store.url_for(ctx.config.references)}: no reference samples to animate into")
    datasets: dict[str, np.ndarray] = {}
    out = []
    for row in rows:
        if row["dataset"] not in datasets:
            datasets[row["dataset"]] = open_dataset(ctx.store, row["dataset"]).arrays["cameras"]
        cam = datasets[row["dataset"]][row["index"]]
        if not np.isfinite(cam).all():
            cam = default_camera(row["width"], row["height"])
        ref = Reference(id=row["id"], joints3d=np.asarray(row["joints3d"], np.float64),
                        joints2d=np.asarray(row["joints2d"], np.float64), joint_set=row["joint_set"],
                        camera=np.asarray(cam, np.float64), width=row["width"], height=row["height"])  # fmt: skip
        out.append((ref, row))
    return out


def _chunk_key(ctx: StageContext, c: int, ext: str) -> str:
    return ctx.key("chunks", f"chunk-{c:05d}.{ext}")


def fit_chunk(
    ctx: StageContext, body: BodyModel, clips: list[MotionClip], refs: list[tuple[Reference, dict]], c: int
) -> None:
    """Fit one chunk of motions, place each in a randomly drawn reference camera, write the chunk."""
    import torch

    from posesyn_core.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
    from posesyn_core.retarget.ik import IKConfig, fit_clips

    cfg = ctx.config
    rng = ctx.rng(c)
    frames = np.stack([sample_frames(len(m.joints), cfg.frames_per_motion, m.meta.get("best_frame")) for m in clips])
    # Clips may differ in length; the sampled frames do not: (M, F, 22, 3).
    targets = np.stack([(m.joints if cfg.keep_trajectory else without_travel(m.joints))[idx]
                        for m, idx in zip(clips, frames, strict=True)])  # fmt: skip
    ik = IKConfig(iterations=cfg.iterations, shape_iterations=cfg.shape_iterations, lr=cfg.lr, window=cfg.window,
                  smooth_weight=cfg.smooth_weight, limit_weight=cfg.limit_weight)  # fmt: skip
    fit = fit_clips(body, targets, ik)

    m = len(frames)
    choice = rng.integers(0, len(refs), m)
    rot = np.zeros((m, 3, 3))
    shift = np.zeros((m, 3))
    rows = []
    for i, clip in enumerate(clips):
        ref, ref_row = refs[choice[i]]
        rot[i], shift[i] = place(fit.joints[i], 0, ref)
        err = fit.error_mm[i]
        rows.append({"motion": clip.id, "family": clip.family, "source_id": clip.meta.get("source_id"),
                     "caption": clip.meta.get("caption") or (clip.texts[0] if clip.texts else None),
                     "best_frame": clip.meta.get("best_frame"), "frames": frames[i].tolist(),
                     "reference_id": ref.id, "reference_dataset": ref_row["dataset"],
                     "reference_index": ref_row["index"], "reference_image": ref_row["image"],
                     "reference_joints2d": ref_row["joints2d"], "reference_joint_set": ref.joint_set,
                     "error_mm": round(float(err.mean()), 3), "error_max_mm": round(float(err.max()), 3)})  # fmt: skip
        if err.mean() > cfg.max_error_mm:
            # A quality gate, not bad input: the body cannot follow this generated motion closely enough. The
            # labels would still be exact (they are the fitted body's joints), but the motion drifts from the
            # hard pose it was made for, so it is dropped and counted, not quarantined.
            ctx.counts["motions_dropped_fit_error"] += 1
            ctx.log.debug("motion dropped", extra={"fields": {"id": clip.id, "error_mm": round(float(err.mean()), 2)}})
    # World -> camera: joints rotate and shift; the body's own root rotation composes with R.
    joints_cam = fit.joints @ rot[:, None].transpose(0, 1, 3, 2) + shift[:, None, None]  # (M, F, 22, 3)
    r = torch.as_tensor(rot, dtype=torch.float32)[:, None]  # (M, 1, 3, 3)
    orient = matrix_to_axis_angle(r @ axis_angle_to_matrix(torch.as_tensor(fit.global_orient))).numpy()
    transl = np.einsum("mij,mfj->mfi", rot, fit.transl) + shift[:, None]
    cams = np.stack([refs[k][0].camera for k in choice])
    sizes = np.array([[refs[k][0].width, refs[k][0].height] for k in choice])
    keep = np.array([fit.error_mm[i].mean() <= cfg.max_error_mm for i in range(m)])
    ctx.store.save_npz(_chunk_key(ctx, c, "npz"), body_pose=fit.body_pose[keep].astype(np.float32),
                       global_orient=orient[keep].astype(np.float32), transl=transl[keep].astype(np.float32),
                       shape=fit.shape[keep].astype(np.float32), joints3d=joints_cam[keep].astype(np.float32),
                       frames=frames[keep], error_mm=fit.error_mm[keep].astype(np.float32),
                       camera=cams[keep].astype(np.float32), size=sizes[keep])  # fmt: skip
    ctx.store.write_jsonl(_chunk_key(ctx, c, "jsonl"), [r for r, k in zip(rows, keep, strict=True) if k])


def load_body(cfg: RetargetSection, device: str = "cpu") -> BodyModel:
    """The body model the IK fits, on the stage's device (the IK runs where the body is)."""
    from posesyn_core.body import load_body_model

    return load_body_model(cfg.body_model, cfg.body_model_path, device=device)


def run(ctx: StageContext) -> None:
    import torch

    cfg = ctx.config
    clips = read_motions(ctx.store, cfg.motions)
    refs = load_references(ctx)
    num_chunks = -(-len(clips) // cfg.motions_per_chunk)
    mine = ctx.shard_slice(num_chunks)
    lo, hi = mine.start * cfg.motions_per_chunk, min(mine.stop * cfg.motions_per_chunk, len(clips))
    ctx.counts["samples_in"] = hi - lo
    progress = ctx.progress(hi - lo, "motions")
    body = None
    torch.manual_seed(ctx.seed)
    for c in mine:
        chunk = clips[c * cfg.motions_per_chunk : (c + 1) * cfg.motions_per_chunk]
        if not ctx.store.exists(_chunk_key(ctx, c, "jsonl")):
            body = body or load_body(cfg, ctx.device)
            fit_chunk(ctx, body, chunk, refs, c)
        progress.advance(len(chunk))
    ctx.counts["motions"] = hi - lo


def finalize(ctx: StageContext) -> None:
    """Index every shard's fitted motions in `retarget/fits.jsonl` and summarize the fit error."""
    rows, errors = [], []
    for prefix in ctx.shard_keys("chunks"):
        for key in ctx.store.list(prefix):
            if not key.endswith(".jsonl"):
                continue
            npz = key[: -len(".jsonl")] + ".npz"
            for k, row in enumerate(ctx.store.read_jsonl(key)):
                rows.append({**row, "chunk": npz, "row": k})
            errors.append(ctx.store.load_npz(npz)["error_mm"].reshape(-1))
    if not rows:
        raise DataError("retarget: no motion could be fitted (all quarantined or no motions); see rejected.jsonl")
    err = np.concatenate(errors)
    cfg = ctx.config
    summary = {"body_model": cfg.body_model, "body_model_path": cfg.body_model_path, "motions": len(rows),
               "frames": int(err.size), "error_mm": {
        "mean": round(float(err.mean()), 3), "max": round(float(err.max()), 3),
        **{f"p{q}": round(float(np.percentile(err, q)), 3) for q in SUMMARY_PERCENTILES}}}  # fmt: skip
    ctx.store.write_jsonl(ctx.key("fits.jsonl"), rows)
    ctx.store.write_json(ctx.key("summary.json"), summary)
    ctx.counts["motions_fitted"], ctx.counts["frames_fitted"] = len(rows), int(err.size)
    ctx.extra["retarget"] = summary
