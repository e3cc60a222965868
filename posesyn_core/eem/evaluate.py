"""Does EEM find real failures? Compare the challenging set with the whole dataset using the hidden 3D truth that
only the mini-world has (never read by the stages themselves).

`hard_set_report` returns, for the dataset and for the top K_C: the motion-family histogram (counts and shares) and
the TPE's true 3D error (root-relative MPJPE and PA-MPJPE, mm) of its predictions against the hidden GT, and the
share of samples from families the TPE never saw (`meta.common` false in the mini-world).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from posesyn_core.eem.stage import load_predictions, open_dataset
from posesyn_core.errors import DataError
from posesyn_core.metrics import mpjpe, pa_mpjpe
from posesyn_core.storage import Store, join


def load_hidden3d(store: Store, key: str) -> dict[str, np.ndarray]:
    """{sample id: (22, 3) camera-frame GT joints} from the world stage's hidden file (`ids`, `joints3d`)."""
    if not store.exists(key):
        raise DataError(f"{store.url_for(key)}: no hidden 3D ground truth (only the mini-world has one)")
    data = store.load_npz(key)
    return {str(i): j for i, j in zip(data["ids"], data["joints3d"], strict=True)}


def eem_chunk_prefixes(store: Store, eem_prefix: str = "eem") -> list[str]:
    """Chunk folders of the completed eem stage (its manifest says how many shards)."""
    manifest = store.read_json(join(eem_prefix, "_SUCCESS"))
    n = manifest["num_shards"]
    return [join(eem_prefix, "shards", f"{i}-of-{n}", "chunks") for i in range(n)]


def _shares(counter: Counter) -> dict[str, dict[str, float]]:
    total = max(1, sum(counter.values()))
    return {k: {"count": v, "share": round(v / total, 4)} for k, v in counter.most_common()}


def hard_set_report(store: Store, hidden: dict[str, np.ndarray], eem_prefix: str = "eem") -> dict:
    """Families and true 3D error of the challenging set vs all predicted samples (see module docstring)."""
    summary = store.read_json(join(eem_prefix, "summary.json"))
    ds = open_dataset(store, summary["dataset"])
    p = load_predictions(store, eem_chunk_prefixes(store, eem_prefix))
    ids = [ds.samples[i].id for i in p["index"]]
    hard_ids = {r["id"] for r in store.read_jsonl(join(eem_prefix, "challenging.jsonl"))}
    have = np.array([i in hidden for i in ids])
    if not have.any():
        raise DataError("hard_set_report: no predicted sample has hidden 3D ground truth")
    gt = np.stack([hidden[i] for i, h in zip(ids, have, strict=True) if h])
    pred = p["joints3d"][have]
    err = mpjpe(pred, gt, relative=True)
    pa = pa_mpjpe(pred, gt)
    is_hard = np.array([i in hard_ids for i, h in zip(ids, have, strict=True) if h])
    metas = [ds.samples[i].meta for i, h in zip(p["index"], have, strict=True) if h]
    families = [m.get("family", "unknown") for m in metas]
    # The mini-world marks families a lab capture holds as `common`: the TPE never saw the others in training.
    unseen = np.array([m.get("common") is False for m in metas])

    def block(mask: np.ndarray) -> dict:
        return {"samples": int(mask.sum()), "mpjpe_mm": float(err[mask].mean()), "pa_mpjpe_mm": float(pa[mask].mean()),
                "unseen_family_share": float(unseen[mask].mean()),
                "families": _shares(Counter(f for f, m in zip(families, mask, strict=True) if m))}  # fmt: skip

    everything, hard = block(np.ones(len(err), bool)), block(is_hard)
    return {"selection": summary["selection"], "everyday": summary.get("challenging_everyday", 0),
            "alignment": summary.get("alignment", "root"),
            "all": everything, "challenging": hard,
            "mpjpe_ratio": hard["mpjpe_mm"] / everything["mpjpe_mm"]}  # fmt: skip


def format_report(report: dict, top: int = 10) -> str:
    """Markdown: error table, then the family shares side by side (families of the hard set first)."""
    a, h = report["all"], report["challenging"]
    everyday = report.get("everyday", 0)
    selection = report["selection"] + (", similarity-aligned 2D error" if report.get("alignment") == "similarity"
                                       else "") + (f", {everyday} of them drawn below the cut" if everyday else "")
    lines = ["| set | samples | MPJPE (mm) | PA-MPJPE (mm) | unseen families |", "|---|---|---|---|---|",
             f"| all | {a['samples']} | {a['mpjpe_mm']:.1f} | {a['pa_mpjpe_mm']:.1f} "
             f"| {a['unseen_family_share']:.1%} |",
             f"| challenging ({selection}) | {h['samples']} | {h['mpjpe_mm']:.1f} | {h['pa_mpjpe_mm']:.1f} "
             f"| {h['unseen_family_share']:.1%} |",
             "", "| family | share of challenging | share of all |", "|---|---|---|"]  # fmt: skip
    for fam, v in list(h["families"].items())[:top]:
        lines.append(f"| {fam} | {v['share']:.1%} | {a['families'].get(fam, {'share': 0.0})['share']:.1%} |")
    return "\n".join(lines)
