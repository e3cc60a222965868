"""Batched inverse kinematics: world-frame joint sequences -> body-model parameters (any `BodyModel`).

Motions from the motion model are joint positions only; rendering needs pose parameters. Per batch of clips
(all frames of all clips in one tensor), in two steps:

1. Analytic initialisation, bone by bone down the kinematic tree: the pelvis and spine3 (three children each)
   get the rotation that best maps their rest bones onto the target bones (Kabsch); joints with one child get
   the smallest rotation that swings the rest bone onto the target bone (twist left at zero). Parent rotations
   are accumulated, so each local rotation is expressed in the body model's world-aligned joint frame.
2. Adam refinement of pose, global orientation and translation against
       |J(theta) - target|^2  +  w_s |acceleration of the residual|^2  +  w_l |theta outside limits|^2  + priors,
   where the residual J(theta) - target is differenced over consecutive fitted frames of the same clip (the fit
   may not jitter around the motion, but is never pulled off a fast motion). Windows of frames are
   optimized one after another, each warm-started from the previous window's last frame, which bounds memory
   for long clips and carries the solution along the motion.

Before both, one body shape per clip is fitted to the clip's bone lengths (`fit_shape`): the motion's skeleton is
not the default body's, and with the right bone lengths step 1 is nearly exact (about 1 mm), so step 2 is short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posesyn_core.body.base import JOINT_LIMITS, BodyModel, RestSkeleton, skeleton_fk
from posesyn_core.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from posesyn_core.skeleton import NUM_JOINTS, PARENTS

_CHILDREN = [[k for k in range(NUM_JOINTS) if PARENTS[k] == j] for j in range(NUM_JOINTS)]
_ORDER = list(range(NUM_JOINTS))  # PARENTS is topologically sorted: a parent's index is below its children's
_KNEES_ELBOWS = (4, 5, 18, 19)


def _hinge_axes() -> dict[int, np.ndarray]:
    """Flexion axis of each knee/elbow in the world-aligned rest frame: its widest-range pose component, signed
    so that flexion is a positive rotation (left elbow: -y, knees: +x)."""
    axes = {}
    for j in _KNEES_ELBOWS:
        lim = JOINT_LIMITS[j - 1]  # (3, 2)
        k = int(np.argmax(lim[:, 1] - lim[:, 0]))
        axes[j] = np.eye(3)[k] * (1.0 if lim[k, 1] > -lim[k, 0] else -1.0)
    return axes


_HINGE_AXES = _hinge_axes()


@dataclass
class IKConfig:
    iterations: int = 40  # refinement steps per window (the analytic start is already close)
    shape_iterations: int = 5  # Gauss-Newton steps
    lr: float = 0.005  # small: Adam moves every parameter by ~lr per step, and the start is already close
    window: int = 64  # frames per clip optimized jointly
    smooth_weight: float = 0.02
    limit_weight: float = 0.01  # rad^2 against m^2 joint errors: 0.1 rad past a limit weighs like 1 cm
    pose_prior: float = 1e-4  # keeps unconstrained twists (leaf joints) near zero
    shape_prior: float = 1e-5  # keeps the fitted body shape near the average one where bones do not tell


@dataclass
class IKResult:
    body_pose: np.ndarray  # (C, T, 21, 3) axis-angle
    global_orient: np.ndarray  # (C, T, 3)
    transl: np.ndarray  # (C, T, 3)
    shape: np.ndarray  # (C, S) one body per clip
    joints: np.ndarray  # (C, T, 22, 3) the fitted body's joints, world frame
    error_mm: np.ndarray  # (C, T) mean per-joint distance to the target, millimetres


def _kabsch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rotations R (B, 3, 3) minimizing sum_i |R a_i - b_i|^2 for point sets a, b (B, K, 3)."""
    h = a.transpose(-1, -2) @ b  # (B, 3, 3)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    e = torch.ones(*d.shape, 3, dtype=a.dtype, device=a.device)
    e[..., 2] = d
    return vt.transpose(-1, -2) @ (e[..., :, None] * u.transpose(-1, -2))


def _swing(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotations (B, 3, 3) taking directions a onto b (B, 3); antiparallel pairs turn about any normal."""
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    axis = torch.cross(a, b, dim=-1)
    sin, cos = axis.norm(dim=-1, keepdim=True), (a * b).sum(-1, keepdim=True)
    x_axis, z_axis = (torch.tensor(v, dtype=a.dtype, device=a.device).expand_as(a) for v in ([1.0, 0, 0], [0, 0, 1.0]))
    fallback = torch.cross(a, x_axis, dim=-1)
    fallback = torch.where(fallback.norm(dim=-1, keepdim=True) < 1e-3, torch.cross(a, z_axis, dim=-1), fallback)
    axis = torch.where(sin < 1e-6, fallback, axis)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return axis_angle_to_matrix(axis * torch.atan2(sin, cos))


def _align_pairs(r1: torch.Tensor, r2: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """Rotations (B, 3, 3) taking direction r1 exactly onto g1 and the plane (r1, r2) onto the plane (g1, g2)."""

    def frame(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        y = b - (b * x).sum(-1, keepdim=True) * x
        y = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return torch.stack([x, y, torch.cross(x, y, dim=-1)], -1)  # columns

    return frame(g1, g2) @ frame(r1, r2).transpose(-1, -2)


def analytic_init(
    rest: torch.Tensor, target: torch.Tensor, base: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rest joints (B, 22, 3) (pelvis at origin) and target joints (B, 22, 3) -> body_pose (B, 21, 3),
    global_orient (B, 3), transl (B, 3), by aligning bone directions down the tree.

    `base` (B, 21, 3, 3): local rotations to start from (the warm start); a one-child joint keeps its base twist
    and is swung minimally from where the base puts its bone. Without it the base is the rest pose.

    Hips and shoulders are the exception: their twist is chosen so that the knee/elbow below bends about its
    hinge axis (the limb's rest flexion direction goes onto the target's), else the optimizer would start in
    the mirror solution (an elbow bent backwards) that joint-position errors cannot tell apart."""
    b, dt = target.shape[0], target.dtype
    eye = torch.eye(3, dtype=dt, device=target.device).expand(b, 3, 3)
    glob, local = [eye] * NUM_JOINTS, [eye] * NUM_JOINTS  # accumulated global and local rotations
    for j in _ORDER:
        kids = _CHILDREN[j]
        parent = glob[PARENTS[j]] if j > 0 else eye
        start = base[:, j - 1] if base is not None and j > 0 else eye
        if not kids:
            local[j] = start
            glob[j] = parent @ start
            continue
        rest_bones = rest[:, kids] - rest[:, j : j + 1]  # (B, K, 3)
        goal = (target[:, kids] - target[:, j : j + 1]) @ parent  # into the parent's frame: parent^T v
        if len(kids) > 1:
            rot = _kabsch(rest_bones, goal)
        else:
            rot = _swing((start @ rest_bones[:, 0, :, None])[..., 0], goal[:, 0]) @ start
            hinge = kids[0]
            if hinge in _HINGE_AXES:
                lower = rest[:, _CHILDREN[hinge][0]] - rest[:, hinge]  # (B, 3) rest shin/forearm
                axis = torch.as_tensor(_HINGE_AXES[hinge], dtype=dt, device=target.device).expand_as(lower)
                flex_rest = torch.cross(axis, lower, dim=-1)  # where flexion moves the lower limb at rest
                lower_goal = ((target[:, _CHILDREN[hinge][0]] - target[:, hinge])[:, None] @ parent)[:, 0]
                u = goal[:, 0] / goal[:, 0].norm(dim=-1, keepdim=True).clamp_min(1e-9)
                bend = lower_goal - (lower_goal * u).sum(-1, keepdim=True) * u  # flexion direction in the target
                bent = bend.norm(dim=-1) > 0.15 * lower_goal.norm(dim=-1)  # straight limbs: twist is free
                paired = _align_pairs(rest_bones[:, 0], flex_rest, goal[:, 0], bend)
                rot = torch.where(bent[:, None, None], paired, rot)
        local[j], glob[j] = rot, parent @ rot
    body_pose = matrix_to_axis_angle(torch.stack(local[1:], 1))  # (B, 21, 3)
    return body_pose, matrix_to_axis_angle(local[0]), target[:, 0] - rest[:, 0]


def _limit_penalty(pose: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return (torch.relu(lo - pose) ** 2 + torch.relu(pose - hi) ** 2).sum((-1, -2))


def fit_shape(body: BodyModel, target: torch.Tensor, iterations: int, prior: float) -> torch.Tensor:
    """Body shapes (C, S) whose rest bone lengths best match the clips' (C, T, 22, 3) median bone lengths.

    Damped Gauss-Newton with a finite-difference Jacobian: bone lengths are smooth in the few shape parameters,
    so a handful of iterations converge, each one batched body forward (the shapes and their S probes) without
    autograd, far cheaper than gradient descent through the body model."""
    parents = torch.tensor(PARENTS[1:], device=target.device)
    goal = (target[:, :, 1:] - target[:, :, parents]).norm(dim=-1).median(dim=1).values  # (C, 21)
    c, n = len(target), body.num_shape_params
    mean = body.default_shape(c)
    shape = mean.clone()
    eye = torch.eye(n, device=target.device)
    eps = 0.02

    def lengths(shapes: torch.Tensor) -> torch.Tensor:  # (N, S) -> (N, 21)
        rest = body.rest_skeleton(shapes).joints
        return (rest[:, 1:] - rest[:, parents]).norm(dim=-1)

    with torch.no_grad():
        for _ in range(iterations):
            step = torch.where(shape > 0.5, -eps, eps)  # probe inwards: phenotypes saturate at 0 and 1
            probes = torch.cat([shape[:, None], shape[:, None] + step[:, :, None] * eye], 1)  # (C, 1 + S, S)
            ls = lengths(probes.reshape(-1, n)).reshape(c, n + 1, -1)
            jac = ((ls[:, 1:] - ls[:, :1]) / step[:, :, None]).transpose(1, 2)  # (C, 21, S)
            resid = goal - ls[:, 0]
            lhs = jac.transpose(1, 2) @ jac + (prior + 1e-4) * eye  # Levenberg damping keeps steps short
            rhs = jac.transpose(1, 2) @ resid[..., None] - prior * (shape - mean)[..., None]
            shape = (shape + torch.linalg.solve(lhs, rhs)[..., 0]).clamp(0.0, 1.0)
    return shape


def fit_clips(body: BodyModel, targets: np.ndarray, config: IKConfig | None = None) -> IKResult:
    """Fit clips of equal length (C, T, 22, 3) world-frame joints; all C clips are optimized as one batch."""
    cfg = config or IKConfig()
    dev = body.device
    target = torch.as_tensor(targets, dtype=torch.float32, device=dev)
    c, t = target.shape[:2]
    lo, hi = body.joint_limits
    shape = fit_shape(body, target, cfg.shape_iterations, cfg.shape_prior)  # (C, S), fixed from here
    with torch.no_grad():
        rest = body.rest_skeleton(shape).joints  # (C, 22, 3)
    pose_out, orient_out, transl_out = [], [], []
    prev_pose: torch.Tensor | None = None
    for start in range(0, t, cfg.window):
        goal = target[:, start : start + cfg.window]  # (C, W, 22, 3)
        w = goal.shape[1]
        with torch.no_grad():
            rest_w = rest[:, None].expand(c, w, NUM_JOINTS, 3).reshape(-1, NUM_JOINTS, 3)
            skeleton = RestSkeleton(rest_w)  # the shape is fixed: cheap skeleton FK in the loop
            base = None
            if prev_pose is not None:  # warm start: twists carry over from the previous window's last frame
                base = axis_angle_to_matrix(prev_pose)[:, None].expand(c, w, -1, 3, 3).reshape(c * w, -1, 3, 3)
            pose0, orient0, transl0 = analytic_init(rest_w, goal.reshape(-1, NUM_JOINTS, 3), base)
        pose = pose0.clone().requires_grad_(True)
        orient = orient0.clone().requires_grad_(True)
        transl = transl0.clone().requires_grad_(True)
        opt = torch.optim.Adam([pose, orient, transl], lr=cfg.lr)
        for _ in range(cfg.iterations):
            opt.zero_grad(set_to_none=True)
            joints = skeleton_fk(skeleton, pose, orient, transl).reshape(c, w, NUM_JOINTS, 3)
            data = ((joints - goal) ** 2).sum(-1).mean()
            resid = joints - goal  # smooth the residual, not the motion: no bias when the fit is exact
            accel = resid[:, 2:] - 2 * resid[:, 1:-1] + resid[:, :-2]
            smooth = (accel**2).sum(-1).mean() if w > 2 else joints.new_zeros(())
            limits = _limit_penalty(pose, lo, hi).mean()
            loss = (data + cfg.smooth_weight * smooth + cfg.limit_weight * limits
                    + cfg.pose_prior * (pose**2).sum((-1, -2)).mean())  # fmt: skip
            loss.backward()
            opt.step()
        pose_out.append(pose.detach().reshape(c, w, -1, 3))
        orient_out.append(orient.detach().reshape(c, w, 3))
        transl_out.append(transl.detach().reshape(c, w, 3))
        prev_pose = pose_out[-1][:, -1]
    body_pose, global_orient, transl = (torch.cat(x, 1) for x in (pose_out, orient_out, transl_out))
    with torch.no_grad():
        sh = shape[:, None].expand(c, t, -1).reshape(c * t, -1)
        fitted = body.forward(body_pose.reshape(c * t, -1, 3), sh, global_orient.reshape(c * t, 3),
                              transl.reshape(c * t, 3), vertices=False).joints.reshape(c, t, NUM_JOINTS, 3)  # fmt: skip
    error = (fitted - target).norm(dim=-1).mean(-1) * 1000
    return IKResult(body_pose.cpu().numpy(), global_orient.cpu().numpy(), transl.cpu().numpy(),
                    shape.cpu().numpy(), fitted.cpu().numpy(), error.cpu().numpy())  # fmt: skip
