"""What the render backend takes from a reference image: the scene without its person, and the person's colours.

- Person mask from the 2D keypoints: thick segments along the limbs, the torso quadrilateral and a head disc,
  sized by the person's torso length, then dilated. Keypoints are the only person geometry every reference has
  (real 2D datasets have no segmentation), and a generous mask matters more than a tight one: any of the old
  person left behind is a ghost limb the TPE may be trained to see.
- Background plate: the masked region filled by OpenCV inpainting (Telea), so the scene stays the same scene.
- Appearance: median colours of the person's regions (torso, upper/lower arms, thighs, shins, feet, head)
  sampled inside the mask along the segments, painted onto the body parts of the new mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posesyn_core.skeleton import NUM_JOINTS, PARENTS, SMPL22, shared_joints

# Regions sampled on the reference, as canonical bones (joint, parent); the mesh parts painted with each.
# A vertex's part is the canonical joint that moves it (the hip moves the thigh, the knee the shin).
REGIONS: dict[str, tuple[tuple[tuple[int, int], ...], tuple[str, ...]]] = {
    "torso": (((1, 16), (2, 17)), ("pelvis", "spine1", "spine2", "spine3", "left_collar", "right_collar")),
    "upper_arm": (((16, 18), (17, 19)), ("left_shoulder", "right_shoulder")),
    "lower_arm": (((18, 20), (19, 21)), ("left_elbow", "right_elbow", "left_wrist", "right_wrist")),
    "thigh": (((1, 4), (2, 5)), ("left_hip", "right_hip")),
    "shin": (((4, 7), (5, 8)), ("left_knee", "right_knee")),
    "foot": (((7, 7), (8, 8)), ("left_ankle", "right_ankle", "left_foot", "right_foot")),
    "head": (((12, 15),), ("neck", "head")),
}
_LIMB_BONES = [(j, PARENTS[j]) for j in range(1, NUM_JOINTS)]
_DEFAULT_COLOR = np.array([0.5, 0.5, 0.5])


@dataclass
class ReferenceScene:
    background: np.ndarray  # (H, W, 3) uint8, the person inpainted away
    mask: np.ndarray  # (H, W) bool, the removed region
    colors: dict[str, np.ndarray]  # region -> RGB in [0, 1]


def canonical_2d(joints2d: np.ndarray, joint_set: str) -> np.ndarray:
    """(J, 3) keypoints of any set -> (22, 3) canonical, visibility 0 where the set has no such joint. Joints a
    set lacks but the mask needs (pelvis, neck, head) are filled from their neighbours when those are visible."""
    canon, own = shared_joints(joint_set)
    out = np.zeros((NUM_JOINTS, 3))
    out[canon] = joints2d[own]
    out[out[:, 2] <= 0] = 0.0

    def fill(j: int, parts: tuple[int, ...], weights: tuple[float, ...]) -> None:
        if out[j, 2] <= 0 and all(out[p, 2] > 0 for p in parts):
            out[j, :2] = sum(w * out[p, :2] for p, w in zip(parts, weights, strict=True))
            out[j, 2] = 1.0

    fill(0, (1, 2), (0.5, 0.5))  # pelvis = mid-hip
    fill(12, (16, 17), (0.5, 0.5))  # neck = mid-shoulder
    fill(3, (0, 12), (0.75, 0.25))
    fill(6, (0, 12), (0.5, 0.5))
    fill(9, (0, 12), (0.25, 0.75))
    fill(13, (12, 16), (0.5, 0.5))
    fill(14, (12, 17), (0.5, 0.5))
    if out[15, 2] <= 0 and out[12, 2] > 0 and out[0, 2] > 0:  # head: above the neck along the spine
        out[15, :2] = out[12, :2] + 0.4 * (out[12, :2] - out[0, :2])
        out[15, 2] = 1.0
    return out


def _torso_length(j: np.ndarray) -> float:
    if j[0, 2] > 0 and j[12, 2] > 0:
        return float(np.linalg.norm(j[12, :2] - j[0, :2]))
    vis = j[j[:, 2] > 0, :2]
    return float(np.ptp(vis, axis=0).max() / 3) if len(vis) > 1 else 10.0


def person_mask(joints: np.ndarray, height: int, width: int, dilate_px: int) -> np.ndarray:
    """(H, W) bool covering the person described by canonical keypoints (22, 3)."""
    import cv2

    torso = _torso_length(joints)
    mask = np.zeros((height, width), np.uint8)
    thick = max(2, int(round(0.35 * torso)))
    for a, b in _LIMB_BONES:
        if joints[a, 2] > 0 and joints[b, 2] > 0:
            pa, pb = (tuple(int(round(v)) for v in joints[k, :2]) for k in (a, b))
            cv2.line(mask, pa, pb, 1, thickness=thick)
    quad = [k for k in (16, 17, 2, 1) if joints[k, 2] > 0]
    if len(quad) >= 3:
        cv2.fillPoly(mask, [np.round(joints[quad, :2]).astype(np.int32)], 1)
    if joints[15, 2] > 0:
        centre = tuple(int(round(v)) for v in joints[15, :2])
        cv2.circle(mask, centre, max(2, int(round(0.3 * torso))), 1, thickness=-1)
    for k in (7, 8, 10, 11):  # shoes extend past the ankle joints
        if joints[k, 2] > 0:
            cv2.circle(mask, tuple(int(round(v)) for v in joints[k, :2]), max(2, int(round(0.2 * torso))), 1, -1)
    if dilate_px:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        mask = cv2.dilate(mask, kernel)
    return mask.astype(bool)


def region_colors(image: np.ndarray, joints: np.ndarray) -> dict[str, np.ndarray]:
    """Median RGB in [0, 1] of each region, sampled in small discs along its bones (grey when not visible)."""
    h, w = image.shape[:2]
    radius = max(1.0, 0.08 * _torso_length(joints))
    yy, xx = np.mgrid[0:h, 0:w]
    colors = {}
    for name, (bones, _) in REGIONS.items():
        pix = []
        for a, b in bones:
            if joints[a, 2] <= 0 or joints[b, 2] <= 0:
                continue
            for s in (0.3, 0.5, 0.7):
                cx, cy = joints[a, :2] * (1 - s) + joints[b, :2] * s
                disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
                pix.append(image[disc])
        pix = np.concatenate(pix) if pix else np.zeros((0, 3))
        colors[name] = np.median(pix, 0) / 255.0 if len(pix) else _DEFAULT_COLOR
    return colors


def prepare_reference(
    image: np.ndarray, joints2d: np.ndarray, joint_set: str, dilate_px: int, inpaint_radius: int
) -> ReferenceScene:
    """Reference image (H, W, 3) uint8 + its keypoints -> background plate, removed region, person colours."""
    import cv2

    joints = canonical_2d(np.asarray(joints2d, np.float64), joint_set)
    h, w = image.shape[:2]
    mask = person_mask(joints, h, w, dilate_px)
    background = cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8), inpaint_radius, cv2.INPAINT_TELEA)
    return ReferenceScene(background, mask, region_colors(image, joints))


def vertex_colors(
    vertex_part: np.ndarray, colors: dict[str, np.ndarray], rng: np.random.Generator, jitter: float = 0.04
) -> np.ndarray:
    """(V, 4) RGBA in [0, 1]: each mesh part painted with its region's colour, slightly varied per vertex so
    flat areas keep some texture."""
    part_names = np.array(SMPL22)[vertex_part]
    out = np.tile(_DEFAULT_COLOR, (len(vertex_part), 1))
    for name, (_, parts) in REGIONS.items():
        out[np.isin(part_names, parts)] = colors[name]
    out = out * (1 + rng.normal(0, jitter, (len(out), 1)))
    return np.concatenate([np.clip(out, 0, 1), np.ones((len(out), 1))], 1).astype(np.float32)
