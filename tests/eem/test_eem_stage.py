"""The eem stage end to end on a small dataset with a tiny real TPE: outputs, quarantine, shards, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from posesyn_core.data.dataset import PoseSample, write_dataset
from posesyn_core.pipeline import RunConfig
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store
from posesyn_core.tpe.model import TPE, TPEConfig, checkpoint_dict
from posesyn_core.tpe.train import save_torch

N = 40


def make_dataset(store, prefix: str = "world/wild2d", n: int = N, bad: bool = True) -> None:  # noqa: ANN001
    """n smpl22 samples (64x64 images, random poses, two families); with `bad`, sample 3 has NaN keypoints,
    sample 7 no visible joint, sample 9 a joint far outside the image and sample 11 no image file."""
    rng = np.random.default_rng(0)
    samples, images = [], []
    for i in range(n):
        j2d = np.concatenate([rng.uniform(8, 56, (22, 2)), np.ones((22, 1))], 1)
        if bad and i == 3:
            j2d[5, 0] = np.nan
        if bad and i == 7:
            j2d[:, 2] = 0
        if bad and i == 9:
            j2d[2, :2] = [400, 30]
        samples.append(PoseSample(id=f"s{i:03d}", image=f"images/s{i:03d}.png", width=64, height=64,
                                  bbox=[8, 8, 48, 48], joints2d=j2d.tolist(),
                                  meta={"family": "cartwheel" if i % 4 == 0 else "walk"}))  # fmt: skip
        images.append(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    write_dataset(store, prefix, "wild2d", "smpl22", samples, images, image_ext="png", part_size=16)
    if bad:
        store.delete(f"{prefix}/images/s011.png")


def save_tpe(store, key: str = "tpe-train/model.pt") -> None:  # noqa: ANN001
    """A tiny randomly initialized TPE checkpoint (seed 0)."""
    torch.manual_seed(0)
    save_torch(store, key, checkpoint_dict(TPE(TPEConfig(img_size=32, widths=(4, 8), head_dim=16))))


def run_config(root: Path, **eem):  # noqa: ANN003, ANN201
    section = {"num_challenging": 5, "num_references": 3, "chunk_size": 16, "batch_size": 8, **eem}
    return RunConfig.model_validate({"name": "t", "root": root.as_uri(), "stages": ["eem"], "device": "cpu",
                                     "max_bad_fraction": 0.25, "eem": section})  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Path:
    store = open_store(tmp_path.as_uri())
    make_dataset(store)
    save_tpe(store)
    return tmp_path


def test_eem_stage_outputs_and_quarantine(world: Path) -> None:
    result = execute_stage(run_config(world, shards=2), "eem")
    store = open_store(world.as_uri())
    assert result.status == "done"
    assert result.manifest["counts"]["samples_in"] == N and result.manifest["rejected"] == 4
    reasons = {r["id"]: r["reason"] for r in store.read_jsonl("eem/rejected.jsonl")}
    assert reasons == {"s003": "non-finite keypoints", "s007": "no visible joints",
                       "s009": "keypoints far outside the image", "s011": "missing image file"}
    scores = store.read_jsonl("eem/scores.jsonl")
    assert len(scores) == N - 4 and all(s["error"] is not None for s in scores)
    hard = store.read_jsonl("eem/challenging.jsonl")
    assert [h["rank"] for h in hard] == list(range(5))
    errors = [h["error"] for h in hard]
    assert errors == sorted(errors, reverse=True) and errors[-1] >= max(sorted(s["error"] for s in scores)[:-5])
    h = hard[0]
    assert np.array(h["joints3d"]).shape == (22, 3) and len(h["cam"]) == 3 and h["image"].startswith("images/")
    assert h["family"] in ("walk", "cartwheel") and h["dataset"] == "world/wild2d"
    refs = store.read_jsonl("eem/references.jsonl")
    assert len(refs) == 3 and {r["id"] for r in refs}.isdisjoint({h["id"] for h in hard})
    assert [r["error"] for r in refs] == sorted(r["error"] for r in refs)
    summary = store.read_json("eem/summary.json")
    assert summary["families"]["all"] == {"cartwheel": 10, "walk": 26} and summary["challenging"] == 5
    assert store.read_bytes("eem/score_histogram.png")[:8] == b"\x89PNG\r\n\x1a\n"

    # Same results unsharded; byte-identical on a forced re-run.
    first = store.read_bytes("eem/challenging.jsonl")
    execute_stage(run_config(world, shards=1), "eem", force=True)
    assert store.read_bytes("eem/challenging.jsonl") == first


def test_random_selection_has_the_same_budget(world: Path) -> None:
    execute_stage(run_config(world, selection="random"), "eem")
    store = open_store(world.as_uri())
    hard = store.read_jsonl("eem/challenging.jsonl")
    assert len(hard) == 5 and store.read_json("eem/summary.json")["selection"] == "random"


def test_everyday_share_draws_part_of_the_budget_below_the_cut(world: Path) -> None:
    store = open_store(world.as_uri())
    execute_stage(run_config(world), "eem")
    top = store.read_jsonl("eem/challenging.jsonl")
    execute_stage(run_config(world, everyday_share=0.4), "eem")
    mixed = store.read_jsonl("eem/challenging.jsonl")
    # Same budget; the top 3 of 5 stay, the other 2 come from below the whole top 5's cut, none twice.
    assert len(mixed) == 5 and [h["id"] for h in mixed[:3]] == [h["id"] for h in top[:3]]
    assert [h["selected"] for h in mixed] == ["eem"] * 3 + ["everyday"] * 2
    assert all("selected" not in h for h in top)  # at the default, the rows the paper's selection always wrote
    assert max(h["error"] for h in mixed[3:]) < top[-1]["error"] and len({h["id"] for h in mixed}) == 5
    summary = store.read_json("eem/summary.json")
    assert summary["challenging_everyday"] == 2
    assert summary["error"]["challenging_cut"] == pytest.approx(mixed[2]["error"], abs=1e-6)
    refs = {r["id"] for r in store.read_jsonl("eem/references.jsonl")}
    assert refs.isdisjoint(h["id"] for h in mixed)
    # The draw is the run's: the same again on a forced re-run.
    first = store.read_bytes("eem/challenging.jsonl")
    execute_stage(run_config(world, everyday_share=0.4), "eem", force=True)
    assert store.read_bytes("eem/challenging.jsonl") == first


def test_similarity_alignment_ranks_by_the_aligned_error(world: Path) -> None:
    from posesyn_core.data.dataset import PoseDataset
    from posesyn_core.eem.config import EemSection
    from posesyn_core.eem.evaluate import eem_chunk_prefixes, format_report, hard_set_report, load_hidden3d
    from posesyn_core.eem.score import eem_errors, weight_vector
    from posesyn_core.eem.stage import load_predictions
    from posesyn_core.stages import section_hash

    store = open_store(world.as_uri())
    torch.manual_seed(2)  # a TPE whose poses vary (the default tiny one starts at the all-zero mean pose)
    model = TPE(TPEConfig(img_size=32, widths=(4, 8), head_dim=16))
    torch.nn.init.normal_(model.head[-1].weight, std=0.3)
    torch.nn.init.normal_(model.head[-1].bias, std=0.3)
    save_torch(store, "tpe-train/model.pt", checkpoint_dict(model))
    execute_stage(run_config(world, shards=2), "eem")
    root_scores = {r["id"]: r["error"] for r in store.read_jsonl("eem/scores.jsonl")}
    execute_stage(run_config(world, shards=2, alignment="similarity"), "eem")
    # Every stored score is the aligned error of the stored prediction against the labels; the top K_C are its largest.
    ds = PoseDataset(store, "world/wild2d")
    p = load_predictions(store, eem_chunk_prefixes(store))
    arrays = {k: v[p["index"]].astype(np.float64) for k, v in ds.arrays.items() if k in ("joints2d", "bboxes")}
    expected = eem_errors(p["joints2d"].astype(np.float64), arrays["joints2d"], "smpl22",
                          weight_vector(EemSection().weights), arrays["bboxes"], alignment="similarity").error
    np.testing.assert_allclose(p["error"], expected, rtol=1e-12)
    scores = {r["id"]: r["error"] for r in store.read_jsonl("eem/scores.jsonl")}
    assert scores.keys() == root_scores.keys() and sum(scores.values()) < sum(root_scores.values())
    hard = store.read_jsonl("eem/challenging.jsonl")
    assert [h["id"] for h in hard] == sorted(scores, key=lambda i: -scores[i])[:5]
    assert store.read_json("eem/summary.json")["alignment"] == "similarity"
    # The references stay the lowest by the root-relative error: their pseudo-label's orientation places the body.
    refs = store.read_jsonl("eem/references.jsonl")
    root_refs = sorted((i for i in root_scores if i not in {h["id"] for h in hard}), key=lambda i: root_scores[i])
    assert [r["id"] for r in refs] == root_refs[:3]
    assert [r["error"] for r in refs] == [root_scores[i] for i in root_refs[:3]]
    ids = np.array([f"s{i:03d}" for i in range(N)])
    store.save_npz("world/wild2d_hidden3d.npz", ids=ids, joints3d=np.zeros((N, 22, 3), np.float32))
    assert "challenging (eem, similarity-aligned 2D error)" in format_report(
        hard_set_report(store, load_hidden3d(store, "world/wild2d_hidden3d.npz")))
    # An added key: at its default, a run's eem keeps the fingerprint it had before the key existed.
    assert section_hash(EemSection(alignment="root")) == section_hash(EemSection())
    assert section_hash(EemSection(alignment="similarity")) != section_hash(EemSection())


def test_ranking_keys_are_dropped_under_random_selection() -> None:
    from posesyn_core.eem.config import EemSection
    from posesyn_core.stages import section_hash

    # A run with a share and an alignment, and its random baseline: the baseline's eem is the one it was before
    # either key existed.
    random = EemSection(selection="random", everyday_share=0.67, alignment="similarity")
    assert random.everyday_share == 0 and random.alignment == "root"
    assert section_hash(random) == section_hash(EemSection(selection="random"))
    assert section_hash(EemSection(everyday_share=0.67)) != section_hash(EemSection())


def test_hard_set_report_against_hidden_truth(world: Path) -> None:
    from posesyn_core.eem.evaluate import format_report, hard_set_report, load_hidden3d

    execute_stage(run_config(world, shards=2), "eem")
    store = open_store(world.as_uri())
    rng = np.random.default_rng(0)
    ids = np.array([f"s{i:03d}" for i in range(N)])
    store.save_npz("world/wild2d_hidden3d.npz", ids=ids, joints3d=rng.normal(0, 0.3, (N, 22, 3)).astype(np.float32))
    report = hard_set_report(store, load_hidden3d(store, "world/wild2d_hidden3d.npz"))
    assert report["all"]["samples"] == N - 4 and report["challenging"]["samples"] == 5
    assert sum(v["count"] for v in report["all"]["families"].values()) == N - 4
    assert report["all"]["mpjpe_mm"] > report["all"]["pa_mpjpe_mm"] > 0
    assert "| challenging (eem) | 5 |" in format_report(report) and report["all"]["unseen_family_share"] == 0.0


def test_estimated_keypoints_replace_the_labels_which_are_never_read(world: Path) -> None:
    from posesyn_core.data.dataset import PoseDataset
    from posesyn_core.eem.config import EemSection
    from posesyn_core.eem.score import eem_errors, weight_vector
    from posesyn_core.eem.stage import estimated_keypoints
    from posesyn_core.tpe.config import EstimatorRef
    from posesyn_core.tpe.inference import load_estimator

    store = open_store(world.as_uri())
    torch.manual_seed(1)  # another tiny model plays the 2D keypoint estimator
    save_torch(store, "kp/model.pt", checkpoint_dict(TPE(TPEConfig(img_size=32, widths=(4, 8), head_dim=16))))
    kp = {"path": "kp/model.pt"}
    result = execute_stage(run_config(world, keypoints2d="estimated", keypoints_estimator=kp, shards=2), "eem")
    # Broken labels (NaN, none visible, far outside) do not matter: only the image file is missing
    assert result.manifest["rejected"] == 1
    assert {r["id"] for r in store.read_jsonl("eem/rejected.jsonl")} == {"s011"}
    ds = PoseDataset(store, "world/wild2d")
    keep = [i for i in range(N) if i != 11]
    images, boxes = [ds.image(i) for i in keep], ds.arrays["bboxes"][keep]
    tpe2d = load_estimator(store, EstimatorRef(), "cpu").predict(images, boxes).joints2d
    est = estimated_keypoints(load_estimator(store, EstimatorRef(**kp), "cpu").predict(images, boxes).joints2d
                              .astype(np.float64), np.full(len(keep), 64.0), np.full(len(keep), 64.0))  # fmt: skip
    weights = weight_vector(EemSection().weights)
    expected = eem_errors(tpe2d.astype(np.float64), est.astype(np.float64), "smpl22", weights,
                          boxes.astype(np.float64)).error  # fmt: skip
    scores = store.read_jsonl("eem/scores.jsonl")
    got = np.array([np.nan if s["error"] is None else s["error"] for s in scores])
    np.testing.assert_allclose(got, expected, rtol=1e-4, equal_nan=True)
    hard = store.read_jsonl("eem/challenging.jsonl")
    pos = keep.index(hard[0]["index"])
    np.testing.assert_allclose(hard[0]["joints2d"], est[pos], atol=0.01)  # what msm/caption fit to
    assert hard[0]["joint_set"] == "smpl22"
    assert store.read_json("eem/summary.json")["keypoints2d"]["source"] == "estimated"

    with pytest.raises(ValueError, match="set eem.keypoints_estimator"):
        EemSection(keypoints2d="estimated")
    with pytest.raises(ValueError, match="own projection"):
        EemSection(keypoints2d="estimated", keypoints_estimator={})


def test_keypoints2d_comparison_reads_both_runs_files(world: Path) -> None:
    from posesyn_core.data.dataset import PoseDataset
    from posesyn_core.eem.evaluate import eem_chunk_prefixes
    from posesyn_core.eem.keypoints2d import (
        ESTIMATED,
        KEYPOINT_ESTIMATOR,
        compare,
        estimated_variant,
        keypoints2d_markdown,
    )
    from posesyn_core.eem.stage import load_predictions
    from posesyn_core.experiment import apply_overrides

    base = run_config(world)
    execute_stage(base, "eem")
    est_root = world / "experiments" / ESTIMATED
    est_root.mkdir(parents=True)
    for stage in ("world", "tpe-train"):  # as the experiment shares them
        (est_root / stage).symlink_to(world / stage, target_is_directory=True)
    torch.manual_seed(1)
    save_torch(open_store(world.as_uri()), f"experiments/{KEYPOINT_ESTIMATOR.name}/tpe-train/model.pt",
               checkpoint_dict(TPE(TPEConfig(img_size=32, widths=(4, 8), head_dim=16))))  # fmt: skip
    data = apply_overrides({"eem": base.eem.model_dump(exclude_defaults=True)}, estimated_variant(base).overrides)
    execute_stage(run_config(est_root, **data["eem"]), "eem")
    store = open_store(world.as_uri())
    rng = np.random.default_rng(0)
    store.save_npz("world/wild2d_hidden3d.npz", ids=np.array([f"s{i:03d}" for i in range(N)]),
                   joints3d=rng.normal(0, 0.3, (N, 22, 3)).astype(np.float32))  # fmt: skip

    result = compare(base)
    hard = {root: {r["id"] for r in open_store(root.as_uri()).read_jsonl("eem/challenging.jsonl")}
            for root in (world, est_root)}  # fmt: skip
    assert result["budget"] == 5 and result["overlap"] == len(hard[world] & hard[est_root])
    # Both keypoint sets against the labels, joint by joint, on the samples both runs scored (not s003/7/9/11)
    ds = PoseDataset(store, "world/wild2d")
    tpe, est = (load_predictions(open_store(r.as_uri()), eem_chunk_prefixes(open_store(r.as_uri())))
                for r in (world, est_root))  # fmt: skip
    common = sorted(set(tpe["index"].tolist()) & set(est["index"].tolist()))
    assert result["keypoints"]["samples"] == len(common) == N - 4
    for name, pred, points in (("tpe_projection", tpe, "joints2d"), ("estimated", est, "keypoints2d")):
        dists = []
        for i in common:
            row = pred[points][list(pred["index"]).index(i)]
            dists += [np.hypot(*(row[j, :2] - lab[:2])) for j, lab in enumerate(ds.samples[i].joints2d) if lab[2] > 0]
        assert result["keypoints"][name]["mean_px"] == pytest.approx(np.mean(dists), rel=1e-5)
    assert 0 <= result["keypoints"]["estimated"]["pck@0.1"] <= 100
    assert set(result["hard_set"]) == {"gt", "estimated"} and result["hard_set"]["gt"]["samples"] == 5
    assert result["finetuned"] == {"gt": None, "estimated": None}  # no evaluate stage in this test
    assert store.read_json("report/keypoints2d.json") == result
    assert f"{result['overlap']} of 5 samples in both" in keypoints2d_markdown(result)
    stored = store.read_json("report/keypoints2d.json")  # keys sorted: the table still lists families by share
    largest = max(stored["hard_set"]["gt"]["families"].items(), key=lambda kv: kv[1]["share"])[0]
    assert f"Hard set on GT 2D labels, largest families: {largest} " in keypoints2d_markdown(stored)
