"""Training poses for MR_init made the way MSM will see them: as pseudo-labels fitted to 2D.

At synthesis time MR_init is built from a hard sample's TPE pseudo-label fitted to its GT 2D keypoints
(`eem/pseudo_label.py`, `fit_to_2d: lift`): what the image shows is right (each bone's direction and extent in
the image plane), what the image cannot show is the TPE's guess (whether a bone points towards or away from the
camera, how long it is), and the camera's tilt is unknown, so the uprighted pose leans by it. A transformer trained
only on exact prefixes takes MR_init at face value and puts the pseudo-label's errors into every motion. Training
on prefixes made like pseudo-labels teaches it which parts of MR_init to trust and to take the rest from the text
(the paper's premise: the mis-predicted pose gives geometric structure but is inaccurate).

`pseudo_label_like` turns exact poses into such prefixes with the inference path's own fitting code:
1. a random view: any azimuth, pitch and roll up to `tilt_deg`;
2. a TPE-like guess in that view: every bone's length off by a relative N(0, `bone_jitter`) and its depth sign
   wrong with probability `depth_flip`;
3. `lift_to_2d` of the guess to the pose's exact 2D projection (orthographic; what GT 2D gives at inference);
4. the result in the view's frame turned upright as if the camera were level (`camera_to_upright`'s assumption),
   so the tilt stays in the pose.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from posesyn_core.caption.posecodes import camera_to_upright
from posesyn_core.eem.pseudo_label import lift_to_2d
from posesyn_core.geometry import WORLD_TO_CAMERA_AXES
from posesyn_core.skeleton import NUM_JOINTS, PARENTS, ROOT


def tpe_like_guess(pose_cam: np.ndarray, rng: np.random.Generator, depth_flip: float,
                   bone_jitter: float) -> np.ndarray:  # fmt: skip
    """(22, 3) camera-frame pose -> the same skeleton with bone lengths scaled by 1 + N(0, bone_jitter) (at least
    0.5) and each bone's depth (z) component negated with probability `depth_flip`; root unchanged."""
    scale = np.maximum(1.0 + bone_jitter * rng.standard_normal(NUM_JOINTS), 0.5)
    flip = np.where(rng.random(NUM_JOINTS) < depth_flip, -1.0, 1.0)
    out = pose_cam.copy()
    for j in range(1, NUM_JOINTS):  # parents come before children
        p = PARENTS[j]
        offset = (pose_cam[j] - pose_cam[p]) * scale[j]
        offset[2] *= flip[j]
        out[j] = out[p] + offset
    return out


def pseudo_label_like(poses: np.ndarray, rng: np.random.Generator, depth_flip: float, bone_jitter: float,
                      tilt_deg: float) -> np.ndarray:  # fmt: skip
    """(B, 22, 3) world-frame poses (y up) -> (B, 22, 3) pseudo-label-like poses, y up, root at x = z = 0, lowest
    joint on the floor (module docstring; defaults and measurements: `motion.config.MrinitNoiseSection`)."""
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"poses must be (B, {NUM_JOINTS}, 3), got {poses.shape}")
    out = np.empty_like(poses)
    for b, pose in enumerate(poses):
        yaw, pitch, roll = rng.uniform(-np.pi, np.pi), *np.radians(rng.uniform(-tilt_deg, tilt_deg, 2))
        view = Rotation.from_euler("yxz", [yaw, pitch, roll]).as_matrix()  # y up: yaw, then pitch and roll
        cam = ((pose - pose[ROOT]) @ view.T) @ WORLD_TO_CAMERA_AXES.T  # the view's camera frame, y down
        visible2d = np.concatenate([cam[:, :2], np.ones((NUM_JOINTS, 1))], axis=1)
        lifted = lift_to_2d(tpe_like_guess(cam, rng, depth_flip, bone_jitter), visible2d, "smpl22")
        out[b] = camera_to_upright(lifted)  # as MSM turns pseudo-labels upright: the tilt stays
    return out
