"""Posecodes captions on hand-built poses, the caption stage, and the VLM plumbing with a tiny random BLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from posesyn_core.caption.posecodes import camera_to_upright, caption_pose, describe, posecodes
from posesyn_core.geometry import WORLD_TO_CAMERA_AXES
from posesyn_core.pipeline import RunConfig
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store

# A standing person (y up, facing +z, subject's left at +x), metres, SMPL22 order.
STAND = np.array([
    [0, 0.95, 0], [0.09, 0.9, 0], [-0.09, 0.9, 0], [0, 1.05, 0], [0.1, 0.5, 0], [-0.1, 0.5, 0], [0, 1.18, 0],
    [0.1, 0.08, -0.02], [-0.1, 0.08, -0.02], [0, 1.3, 0], [0.1, 0.02, 0.1], [-0.1, 0.02, 0.1], [0, 1.5, 0],
    [0.07, 1.45, 0], [-0.07, 1.45, 0], [0, 1.62, 0.02], [0.18, 1.42, 0], [-0.18, 1.42, 0], [0.2, 1.15, 0],
    [-0.2, 1.15, 0], [0.21, 0.9, 0.02], [-0.21, 0.9, 0.02],
])  # fmt: skip


def arms_up(p: np.ndarray) -> np.ndarray:
    p = p.copy()
    p[[18, 19], 1], p[[20, 21], 1] = 1.7, 1.95
    return p


def kneel(p: np.ndarray) -> np.ndarray:
    p = p.copy()
    p[:, 1] -= 0.42  # everything down by the shank length; lower legs then lie on the floor behind the knees
    p[[4, 5], 1] = 0.05
    p[[7, 8], 1], p[[7, 8], 2] = 0.06, -0.4
    p[[10, 11], 1], p[[10, 11], 2] = 0.03, -0.5
    return p


def squat(p: np.ndarray) -> np.ndarray:
    p = p.copy()
    p[:, 1] -= 0.5
    p[[0, 1, 2], 1] = [0.45, 0.42, 0.42]
    p[[4, 5], 1], p[[4, 5], 2] = 0.45, 0.42  # thighs horizontal
    p[[7, 8], 1], p[[7, 8], 2] = 0.08, 0.3
    p[[10, 11], 1], p[[10, 11], 2] = 0.02, 0.42
    return p


def bend_forward(p: np.ndarray) -> np.ndarray:
    p = p.copy()
    upper = [3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
    p[upper] = rot_x(p[upper] - p[0], 80) + p[0]
    return p


def lunge(p: np.ndarray) -> np.ndarray:
    p = p.copy()
    p[:, 1] -= 0.25
    p[[4, 7, 10]] = [[0.1, 0.45, 0.45], [0.1, 0.08, 0.45], [0.1, 0.02, 0.57]]  # left leg forward, bent
    p[[5, 8, 11]] = [[-0.1, 0.38, -0.3], [-0.1, 0.08, -0.6], [-0.1, 0.02, -0.5]]  # right leg back, straight
    return p


def one_leg(p: np.ndarray) -> np.ndarray:
    p = p.copy()
    p[[5, 8, 11]] = [[-0.1, 0.75, 0.35], [-0.1, 0.45, 0.2], [-0.1, 0.42, 0.3]]
    return p


def rot_x(p: np.ndarray, deg: float) -> np.ndarray:
    a = np.radians(deg)
    r = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return p @ r.T


def rot_z(p: np.ndarray, deg: float) -> np.ndarray:
    a = np.radians(deg)
    r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return p @ r.T


def to_camera(p: np.ndarray) -> np.ndarray:
    """World (y up) -> root-relative camera frame, as a TPE pseudo-label."""
    return (p - p[0]) @ WORLD_TO_CAMERA_AXES.T


@pytest.mark.parametrize("pose, posture", [
    (STAND, "standing"),
    (arms_up(STAND), "standing"),
    (kneel(STAND), "kneeling"),
    (squat(STAND), "squatting"),
    (bend_forward(STAND), "bending forward"),
    (lunge(STAND), "lunging"),
    (one_leg(STAND), "standing on one leg"),
    (rot_x(STAND, -90), "lying on the back"),
    (rot_x(STAND, 90), "lying face down"),
    (rot_z(arms_up(STAND), 180), "handstand"),
])  # fmt: skip
def test_postures(pose: np.ndarray, posture: str) -> None:
    codes = posecodes(camera_to_upright(to_camera(pose)))
    assert codes.posture == posture


def test_camera_to_upright_puts_each_pose_of_a_batch_on_the_floor() -> None:
    standing, lying = to_camera(STAND), to_camera(rot_x(STAND, -90))
    batch = camera_to_upright(np.stack([standing, lying]))
    np.testing.assert_allclose(batch[..., 1].min(-1), 0.0, atol=1e-12)  # each pose's lowest joint on the floor
    np.testing.assert_allclose(batch, np.stack([camera_to_upright(standing), camera_to_upright(lying)]))
    assert batch[1, 0, 1] < 0.3 < batch[0, 0, 1]  # the lying pelvis stays low, the standing one is at hip height


def test_posecodes_details_and_varied_sentences() -> None:
    codes = posecodes(camera_to_upright(to_camera(arms_up(STAND))))
    assert codes.hands == ("overhead", "overhead") and codes.knees == ("straight", "straight")
    assert codes.elbows == ("straight", "straight") and codes.torso == "upright" and "feet" in codes.contacts
    captions, _ = caption_pose(to_camera(arms_up(STAND)), np.random.default_rng(0), n=3)
    assert captions[0] == "A person is standing with both arms raised overhead."
    assert len(set(captions)) == 3
    assert captions == caption_pose(to_camera(arms_up(STAND)), np.random.default_rng(0), n=3)[0]
    codes = posecodes(camera_to_upright(to_camera(kneel(STAND))))
    assert describe(codes, np.random.default_rng(1), 1) == ["A person is kneeling."]


def test_caption_stage_on_challenging_rows(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    poses = [STAND, kneel(STAND), rot_x(STAND, -90)]
    rows = [{"id": f"s{i}", "index": i, "joints3d": to_camera(p).tolist()} for i, p in enumerate(poses)]
    rows.append({"id": "bad", "index": 3, "joints3d": [[0.0, 0.0]]})
    store.write_jsonl("eem/challenging.jsonl", rows)
    run = RunConfig.model_validate({"name": "t", "root": tmp_path.as_uri(), "stages": ["caption"],
                                    "max_bad_fraction": 0.5, "caption": {"num_captions": 2}})  # fmt: skip
    result = execute_stage(run, "caption")
    out = store.read_jsonl("caption/captions.jsonl")
    assert [r["id"] for r in out] == ["s0", "s1", "s2"] and all(len(r["captions"]) == 2 for r in out)
    assert "kneeling" in out[1]["captions"][0] and out[1]["posecodes"]["posture"] == "kneeling"
    assert result.manifest["rejected"] == 1


def test_vlm_option_requires_a_model_path() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="model_path"):
        RunConfig.model_validate({"name": "t", "root": "file:///tmp/x", "caption": {"method": "vlm"}})


def tiny_blip(folder: Path) -> Path:
    """A randomly initialized BLIP captioner (1 layer, width 16) with a 20-word vocabulary, saved offline."""
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,  # fmt: skip
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "person", "is", "kneeling", "standing", "arms",
             "up", "the", "with", "describe", "pose", "of", "this", "on", "knees"]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(str(folder / "vocab.txt"), bos_token="[CLS]", eos_token="[SEP]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    torch.manual_seed(0)
    text = dict(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=32, bos_token_id=2, sep_token_id=3, pad_token_id=0,
                eos_token_id=3)  # fmt: skip
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)  # fmt: skip
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_vlm_captioner_plumbing_with_tiny_random_blip(tmp_path: Path) -> None:
    from posesyn_core.caption.config import VlmOptions
    from posesyn_core.caption.vlm import VlmCaptioner

    path = tiny_blip(tmp_path / "blip")
    cap = VlmCaptioner(VlmOptions(model_path=str(path), prompt="describe the pose", max_new_tokens=6, batch_size=2))
    images = [np.random.default_rng(i).integers(0, 255, (40 + i, 30, 3), dtype=np.uint8) for i in range(3)]
    out = cap(images, num_captions=2, seed=0)
    assert len(out) == 3 and all(len(c) == 2 and all(isinstance(t, str) for t in c) for c in out)
    assert all(not t.startswith("describe the pose") for c in out for t in c)  # prompt removed
    assert out == cap(images, num_captions=2, seed=0)  # seeded sampling: deterministic


def test_caption_stage_with_vlm_reads_person_crops(tmp_path: Path) -> None:
    from tests.eem.test_eem_stage import make_dataset

    store = open_store(tmp_path.as_uri())
    make_dataset(store, n=4, bad=False)
    rows = [{"id": f"s{i:03d}", "index": i, "dataset": "world/wild2d", "bbox": [8, 8, 48, 48],
             "joints3d": to_camera(STAND).tolist()} for i in range(3)]  # fmt: skip
    store.write_jsonl("eem/challenging.jsonl", rows)
    model = tiny_blip(tmp_path / "blip")
    run = RunConfig.model_validate({"name": "t", "root": tmp_path.as_uri(), "stages": ["caption"], "device": "cpu",
                                    "caption": {"method": "vlm", "num_captions": 2,
                                                "vlm": {"model_path": str(model), "prompt": "describe the pose",
                                                        "max_new_tokens": 5}}})  # fmt: skip
    execute_stage(run, "caption")
    out = store.read_jsonl("caption/captions.jsonl")
    assert [r["id"] for r in out] == ["s000", "s001", "s002"] and all(r["method"] == "vlm" for r in out)
    assert all(len(r["captions"]) == 2 for r in out)
