"""A pseudo-label made to agree with the GT 2D: torso rotation and limb re-lifting (eem/pseudo_label.py)."""

from __future__ import annotations

import numpy as np

from posesyn_core.caption.posecodes import camera_to_upright, posecodes
from posesyn_core.eem.pseudo_label import align_to_2d, fit_to_2d, lift_to_2d
from posesyn_core.metrics import pa_mpjpe
from posesyn_core.skeleton import PARENTS, shared_joints
from tests.caption.test_caption import STAND, arms_up, lunge, rot_x, to_camera


def project(joints_cam: np.ndarray, depth: float = 4.0, f: float = 600.0) -> np.ndarray:
    """(22, 3) root-relative camera-frame joints seen from `depth` metres -> (22, 3) pixels + visibility."""
    p = joints_cam + [0.0, 0.0, depth]
    return np.column_stack([f * p[:, :2] / p[:, 2:] + 320.0, np.ones(len(p))])


def test_align_to_2d_turns_an_upright_pseudo_label_upside_down() -> None:
    gt2d = np.zeros((22, 3))
    gt2d[0], gt2d[12] = [50, 40, 1], [50, 90, 1]  # the image shows the neck below the pelvis
    pseudo = to_camera(arms_up(STAND))  # the TPE said: upright
    turned = align_to_2d(pseudo, gt2d, "smpl22")
    assert posecodes(camera_to_upright(turned)).posture == "handstand"
    gt2d[12, 2] = 0  # torso not seen: unchanged
    np.testing.assert_array_equal(align_to_2d(pseudo, gt2d, "smpl22"), pseudo)


def test_lift_recovers_the_limbs_from_2d_with_the_pseudo_labels_depth_signs() -> None:
    truth = to_camera(rot_x(lunge(STAND), 15))  # left leg forward: its bones point towards the camera
    gt2d = project(truth)
    # The TPE got the limbs wrong (standing, arms up) but roughly the depth of each bone right.
    pseudo = to_camera(arms_up(STAND))
    pseudo[:, 2] = truth[:, 2]
    lifted = lift_to_2d(pseudo, gt2d, "smpl22")
    err = lambda p: float(np.linalg.norm(p - truth, axis=-1).mean())  # noqa: E731
    assert err(pseudo) > 0.15 and err(lifted) < 0.5 * err(pseudo)  # arms_up also changed the arm lengths
    assert pa_mpjpe(lifted, truth) < 0.5 * pa_mpjpe(pseudo, truth)
    bones = lambda p: np.linalg.norm(p[1:] - p[list(PARENTS[1:])], axis=-1)  # noqa: E731
    # Lengths are the pseudo-label's, except bones longer in 2D than that length allows (they lie in the image plane)
    longer = bones(lifted) > bones(pseudo) + 1e-9
    np.testing.assert_allclose(bones(lifted)[~longer], bones(pseudo)[~longer], atol=1e-9)
    assert np.allclose(lifted[1:, 2][longer], lifted[list(PARENTS[1:]), 2][longer])
    np.testing.assert_array_equal(lifted[0], pseudo[0])


def test_lift_keeps_bones_without_2d_and_ignores_invisible_joints() -> None:
    truth = to_camera(lunge(STAND))
    canon, own = shared_joints("coco17")
    coco = np.zeros((17, 3))
    coco[own] = project(truth)[canon]
    coco[10, 2] = 0  # right wrist unseen
    pseudo = to_camera(arms_up(STAND))
    lifted = lift_to_2d(pseudo, coco, "coco17")
    for j in (3, 6, 9, 12, 13, 14, 15, 21):  # spine, neck, collars, head (not in COCO), the unseen wrist
        np.testing.assert_allclose(lifted[j] - lifted[PARENTS[j]], pseudo[j] - pseudo[PARENTS[j]], atol=1e-12)
    assert np.linalg.norm(lifted[7] - pseudo[7]) > 0.05  # the left ankle moved to the lunge
    nothing = np.zeros((17, 3))
    np.testing.assert_array_equal(lift_to_2d(pseudo, nothing, "coco17"), pseudo)


def test_fit_modes() -> None:
    pseudo, gt2d = to_camera(arms_up(STAND)), project(to_camera(lunge(STAND)))
    np.testing.assert_array_equal(fit_to_2d(pseudo, gt2d, "smpl22", "none"), pseudo)
    np.testing.assert_array_equal(fit_to_2d(pseudo, None, "smpl22", "lift"), pseudo)
    turned = fit_to_2d(pseudo, gt2d, "smpl22", "rotate")
    np.testing.assert_allclose(turned, align_to_2d(pseudo, gt2d, "smpl22"))
    np.testing.assert_allclose(fit_to_2d(pseudo, gt2d, "smpl22", "lift"), lift_to_2d(turned, gt2d, "smpl22"))
