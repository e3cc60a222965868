"""The `filter` stage: the TPE judges every generated frame; frames it cannot explain within tau are dropped.

Paper: synthetic frames whose TPE prediction is far from the motion's 3D label are mostly failed
generations (a limb rendered behind the body, a person half out of the image), not hard poses. The error is the
root-relative mean per-joint position error in millimetres (facts.md: tau = 120 mm only makes sense as a mean).

Per shard (a contiguous range of frames), chunks `filter/shards/<i>-of-<n>/errors/chunk-<c>.npz` (index,
error_mm; atomic, skipped on resume). Finalize writes:
    errors.jsonl          every frame: id, error_mm, kept
    dataset/              the kept frames as a pose dataset (images copied: a dataset owns its images)
    error_histogram.png   the error distribution with the tau cut
    summary.json          tau, counts, pass rate, pass rate over a tau sweep, error statistics, per family
"""

from __future__ import annotations

import io

import numpy as np

from posesyn_core.data.dataset import PoseDataset, finish_dataset, write_part
from posesyn_core.errors import DataError
from posesyn_core.skeleton import ROOT
from posesyn_core.stages import StageContext
from posesyn_core.storage import join

CHUNK = 1024  # frames per TPE chunk (the unit of resume)
SWEEP_MM = (60, 80, 100, 120, 150, 200, 300)


def root_relative_error_mm(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Mean per-joint distance (mm) between (N, 22, 3) predictions and labels after subtracting each root."""
    rel_p = pred - pred[:, ROOT : ROOT + 1]
    rel_g = label - label[:, ROOT : ROOT + 1]
    return np.linalg.norm(rel_p - rel_g, axis=-1).mean(-1) * 1000.0


def pass_rates(errors: np.ndarray, taus: tuple[float, ...]) -> dict[str, float]:
    """Fraction of frames kept at each tau (monotone non-decreasing in tau by construction)."""
    return {f"{t:g}": float((errors <= t).mean()) if len(errors) else 0.0 for t in taus}


def _open(ctx: StageContext) -> PoseDataset:
    from posesyn_core.eem.stage import open_dataset

    ds = open_dataset(ctx.store, ctx.config.dataset)
    if not np.isfinite(ds.arrays["joints3d"]).all():
        raise DataError(f"{ctx.store.url_for(ctx.config.dataset)}: every frame to filter needs a 3D label")
    return ds


def run(ctx: StageContext) -> None:
    from posesyn_core.tpe.inference import load_estimator

    cfg = ctx.config
    ds = _open(ctx)
    mine = ctx.shard_slice(len(ds))
    ctx.counts["samples_in"] = len(mine)
    chunks = range(mine.start, mine.stop, CHUNK)
    progress = ctx.progress(len(mine), "frames")
    estimator = None
    labels, bboxes = ds.arrays["joints3d"], ds.arrays["bboxes"]
    for start in chunks:
        stop = min(start + CHUNK, mine.stop)
        key = ctx.key("errors", f"chunk-{start // CHUNK:05d}.npz")
        if not ctx.store.exists(key):
            estimator = estimator or load_estimator(ctx.store, cfg.estimator, ctx.device)
            idx = np.arange(start, stop)
            images = [img for _, img in ds.iter_images(idx)]
            pred = estimator.predict(images, bboxes[idx], batch_size=cfg.batch_size)
            ctx.store.save_npz(key, index=idx, error_mm=root_relative_error_mm(pred.joints3d, labels[idx]))
        progress.advance(stop - start)
    ctx.counts["frames"] = len(mine)


def keep_mask(errors: np.ndarray, tau: float | None) -> np.ndarray:
    """Frames within tau (all of them when tau is None)."""
    return np.ones(len(errors), bool) if tau is None else errors <= tau


def histogram_png(errors: np.ndarray, tau: float | None, bins: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = float(keep_mask(errors, tau).mean()) if len(errors) else 0.0
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    top = max(float(np.percentile(errors, 99.5)) if len(errors) else 0.0, (tau or 0.0) * 1.5, 1.0)
    ax.hist(np.clip(errors, 0, top), bins=bins, range=(0, top), color="#4c72b0")
    if tau is not None:
        ax.axvline(tau, color="#c44e52", linestyle="--", label=f"tau = {tau:g} mm")
        ax.legend()
    ax.set_xlabel("root-relative mean per-joint error of the TPE vs the label (mm)")
    ax.set_ylabel("frames")
    ax.set_title(f"filter: {len(errors)} frames, {kept:.1%} kept")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def finalize(ctx: StageContext) -> None:
    cfg = ctx.config
    ds = _open(ctx)
    parts = [ctx.store.load_npz(k) for p in ctx.shard_keys("errors") for k in ctx.store.list(p) if k.endswith(".npz")]
    index = np.concatenate([p["index"] for p in parts]) if parts else np.zeros(0, np.int64)
    errors = np.concatenate([p["error_mm"] for p in parts]) if parts else np.zeros(0)
    order = np.argsort(index, kind="stable")
    index, errors = index[order], errors[order]
    if not np.array_equal(index, np.arange(len(ds))):
        raise DataError(f"filter: the shards scored {len(index)} of {len(ds)} frames; rerun the missing shards")
    kept = keep_mask(errors, cfg.tau_mm)
    samples = ds.samples
    rows = zip(samples, errors, kept, strict=True)
    ctx.store.write_jsonl(ctx.key("errors.jsonl"), ({"id": s.id, "error_mm": round(float(e), 3), "kept": bool(k)}
                                                    for s, e, k in rows))  # fmt: skip
    # The kept frames as a dataset of their own (same records, images copied).
    prefix = ctx.key("dataset")
    keep_idx = np.flatnonzero(kept)
    num_parts = max(1, -(-len(keep_idx) // cfg.frames_per_part))
    for k in range(num_parts):
        part = keep_idx[k * cfg.frames_per_part : (k + 1) * cfg.frames_per_part]
        chosen = [samples[i] for i in part]
        images = [ds.store.read_bytes(join(ds.prefix, s.image)) for s in chosen]
        write_part(ctx.store, prefix, k, chosen, images)
    finish_dataset(ctx.store, prefix, "synthetic", ds.joint_set, num_parts)
    ctx.store.write_bytes(ctx.key("error_histogram.png"), histogram_png(errors, cfg.tau_mm, cfg.histogram_bins))
    families: dict[str, list[int]] = {}
    for s, k in zip(samples, kept, strict=True):
        families.setdefault(s.meta.get("family") or "unknown", []).append(int(k))
    summary = {
        "tau_mm": cfg.tau_mm, "frames": len(errors), "kept": int(kept.sum()),
        "pass_rate": float(kept.mean()) if len(kept) else 0.0,
        "pass_rate_by_tau": pass_rates(errors, SWEEP_MM),
        "error_mm": {"mean": float(errors.mean()), "median": float(np.median(errors)),
                     "p90": float(np.percentile(errors, 90))} if len(errors) else None,
        "pass_rate_by_family": {f: round(float(np.mean(v)), 4) for f, v in sorted(families.items())},
    }  # fmt: skip
    ctx.store.write_json(ctx.key("summary.json"), summary)
    ctx.counts["frames"], ctx.counts["kept"] = len(errors), int(kept.sum())
    ctx.extra["filter"] = {k: summary[k] for k in ("tau_mm", "frames", "kept", "pass_rate", "error_mm")}
