"""The `msm` stage: N motions per challenging sample (sharded over chunks of the challenging set).

Each shard writes motion parts `msm/shards/<i>-of-<n>/motions/parts/part-<c>.{npz,jsonl}` (chunk c of the
challenging set; atomic, skipped on resume). Finalize gathers them into one motion dataset
(`posesyn_core/data/motions.py` format) at `msm/motions/`: clip id `<sample id>-m<k>`, texts [the caption it was
conditioned on], family = the source sample's family (or "unknown"), meta {source_id, source_index, caption,
conditioning, motion, best_frame, best_pa_mpjpe_mm} plus, with MR_init, {mrinit_codes, mrinit_roundtrip_mm} (its
VQ indices and how well they decode back to the pseudo-label: `msm.mrinit.mrinit_roundtrip`) and, with the caption
check, caption_score; and `msm/summary.json`.

With `msm.consistency` on, motions that drifted from their hard pose or caption are not written: each shard lists
them per chunk in `dropped/part-<c>.jsonl` (written before the chunk's motion part, which marks the chunk done) and
finalize gathers them into `msm/dropped.jsonl` (id, source_id, motion, caption, scores, reasons).
"""

from __future__ import annotations

import numpy as np

from posesyn_core.data.motions import MotionClip, finish_motions, motion_part_exists, write_motion_part
from posesyn_core.errors import ConfigError, DataError
from posesyn_core.msm.config import ConsistencyCheck
from posesyn_core.msm.pipeline import MotionSynthesisPipeline, pseudo_labels
from posesyn_core.stages import StageContext
from posesyn_core.storage import join, open_store

MOTIONS = "motions"
DROPPED = "dropped"
POSE_DRIFT, CAPTION_DRIFT = "pose drift", "caption drift"


def load_inputs(ctx: StageContext) -> tuple[list[dict], dict[str, list[str]]]:
    """The challenging rows and their captions ({} when conditioning needs no text)."""
    rows = ctx.store.read_jsonl(ctx.input_key("eem", "challenging.jsonl"))
    captions: dict[str, list[str]] = {}
    if "text" in ctx.config.conditioning:
        key = ctx.input_key("caption", "captions.jsonl")
        if not ctx.store.exists(key):
            raise ConfigError(f"msm.conditioning {ctx.config.conditioning!r} needs captions: run the caption stage "
                              f"({ctx.store.url_for(key)} is missing)")  # fmt: skip
        captions = {r["id"]: r["captions"] for r in ctx.store.read_jsonl(key)}
    return rows, captions


def build_pipeline(ctx: StageContext) -> MotionSynthesisPipeline:
    from posesyn_core.motion.synthesizer import load_motion_model

    cfg = ctx.config
    store, prefix = (open_store(cfg.model), "") if "://" in cfg.model else (ctx.store, cfg.model)
    synthesizer = load_motion_model(store, prefix=prefix, device=ctx.device)
    distractors = cfg.consistency.distractors if cfg.consistency.min_caption_score is not None else 0
    return MotionSynthesisPipeline(synthesizer, cfg.conditioning, cfg.num_motions, cfg.num_frames, cfg.temperature,
                                   cfg.top_k, cfg.top_p, search_depth_signs=cfg.depth_signs == "motion-model",
                                   caption_distractors=distractors)  # fmt: skip


def drift_reasons(check: ConsistencyCheck, pose_mm: float, caption_score: float | None) -> list[str]:
    """Why a motion fails the consistency check ([] when it passes). A missing caption score (no other pose in the
    batch to compare with) passes: there is no evidence of drift."""
    reasons = []
    if check.max_pose_mm is not None and pose_mm > check.max_pose_mm:
        reasons.append(POSE_DRIFT)
    if check.min_caption_score is not None and caption_score is not None and caption_score < check.min_caption_score:
        reasons.append(CAPTION_DRIFT)
    return reasons


def synthesize_chunk(ctx: StageContext, pipe: MotionSynthesisPipeline, rows: list[dict],
                     captions: dict[str, list[str]], chunk: int) -> tuple[list[MotionClip], list[dict]]:  # fmt: skip
    """Motions for one chunk of challenging rows, in batches, and the motions the consistency check dropped; bad
    rows are quarantined."""
    cfg = ctx.config
    good = []
    for row in rows:
        pose = np.asarray(row["joints3d"], np.float64)
        if pose.shape != (22, 3) or not np.isfinite(pose).all():
            ctx.reject(row["id"], "pseudo-label is not a finite (22, 3) pose")
        elif "text" in cfg.conditioning and not captions.get(row["id"]):
            ctx.reject(row["id"], "no caption")
        else:
            good.append(row)
    clips: list[MotionClip] = []
    dropped: list[dict] = []
    seeds = ctx.rng(chunk).integers(0, 2**31 - 1, size=max(1, -(-len(good) // cfg.batch_size)))
    for bi, start in enumerate(range(0, len(good), cfg.batch_size)):
        batch = good[start : start + cfg.batch_size]
        poses = pseudo_labels(batch, cfg.fit_to_2d)
        out = pipe(poses, [captions.get(r["id"], []) for r in batch], seed=int(seeds[bi]),
                   cycle_captions=cfg.captions == "cycle")  # fmt: skip
        for i, row in enumerate(batch):
            mrinit = {} if out.mrinit_codes is None else {
                "mrinit_codes": out.mrinit_codes[i].tolist(),
                "mrinit_roundtrip_mm": round(float(out.mrinit_roundtrip[i]), 2)}  # fmt: skip
            for k in range(cfg.num_motions):
                text, pose_mm = out.texts[i][k], round(float(out.best_pa_mpjpe[i, k]), 2)
                meta = {"source_id": row["id"], "source_index": row["index"], "caption": text,
                        "conditioning": cfg.conditioning, "motion": k, "best_frame": int(out.best_frame[i, k]),
                        "best_pa_mpjpe_mm": pose_mm, **mrinit}  # fmt: skip
                score = None
                if out.caption_scores is not None:
                    raw = float(out.caption_scores[i, k])
                    score = meta["caption_score"] = None if np.isnan(raw) else round(raw, 4)
                reasons = drift_reasons(cfg.consistency, pose_mm, score)
                if reasons:
                    dropped.append({"id": f"{row['id']}-m{k}", "source_id": row["id"], "motion": k, "caption": text,
                                    "best_pa_mpjpe_mm": pose_mm, "caption_score": score, "reasons": reasons})
                    continue
                clips.append(MotionClip(id=f"{row['id']}-m{k}", family=row.get("family") or "unknown",
                                        joints=out.motions[i, k], texts=[text] if text else [], meta=meta))
    return clips, dropped


def count_dropped(ctx: StageContext, dropped: list[dict]) -> None:
    for d in dropped:
        for reason in d["reasons"]:
            ctx.counts[f"motions_dropped_{reason.replace(' ', '_')}"] += 1


def run(ctx: StageContext) -> None:
    cfg = ctx.config
    rows, captions = load_inputs(ctx)
    num_chunks = -(-len(rows) // cfg.chunk_size)
    chunks = ctx.shard_slice(num_chunks)
    ctx.counts["samples_in"] = sum(len(rows[c * cfg.chunk_size : (c + 1) * cfg.chunk_size]) for c in chunks)
    progress = ctx.progress(ctx.counts["samples_in"], "hard poses")
    prefix, pipe = ctx.key(MOTIONS), None
    for c in chunks:
        part = rows[c * cfg.chunk_size : (c + 1) * cfg.chunk_size]
        dropped_key = ctx.key(DROPPED, f"part-{c:05d}.jsonl")
        if motion_part_exists(ctx.store, prefix, c):
            ctx.counts["motions"] += len(ctx.store.read_jsonl(join(prefix, "parts", f"part-{c:05d}.jsonl")))
            if ctx.store.exists(dropped_key):
                count_dropped(ctx, ctx.store.read_jsonl(dropped_key))
        else:
            pipe = pipe or build_pipeline(ctx)
            clips, dropped = synthesize_chunk(ctx, pipe, part, captions, c)
            if dropped:
                ctx.store.write_jsonl(dropped_key, dropped)
            if clips:  # a chunk whose rows were all quarantined (or dropped) writes no motions (and is redone)
                write_motion_part(ctx.store, prefix, c, clips)
            ctx.counts["motions"] += len(clips)
            count_dropped(ctx, dropped)
        progress.advance(len(part))


def finalize(ctx: StageContext) -> None:
    """Gather the shards' parts (chunk order) into `msm/motions/`, write a summary."""
    cfg = ctx.config
    rows = ctx.store.read_jsonl(ctx.input_key("eem", "challenging.jsonl"))
    num_chunks = -(-len(rows) // cfg.chunk_size)
    out_prefix = ctx.key(MOTIONS)
    metas: list[dict] = []
    k_out = 0
    for shard_prefix in ctx.shard_keys(MOTIONS):
        names = sorted({key.rsplit("/", 1)[1].split(".")[0] for key in ctx.store.list(join(shard_prefix, "parts"))})
        for name in names:
            clip_rows = ctx.store.read_jsonl(join(shard_prefix, "parts", f"{name}.jsonl"))
            if not clip_rows:
                continue
            for r in clip_rows:
                r["part"] = k_out
            ctx.store.write_bytes(join(out_prefix, "parts", f"part-{k_out:05d}.npz"),
                                  ctx.store.read_bytes(join(shard_prefix, "parts", f"{name}.npz")))  # fmt: skip
            ctx.store.write_jsonl(join(out_prefix, "parts", f"part-{k_out:05d}.jsonl"), clip_rows)
            metas.extend(r["meta"] for r in clip_rows)
            k_out += 1
    dropped = [d for shard_prefix in ctx.shard_keys(DROPPED) for key in sorted(ctx.store.list(shard_prefix))
               for d in ctx.store.read_jsonl(key)]  # fmt: skip
    if not metas:
        raise DataError(f"msm: no motion was kept from {len(rows)} challenging samples ({num_chunks} chunks; "
                        f"{len(dropped)} dropped by msm.consistency)")  # fmt: skip
    finish_motions(ctx.store, out_prefix, "msm", k_out)
    best = np.array([m["best_pa_mpjpe_mm"] for m in metas])
    per_source: dict[str, float] = {}
    for m in metas:
        per_source[m["source_id"]] = min(per_source.get(m["source_id"], np.inf), m["best_pa_mpjpe_mm"])
    summary = {
        "conditioning": cfg.conditioning, "num_motions": cfg.num_motions, "num_frames": cfg.num_frames,
        "hard_poses": len(per_source), "motions": len(metas),
        "best_frame_pa_mpjpe_mm": {"mean": float(best.mean()), "median": float(np.median(best)),
                                   "per_pose_min_mean": float(np.mean(list(per_source.values())))},
        "examples": [{"id": m["source_id"], "caption": m["caption"], "best_frame": m["best_frame"]}
                     for m in metas[: 8 * cfg.num_motions : cfg.num_motions]],
    }  # fmt: skip
    if "mrinit_codes" in metas[0]:
        summary["mrinit"] = mrinit_summary(metas)
    if cfg.consistency.enabled:
        ctx.store.write_jsonl(ctx.key("dropped.jsonl"), dropped)
        summary["consistency"] = consistency_summary(cfg.consistency, metas, dropped)
    ctx.store.write_json(ctx.key("summary.json"), summary)
    ctx.extra["msm"] = {k: summary[k] for k in ("conditioning", "hard_poses", "motions", "best_frame_pa_mpjpe_mm",
                                                "mrinit", "consistency") if k in summary}  # fmt: skip


def consistency_summary(check: ConsistencyCheck, metas: list[dict], dropped: list[dict]) -> dict:
    """What the consistency check dropped and why, and the caption scores of kept and dropped motions."""
    kept_sources = {m["source_id"] for m in metas}

    def score_stats(values: list) -> dict | None:
        v = np.array([x for x in values if x is not None], np.float64)
        return {"mean": float(v.mean()), "median": float(np.median(v)), "n": len(v)} if len(v) else None

    return {"max_pose_mm": check.max_pose_mm, "min_caption_score": check.min_caption_score,
            "distractors": check.distractors, "generated": len(metas) + len(dropped), "kept": len(metas),
            "dropped": len(dropped),
            "dropped_by_reason": {r: sum(r in d["reasons"] for d in dropped) for r in (POSE_DRIFT, CAPTION_DRIFT)},
            "hard_poses_without_motion": len({d["source_id"] for d in dropped} - kept_sources),
            "caption_score": {"kept": score_stats([m.get("caption_score") for m in metas]),
                              "dropped": score_stats([d["caption_score"] for d in dropped])},
            "examples": dropped[:8]}  # fmt: skip


def mrinit_summary(metas: list[dict]) -> dict:
    """What MR_init could carry over the hard poses: its decoded round-trip error (mm) and how many hard poses got
    distinct code sequences (few distinct prefixes: the transformer cannot tell those poses apart by MR_init)."""
    per_pose = {m["source_id"]: m for m in metas}  # one row per hard pose (its N motions share the MR_init)
    roundtrip = np.array([m["mrinit_roundtrip_mm"] for m in per_pose.values()])
    return {"roundtrip_pa_mpjpe_mm": {"mean": float(roundtrip.mean()), "median": float(np.median(roundtrip))},
            "distinct_prefixes": len({tuple(m["mrinit_codes"]) for m in per_pose.values()}),
            "hard_poses": len(per_pose)}  # fmt: skip
