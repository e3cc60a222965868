"""Small labelled pose datasets for the TPE tests: stick figures drawn from random SMPL22 skeletons.

Each sample is a 128x128 image of a skeleton posed by random joint rotations, seen by a pinhole camera, with
exact labels (joints3d in the camera frame, joints2d = their projection, bbox around them). Left limbs are drawn
in warm colours and right limbs in cool ones, so a network can tell them apart (and a flip must swap them).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from posesyn_core.data.dataset import PoseSample, write_dataset
from posesyn_core.geometry import WORLD_TO_CAMERA_AXES, project
from posesyn_core.skeleton import PARENTS, shared_joints
from posesyn_core.storage import open_store

# Rest-pose bone offsets from the parent joint (metres, world frame: y up, body facing +z; left = +x).
OFFSETS = np.array([
    [0, 0.95, 0], [0.09, -0.08, 0], [-0.09, -0.08, 0], [0, 0.12, 0], [0, -0.40, 0], [0, -0.40, 0],
    [0, 0.13, 0], [0, -0.40, 0], [0, -0.40, 0], [0, 0.05, 0], [0, -0.05, 0.12], [0, -0.05, 0.12],
    [0, 0.22, 0], [0.07, 0.15, 0], [-0.07, 0.15, 0], [0, 0.10, 0.03], [0.11, 0.03, 0], [-0.11, 0.03, 0],
    [0.26, 0, 0], [-0.26, 0, 0], [0.25, 0, 0], [-0.25, 0, 0],
])  # fmt: skip
LEFT = {1, 4, 7, 10, 13, 16, 18, 20}
RIGHT = {2, 5, 8, 11, 14, 17, 19, 21}
CAMERA = {"fx": 150.0, "fy": 150.0, "cx": 64.0, "cy": 64.0}
SIZE = 128


def _rodrigues(v: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(v.astype(np.float64))[0]


def random_pose(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """World-frame joints (22, 3) of a skeleton with random local rotations (radians up to ~amplitude)."""
    rots = [_rodrigues(rng.normal(0, amplitude / 2, 3)) for _ in range(22)]
    rots[0] = _rodrigues(np.array([0.0, rng.uniform(-np.pi, np.pi), 0.0])) @ rots[0]
    world_r, joints = [None] * 22, np.zeros((22, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            world_r[j], joints[j] = rots[j], OFFSETS[j]
        else:
            world_r[j] = world_r[p] @ rots[j]
            joints[j] = joints[p] + world_r[p] @ OFFSETS[j]
    return joints


def render(joints2d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = np.clip(rng.normal(rng.uniform(40, 200, 3), 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    for j, p in enumerate(PARENTS):
        if p < 0:
            continue
        colour = (255, 80 + 6 * j, 0) if j in LEFT else (0, 80 + 6 * j, 255) if j in RIGHT else (240, 240, 240)
        a = tuple(int(v) for v in np.round(joints2d[p] * 4))
        b = tuple(int(v) for v in np.round(joints2d[j] * 4))
        cv2.line(img, a, b, colour, 3, cv2.LINE_AA, shift=2)
    return img


def make_samples(n: int, seed: int, amplitude: float, family: str, prefix: str = "s"
                 ) -> tuple[list[PoseSample], list[np.ndarray]]:  # fmt: skip
    rng = np.random.default_rng(seed)
    samples, images = [], []
    for i in range(n):
        world = random_pose(rng, amplitude)
        cam3d = (world - world[0]) @ WORLD_TO_CAMERA_AXES.T + np.array([rng.uniform(-0.2, 0.2), 0.0, 4.0])
        uv = project(cam3d, np.array([CAMERA["fx"], CAMERA["fy"], CAMERA["cx"], CAMERA["cy"]]))
        lo, hi = uv.min(0) - 6, uv.max(0) + 6
        sid = f"{prefix}{i:05d}"
        samples.append(PoseSample(
            id=sid, image=f"images/{sid}.png", width=SIZE, height=SIZE,
            bbox=[float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
            joints2d=np.concatenate([uv, np.ones((22, 1))], 1).tolist(), joints3d=cam3d.tolist(),
            camera=dict(CAMERA), meta={"family": family},
        ))  # fmt: skip
        images.append(render(uv, rng))
    return samples, images


def to_coco_2d_only(samples: list[PoseSample]) -> None:
    """Turn SMPL22-labelled samples into COCO-17 2D-only ones, in place (face joints invisible)."""
    canon, own = shared_joints("coco17")
    for s in samples:
        j = np.zeros((17, 3))
        j[own] = np.asarray(s.joints2d)[canon]
        s.joints2d, s.joints3d, s.camera = j.tolist(), None, None


def write_stick_dataset(store, prefix: str, n: int, seed: int, amplitude: float = 0.5, family: str = "lab",
                        joint_set: str = "smpl22") -> None:  # noqa: ANN001  # fmt: skip
    """Write a stick-figure dataset (optionally mixed families: `family` may be 'lab+wild')."""
    samples, images = [], []
    for k, fam in enumerate(family.split("+")):
        amp = amplitude if fam != "wild" else 2 * amplitude
        s, im = make_samples(n // len(family.split("+")), seed * 10 + k, amp, fam, prefix=f"{fam}")
        samples += s
        images += im
    if joint_set == "coco17":
        to_coco_2d_only(samples)
    write_dataset(store, prefix, prefix.rsplit("/", 1)[-1], joint_set, samples, images, image_ext="png",
                  part_size=max(1, n // 2))  # fmt: skip


@pytest.fixture(scope="session")
def stick_root(tmp_path_factory):  # noqa: ANN001, ANN201
    """A run root holding stick datasets: world/lab3d (3D), world/lab3d_test, world/wild_test (lab+wild
    families), world/coco2d (2D-only, COCO-17), synth/dataset (3D, wild family: a stand-in for synthetic data)."""
    root = tmp_path_factory.mktemp("stick")
    store = open_store(root.as_uri())
    write_stick_dataset(store, "world/lab3d", 512, seed=1)
    write_stick_dataset(store, "world/lab3d_test", 64, seed=2)
    write_stick_dataset(store, "world/wild_test", 64, seed=3, family="lab+wild")
    write_stick_dataset(store, "world/coco2d", 128, seed=4, family="wild", joint_set="coco17")
    write_stick_dataset(store, "synth/dataset", 128, seed=5, family="wild")
    return root
