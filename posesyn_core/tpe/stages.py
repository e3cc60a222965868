"""Run functions of the TPE stages: `tpe-train`, `finetune`, `evaluate` (declared in tpe/config.py)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.errors import ConfigError
from posesyn_core.metrics import mpjpe_root_relative, pa_mpjpe, pck_bbox
from posesyn_core.skeleton import shared_joints
from posesyn_core.stages import StageContext
from posesyn_core.tpe.config import EstimatorRef, TrainingSection
from posesyn_core.tpe.data import CropSet, load_cropset, resolve, resolve_file
from posesyn_core.tpe.inference import Estimator, Prediction, load_estimator
from posesyn_core.tpe.model import TPE, TPEConfig, checkpoint_dict, model_from_checkpoint
from posesyn_core.tpe.train import Source, load_torch, save_torch, train

CONTEXT = 1.25  # training crops keep 25% more context than the inference crop, room for zoom/shift jitter


def _open_dataset(ctx: StageContext, path: str) -> PoseDataset:
    store, prefix = resolve(ctx.store, path)
    return PoseDataset(store, prefix)


def _crops(ctx: StageContext, paths: list[str], config: TPEConfig, section: TrainingSection) -> CropSet:
    """Load and crop datasets (at most max_samples each, in order); bad samples are quarantined."""
    sets = []
    for path in paths:
        ds = _open_dataset(ctx, path)
        n = len(ds) if section.max_samples is None else min(len(ds), section.max_samples)
        ctx.counts["samples_in"] += n
        progress = ctx.progress(n, f"crops {path}")
        sets.append(load_cropset(
            ds, config.img_size, config.crop_pad, CONTEXT, limit=n, advance=progress.advance,
            reject=lambda sid, why, p=path: ctx.reject(sid, why, dataset=p),
        ))  # fmt: skip
    return CropSet.concat(sets)


def _train_and_save(ctx: StageContext, model: TPE, sources: list[Source], section: TrainingSection,
                    info: dict) -> None:  # fmt: skip
    progress = ctx.progress(section.steps, "steps")
    rows = train(model, sources, section, ctx.seed, ctx.device, ctx.store, ctx.prefix, ctx.log, progress.advance)
    save_torch(ctx.store, ctx.key("model.pt"), checkpoint_dict(model, trained=info))
    ctx.store.write_jsonl(ctx.key("loss.jsonl"), rows)
    ctx.counts["steps"] = section.steps
    for s in sources:
        ctx.counts[f"samples_{s.name}"] = len(s.crops)
    ctx.extra.update({"final_loss": rows[-1], "parameters": model.num_params()})


def run_tpe_train(ctx: StageContext) -> None:
    """Train a TPE from scratch on `datasets`: writes model.pt, loss.jsonl (and resumable checkpoints)."""
    section = ctx.config
    if section.threads:
        torch.set_num_threads(section.threads)
    m = section.model
    config = TPEConfig(img_size=m.img_size, crop_pad=m.crop_pad, widths=tuple(m.widths), head_dim=m.head_dim,
                       loss_3d=m.loss_3d, loss_2d=m.loss_2d)  # fmt: skip
    torch.manual_seed(ctx.seed)  # weight init
    model = TPE(config)
    crops = _crops(ctx, section.datasets, config, section)
    info = {"stage": ctx.name, "datasets": section.datasets, "steps": section.steps, "seed": ctx.seed}
    _train_and_save(ctx, model, [Source(crops, 1.0, "train")], section, info)


def run_finetune(ctx: StageContext) -> None:
    """Fine-tune a checkpoint on real (+ synthetic, mixed at synthetic_fraction) data with the same loss."""
    section = ctx.config
    if section.threads:
        torch.set_num_threads(section.threads)
    store, key = resolve_file(ctx.store, section.checkpoint)
    if not store.exists(key):
        raise ConfigError(f"finetune.checkpoint: {store.url_for(key)} does not exist (run tpe-train first?)")
    try:
        model = model_from_checkpoint(load_torch(store, key), section.checkpoint)
    except ValueError as e:
        raise ConfigError(f"finetune.checkpoint: {e}") from None
    sources = [Source(_crops(ctx, section.real, model.config, section), 1.0, "real")]
    if section.synthetic is not None:
        sources[0].fraction = 1.0 - section.synthetic_fraction
        synthetic = _crops(ctx, [section.synthetic], model.config, section)
        sources.append(Source(synthetic, section.synthetic_fraction, "synthetic"))
    info = {"stage": ctx.name, "from": section.checkpoint, "real": section.real, "synthetic": section.synthetic,
            "synthetic_fraction": section.synthetic_fraction if section.synthetic else 0.0,
            "steps": section.steps, "seed": ctx.seed}  # fmt: skip
    _train_and_save(ctx, model, sources, section, info)


# --- evaluate -------------------------------------------------------------------------------------------------

METRICS = {
    "mpjpe": "root-relative MPJPE (mm, lower is better)",
    "pa_mpjpe": "Procrustes-aligned MPJPE (mm, lower is better)",
    "pck": "2D PCK@alpha * max(bbox w, h) on the joints shared with the dataset (%, higher is better)",
}


def _sample_metrics(pred: Prediction, arrays: dict, joint_set: str, alpha: float) -> dict[str, np.ndarray]:
    """Per-sample metrics of one chunk: MPJPE/PA-MPJPE where 3D labels exist (NaN elsewhere), PCK on 2D."""
    gt3d = arrays["joints3d"]
    has3d = np.isfinite(gt3d).all((1, 2))
    mp = np.full(len(gt3d), np.nan)
    pa = np.full(len(gt3d), np.nan)
    if has3d.any():
        mp[has3d] = mpjpe_root_relative(pred.joints3d[has3d], gt3d[has3d])
        pa[has3d] = pa_mpjpe(pred.joints3d[has3d], gt3d[has3d])
    canon, own = shared_joints(joint_set)
    gt2d = arrays["joints2d"][:, own]
    visible = (gt2d[..., 2] > 0) & np.isfinite(gt2d[..., :2]).all(-1)
    pck = pck_bbox(pred.joints2d[:, canon], np.nan_to_num(gt2d[..., :2]), visible, arrays["bboxes"], alpha) * 100
    return {"mpjpe": mp, "pa_mpjpe": pa, "pck": pck}


def _summary(values: dict[str, np.ndarray], mask: np.ndarray) -> dict:
    out: dict = {"n": int(mask.sum())}
    for name, v in values.items():
        sel = v[mask]
        sel = sel[np.isfinite(sel)]
        out[name] = round(float(sel.mean()), 2) if len(sel) else None
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _markdown(results: dict, names: list[str], test_sets: list[str]) -> str:
    lines = ["# TPE evaluation", "", *(f"- **{k}**: {v}" for k, v in METRICS.items()), ""]
    lines += ["## Per dataset", "", "| checkpoint | " + " | ".join(
        f"{t} MPJPE | {t} PA-MPJPE | {t} PCK" for t in test_sets) + " |",
        "|---|" + "---:|" * (3 * len(test_sets))]  # fmt: skip
    for name in names:
        cells = [_fmt(results[name][t]["all"][m]) for t in test_sets for m in ("mpjpe", "pa_mpjpe", "pck")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for t in test_sets:
        families = sorted({f for name in names for f in results[name][t]["families"]})
        lines += ["", f"## {t}: MPJPE (PCK) per motion family", "",
                  "| family | n | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]  # fmt: skip
        for fam in families:
            rows = [results[name][t]["families"][fam] for name in names]
            cells = [f"{_fmt(r['mpjpe'])} ({_fmt(r['pck'])})" for r in rows]
            lines.append(f"| {fam} | {rows[0]['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_evaluate(ctx: StageContext) -> None:
    """Evaluate every named checkpoint/estimator on every test set; writes results.json, results.md and
    per_sample/<name>/<test set>.npz (ids, metrics, predicted joints)."""
    section = ctx.config
    refs: dict[str, EstimatorRef] = {}
    for name, path in section.checkpoints.items():
        store, key = resolve_file(ctx.store, path)
        if store.exists(key):
            refs[name] = EstimatorRef(kind="posesyn", path=path)
        else:
            ctx.log.warning("checkpoint missing, skipped", extra={"fields": {"name": name, "path": path}})
            ctx.extra.setdefault("skipped", []).append(name)
    refs.update(section.estimators)
    if not refs:
        raise ConfigError(f"evaluate.checkpoints: none of {sorted(section.checkpoints.values())} exists")
    estimators: dict[str, Estimator] = {n: load_estimator(ctx.store, r, ctx.device) for n, r in refs.items()}
    names = list(estimators)

    results: dict = {n: {} for n in names}
    test_info = {}
    for path in section.test_sets:
        ds = _open_dataset(ctx, path)
        n = len(ds) if section.max_samples is None else min(len(ds), section.max_samples)
        arrays = {k: v[:n] for k, v in ds.arrays.items()}
        families = np.array([str(s.meta.get("family", "unknown")) for s in ds.samples[:n]])
        test_info[path] = {"name": ds.name, "joint_set": ds.joint_set, "num_samples": n}
        per = {name: defaultdict(list) for name in names}
        progress = ctx.progress(n, f"eval {path}")
        chunk = 4 * section.batch_size
        for start in range(0, n, chunk):  # decode each image once, run every estimator on it
            sl = slice(start, min(n, start + chunk))
            images = [img for _, img in ds.iter_images(range(sl.start, sl.stop))]
            sub = {k: v[sl] for k, v in arrays.items()}
            for name, est in estimators.items():
                pred = est.predict(images, sub["bboxes"], section.batch_size)
                for k, v in _sample_metrics(pred, sub, ds.joint_set, section.pck_alpha).items():
                    per[name][k].append(v)
                per[name]["joints3d"].append(pred.joints3d)
            progress.advance(sl.stop - sl.start)
        for name in names:
            values = {k: np.concatenate(per[name][k]) for k in METRICS}
            results[name][path] = {
                "all": _summary(values, np.ones(n, bool)),
                "families": {f: _summary(values, families == f) for f in sorted(set(families.tolist()))},
            }
            ctx.store.save_npz(ctx.key("per_sample", name, path.replace("/", "_").replace(":", "") + ".npz"),
                               ids=arrays["ids"], families=families, joints3d=np.concatenate(per[name]["joints3d"]),
                               **values)  # fmt: skip
    ctx.counts["samples_in"] = sum(t["num_samples"] for t in test_info.values())
    ctx.counts["estimators"] = len(names)
    report = {
        "metrics": METRICS,
        "pck_alpha": section.pck_alpha,
        "estimators": {n: refs[n].model_dump() for n in names},
        "test_sets": test_info,
        "results": results,
    }
    ctx.store.write_json(ctx.key("results.json"), report)
    ctx.store.write_text(ctx.key("results.md"), _markdown(results, names, section.test_sets))
    ctx.extra["results"] = {n: {t: results[n][t]["all"] for t in section.test_sets} for n in names}
