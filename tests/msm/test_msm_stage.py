"""The msm stage and the MR_init ablation with a tiny randomly initialized motion model (real components)."""

from __future__ import annotations

import copy
import io
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from posesyn_core.caption.posecodes import camera_to_upright
from posesyn_core.data.motions import read_motions
from posesyn_core.errors import ConfigError
from posesyn_core.geometry import WORLD_TO_CAMERA_AXES
from posesyn_core.metrics import improvement_interval, pa_mpjpe
from posesyn_core.motion.representation import FEATURE_DIM, Normalizer
from posesyn_core.motion.synthesizer import MotionSynthesizer
from posesyn_core.motion.t2m_gpt import T2MGPT, T2MGPTConfig
from posesyn_core.motion.text import TextEncoderSpec, load_text_encoder
from posesyn_core.motion.vqvae import MotionVQVAE, VQVAEConfig
from posesyn_core.msm.ablation import mrinit_ablation
from posesyn_core.msm.config import MsmSection
from posesyn_core.msm.mrinit import choose_depth_signs, mrinit_roundtrip, upright_roundtrip
from posesyn_core.msm.pipeline import MotionSynthesisPipeline, caption_scores
from posesyn_core.pipeline import RunConfig
from posesyn_core.report.render import consistency_markdown
from posesyn_core.skeleton import PARENTS
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store

MRINIT_FRAMES = 16


def get_dummy_components() -> dict:
    """Seed 0, tiny widths, 1 layer; the codebook is random (not zeros) so different tokens decode differently."""
    torch.manual_seed(0)
    vqvae = MotionVQVAE(VQVAEConfig(nb_code=16, code_dim=16, width=16, depth=1))
    vqvae.quantizer.codebook.normal_()
    vqvae.quantizer.init = True
    gpt = T2MGPT(T2MGPTConfig(num_vq=16, embed_dim=32, clip_dim=384, block_size=24, num_layers=1, n_head=2,
                              mrinit_len=MRINIT_FRAMES // 4))  # fmt: skip
    rng = np.random.default_rng(0)
    normalizer = Normalizer(rng.normal(0, 0.01, FEATURE_DIM).astype(np.float32), np.full(FEATURE_DIM, 0.05, np.float32))
    return {"vqvae": vqvae, "gpt": gpt, "normalizer": normalizer}


def save_motion_model(store, prefix: str, c: dict) -> None:  # noqa: ANN001
    """In the layout `load_motion_model` reads (motion-train's vqvae.pt + t2m_gpt.pt)."""
    for name, ckpt in (
        ("vqvae.pt", {**c["vqvae"].checkpoint(), "normalizer": {k: torch.from_numpy(v) for k, v in
                                                                c["normalizer"].to_dict().items()}}),
        ("t2m_gpt.pt", {**c["gpt"].checkpoint(), "text_encoder": asdict(TextEncoderSpec()),
                        "mrinit_frames": MRINIT_FRAMES}),
    ):  # fmt: skip
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        store.write_bytes(f"{prefix}/{name}", buf.getvalue())


def hard_rows(n: int) -> list[dict]:
    """n challenging rows with camera-frame pseudo-labels: a standing body, tilted and with jittered joints."""
    from tests.caption.test_caption import STAND, rot_x

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        pose = rot_x(STAND, 30.0 * i) + rng.normal(0, 0.03, (22, 3))
        cam = (pose - pose[0]) @ WORLD_TO_CAMERA_AXES.T
        rows.append({"id": f"s{i:03d}", "index": i, "joints3d": cam.tolist(), "family": "cartwheel"})
    return rows


@pytest.fixture(scope="module")
def components() -> dict:
    c = get_dummy_components()
    c["text_encoder"] = load_text_encoder(TextEncoderSpec())
    return c


def synthesizer(c: dict) -> MotionSynthesizer:
    return MotionSynthesizer(c["vqvae"], c["gpt"], c["normalizer"], c["text_encoder"], MRINIT_FRAMES)


def test_pipeline_shapes_determinism_and_conditioning(components: dict) -> None:
    rows = hard_rows(3)
    poses = np.array([r["joints3d"] for r in rows])
    caps = [["a person does a cartwheel", "someone flips sideways"]] * 3
    pipe = MotionSynthesisPipeline(synthesizer(components), "text+mrinit", num_motions=2, num_frames=16)
    out = pipe(poses, caps, seed=3)
    assert out.motions.shape == (3, 2, 16, 22, 3) and np.isfinite(out.motions).all()
    assert out.texts[0] == ["a person does a cartwheel", "someone flips sideways"]
    assert ((out.best_frame >= 0) & (out.best_frame < 16)).all() and (out.best_pa_mpjpe > 0).all()
    again = pipe(poses, caps, seed=3)
    np.testing.assert_array_equal(out.motions, again.motions)
    assert not np.allclose(out.motions[0, 0], out.motions[0, 1])  # N different motions
    mr_only = MotionSynthesisPipeline(synthesizer(components), "mrinit", num_motions=2, num_frames=16)
    assert mr_only(poses, [[]] * 3, seed=3).texts[0] == ["", ""]
    # MR_init and its round trip come with the output; text-only conditioning has neither
    assert out.mrinit_codes.shape == (3, MRINIT_FRAMES // 4) and out.mrinit_roundtrip.shape == (3,)
    np.testing.assert_array_equal(out.mrinit_codes, synthesizer(components).encode_poses(camera_to_upright(poses)))
    text_only = MotionSynthesisPipeline(synthesizer(components), "text", num_motions=2, num_frames=16)(poses, caps, 3)
    assert text_only.mrinit_codes is None and text_only.mrinit_roundtrip is None
    searched = MotionSynthesisPipeline(synthesizer(components), "text+mrinit", num_motions=2, num_frames=16,
                                       search_depth_signs=True)(poses, caps, seed=3)  # fmt: skip
    chosen = camera_to_upright(choose_depth_signs(synthesizer(components), poses))
    np.testing.assert_array_equal(searched.mrinit_codes, synthesizer(components).encode_poses(chosen))
    with pytest.raises(ValueError, match="caption"):
        pipe(poses, [[]] * 3, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        pipe(poses * np.nan, caps, seed=0)


def test_mrinit_roundtrip_measures_how_well_codes_decode_to_the_pose(components: dict) -> None:
    synth = synthesizer(components)
    codes = synth.encode_poses(camera_to_upright(np.array([r["joints3d"] for r in hard_rows(3)])))
    decoded = np.stack(synth.decode(codes.tolist())).astype(np.float64)  # (3, 16, 22, 3)
    own = decoded.mean(1)  # what the codes decode to, as one pose each
    err = mrinit_roundtrip(synth, codes, own)
    np.testing.assert_allclose(err, pa_mpjpe(decoded, own[:, None]).mean(1))
    assert (err < mrinit_roundtrip(synth, codes, own[::-1] * [1, -1, 1])).all()  # another pose decodes worse


def test_choose_depth_signs_keeps_the_2d_and_bones_and_never_round_trips_worse(components: dict) -> None:
    synth = synthesizer(components)
    poses = np.array([r["joints3d"] for r in hard_rows(6)])
    chosen = choose_depth_signs(synth, poses)
    np.testing.assert_allclose(chosen[..., :2], poses[..., :2], atol=1e-12)  # what the image shows stays
    bones = [(j, p) for j, p in enumerate(PARENTS) if p >= 0]
    length = lambda x: np.stack([np.linalg.norm(x[:, j] - x[:, p], axis=-1) for j, p in bones], 1)  # noqa: E731
    np.testing.assert_allclose(length(chosen), length(poses), atol=1e-12)
    flipped = np.abs(chosen[..., 2] - poses[..., 2]) > 1e-9
    assert flipped.any()  # a random VQ-VAE still prefers some mirror images
    assert (upright_roundtrip(synth, chosen) <= upright_roundtrip(synth, poses) + 1e-9).all()
    np.testing.assert_array_equal(choose_depth_signs(synth, poses), chosen)  # deterministic
    in_plane = poses.copy()
    in_plane[..., 2] = 0.0  # every bone in the image plane: no sign to choose
    np.testing.assert_allclose(choose_depth_signs(synth, in_plane), in_plane, atol=1e-12)


def test_msm_stage_sharded(tmp_path: Path, components: dict) -> None:
    store = open_store(tmp_path.as_uri())
    save_motion_model(store, "motion-train", components)
    rows = hard_rows(5)
    rows[2]["joints3d"] = [[0.0, 0.0, 0.0]]  # broken pseudo-label: quarantined
    store.write_jsonl("eem/challenging.jsonl", rows)
    store.write_jsonl("caption/captions.jsonl", [{"id": r["id"], "captions": [f"a person moves {r['id']}"]}
                                                 for r in rows])  # fmt: skip
    section = {"num_motions": 2, "num_frames": 16, "chunk_size": 2, "batch_size": 2, "shards": 2}
    run = RunConfig.model_validate({"name": "t", "root": tmp_path.as_uri(), "stages": ["msm"], "device": "cpu",
                                    "max_bad_fraction": 0.4, "msm": section})  # fmt: skip
    result = execute_stage(run, "msm")
    assert result.manifest["rejected"] == 1 and result.manifest["counts"]["motions"] == 8
    clips = read_motions(store, "msm/motions")
    assert [c.id for c in clips] == ["s000-m0", "s000-m1", "s001-m0", "s001-m1", "s003-m0", "s003-m1", "s004-m0",
                                     "s004-m1"]  # fmt: skip
    c = clips[0]
    assert c.joints.shape == (16, 22, 3) and c.texts == ["a person moves s000"] and c.family == "cartwheel"
    assert c.meta["source_id"] == "s000" and 0 <= c.meta["best_frame"] < 16 and c.meta["conditioning"] == "text+mrinit"
    assert len(c.meta["mrinit_codes"]) == MRINIT_FRAMES // 4 and c.meta["mrinit_roundtrip_mm"] > 0
    summary = store.read_json("msm/summary.json")
    assert summary["hard_poses"] == 4 and summary["motions"] == 8
    roundtrips = [c.meta["mrinit_roundtrip_mm"] for c in clips[::2]]  # one per hard pose
    assert summary["mrinit"]["hard_poses"] == 4 and 1 <= summary["mrinit"]["distinct_prefixes"] <= 4
    assert summary["mrinit"]["roundtrip_pa_mpjpe_mm"]["mean"] == pytest.approx(np.mean(roundtrips))
    first = store.read_bytes("msm/motions/parts/part-00000.npz")
    run1 = run.model_copy(update={"msm": MsmSection(**{**section, "shards": 1})})
    execute_stage(run1, "msm", force=True)
    assert store.read_bytes("msm/motions/parts/part-00000.npz") == first  # same motions whatever the sharding

    store.delete("caption/captions.jsonl")
    with pytest.raises(ConfigError, match="needs captions"):
        execute_stage(run1, "msm", force=True)


def test_mrinit_ablation_reports_both_variants(components: dict) -> None:
    rows = hard_rows(4)
    gt = np.array([r["joints3d"] for r in rows]) + 0.01
    caps = {r["id"]: ["a person does a cartwheel"] for r in rows}
    cfg = MsmSection(num_motions=2, num_frames=16, batch_size=3, depth_signs="tpe")
    result = mrinit_ablation(synthesizer(components), rows, caps, gt, cfg)
    assert set(result["variants"]) == {"text+mrinit", "text"} and result["num_samples"] == 4
    for v in result["variants"].values():
        assert v["min_mm"] <= v["mean_mm"] and len(v["per_sample_min_mm"]) == 4
    assert result["pseudo_label_mm"] < 1e-3 + 10  # pseudo-label = GT shifted by 1 cm: PA removes it
    v = result["variants"]
    assert result["min_improvement_95ci"] == improvement_interval(v["text+mrinit"]["per_sample_min_mm"],
                                                                  v["text"]["per_sample_min_mm"])  # fmt: skip
    bound = result["true_pose_mrinit"]  # MR_init from the true pose: same shape of result
    assert bound["min_mm"] <= bound["mean_mm"] and len(bound["per_sample_min_mm"]) == 4
    assert v["text+mrinit"]["mrinit_roundtrip_mm"] > 0 and bound["mrinit_roundtrip_mm"] > 0
    assert "mrinit_roundtrip_mm" not in v["text"]
    # Depth signs chosen by the motion model: once, for every variant; the true pose keeps its own
    searched = mrinit_ablation(synthesizer(components), rows, caps, gt, cfg.model_copy(update={"depth_signs":
                                                                                              "motion-model"}))
    chosen = choose_depth_signs(synthesizer(components), np.array([r["joints3d"] for r in rows]))
    assert searched["depth_signs"] == "motion-model"
    assert searched["pseudo_label_mm"] == pytest.approx(pa_mpjpe(chosen, gt).mean())
    assert searched["true_pose_mrinit"] == bound


def test_token_log_likelihood_is_the_samplers_own_distribution(components: dict) -> None:
    synth = synthesizer(components)
    texts = ["a person does a cartwheel"]
    mrinit = synth.encode_poses(camera_to_upright(np.array([hard_rows(1)[0]["joints3d"]])))
    # First position: the sampler's frequencies of one-token motions are exp(log-likelihood)
    draws = synth.sample(texts, mrinit, max_tokens=1, seed=0, num_samples=3000, stop_on_end=False)
    freq = np.bincount([d[0] for d in draws], minlength=16) / len(draws)
    ll = synth.token_log_likelihood(texts * 16, np.repeat(mrinit, 16, 0), [[t] for t in range(16)])
    np.testing.assert_allclose(np.exp(ll), freq, atol=0.03)
    assert np.exp(ll).sum() == pytest.approx(1.0, abs=1e-5)  # the end token is never drawn, so not scored
    # Last position: the greedy motion's last token is the most likely one after its own first tokens
    greedy = synth.sample(texts, mrinit, max_tokens=4, temperature=0.0, stop_on_end=False)[0]
    variants = [greedy[:3] + [t] for t in range(16)]
    scores = synth.token_log_likelihood(texts * 16, np.repeat(mrinit, 16, 0), variants)
    assert scores.argmax() == greedy[3] and (scores <= 0).all()
    with pytest.raises(ValueError, match="one length"):
        synth.token_log_likelihood(texts * 2, None, [[1, 2], [3]])


def test_caption_scores_compare_a_motions_caption_with_other_poses(components: dict) -> None:
    synth = synthesizer(components)
    poses = np.array([r["joints3d"] for r in hard_rows(4)])
    caps = [["a person does a cartwheel"], ["someone sits on the floor"], ["a person kicks high"],
            ["a person lies down flat"]]  # fmt: skip
    pipe = MotionSynthesisPipeline(synth, "text+mrinit", num_motions=2, num_frames=16, caption_distractors=2)
    out = pipe(poses, caps, seed=1)
    assert out.caption_scores.shape == (4, 2) and np.isfinite(out.caption_scores).all()
    assert np.abs(out.caption_scores).max() > 0
    plain = MotionSynthesisPipeline(synth, "text+mrinit", num_motions=2, num_frames=16)(poses, caps, seed=1)
    assert plain.caption_scores is None
    np.testing.assert_array_equal(plain.motions, out.motions)  # scoring never changes what is sampled
    # The same caption everywhere explains every motion exactly as well as "the others" do; no text: no score
    same = pipe(poses, [["a person does a cartwheel"]] * 4, seed=1).caption_scores
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    mr_only = MotionSynthesisPipeline(synth, "mrinit", num_motions=2, num_frames=16, caption_distractors=2)
    assert np.isnan(mr_only(poses, [[]] * 4, seed=1).caption_scores).all()
    # A model taught two captions' motions: each motion scores above 0 under its own caption, below 0 under the other
    taught = copy.deepcopy(components["gpt"])
    texts, motions = ["a person does a cartwheel", "someone sits on the floor"], [[3] * 4, [7] * 4]
    feats = torch.from_numpy(components["text_encoder"].encode(texts))
    prefix = torch.full((2, taught.config.mrinit_len), taught.config.pad_id)
    targets = torch.tensor([m + [taught.config.end_id] for m in motions])
    opt = taught.configure_optimizers(lr=1e-2)
    taught.train()
    for _ in range(150):
        opt.zero_grad()
        taught.loss(feats, prefix, targets, pkeep=1.0).backward()
        opt.step()
    synth_taught = MotionSynthesizer(components["vqvae"], taught, components["normalizer"], components["text_encoder"],
                                     MRINIT_FRAMES)  # fmt: skip
    right = caption_scores(synth_taught, [[texts[0]], [texts[1]]], None, motions, distractors=1)
    wrong = caption_scores(synth_taught, [[texts[1]], [texts[0]]], None, motions, distractors=1)
    assert (right > 1.0).all() and (wrong < -1.0).all()


def test_msm_consistency_check_drops_drifted_motions_with_reasons(tmp_path: Path, components: dict) -> None:
    store = open_store(tmp_path.as_uri())
    save_motion_model(store, "motion-train", components)
    rows = hard_rows(6)
    store.write_jsonl("eem/challenging.jsonl", rows)
    store.write_jsonl("caption/captions.jsonl", [{"id": r["id"], "captions": [f"a person moves {r['id']}"]}
                                                 for r in rows])  # fmt: skip
    section = {"num_motions": 2, "num_frames": 16, "chunk_size": 3, "batch_size": 3}
    run = RunConfig.model_validate({"name": "t", "root": tmp_path.as_uri(), "stages": ["msm"], "device": "cpu",
                                    "msm": section})  # fmt: skip
    execute_stage(run, "msm")
    plain = read_motions(store, "msm/motions")
    pose_mm = np.array([c.meta["best_pa_mpjpe_mm"] for c in plain])
    assert "caption_score" not in plain[0].meta and not store.exists("msm/dropped.jsonl")

    limit = float(np.median(pose_mm))
    check = {"max_pose_mm": limit, "min_caption_score": 0.0, "distractors": 2}
    checked = run.model_copy(update={"msm": MsmSection(**section, consistency=check, shards=2)})
    result = execute_stage(checked, "msm", force=True)
    kept = read_motions(store, "msm/motions")
    dropped = store.read_jsonl("msm/dropped.jsonl")
    assert len(kept) + len(dropped) == 12 and dropped
    assert all(c.meta["best_pa_mpjpe_mm"] <= limit and c.meta["caption_score"] >= 0 for c in kept)
    by_id = {c.id: c.meta["best_pa_mpjpe_mm"] for c in plain}
    for d in dropped:  # the same motions as without the check; each dropped one says why
        assert d["best_pa_mpjpe_mm"] == by_id[d["id"]]
        assert ("pose drift" in d["reasons"]) == (d["best_pa_mpjpe_mm"] > limit)
        assert ("caption drift" in d["reasons"]) == (d["caption_score"] < 0)
    counts, summary = result.manifest["counts"], store.read_json("msm/summary.json")["consistency"]
    assert counts["motions"] == len(kept) == summary["kept"]
    assert counts["motions_dropped_pose_drift"] == summary["dropped_by_reason"]["pose drift"] == np.sum(pose_mm > limit)
    assert counts.get("motions_dropped_caption_drift", 0) == summary["dropped_by_reason"]["caption drift"]
    assert summary["hard_poses_without_motion"] == 6 - len({c.meta["source_id"] for c in kept})
    table = consistency_markdown({"variant": "run", **summary})
    assert f"| pose drift | {summary['dropped_by_reason']['pose drift']} |" in table and dropped[0]["id"] in table

    with pytest.raises(ValueError, match="no caption to score"):
        MsmSection(conditioning="mrinit", consistency={"min_caption_score": 0.0})
