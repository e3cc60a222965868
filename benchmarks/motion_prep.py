"""motion-train's data preparation: one call per clip vs. `by_length` (one call per clip length), side by side.

Before its transformer trains, motion-train computes every clip's HumanML3D features, the VQ codes of every clip
and the MR_init codes of two held poses per clip. Done one clip at a time that was ~30 s of the demo's
motion-train. This times both ways on a motion dataset (default: the demo's, after `make demo`) and the
demo's VQ-VAE, and counts how many results differ (features: none; codes: rare near ties, see `by_length`).

    .venv/bin/python benchmarks/motion_prep.py [--root runs/demo] [--clips 3000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from posesyn_core.data.motions import read_motions
from posesyn_core.motion.representation import Normalizer, joints_to_features
from posesyn_core.motion.stage import by_length, load_checkpoint
from posesyn_core.motion.synthesizer import encode_poses
from posesyn_core.motion.vqvae import MotionVQVAE
from posesyn_core.storage import open_store


def timed(fn):  # noqa: ANN001, ANN201
    tick = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs/demo", help="a run root with world/motions and motion-train/vqvae.pt")
    ap.add_argument("--clips", type=int, default=3000)
    args = ap.parse_args()
    store = open_store(args.root)
    joints = [m.joints for m in read_motions(store, "world/motions")[: args.clips]]
    ckpt = load_checkpoint(store, "motion-train/vqvae.pt")
    vqvae = MotionVQVAE.from_checkpoint(ckpt).eval()
    normalizer = Normalizer.from_dict({k: v.numpy() for k, v in ckpt["normalizer"].items()})
    ds = vqvae.config.downsample

    def codes(x: np.ndarray) -> np.ndarray:
        return vqvae.encode(torch.from_numpy(x)).numpy()

    rows = []
    # 1. features of every clip
    one, t_one = timed(lambda: [joints_to_features(j)[0] for j in joints])
    grouped, t_grouped = timed(lambda: by_length(joints, lambda j: joints_to_features(j)[0]))
    differ = sum(not np.array_equal(a, b) for a, b in zip(one, grouped, strict=True))
    rows.append(("clip features", t_one, t_grouped, differ))
    # 2. VQ codes of every clip
    feats = [normalizer.normalize(f[: len(f) // ds * ds]) for f in one]
    one, t_one = timed(lambda: [codes(f[None])[0] for f in feats])
    grouped, t_grouped = timed(lambda: by_length(feats, codes))
    rows.append(("clip codes", t_one, t_grouped, sum(int((a != b).sum()) for a, b in zip(one, grouped, strict=True))))
    # 3. MR_init codes of two held poses per clip (motion-train encodes 256 at a time)
    poses = np.stack([j[[len(j) // 3, 2 * len(j) // 3]] for j in joints]).astype(np.float64)
    one, t_one = timed(lambda: np.concatenate([encode_poses(vqvae, normalizer, p, 64) for p in poses]))
    flat = poses.reshape(-1, 22, 3)
    grouped, t_grouped = timed(lambda: np.concatenate([encode_poses(vqvae, normalizer, flat[lo : lo + 256], 64)
                                                       for lo in range(0, len(flat), 256)]))  # fmt: skip
    rows.append(("MR_init codes", t_one, t_grouped, int((one != grouped).sum())))

    print(f"{len(joints)} clips of {args.root}, torch threads {torch.get_num_threads()}")
    for name, a, b, diff in rows:
        print(f"  {name:14s} one call per clip {a:6.2f} s, grouped {b:5.2f} s: {a / b:4.1f}x ({diff} differ)")
    total_one, total_grouped = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"  {'all':14s} one call per clip {total_one:6.2f} s, grouped {total_grouped:5.2f} s: "
          f"{total_one / total_grouped:4.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
