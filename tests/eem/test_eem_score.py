"""The EEM error on hand-computed cases (root-relative, weighted, visible joints only, normalizations)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from posesyn_core.eem.config import EemSection, JointWeights
from posesyn_core.eem.score import eem_errors, full_body_in_image, person_scale, weight_vector
from posesyn_core.eem.stage import select
from posesyn_core.skeleton import COCO17, SMPL22, shared_joints


def _pose2d(n: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(20, 180, (n, 22, 2))


def _smpl_gt(pred: np.ndarray) -> np.ndarray:
    return np.concatenate([pred, np.ones(pred.shape[:2] + (1,))], -1)


def test_weights_groups_and_overrides() -> None:
    w = weight_vector(JointWeights(torso=1, arms=2, legs=3, overrides={"left_wrist": 5}))
    assert w[SMPL22.index("pelvis")] == 1 and w[SMPL22.index("right_elbow")] == 2
    assert w[SMPL22.index("left_knee")] == 3 and w[SMPL22.index("left_wrist")] == 5
    with pytest.raises(ValidationError, match="unknown joint"):
        JointWeights(overrides={"left_tail": 1.0})


def test_root_relative_error_ignores_translation_and_weighs_joints() -> None:
    pred = _pose2d()
    gt = _smpl_gt(pred + 37.0)  # whole-body shift: zero root-relative error
    bboxes = np.array([[0, 0, 100, 50.0]])
    w = weight_vector(JointWeights())
    s = eem_errors(pred, gt, "smpl22", w, bboxes)
    assert s.error[0] == pytest.approx(0, abs=1e-9) and s.joints_used[0] == 21  # root itself left out
    wrist = SMPL22.index("left_wrist")
    gt[0, wrist, 0] += 10.0
    s = eem_errors(pred, gt, "smpl22", w, bboxes, normalize_by_weight=False, scale="none")
    assert s.error[0] == pytest.approx(2.0 * 10.0)  # the paper's plain weighted sum, pixels
    s = eem_errors(pred, gt, "smpl22", w, bboxes)
    assert s.error[0] == pytest.approx(20.0 / w[1:].sum() / 100.0)  # / weight used / max(w, h)
    assert s.error_px[0] == pytest.approx(20.0 / w[1:].sum())


def test_coco_uses_shared_joints_mid_hip_root_and_visibility() -> None:
    pred = _pose2d()
    canon, in_set = shared_joints("coco17")
    gt = np.zeros((1, 17, 3))
    gt[0, in_set, :2] = pred[0, canon] + 5.0
    gt[0, in_set, 2] = 1
    gt[0, :5] = [50, 50, 1]  # face joints: no canonical counterpart, never scored
    w = weight_vector(JointWeights())
    bboxes = np.array([[0, 0, 80, 160.0]])
    s = eem_errors(pred, gt, "coco17", w, bboxes)
    assert s.error[0] == pytest.approx(0, abs=1e-9) and s.joints_used[0] == 12
    # An occluded joint with a wrong position does not count.
    gt[0, COCO17.index("left_wrist")] = [999, 999, 0]
    s = eem_errors(pred, gt, "coco17", w, bboxes)
    assert s.error[0] == pytest.approx(0, abs=1e-9) and s.joints_used[0] == 11
    # Root (mid-hip) needs both hips visible; too few joints is not scorable either.
    gt_before = gt.copy()
    gt_nohip = gt.copy()
    gt_nohip[0, COCO17.index("left_hip"), 2] = 0
    assert np.isnan(eem_errors(pred, gt_nohip, "coco17", w, bboxes).error[0])
    assert np.isnan(eem_errors(pred, gt, "coco17", w, bboxes, min_joints=12).error[0])
    np.testing.assert_array_equal(gt, gt_before)


def test_occluded_pelvis_falls_back_to_mid_hip() -> None:
    pred = _pose2d(seed=2)
    gt = _smpl_gt(pred + 3.0)
    gt[0, 0, :2] += 40.0  # a wrong pelvis position that is occluded: must not matter
    gt[0, 0, 2] = 0
    w = weight_vector(JointWeights())
    s = eem_errors(pred, gt, "smpl22", w, np.array([[0, 0, 100, 100.0]]))
    assert s.error[0] == pytest.approx(0, abs=1e-9) and s.joints_used[0] == 21
    gt[0, 1, 2] = 0  # and a hip: no root left
    assert np.isnan(eem_errors(pred, gt, "smpl22", w, np.array([[0, 0, 100, 100.0]])).error[0])


def test_similarity_alignment_scores_articulation_not_orientation() -> None:
    pred = _pose2d(seed=3)
    root = pred[:, :1]
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90 degrees in the image plane
    gt = _smpl_gt((pred - root) @ turn.T * 1.3 + root + 9.0)  # turned, 1.3x larger, shifted: same articulation
    w, bboxes = weight_vector(JointWeights()), np.array([[0, 0, 100, 100.0]])
    assert eem_errors(pred, gt, "smpl22", w, bboxes).error[0] > 0.3  # the paper's error counts the orientation
    assert eem_errors(pred, gt, "smpl22", w, bboxes, alignment="similarity").error[0] == pytest.approx(0, abs=1e-9)
    # A mirror image is not a similarity: it keeps its error.
    mirrored = _smpl_gt((pred - root) * np.array([-1.0, 1.0]) + root)
    assert eem_errors(pred, mirrored, "smpl22", w, bboxes, alignment="similarity").error[0] > 0.1
    # A wrong wrist costs the same on the turned body as on the upright one (in proportion to its size).
    bent, bent_turned = _smpl_gt(pred.copy()), gt.copy()
    wrist = SMPL22.index("left_wrist")
    bent[0, wrist, :2] += 15.0
    bent_turned[0, wrist, :2] += 1.3 * (turn @ np.array([15.0, 15.0]))
    upright = eem_errors(pred, bent, "smpl22", w, bboxes, alignment="similarity").error[0]
    turned = eem_errors(pred, bent_turned, "smpl22", w, bboxes, alignment="similarity").error[0] / 1.3
    assert upright > 0.01 and turned == pytest.approx(upright, rel=1e-6)


def test_scale_modes_make_sizes_comparable() -> None:
    pred = _pose2d(seed=1)
    gt = _smpl_gt(pred.copy())
    gt[0, 20, :2] += 6.0
    big_pred, big_gt = pred * 3, gt.copy()
    big_gt[..., :2] *= 3
    w = weight_vector(JointWeights())
    small = eem_errors(pred, gt, "smpl22", w, np.array([[0, 0, 60, 120.0]]), scale="joints")
    big = eem_errors(big_pred, big_gt, "smpl22", w, np.array([[0, 0, 180, 360.0]]), scale="joints")
    assert small.error[0] == pytest.approx(big.error[0])
    assert big.error_px[0] == pytest.approx(3 * small.error_px[0])
    assert person_scale(gt, np.array([[0, 0, 60, 120.0]]), "bbox")[0] == 120


def test_selection_and_full_body_references() -> None:
    err = np.array([0.1, np.nan, 0.5, 0.3, 0.9, 0.2])
    picked, everyday = select(err, 2, "eem", np.random.default_rng(0))
    assert picked.tolist() == [4, 2] and not everyday.any()
    rnd, _ = select(err, 3, "random", np.random.default_rng(0))
    assert len(rnd) == 3 and 1 not in rnd
    assert (rnd == select(err, 3, "random", np.random.default_rng(0))[0]).all()
    # A share of the budget below the cut: the top 2 of 4, then 2 of the 3 scorable samples left, none twice.
    picked, everyday = select(err, 4, "eem", np.random.default_rng(0), everyday_share=0.5)
    assert picked[:2].tolist() == [4, 2] and set(picked[2:]) <= {3, 5, 0} and len(set(picked)) == 4
    assert everyday.tolist() == [False, False, True, True]
    picked, everyday = select(err, 5, "eem", np.random.default_rng(0), everyday_share=0.5)  # only 5 scorable
    assert sorted(picked) == [0, 2, 3, 4, 5] and everyday.sum() == 2
    gt = np.ones((2, 3, 3))
    gt[1, 2, 0] = 150  # outside a 100 px wide image
    assert full_body_in_image(gt, np.array([100.0, 100.0]), np.array([100.0, 100.0])).tolist() == [True, False]


def test_config_defaults_match_paper() -> None:
    cfg = EemSection()
    assert (cfg.num_challenging, cfg.num_references, cfg.selection) == (500, 200, "eem")
    with pytest.raises(ValidationError):
        EemSection(selection="worst")
