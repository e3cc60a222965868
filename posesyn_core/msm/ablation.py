"""The MR_init ablation (PoseSyn's MSM table): how close do generated motions come to the hard pose's true 3D?

For each challenging sample and each conditioning variant, N motions of L frames are generated with the same
seeds; every frame is compared with the sample's ground-truth 3D pose by PA-MPJPE (shape only, so the camera vs
world frame does not matter). Per sample: `min` = the best frame over all N motions, `mean` = the mean over all
frames; both are then averaged over samples (the paper: 100 hard EMDB samples, text 222.3 / 151.1 mm vs
text+MR_init 209.3 / 140.8 mm mean / min; pseudo-label alone 181.7 mm).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posesyn_core.metrics import improvement_interval, pa_mpjpe
from posesyn_core.msm.config import Conditioning, MsmSection
from posesyn_core.msm.mrinit import choose_depth_signs
from posesyn_core.msm.pipeline import MotionSynthesisPipeline, pseudo_labels

RESULT_VERSION = 3  # of mrinit_ablation's result fields: a report recomputes a cached result of another version


def frame_errors(motions: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """motions (B, N, L, 22, 3), gt (B, 22, 3) -> PA-MPJPE (B, N, L) in mm."""
    return pa_mpjpe(motions, gt[:, None, None])


def _generate(pipe: MotionSynthesisPipeline, poses: np.ndarray, caps: list[list[str]], gt3d: np.ndarray,
              cfg: MsmSection, seed: int) -> dict:  # fmt: skip
    """Mean/min PA-MPJPE (mm) of `pipe`'s motions for MR_init `poses` against `gt3d`, batch by batch."""
    mins, means, roundtrips = [], [], []
    for bi, start in enumerate(range(0, len(poses), cfg.batch_size)):
        sl = slice(start, start + cfg.batch_size)
        out = pipe(poses[sl], caps[sl], seed=seed + bi, cycle_captions=cfg.captions == "cycle")
        err = frame_errors(out.motions, gt3d[sl]).reshape(len(out.motions), -1)  # (b, N * L)
        mins.append(err.min(1))
        means.append(err.mean(1))
        if out.mrinit_roundtrip is not None:
            roundtrips.append(out.mrinit_roundtrip)
    per_min, per_mean = np.concatenate(mins), np.concatenate(means)
    result = {"mean_mm": float(per_mean.mean()), "min_mm": float(per_min.mean()),
              "per_sample_min_mm": np.round(per_min, 2).tolist()}  # fmt: skip
    if roundtrips:  # what MR_init could carry of its poses (`msm.mrinit.mrinit_roundtrip`)
        result["mrinit_roundtrip_mm"] = float(np.concatenate(roundtrips).mean())
    return result


def mrinit_ablation(
    synthesizer, rows: Sequence[dict], captions: dict[str, list[str]], gt3d: np.ndarray,  # noqa: ANN001
    cfg: MsmSection, seed: int = 0, variants: Sequence[Conditioning] = ("text+mrinit", "text"),
    true_pose_bound: bool = True,
) -> dict:  # fmt: skip
    """Generate with each variant for the challenging `rows` (their `joints3d` pseudo-labels fitted to the GT 2D as
    `cfg.fit_to_2d` says, depth signs as `cfg.depth_signs` says) and measure against `gt3d` (B, 22, 3) true poses.
    Returns per-variant mean/min (mm), per-sample mins, the pseudo-label's own error and, with both `text+mrinit`
    and `text`, the relative improvement of the min (with its paired-bootstrap 95% interval) and of the mean.

    `true_pose_bound` adds text+MR_init with MR_init built from the true pose itself: what MR_init can add at best
    with this motion model, which separates the pseudo-label's quality from the model's ability to follow it."""
    poses = pseudo_labels(rows, cfg.fit_to_2d)
    if cfg.depth_signs == "motion-model":  # once for every variant (the search is deterministic)
        poses = choose_depth_signs(synthesizer, poses)
    gt3d = np.asarray(gt3d, np.float64)
    if gt3d.shape != poses.shape:
        raise ValueError(f"gt3d: expected {poses.shape}, got {gt3d.shape}")
    caps = [captions.get(r["id"], []) for r in rows]
    result: dict = {"version": RESULT_VERSION, "num_samples": len(rows), "num_motions": cfg.num_motions,
                    "num_frames": cfg.num_frames, "depth_signs": cfg.depth_signs,
                    "pseudo_label_mm": float(pa_mpjpe(poses, gt3d).mean()), "variants": {}}  # fmt: skip

    def pipeline(variant: Conditioning) -> MotionSynthesisPipeline:
        return MotionSynthesisPipeline(synthesizer, variant, cfg.num_motions, cfg.num_frames, cfg.temperature,
                                       cfg.top_k, cfg.top_p)  # fmt: skip

    for variant in variants:
        result["variants"][variant] = _generate(pipeline(variant), poses, caps, gt3d, cfg, seed)
    v = result["variants"]
    if "text+mrinit" in v and "text" in v:
        result["min_improvement"] = 1.0 - v["text+mrinit"]["min_mm"] / v["text"]["min_mm"]
        result["mean_improvement"] = 1.0 - v["text+mrinit"]["mean_mm"] / v["text"]["mean_mm"]
        result["min_improvement_95ci"] = improvement_interval(v["text+mrinit"]["per_sample_min_mm"],
                                                              v["text"]["per_sample_min_mm"])  # fmt: skip
    if true_pose_bound:
        root_relative = gt3d - gt3d[:, :1]
        result["true_pose_mrinit"] = _generate(pipeline("text+mrinit"), root_relative, caps, gt3d, cfg, seed)
    return result


def format_table(result: dict) -> str:
    """The ablation as a markdown table (the report embeds it)."""
    lines = ["| variant | mean PA-MPJPE (mm) | min PA-MPJPE (mm) |", "|---|---|---|",
             f"| pseudo-label only | {result['pseudo_label_mm']:.1f} | {result['pseudo_label_mm']:.1f} |"]  # fmt: skip
    for name in sorted(result["variants"]):  # the same rows whether the result is fresh or read back sorted from JSON
        v = result["variants"][name]
        lines.append(f"| {name} | {v['mean_mm']:.1f} | {v['min_mm']:.1f} |")
    if "true_pose_mrinit" in result:
        v = result["true_pose_mrinit"]
        lines.append(f"| text+mrinit, MR_init from the true pose (bound) | {v['mean_mm']:.1f} | {v['min_mm']:.1f} |")
    if "min_improvement" in result:
        lines.append(f"\ntext+mrinit vs text: min {result['min_improvement']:+.1%}, "
                     f"mean {result['mean_improvement']:+.1%} over {result['num_samples']} hard samples")  # fmt: skip
        if "min_improvement_95ci" in result:
            lo, hi = result["min_improvement_95ci"]
            lines.append(f"(min: 95% interval {lo:+.1%} to {hi:+.1%} over the draw of samples, paired bootstrap)")
        if "true_pose_mrinit" in result:
            bound = 1.0 - result["true_pose_mrinit"]["min_mm"] / result["variants"]["text"]["min_mm"]
            lines.append(f"(with MR_init from the true pose: min {bound:+.1%}, the most MR_init adds with this "
                         "motion model)")
    pseudo = next((v["mrinit_roundtrip_mm"] for v in result["variants"].values() if "mrinit_roundtrip_mm" in v), None)
    true = result.get("true_pose_mrinit", {}).get("mrinit_roundtrip_mm")
    shown = [f"{what} {mm:.1f} mm" for what, mm in (("pseudo-labels", pseudo), ("true poses", true)) if mm is not None]
    if shown:
        lines.append(f"(MR_init decoded back to joints vs the pose it encodes, PA-MPJPE: {', '.join(shown)}; the "
                     "transformer sees a hard pose only this well)")
    return "\n".join(lines)


def ablation_for_run(store, cfg: MsmSection, hidden: dict[str, np.ndarray], device: str = "cpu",  # noqa: ANN001
                     limit: int | None = None, seed: int = 0) -> dict:  # fmt: skip
    """The ablation on a completed run: its challenging set (eem), captions (caption), motion model (cfg.model) and
    the hidden GT of each sample ({id: (22, 3)}, e.g. `eem.evaluate.load_hidden3d`); the first `limit` rows."""
    from posesyn_core.motion.synthesizer import load_motion_model
    from posesyn_core.storage import open_store

    captions = {r["id"]: r["captions"] for r in store.read_jsonl("caption/captions.jsonl")}
    rows = [r for r in store.read_jsonl("eem/challenging.jsonl") if r["id"] in hidden and captions.get(r["id"])]
    rows = rows[:limit]
    model_store, prefix = (open_store(cfg.model), "") if "://" in cfg.model else (store, cfg.model)
    synthesizer = load_motion_model(model_store, prefix=prefix, device=device)
    gt = np.stack([hidden[r["id"]] for r in rows])
    return mrinit_ablation(synthesizer, rows, captions, gt, cfg, seed=seed)
