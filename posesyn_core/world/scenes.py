"""What separates "lab" from "wild" pictures: motion families, camera viewpoints, looks and occluders.

lab:  common families only; a camera at chest-to-head height, 3.5-6 m away, within 70 degrees of the person's
      front, level; studio backdrop and light; tidy crops.
wild: every family (unusual ones: 20% of wild2d, 60% of wild_test by default); any azimuth, from ground level
      to a high vantage point, closer or further, with camera roll and stronger perspective; cluttered
      backgrounds, any light, random occluders, jittered crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from posesyn_core.render.camera import Camera, look_at
from posesyn_core.skeleton import LEFT_HIP, RIGHT_HIP

Style = Literal["lab", "wild"]


@dataclass(frozen=True)
class View:
    camera: Camera
    azimuth: float  # degrees from the person's front
    elevation: float  # degrees above the horizontal through the target


def facing(joints: np.ndarray) -> np.ndarray:
    """Horizontal unit vector the person's hips face ((22, 3) world joints); +z when undefined."""
    hips = joints[LEFT_HIP] - joints[RIGHT_HIP]
    f = np.array([-hips[2], 0.0, hips[0]])  # hips x up: left hip at +x faces +z
    n = np.linalg.norm(f)
    return f / n if n > 1e-6 else np.array([0.0, 0.0, 1.0])


def sample_view(rng: np.random.Generator, joints: np.ndarray, style: Style) -> View:
    """A camera looking at the person (joints (22, 3) world) for the style's viewpoint distribution."""
    target = joints.mean(0) + rng.normal(0, 0.05, 3)
    if style == "lab":
        azimuth, distance = rng.uniform(-70, 70), rng.uniform(3.5, 6.0)
        height, roll, focal = rng.uniform(1.0, 1.7), 0.0, rng.uniform(600, 1000)
    else:
        azimuth, distance = rng.uniform(-180, 180), rng.uniform(2.2, 7.0)
        height = rng.uniform(0.1, 4.0) if rng.random() < 0.6 else rng.uniform(1.0, 1.8)
        roll, focal = rng.normal(0, 12), rng.uniform(350, 1200)
    front = facing(joints)
    a = np.radians(azimuth)
    side = np.array([front[2], 0.0, -front[0]])
    horizontal = np.cos(a) * front + np.sin(a) * side
    eye = target + horizontal * distance
    eye[1] = height
    rot, _ = look_at(eye, target)
    if roll:
        c, s = np.cos(np.radians(roll)), np.sin(np.radians(roll))
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ rot  # roll about the optical axis
    elevation = np.degrees(np.arctan2(eye[1] - target[1], np.linalg.norm((eye - target)[[0, 2]])))
    camera = Camera(np.array([focal, focal, 320.0, 240.0]), rot, -rot @ eye)
    return View(camera, float(azimuth), float(elevation))


def crop_style(rng: np.random.Generator, style: Style, occluder_probability: float) -> dict:
    """render_frame keyword arguments: padding, crop jitter and occluder count."""
    if style == "lab":
        return {"pad": 1.2, "jitter": 0.0, "occluders": 0}
    occluders = int(rng.integers(1, 3)) if rng.random() < occluder_probability else 0
    return {"pad": float(rng.uniform(1.1, 1.35)), "jitter": 0.08, "occluders": occluders}
