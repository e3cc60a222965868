"""MR_init features of held poses: one `static_pose_features` call per pose vs. one call for the whole batch.

MSM's depth-sign search (`msm.mrinit.choose_depth_signs`) encodes every challenging pose up to 4 x 21 times with
one bone's depth sign flipped, so this feature computation ran ~1600 times per 32 poses; done one pose at a time
it was most of the `msm` stage. Both ways give the same bytes (checked here and in tests/motion).

    .venv/bin/python benchmarks/mrinit_features.py [--poses 2048] [--frames 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from posesyn_core.motion.representation import static_pose_features
from posesyn_core.skeleton import NUM_JOINTS, PARENTS


def random_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 22, 3) skeletons with random bone directions (20 cm bones), the root 1 m above the floor."""
    poses = np.zeros((n, NUM_JOINTS, 3))
    poses[:, 0, 1] = 1.0
    for j in range(1, NUM_JOINTS):
        bone = rng.normal(size=(n, 3))
        poses[:, j] = poses[:, PARENTS[j]] + 0.2 * bone / np.linalg.norm(bone, axis=-1, keepdims=True)
    return poses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poses", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=8, help="feature frames per held pose (motion-train.mrinit_frames)")
    args = ap.parse_args()
    poses = random_poses(args.poses, np.random.default_rng(0))

    tick = time.perf_counter()
    one_by_one = np.stack([static_pose_features(p, args.frames) for p in poses])
    per_pose = time.perf_counter() - tick
    tick = time.perf_counter()
    batched = static_pose_features(poses, args.frames)
    whole = time.perf_counter() - tick
    if not np.array_equal(one_by_one, batched):
        raise SystemExit("batched features differ from per-pose ones")
    print(f"{args.poses} held poses: one call per pose {per_pose:.2f} s ({args.poses / per_pose:,.0f} poses/s), "
          f"one call {whole:.3f} s ({args.poses / whole:,.0f} poses/s): {per_pose / whole:.0f}x, identical bytes")


if __name__ == "__main__":
    main()
