"""The `eem` stage: TPE inference over the 2D dataset in chunks (sharded), then a global ranking (finalize).

Per shard, `eem/shards/<i>-of-<n>/chunks/chunk-<c>.npz` (atomic, skipped when present on resume) holds, for the
chunk's scorable-or-not samples: index, joints3d (root-relative camera frame, m), cam (s, tx, ty), joints2d
(predicted, px), error, error_px, joints_used; plus the ids and reasons of the chunk's rejected samples; with
`alignment: similarity` also error_root (the paper's root-relative error, which picks the references); with
`keypoints2d: estimated` also keypoints2d (N, 22, 3): the 2D estimator's SMPL22 keypoints with visibility, which
stand in for the labels everywhere (scores, the rows' joints2d / joint_set, the references' full-body test).

Finalize writes under `eem/`:
    scores.jsonl          every predicted sample: id, index, error (null = not scorable; after a similarity fit in the
                          image plane with `alignment: similarity`), error_px, joints_used
    challenging.jsonl     the top K_C (or a random K_C, `selection: random`; `everyday_share` of it drawn from
                          below the cut, then each row says `selected`: eem | everyday): rank, id, error, pseudo-label
                          joints3d, cam, bbox, image key, dataset, size, family + source meta
    references.jsonl      K_NC lowest-error samples whose joints are all visible and inside the image (by the
                          root-relative error also with `alignment: similarity`: their pseudo-label places the body)
    summary.json          counts, error statistics, family histograms (all vs challenging) when meta has families
    score_histogram.png   the score distribution with the K_C cut
"""

from __future__ import annotations

import io
from collections import Counter

import numpy as np

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.data.import2d import check_keypoints
from posesyn_core.eem.score import eem_errors, full_body_in_image, weight_vector
from posesyn_core.errors import DataError, StorageError
from posesyn_core.stages import StageContext
from posesyn_core.storage import NotFound, Store, open_store

OUT_OF_IMAGE_MARGIN = 0.25  # visible GT joints further outside than this x image size: a broken label


def open_dataset(store: Store, ref: str) -> PoseDataset:
    """A dataset named by a key under the run root or by a URL of its own."""
    return PoseDataset(open_store(ref), "") if "://" in ref else PoseDataset(store, ref)


def _chunk_key(ctx: StageContext, c: int) -> str:
    return ctx.key("chunks", f"chunk-{c:05d}.npz")


def estimated_keypoints(pred2d: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(N, 22, 3) SMPL22 keypoints of a 2D estimator: its joints, visible where finite and no further outside the
    image than a label may be (`OUT_OF_IMAGE_MARGIN`)."""
    x, y, w, h = pred2d[..., 0], pred2d[..., 1], width[:, None], height[:, None]
    mx, my = OUT_OF_IMAGE_MARGIN * w, OUT_OF_IMAGE_MARGIN * h
    vis = np.isfinite(pred2d).all(-1) & (x >= -mx) & (y >= -my) & (x <= w + mx) & (y <= h + my)
    return np.concatenate([np.nan_to_num(pred2d), vis[..., None]], -1).astype(np.float32)


def _predict_chunk(ctx: StageContext, ds: PoseDataset, estimator, indices: range,  # noqa: ANN001
                   keypoint_estimator=None) -> dict[str, np.ndarray]:  # noqa: ANN001  # fmt: skip
    """Predict and score one chunk; with a keypoint estimator, its 2D replaces the labels (never read)."""
    cfg = ctx.config
    arrays = ds.arrays
    good, images, rejected = [], [], []
    for i in indices:
        s = ds.samples[i]
        reason = None if keypoint_estimator else check_keypoints(arrays["joints2d"][i], s.width, s.height,
                                                                 OUT_OF_IMAGE_MARGIN)  # fmt: skip
        if reason is None:
            try:
                images.append(ds.image(i))
                good.append(i)
                continue
            except NotFound:
                reason = "missing image file"
            except (DataError, StorageError) as e:
                reason = f"unreadable image ({e})"
        rejected.append((ds.samples[i].id, reason))
    good_idx = np.array(good, dtype=np.int64)
    n = len(good_idx)
    out = {"index": good_idx, "joints3d": np.zeros((n, 22, 3), np.float32), "cam": np.zeros((n, 3), np.float32),
           "joints2d": np.zeros((n, 22, 2), np.float32)}  # fmt: skip
    if n:
        pred = estimator.predict(images, arrays["bboxes"][good_idx], batch_size=cfg.batch_size)
        out.update(joints3d=np.asarray(pred.joints3d, np.float32), cam=np.asarray(pred.cam, np.float32),
                   joints2d=np.asarray(pred.joints2d, np.float32))  # fmt: skip
    joint_set, reference2d = ds.joint_set, arrays["joints2d"][good_idx]
    if keypoint_estimator is not None:
        joint_set = "smpl22"
        reference2d = np.zeros((0, 22, 3), np.float32)
        if n:
            est = keypoint_estimator.predict(images, arrays["bboxes"][good_idx], batch_size=cfg.batch_size)
            size = np.array([[ds.samples[i].width, ds.samples[i].height] for i in good], np.float64).reshape(-1, 2)
            reference2d = estimated_keypoints(np.asarray(est.joints2d, np.float64), size[:, 0], size[:, 1])
        out["keypoints2d"] = reference2d
    score_args = (out["joints2d"].astype(np.float64), np.asarray(reference2d, np.float64), joint_set,
                  weight_vector(cfg.weights), arrays["bboxes"][good_idx].astype(np.float64),
                  cfg.normalize_by_weight, cfg.scale, cfg.min_joints)  # fmt: skip
    scores = eem_errors(*score_args, alignment=cfg.alignment)
    if cfg.alignment != "root":  # references are still chosen by the paper's error (see finalize)
        out["error_root"] = eem_errors(*score_args).error
    out.update(error=scores.error, error_px=scores.error_px, joints_used=scores.joints_used.astype(np.int64),
               rejected_ids=np.array([r[0] for r in rejected], dtype=str),
               rejected_reasons=np.array([r[1] for r in rejected], dtype=str))  # fmt: skip
    return out


def run(ctx: StageContext) -> None:
    """One shard: predict and score its chunks, skipping chunks already written."""
    from posesyn_core.tpe.inference import load_estimator

    cfg = ctx.config
    ds = open_dataset(ctx.store, cfg.dataset)
    num_chunks = -(-len(ds) // cfg.chunk_size)
    chunks = ctx.shard_slice(num_chunks)
    ranges = [range(c * cfg.chunk_size, min(len(ds), (c + 1) * cfg.chunk_size)) for c in chunks]
    ctx.counts["samples_in"] = sum(len(r) for r in ranges)
    progress = ctx.progress(ctx.counts["samples_in"], "samples")
    estimator = keypoint_estimator = None
    for c, indices in zip(chunks, ranges, strict=True):
        key = _chunk_key(ctx, c)
        if ctx.store.exists(key):
            out = ctx.store.load_npz(key)
        else:
            estimator = estimator or load_estimator(ctx.store, cfg.estimator, ctx.device)
            if cfg.keypoints2d == "estimated":
                keypoint_estimator = keypoint_estimator or load_estimator(ctx.store, cfg.keypoints_estimator,
                                                                          ctx.device)  # fmt: skip
            out = _predict_chunk(ctx, ds, estimator, indices, keypoint_estimator)
            ctx.store.save_npz(key, **out)
        for sid, reason in zip(out["rejected_ids"], out["rejected_reasons"], strict=True):
            ctx.reject(str(sid), str(reason))
        ctx.counts["predicted"] += len(out["index"])
        ctx.counts["scored"] += int(np.isfinite(out["error"]).sum())
        progress.advance(len(indices))


def load_predictions(store: Store, chunk_prefixes: list[str]) -> dict[str, np.ndarray]:
    """Every shard's chunk arrays (index, joints3d, cam, joints2d, error, error_px, joints_used and, with estimated
    keypoints, keypoints2d; with a similarity-aligned score, error_root), by index."""
    parts = [store.load_npz(k) for prefix in chunk_prefixes for k in store.list(prefix) if k.endswith(".npz")]
    names = ("index", "joints3d", "cam", "joints2d", "error", "error_px", "joints_used")
    names += tuple(n for n in ("keypoints2d", "error_root") if parts and n in parts[0])
    allp = {n: np.concatenate([p[n] for p in parts]) if parts else np.zeros(0) for n in names}
    order = np.argsort(allp["index"], kind="stable")
    return {n: v[order] for n, v in allp.items()}


def select(error: np.ndarray, k: int, mode: str, rng: np.random.Generator,
           everyday_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Positions of the K_C selected samples and, per position, whether it was drawn from below the cut.

    eem: the largest finite errors first; with `everyday_share` s, only the top (1 - s) K_C are, and s K_C more
    are a random draw from the rest (then also largest error first). random: a random draw of K_C."""
    valid = np.flatnonzero(np.isfinite(error))
    if mode == "random":
        return np.sort(rng.permutation(valid)[:k]), np.zeros(min(k, len(valid)), bool)
    ranked = valid[np.argsort(-error[valid], kind="stable")]
    n_top = k - round(k * everyday_share)
    top = ranked[:n_top]
    drawn = rng.permutation(ranked[n_top:])[: k - n_top]
    drawn = drawn[np.argsort(-error[drawn], kind="stable")]
    return np.concatenate([top, drawn]), np.arange(len(top) + len(drawn)) >= len(top)


def _round(a: np.ndarray, nd: int = 5) -> list:
    return np.round(a.astype(np.float64), nd).tolist()


def _histogram_png(error: np.ndarray, cut: float | None, bins: int, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(error[np.isfinite(error)], bins=bins, color="#4c72b0")
    if cut is not None:
        ax.axvline(cut, color="#c44e52", linestyle="--", label="challenging cut")
        ax.legend()
    ax.set_xlabel("EEM error")
    ax.set_ylabel("samples")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def finalize(ctx: StageContext) -> None:
    """Rank globally and write the hard set, the references, the scores, a summary and the histogram."""
    cfg = ctx.config
    ds = open_dataset(ctx.store, cfg.dataset)
    samples, arrays = ds.samples, ds.arrays
    p = load_predictions(ctx.store, ctx.shard_keys("chunks"))
    idx, error = p["index"], p["error"]
    estimated = cfg.keypoints2d == "estimated"
    keypoints = p["keypoints2d"] if estimated else arrays["joints2d"][idx]  # (len(idx), J, 3) what was scored
    ctx.store.write_jsonl(ctx.key("scores.jsonl"), (
        {"id": samples[i].id, "index": int(i), "error": None if not np.isfinite(e) else round(float(e), 6),
         "error_px": None if not np.isfinite(px) else round(float(px), 3), "joints_used": int(u)}
        for i, e, px, u in zip(idx, error, p["error_px"], p["joints_used"], strict=True)
    ))  # fmt: skip

    def row(pos: int, rank: int, **fields: object) -> dict:
        i = int(idx[pos])
        s = samples[i]
        return {"rank": rank, "id": s.id, "index": i, "error": round(float(error[pos]), 6),
                "error_px": round(float(p["error_px"][pos]), 3), "joints3d": _round(p["joints3d"][pos]),
                "cam": _round(p["cam"][pos]), "joints2d_pred": _round(p["joints2d"][pos], 2),
                "joints2d": _round(keypoints[pos], 2) if estimated else s.joints2d,
                "joint_set": "smpl22" if estimated else ds.joint_set, "bbox": s.bbox, "image": s.image,
                "dataset": cfg.dataset, "width": s.width, "height": s.height, "family": s.meta.get("family"),
                "meta": s.meta, **fields}  # fmt: skip

    hard, everyday = select(error, cfg.num_challenging, cfg.selection, ctx.rng(0), cfg.everyday_share)
    ctx.store.write_jsonl(ctx.key("challenging.jsonl"), (
        row(int(q), r, **({"selected": "everyday" if e else cfg.selection} if cfg.everyday_share else {}))
        for r, (q, e) in enumerate(zip(hard, everyday, strict=True))
    ))  # fmt: skip

    width = np.array([samples[i].width for i in idx], np.float64)
    height = np.array([samples[i].height for i in idx], np.float64)
    # References: the TPE's pseudo-label places the animated body, so its orientation must be right too; they are
    # the lowest by the paper's root-relative error whatever the hard set is ranked by.
    placement_error = p.get("error_root", error)
    usable = full_body_in_image(keypoints, width, height) & np.isfinite(placement_error)
    usable[hard] = False
    cand = np.flatnonzero(usable)
    refs = cand[np.argsort(placement_error[cand], kind="stable")[: cfg.num_references]]
    ctx.store.write_jsonl(ctx.key("references.jsonl"), (row(int(q), r, error=round(float(placement_error[q]), 6))
                                                        for r, q in enumerate(refs)))  # fmt: skip

    finite = error[np.isfinite(error)]
    cut = float(error[hard[~everyday]].min()) if (~everyday).any() and cfg.selection == "eem" else None
    png = _histogram_png(error, cut, cfg.histogram_bins, f"EEM scores ({ds.name}, {len(finite)} samples)")
    ctx.store.write_bytes(ctx.key("score_histogram.png"), png)

    families_all = Counter(samples[i].meta.get("family") for i in idx if samples[i].meta.get("family"))
    hard_meta = [samples[int(idx[q])].meta for q in hard]
    families_hard = Counter(m.get("family") for m in hard_meta if m.get("family"))
    summary = {
        "dataset": cfg.dataset, "joint_set": ds.joint_set, "selection": cfg.selection,
        "samples": len(ds), "predicted": len(idx), "scored": len(finite), "unscorable": int(len(idx) - len(finite)),
        "challenging": len(hard), "references": len(refs),
        "error": {"mean": float(finite.mean()) if len(finite) else None,
                  "median": float(np.median(finite)) if len(finite) else None,
                  "p90": float(np.percentile(finite, 90)) if len(finite) else None,
                  "challenging_mean": float(error[hard].mean()) if len(hard) else None,
                  "challenging_cut": cut},
        "families": {"all": dict(sorted(families_all.items())), "challenging": dict(sorted(families_hard.items()))},
    }  # fmt: skip
    if cfg.everyday_share:  # (absent at the default: the paper's selection writes what it always wrote)
        summary["challenging_everyday"] = int(everyday.sum())
    if cfg.alignment != "root":
        summary["alignment"] = cfg.alignment
    if estimated:
        summary["keypoints2d"] = {"source": "estimated", "estimator": cfg.keypoints_estimator.model_dump()}
    ctx.store.write_json(ctx.key("summary.json"), summary)
    ctx.counts["challenging"], ctx.counts["references"] = len(hard), len(refs)
    ctx.counts["unscorable"] = summary["unscorable"]
    ctx.extra["eem"] = {k: summary[k] for k in ("selection", "scored", "challenging", "references", "error")}
    if not len(hard):
        raise DataError(f"eem: no scorable sample in {cfg.dataset} (see {ctx.store.url_for(ctx.key('scores.jsonl'))})")
