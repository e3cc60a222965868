"""Per-subject appearance: skin tone, clothing colours and styles, painted as per-vertex colours by body part
(the part of each vertex is the canonical joint that moves it, `BodyModel.vertex_part`)."""

from __future__ import annotations

import numpy as np

from posesyn_core.skeleton import SMPL22

_SKIN = np.array([[0.96, 0.80, 0.69], [0.88, 0.67, 0.52], [0.76, 0.55, 0.40], [0.55, 0.37, 0.25],
                  [0.38, 0.25, 0.17]])  # fmt: skip
# A vertex's part is the joint whose rotation moves it: the hip's part is the thigh, the knee's the shin.
_SHIRT = {"spine1", "spine2", "spine3", "left_collar", "right_collar", "left_shoulder", "right_shoulder"}
_SLEEVES = {"left_elbow", "right_elbow"}
_TROUSERS = {"pelvis", "left_hip", "right_hip"}
_TROUSER_LEGS = {"left_knee", "right_knee"}
_SHOES = {"left_ankle", "right_ankle", "left_foot", "right_foot"}


def subject_colors(rng: np.random.Generator, vertex_part: np.ndarray) -> np.ndarray:
    """(V, 4) RGBA in [0, 1]: skin, a shirt (short or long sleeves), trousers or shorts, shoes."""
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.92, 1.05)
    shirt = rng.uniform(0.05, 0.95, 3)
    trousers = rng.uniform(0.05, 0.7, 3) if rng.random() < 0.7 else rng.uniform(0.05, 0.95, 3)
    shoes = rng.uniform(0.05, 0.9, 3) * rng.uniform(0.3, 1.0)
    long_sleeves, long_legs = rng.random() < 0.5, rng.random() < 0.7
    names = np.array(SMPL22)[vertex_part]
    colors = np.tile(skin, (len(vertex_part), 1))
    for part_set, color, on in ((_SHIRT, shirt, True), (_SLEEVES, shirt, long_sleeves), (_TROUSERS, trousers, True),
                                (_TROUSER_LEGS, trousers, long_legs), (_SHOES, shoes, True)):  # fmt: skip
        if on:
            colors[np.isin(names, list(part_set))] = color
    return np.concatenate([np.clip(colors, 0, 1), np.ones((len(colors), 1))], 1).astype(np.float32)
