"""Collect a run's facts for the report, from the run's own files only (nothing typed in).

`collect(run)` returns a JSON-able dict of tables and numbers plus a dict of PNG figures. Everything is read
from stage outputs: `_SUCCESS` manifests (timings, counts), eem/caption/msm/animate/filter summaries, and
`evaluate/results.json` of the run and of its experiment variants (`<root>/experiments/<variant>/`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posesyn_core.experiment import ABLATIONS, EXPERIMENTS
from posesyn_core.pipeline import RunConfigBase
from posesyn_core.stages import SUCCESS, read_marker
from posesyn_core.storage import Store, join, open_store

# The paper's comparison rows: (label, variant folder or None for the run itself, evaluate estimator name).
COMPARISON = (
    ("(a) TPE before fine-tuning", None, "tpe"),
    ("(b) fine-tuned on real data only", "real-only", "finetuned"),
    ("(c) PoseSyn (EEM-selected)", None, "finetuned"),
    ("(d) random selection, same budget", "random", "finetuned"),
    ("PoseSyn without MR_init (text only)", "text-only", "finetuned"),
    ("PoseSyn + consistency check (msm.consistency)", "consistency", "finetuned"),
    ("PoseSyn, EEM on estimated 2D (eem.keypoints2d)", "kp2d-estimated", "finetuned"),
)
REPORT = "report"


@dataclass
class Report:
    facts: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    notes: list[str] = field(default_factory=list)  # what could not be shown, and why


def _store_at(base: Store, variant: str | None) -> Store:
    return base if variant is None else open_store(base.url.rstrip("/") + f"/{EXPERIMENTS}/{variant}")


def stage_table(run: RunConfigBase, store: Store) -> list[dict]:
    rows = []
    for stage in run.stages or []:
        m = read_marker(store, join(stage, SUCCESS))
        rows.append({"stage": stage, "done": m is not None, "seconds": m and m["seconds"],
                     "counts": (m or {}).get("counts", {}), "rejected": (m or {}).get("rejected", 0)})  # fmt: skip
    return rows


def results_table(store: Store, extra: Sequence[tuple[str, str, str]] = ()) -> tuple[list[dict], list[str]]:
    """One row per comparison (and tau variant, and `extra` (label, variant, estimator)) whose evaluate results
    exist: metrics per test set."""
    rows, test_sets = [], []
    tau_rows = [(f"tau = {v.overrides['filter.tau_mm']:.0f} mm", v.name, "finetuned")
                for v in ABLATIONS if v.name.startswith("tau-")]  # fmt: skip
    for label, variant, estimator in (*COMPARISON, *tau_rows, *extra):
        s = _store_at(store, variant)
        key = "evaluate/results.json"
        if not s.exists(key):
            continue
        res = s.read_json(key)
        if estimator not in res["results"]:
            continue
        per_set = res["results"][estimator]
        test_sets = test_sets or list(per_set)
        rows.append({"label": label, "variant": variant or "run", "estimator": estimator,
                     "sets": {t: per_set[t]["all"] for t in per_set},
                     "families": {t: per_set[t]["families"] for t in per_set}})  # fmt: skip
    base = next((r for r in rows if r["label"].startswith("(a)")), None)
    for r in rows:
        for t, m in r["sets"].items():
            if base and t in base["sets"] and base["sets"][t].get("mpjpe"):
                m["mpjpe_change"] = m["mpjpe"] / base["sets"][t]["mpjpe"] - 1.0
    return rows, test_sets


def png_bytes(fig) -> bytes:  # noqa: ANN001
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def hard_pose_gallery(store: Store, count: int = 12) -> bytes | None:
    """The top challenging samples with their GT 2D skeleton and first caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from posesyn_core.animate.contact_sheet import draw_skeleton
    from posesyn_core.data.dataset import decode_image

    if not store.exists("eem/challenging.jsonl"):
        return None
    rows = store.read_jsonl("eem/challenging.jsonl")[:count]
    captions = {}
    if store.exists("caption/captions.jsonl"):
        captions = {r["id"]: r["captions"] for r in store.read_jsonl("caption/captions.jsonl")}
    cols = 6
    fig, axes = plt.subplots(-(-len(rows) // cols), cols, figsize=(cols * 2.4, 2.9 * -(-len(rows) // cols)))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, r in zip(np.atleast_1d(axes).ravel(), rows, strict=False):
        img = decode_image(store.read_bytes(join(r["dataset"], r["image"])))
        joints = np.asarray(r["joints2d"], np.float64)
        if r.get("joint_set", "smpl22") == "smpl22":
            img = draw_skeleton(img, joints)
        ax.imshow(img)
        text = (captions.get(r["id"]) or [""])[0]
        ax.set_title(f"#{r['rank']} {r.get('family') or ''}\n{text[:60]}", fontsize=6)
    return png_bytes(fig)


def motion_strips(store: Store, count: int = 3) -> list[tuple[str, bytes]]:
    from posesyn_core.data.motions import read_motions
    from posesyn_core.motion.plots import skeleton_strip_png

    if not store.exists("msm/motions/info.json"):
        return []
    clips = read_motions(store, "msm/motions")
    step = max(1, len(clips) // count)
    out = []
    for clip in clips[::step][:count]:
        title = (clip.texts or [""])[0]
        out.append((f"{clip.id}: {title}", skeleton_strip_png(clip.joints, title=title[:70])))
    return out


def _read_json(store: Store, key: str) -> Any:
    return store.read_json(key) if store.exists(key) else None


def mrinit_ablation(run: RunConfigBase, store: Store, limit: int | None) -> dict | None:
    """The MSM table on the run's hard set (its first `limit` samples, or all) against the mini-world's hidden
    3D; cached under report/ and recomputed when msm's fingerprint (which covers its config, the motion model,
    the hard set and the captions) or the result's fields (`RESULT_VERSION`) change."""
    hidden_key = "world/wild2d_hidden3d.npz"
    if not (store.exists(hidden_key) and store.exists("msm/_SUCCESS") and store.exists("caption/_SUCCESS")):
        return None
    msm_fingerprint = store.read_json("msm/_SUCCESS")["fingerprint"]
    cached = join(REPORT, f"mrinit_ablation_{limit or 'all'}.json")
    from posesyn_core.eem.evaluate import load_hidden3d
    from posesyn_core.msm.ablation import RESULT_VERSION, ablation_for_run

    previous = _read_json(store, cached)
    if previous and (previous.get("msm_fingerprint"), previous.get("version")) == (msm_fingerprint, RESULT_VERSION):
        return previous
    result = ablation_for_run(store, run.section("msm"), load_hidden3d(store, hidden_key), device="cpu",
                              limit=limit, seed=run.seed)  # fmt: skip
    result["msm_fingerprint"] = msm_fingerprint
    store.write_json(cached, result)
    return result


def hard_set(store: Store) -> dict | None:
    hidden_key = "world/wild2d_hidden3d.npz"
    if not (store.exists(hidden_key) and store.exists("eem/_SUCCESS")):
        return None
    from posesyn_core.eem.evaluate import hard_set_report, load_hidden3d

    return hard_set_report(store, load_hidden3d(store, hidden_key))


def consistency_check(run: RunConfigBase, store: Store) -> dict | None:
    """What msm's consistency check dropped: the run's own when it has one on, else the `consistency` variant's."""
    for s in (store, _store_at(store, "consistency")):
        summary = _read_json(s, "msm/summary.json")
        if summary and "consistency" in summary:
            return {"variant": "run" if s is store else "consistency", **summary["consistency"]}
    return None


def collect(run: RunConfigBase, ablation_samples: int | None = None) -> Report:
    store = open_store(run.root)
    rep = Report()
    rep.facts["run"] = {"name": run.name, "root": run.root, "seed": run.seed}
    rep.facts["stages"] = stage_table(run, store)
    rows, test_sets = results_table(store)
    rep.facts["results"], rep.facts["test_sets"] = rows, test_sets
    from posesyn_core.report.seeds import read_over_seeds  # it builds on results_table

    rep.facts["seeds"] = read_over_seeds(run)
    from posesyn_core.loop.rounds import loop_figure, read_loop

    rep.facts["loop"] = read_loop(run)
    if rep.facts["loop"] and rep.facts["loop"]["rounds"]:
        rep.figures["loop"] = loop_figure(rep.facts["loop"])
    missing = [v for v in ("real-only", "random") if not any(r["variant"] == v for r in rows)]
    if missing:  # `make demo` runs (b) only: one seed's (c) vs (d) is within the noise, so (d) is measured over seeds
        rep.notes.append(f"baselines missing: {', '.join(missing)}; run `posesyn experiment ablations RUN.yaml "
                         f"--only {','.join(missing)}`, or `posesyn experiment seeds RUN.yaml` for them over seeds")
    for key, stage in (("eem", "eem/summary.json"), ("msm", "msm/summary.json"), ("retarget", "retarget/summary.json"),
                       ("animate", "animate/summary.json"), ("filter", "filter/summary.json"),
                       ("motion", "motion-train/metrics.json")):  # fmt: skip
        rep.facts[key] = _read_json(store, stage)
    rep.facts["captions"] = _read_json(store, "caption/examples.json")
    rep.facts["hard_set"] = hard_set(store)
    rep.facts["mrinit_ablation"] = mrinit_ablation(run, store, ablation_samples)
    rep.facts["consistency"] = consistency_check(run, store)
    from posesyn_core.eem.keypoints2d import read_keypoints2d

    rep.facts["keypoints2d"] = read_keypoints2d(run)
    tau = []
    for v in ABLATIONS:
        if v.name.startswith("tau-"):
            s = _read_json(_store_at(store, v.name), "filter/summary.json")
            if s:
                tau.append({"tau_mm": s["tau_mm"], "pass_rate": s["pass_rate"], "kept": s["kept"]})
    if rep.facts["filter"]:
        f = rep.facts["filter"]
        tau.append({"tau_mm": f["tau_mm"], "pass_rate": f["pass_rate"], "kept": f["kept"]})
    rep.facts["tau_sweep"] = sorted(tau, key=lambda r: np.inf if r["tau_mm"] is None else r["tau_mm"])
    for name, key in (("eem_histogram", "eem/score_histogram.png"), ("contact_sheet", "animate/contact_sheet.png"),
                      ("filter_histogram", "filter/error_histogram.png"), ("motion_sample", "motion-train/sample.png")):
        if store.exists(key):
            rep.figures[name] = store.read_bytes(key)
    gallery = hard_pose_gallery(store)
    if gallery:
        rep.figures["hard_gallery"] = gallery
    for i, (title, png) in enumerate(motion_strips(store)):
        rep.figures[f"motion_strip_{i}"] = png
        rep.facts.setdefault("motion_strip_titles", []).append(title)
    if rows:
        rep.figures["results"] = results_figure(rows, test_sets)
    return rep


def results_figure(rows: list[dict], test_sets: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(test_sets), figsize=(5 * len(test_sets), 3.2), squeeze=False)
    for ax, t in zip(axes[0], test_sets, strict=True):
        labels = [r["label"].split(" ")[0] if r["label"].startswith("(") else r["label"][:14] for r in rows]
        values = [r["sets"][t]["mpjpe"] for r in rows]
        ax.bar(range(len(rows)), values, color="#4c72b0")
        ax.set_xticks(range(len(rows)), labels, rotation=30, fontsize=7, ha="right")
        ax.set_ylabel("MPJPE (mm)")
        ax.set_title(t)
    return png_bytes(fig)


def to_json(rep: Report) -> str:
    return json.dumps(rep.facts, indent=2, sort_keys=True, default=float)
