"""MPJPE / PA-MPJPE / PCK against hand-computed cases."""

import numpy as np
import pytest

from posesyn_core.metrics import head_size, mpjpe, mpjpe_root_relative, pa_mpjpe, pck, pck_bbox, pckh


def _pose(seed: int = 0, n: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (22, 3) if n is None else (n, 22, 3)
    return rng.normal(0, 0.3, shape)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_identity_is_zero():
    p = _pose(n=4)
    assert np.allclose(mpjpe(p, p), 0)
    assert np.allclose(mpjpe_root_relative(p, p), 0)
    assert np.allclose(pa_mpjpe(p, p), 0, atol=1e-6)


def test_known_offset_gives_known_mpjpe_in_mm():
    gt = _pose()
    pred = gt + np.array([0.03, 0.0, 0.04])  # every joint 5 cm away
    assert mpjpe(pred, gt) == pytest.approx(50.0)
    assert mpjpe_root_relative(pred, gt) == pytest.approx(0.0, abs=1e-9)  # a global shift is not an error
    assert pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)


def test_one_joint_off_by_hand():
    gt = np.zeros((22, 3))
    gt[:, 0] = np.arange(22) * 0.1
    pred = gt.copy()
    pred[5, 1] += 0.22  # 220 mm on one of 22 joints -> mean 10 mm
    assert mpjpe(pred, gt) == pytest.approx(10.0)
    # root-relative: moving joint 0 (the root) by 22 cm moves every other joint by 22 cm relative to it
    pred = gt.copy()
    pred[0, 2] += 0.22
    assert mpjpe_root_relative(pred, gt) == pytest.approx(21 * 220.0 / 22)


def test_similarity_transform_gives_zero_pa_mpjpe():
    gt = _pose(1, n=3)
    r = _rotation(np.array([0.3, 1.0, -0.2]), 1.1)
    pred = 1.7 * gt @ r.T + np.array([0.5, -2.0, 3.0])
    assert (mpjpe(pred, gt) > 100).all()
    assert np.allclose(pa_mpjpe(pred, gt), 0, atol=1e-6)


def test_pa_mpjpe_is_not_fooled_by_reflection():
    gt = _pose(2)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a mirror image is not a rotation
    assert pa_mpjpe(mirrored, gt) > 10


def test_pa_mpjpe_degenerate_poses_are_finite():
    gt = _pose(3)
    collapsed = np.zeros((22, 3))  # every joint at one point
    value = pa_mpjpe(collapsed, gt)
    assert np.isfinite(value) and value == pytest.approx(mpjpe(gt.mean(0, keepdims=True).repeat(22, 0), gt))
    assert np.isfinite(pa_mpjpe(gt, np.zeros((22, 3))))
    assert pa_mpjpe(np.zeros((22, 3)), np.zeros((22, 3))) == 0


def test_batched_matches_per_sample():
    gt, pred = _pose(4, n=5), _pose(5, n=5)
    batched = pa_mpjpe(pred, gt)
    assert batched.shape == (5,)
    assert np.allclose(batched, [pa_mpjpe(p, g) for p, g in zip(pred, gt, strict=True)])
    assert np.allclose(mpjpe(pred[None], gt[None])[0], mpjpe(pred, gt))


def test_mask_leaves_joints_out():
    gt = np.zeros((2, 22, 3))
    pred = gt.copy()
    pred[:, 3, 0] = 1.0  # 1 m error on joint 3
    mask = np.ones((2, 22), bool)
    mask[0, 3] = False
    assert mpjpe(pred, gt, mask).tolist() == pytest.approx([0.0, 1000.0 / 22])
    assert np.isnan(mpjpe(pred, gt, np.zeros((2, 22), bool))).all()


def test_pck_by_hand():
    gt = np.zeros((1, 4, 2))
    pred = np.array([[[0, 3.0], [4.0, 0], [0, 10.0], [30.0, 40.0]]])
    visible = np.array([[1, 1, 1, 0]])  # the far-off joint is not visible: it does not count
    assert pck(pred, gt, visible, 5.0) == pytest.approx([2 / 3])
    assert pck(pred, gt, visible, np.array([10.0])) == pytest.approx([1.0])
    assert pck_bbox(pred, gt, visible, np.array([[0, 0, 20.0, 50.0]]), alpha=0.1) == pytest.approx([2 / 3])


def test_pckh_uses_the_head_segment():
    gt = np.zeros((16, 2))
    gt[8] = [10, 10]  # MPII upper neck
    gt[9] = [10, 0]  # head top: head segment 10 px -> threshold 5 px at alpha 0.5
    pred = gt + np.array([4.0, 0.0])
    pred[0] += [2.0, 0.0]  # 6 px off
    assert head_size(gt, "mpii16") == pytest.approx(10.0)
    assert pckh(pred, gt, np.ones(16), head_size(gt, "mpii16")) == pytest.approx(15 / 16)
    with pytest.raises(ValueError, match="head segment"):
        head_size(np.zeros((17, 2)), "coco17")
