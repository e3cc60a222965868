"""TPE model, checkpoints, crops and augmentation."""

import io

import numpy as np
import pytest
import torch

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.geometry import weak_perspective_to_image
from posesyn_core.skeleton import flip_permutation
from posesyn_core.storage import open_store
from posesyn_core.tpe.data import Augment, CropSet, crop_box, crop_square, load_cropset, make_batch, mix_counts
from posesyn_core.tpe.model import TPE, TPEConfig, checkpoint_dict, model_from_checkpoint, pose_loss, project_weak


def get_dummy_components() -> dict:
    torch.manual_seed(0)
    config = TPEConfig(img_size=32, widths=(4, 8), head_dim=16)
    return {"model": TPE(config), "config": config}


def get_dummy_inputs(batch: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, 32, 32, generator=g)


def test_forward_shapes_root_relative_and_deterministic():
    model = get_dummy_components()["model"].eval()
    x = get_dummy_inputs()
    joints, cam = model(x)
    assert joints.shape == (3, 22, 3) and cam.shape == (3, 3)
    assert torch.all(joints[:, 0] == 0)  # root-relative by construction
    assert torch.all(cam[:, 0] > 0)  # positive scale
    # Zero-initialized output layer: the untrained model predicts the mean pose and s = 1, t = 0.
    assert torch.allclose(cam, torch.tensor([[1.0, 0.0, 0.0]]).expand(3, 3))
    again = get_dummy_components()["model"].eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                  strict=True))  # fmt: skip


def test_loss_mixes_3d_and_2d_supervision():
    config = get_dummy_components()["config"]
    joints = torch.zeros(2, 22, 3, requires_grad=True)
    cam = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    target3d = torch.full((2, 22, 3), 0.1)
    target2d = torch.full((2, 22, 2), 0.2)
    has3d = torch.tensor([1.0, 0.0])  # sample 1 is 2D-only: no 3D loss from it
    visible = torch.ones(2, 22)
    visible[1, 5:] = 0  # and only its visible joints count in 2D
    total, parts = pose_loss(joints, cam, target3d, has3d, target2d, visible, config)
    assert parts["loss_3d"] == pytest.approx(0.1)
    assert parts["loss_2d"] == pytest.approx(0.2)
    total.backward()
    assert joints.grad[1, 10].abs().sum() == 0  # invisible joint of a 2D-only sample: no gradient


def test_project_weak_matches_geometry():
    rng = np.random.default_rng(0)
    joints, cam = rng.normal(0, 0.3, (4, 22, 3)), np.abs(rng.normal(1, 0.1, (4, 3)))
    box = np.array([[10.0, 20.0, 64.0, 64.0]] * 4)
    ours = project_weak(torch.tensor(joints), torch.tensor(cam)).numpy()
    pixels = weak_perspective_to_image(joints, cam, box)
    assert np.allclose(box[:, None, :2] + (ours + 1) * 32, pixels)


def test_checkpoint_roundtrip_with_weights_only():
    model = get_dummy_components()["model"].eval()
    buf = io.BytesIO()
    torch.save(checkpoint_dict(model, note={"steps": 3}), buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert ckpt["config"]["widths"] == [4, 8] and ckpt["joint_set"] == "smpl22" and ckpt["format_version"] == 1
    loaded = model_from_checkpoint(ckpt).eval()
    x = get_dummy_inputs()
    assert torch.equal(model(x)[0], loaded(x)[0])
    with pytest.raises(ValueError, match="not a PoseSyn TPE checkpoint"):
        model_from_checkpoint({"format": "other"})


def test_crop_square_maps_image_and_labels_the_same_way():
    image = np.zeros((100, 150, 3), np.uint8)
    image[40:42, 90:92] = 255  # a 2x2 dot centred at (91, 41) in continuous pixels
    for box, size in [((60.0, 10.0, 64.0, 64.0), 64), ((20.0, -30.0, 140.0, 140.0), 32)]:  # 1:1 and downscale
        crop, m = crop_square(image, np.array(box), size)
        y, x = np.unravel_index(crop[..., 0].astype(float).argmax(), crop.shape[:2])
        expected = m @ np.array([91.0, 41.0, 1.0])
        assert abs(x + 0.5 - expected[0]) <= 1.0 and abs(y + 0.5 - expected[1]) <= 1.0


def test_augmented_batch_keeps_labels_on_the_image():
    """Draw a dot at one joint, augment (zoom, shift, flip): the dot must be where the label says."""
    rng = np.random.default_rng(0)
    n, c = 16, 40
    images = np.zeros((n, c, c, 3), np.uint8)
    joints2d = np.zeros((n, 22, 3), np.float32)
    joints2d[..., :2] = rng.uniform(10, 30, (n, 22, 2))
    joints2d[..., 2] = 1
    for i in range(n):
        x, y = joints2d[i, 18, :2].astype(int)
        images[i, y : y + 1, x : x + 1] = 255
        joints2d[i, 18, :2] = [x + 0.5, y + 0.5]
    j3d = rng.normal(0, 0.3, (n, 22, 3)).astype(np.float32)
    cs = CropSet(images, joints2d, j3d, np.ones(n, bool), context=1.25)
    batch = make_batch(cs, np.arange(n), 32, Augment(flip=0.5, scale=0.2, translate=0.1, color=0.0), rng)
    perm = flip_permutation()
    flipped = 0
    for i in range(n):
        img = batch["images"][i, ..., 0]
        y, x = np.unravel_index(img.argmax(), img.shape)
        is_flipped = not np.allclose(batch["joints3d"][i], j3d[i])
        flipped += is_flipped
        k = perm[18] if is_flipped else 18  # after a flip the left elbow's dot is labelled right elbow
        label = (batch["joints2d"][i, k] + 1) * 16
        assert abs(x + 0.5 - label[0]) <= 1.0 and abs(y + 0.5 - label[1]) <= 1.0
        if is_flipped:
            assert np.allclose(batch["joints3d"][i, k], j3d[i, 18] * [-1, 1, 1])
    assert 0 < flipped < n


def test_colour_jitter_is_the_textbook_formula_bit_for_bit():
    """make_batch's in-place colour jitter must be exactly the plain formula (what trained the demo's models)."""
    rng = np.random.default_rng(3)
    n, c = 12, 40
    cs = CropSet(rng.integers(0, 256, (n, c, c, 3), dtype=np.uint8), np.zeros((n, 22, 3), np.float32),
                 np.zeros((n, 22, 3), np.float32), np.ones(n, bool), context=1.25)  # fmt: skip
    aug = Augment(flip=0.0, scale=0.0, translate=0.0, color=0.3)
    batch = make_batch(cs, np.arange(n), 32, aug, np.random.default_rng(7))
    plain = make_batch(cs, np.arange(n), 32, Augment(0, 0, 0, 0), np.random.default_rng(7))["images"]
    draws = np.random.default_rng(7)  # make_batch's draws, in order: zoom, shift, flip, then the colour factors
    draws.uniform(size=n), draws.uniform(size=(n, 2)), draws.random(n)
    f = draws.uniform(0.7, 1.3, (3, n, 1, 1, 1)).astype(np.float32)
    mean = plain.mean((1, 2, 3), keepdims=True)
    img = (plain - mean) * f[0] + mean
    gray = img.mean(-1, keepdims=True)
    expected = np.clip((gray + (img - gray) * f[1]) * f[2], 0.0, 1.0)
    assert batch["images"].dtype == np.float32
    assert np.array_equal(batch["images"], expected)
    assert not np.array_equal(batch["images"], plain)


def test_unaugmented_training_crop_equals_inference_crop(stick_root):
    ds = PoseDataset(open_store(stick_root.as_uri()), "world/lab3d_test")
    cs = load_cropset(ds, 64, 1.2, context=1.25, limit=4)
    batch = make_batch(cs, np.arange(4), 64, None, np.random.default_rng(0))
    boxes = crop_box(ds.arrays["bboxes"][:4], 1.2)
    for i in range(4):
        direct = crop_square(ds.image(i), boxes[i], 64)[0].astype(np.float32) / 255
        assert np.abs(batch["images"][i] - direct).mean() < 0.02
        # the labels agree too: the direct crop's affine applied to the image labels
        m = crop_square(ds.image(i), boxes[i], 64)[1]
        uv = ds.arrays["joints2d"][i, :, :2] @ m[:, :2].T + m[:, 2]
        assert np.allclose((batch["joints2d"][i] + 1) * 32, uv, atol=1e-3)


def test_mix_counts_is_exact():
    assert mix_counts(64, [0.5, 0.5]) == [32, 32]
    assert sum(mix_counts(64, [0.3, 0.7])) == 64 and mix_counts(64, [0.3, 0.7]) == [19, 45]
    assert mix_counts(5, [1 / 3, 1 / 3, 1 / 3]) == [2, 2, 1]
