"""EEM without 2D ground truth, measured: the same run with `eem.keypoints2d: estimated` next to the GT-2D one.

`posesyn experiment keypoints2d RUN.yaml` runs two variants of a completed run:
    kp2d-lab3d      the 2D keypoint estimator: the TPE architecture trained on world/lab3d only, so it never sees
                    wild2d's labels (the run's own TPE cannot serve: its projection scores zero against itself)
    kp2d-estimated  the whole run with EEM scoring the TPE's projection against kp2d-lab3d's 2D instead of labels
and `compare` writes `report/keypoints2d.{json,md}` under the run root: how good the estimated keypoints are
against the labels they replace, how much the two hard sets overlap, what they hold (the hidden 3D truth of the
mini-world: the TPE's real error there, unseen families) and what fine-tuning on each gives, at the same budget.
"""

from __future__ import annotations

import numpy as np

from posesyn_core.eem.evaluate import eem_chunk_prefixes, hard_set_report, load_hidden3d
from posesyn_core.eem.stage import load_predictions, open_dataset
from posesyn_core.experiment import Variant, variant_root
from posesyn_core.metrics import pck_bbox
from posesyn_core.pipeline import RunConfigBase
from posesyn_core.skeleton import shared_joints
from posesyn_core.storage import Store, join, open_store

KEYPOINT_ESTIMATOR = Variant(
    "kp2d-lab3d", {"stages": ["world", "tpe-train"], "tpe-train.datasets": ["world/lab3d"]},
    "the 2D keypoint estimator for estimated-2D EEM: the TPE trained on lab3d only (never sees wild2d's labels)",
)  # fmt: skip
ESTIMATED = "kp2d-estimated"
RESULT_KEY = "report/keypoints2d.json"
HIDDEN3D = "world/wild2d_hidden3d.npz"


def estimated_variant(base: RunConfigBase) -> Variant:
    """The run with EEM on the keypoint estimator's 2D (the estimator named by its URL in kp2d-lab3d's root)."""
    model = variant_root(base, KEYPOINT_ESTIMATOR.name) + "/tpe-train/model.pt"
    return Variant(ESTIMATED, {"eem.keypoints2d": "estimated", "eem.keypoints_estimator": {"path": model}},
                   "EEM on estimated 2D keypoints (kp2d-lab3d) instead of wild2d's labels, same budget")  # fmt: skip


def keypoint_quality(gt_store: Store, est_store: Store, alpha: float = 0.1) -> dict:
    """The estimated keypoints (est run's eem chunks) and the TPE's own projection (gt run's) against the labels:
    mean pixel error and PCK@alpha * max(bbox w, h) on the visible labelled joints, over the samples both scored."""
    ds = open_dataset(gt_store, gt_store.read_json("eem/summary.json")["dataset"])
    est = load_predictions(est_store, eem_chunk_prefixes(est_store))
    tpe = load_predictions(gt_store, eem_chunk_prefixes(gt_store))
    common = np.intersect1d(est["index"], tpe["index"])
    canon, own = shared_joints(ds.joint_set)
    labels = ds.arrays["joints2d"][common][:, own]
    visible = (labels[..., 2] > 0) & np.isfinite(labels[..., :2]).all(-1)
    boxes = ds.arrays["bboxes"][common].astype(np.float64)

    def against_labels(points: np.ndarray) -> dict:
        dist = np.linalg.norm(points[:, canon, :2] - np.nan_to_num(labels[..., :2]), axis=-1)
        pck = pck_bbox(points[:, canon, :2], np.nan_to_num(labels[..., :2]), visible, boxes, alpha) * 100
        return {"mean_px": float(dist[visible].mean()), f"pck@{alpha}": float(np.nanmean(pck))}

    est_rows, tpe_rows = np.searchsorted(est["index"], common), np.searchsorted(tpe["index"], common)  # both sorted
    return {"samples": len(common), "estimated": against_labels(est["keypoints2d"][est_rows].astype(np.float64)),
            "tpe_projection": against_labels(tpe["joints2d"][tpe_rows].astype(np.float64))}  # fmt: skip


def _finetuned(store: Store) -> dict | None:
    if not store.exists("evaluate/results.json"):
        return None
    per_set = store.read_json("evaluate/results.json")["results"].get("finetuned", {})
    return {t: {"mpjpe": v["all"]["mpjpe"], "pa_mpjpe": v["all"]["pa_mpjpe"]} for t, v in per_set.items()}


def compare(base: RunConfigBase) -> dict:
    """GT-2D EEM (the run) vs estimated-2D EEM (kp2d-estimated), from their files; written to RESULT_KEY."""
    gt_store = open_store(base.root)
    est_store = open_store(variant_root(base, ESTIMATED))
    rows = {name: s.read_jsonl("eem/challenging.jsonl") for name, s in (("gt", gt_store), ("estimated", est_store))}
    hard = {name: {r["id"] for r in v} for name, v in rows.items()}
    # With eem.everyday_share, part of each budget is a random draw below the cut: compare the largest errors too
    largest = {name: {r["id"] for r in v if r.get("selected") != "everyday"} for name, v in rows.items()}
    result = {
        "budget": len(hard["gt"]), "overlap": len(hard["gt"] & hard["estimated"]),
        "largest": len(largest["gt"]), "largest_overlap": len(largest["gt"] & largest["estimated"]),
        "keypoints": keypoint_quality(gt_store, est_store),
        "finetuned": {"gt": _finetuned(gt_store), "estimated": _finetuned(est_store)},
        "estimator": estimated_variant(base).overrides["eem.keypoints_estimator"]["path"],
    }  # fmt: skip
    if gt_store.exists(HIDDEN3D):
        hidden = load_hidden3d(gt_store, HIDDEN3D)
        result["hard_set"] = {name: hard_set_report(store, hidden)["challenging"]
                              for name, store in (("gt", gt_store), ("estimated", est_store))}  # fmt: skip
    gt_store.write_json(RESULT_KEY, result)
    gt_store.write_text(join("report", "keypoints2d.md"), keypoints2d_markdown(result))
    return result


def read_keypoints2d(base: RunConfigBase) -> dict | None:
    store = open_store(base.root)
    return store.read_json(RESULT_KEY) if store.exists(RESULT_KEY) else None


def keypoints2d_markdown(result: dict) -> str:
    k = result["keypoints"]
    pck = next(key for key in k["estimated"] if key.startswith("pck@"))
    lines = [f"2D keypoints vs wild2d's labels ({k['samples']} samples; visible labelled joints):", "",
             f"| keypoints | mean error (px) | {pck.upper()} (%) |", "|---|---|---|"]  # fmt: skip
    for name, label in (("estimated", "estimated (kp2d-lab3d)"), ("tpe_projection", "the TPE's own projection")):
        lines.append(f"| {label} | {k[name]['mean_px']:.1f} | {k[name][pck]:.1f} |")
    share = "" if result["largest"] == result["budget"] else (
        f"; of the {result['largest']} largest errors (the rest drawn below the cut, eem.everyday_share), "
        f"{result['largest_overlap']} in both")  # fmt: skip
    lines += ["", f"Hard sets: {result['overlap']} of {result['budget']} samples in both{share}.", "",
              "| EEM on | hard set: TPE MPJPE (mm) | PA-MPJPE (mm) | unseen families | "
              + " | ".join(f"fine-tuned {t} MPJPE / PA (mm)" for t in (result["finetuned"]["gt"] or {})) + " |",
              "|---" * (4 + len(result["finetuned"]["gt"] or {})) + "|"]  # fmt: skip
    for name, label in (("gt", "GT 2D labels"), ("estimated", "estimated 2D")):
        h = result.get("hard_set", {}).get(name)
        cells = [f"{h['mpjpe_mm']:.1f}", f"{h['pa_mpjpe_mm']:.1f}", f"{h['unseen_family_share']:.1%}"] if h else \
            ["-"] * 3  # fmt: skip
        ft_gt, ft = result["finetuned"]["gt"] or {}, result["finetuned"][name] or {}
        cells += [f"{ft[t]['mpjpe']:.1f} / {ft[t]['pa_mpjpe']:.1f}" if t in ft else "-" for t in ft_gt]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if result.get("hard_set"):
        lines.append("")
        for name, label in (("gt", "GT 2D labels"), ("estimated", "estimated 2D")):
            families = result["hard_set"][name]["families"]  # (stored JSON has its keys sorted: sort by share)
            top = sorted(families.items(), key=lambda kv: (-kv[1]["share"], kv[0]))[:5]
            lines.append(f"Hard set on {label}, largest families: "
                         + ", ".join(f"{fam} {v['share']:.0%}" for fam, v in top) + ".")  # fmt: skip
    return "\n".join(lines) + "\n"
