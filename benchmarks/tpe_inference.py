"""TPE inference throughput at the demo crop size, batch 64 (and training throughput, for planning).

    .venv/bin/python benchmarks/tpe_inference.py [--threads 2] [--n 1024] [--device cpu]

Prints images/s for: the network alone on ready crops (`predict_crops`), the full `predict` path from 128x128
images + bboxes (cropping included), the same model exported to ONNX through the adapter, and training steps.
Weights are random (throughput does not depend on them).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from posesyn_core.storage import open_store
from posesyn_core.tpe.config import AugmentSection, ModelSection, TrainingSection
from posesyn_core.tpe.data import CropSet
from posesyn_core.tpe.inference import Estimator, export_onnx, onnx_backend, torch_backend
from posesyn_core.tpe.model import TPE, TPEConfig
from posesyn_core.tpe.train import Source, train


def _rate(fn, n: int, repeats: int = 3) -> float:  # noqa: ANN001
    fn()  # warm-up (allocations, oneDNN kernel selection)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=1024, help="images per timed pass")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = ModelSection()  # the demo architecture = the config defaults
    config = TPEConfig(img_size=m.img_size, crop_pad=m.crop_pad, widths=tuple(m.widths), head_dim=m.head_dim)
    torch.manual_seed(0)
    model = TPE(config).eval()
    rng = np.random.default_rng(0)
    s = config.img_size
    crops = rng.integers(0, 256, (args.n, s, s, 3), dtype=np.uint8)
    images = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(args.n)]
    bboxes = np.tile([20.0, 10.0, 80.0, 108.0], (args.n, 1))

    print(f"TPE {config.img_size}x{config.img_size}, widths {config.widths}, {model.num_params() / 1e6:.2f} M "
          f"parameters, batch 64, {args.threads} threads, device {args.device}")  # fmt: skip
    est = Estimator(torch_backend(model, args.device), s, config.crop_pad)
    print(f"  predict_crops (network):       {_rate(lambda: est.predict_crops(crops, 64), args.n):8.0f} images/s")
    print(f"  predict (crop + network):      {_rate(lambda: est.predict(images, bboxes, 64), args.n):8.0f} images/s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tpe.onnx"
        export_onnx(TPE(config).eval(), path)
        onnx_est = Estimator(onnx_backend(str(path)), s, config.crop_pad)
        print(f"  predict_crops (ONNX runtime):  {_rate(lambda: onnx_est.predict_crops(crops, 64), args.n):8.0f} "
              "images/s")  # fmt: skip

        # Training: 30 steps of batch 64 with augmentation, from a crop cache like tpe-train's.
        c = round(s * 1.25)
        cache = CropSet(rng.integers(0, 256, (512, c, c, 3), dtype=np.uint8),
                        np.concatenate([rng.uniform(0, c, (512, 22, 2)), np.ones((512, 22, 1))], -1).astype(np.float32),
                        rng.normal(0, 0.3, (512, 22, 3)).astype(np.float32), np.ones(512, bool))  # fmt: skip
        steps = 30
        section = TrainingSection(steps=steps, batch_size=64, checkpoint_every=10_000, augment=AugmentSection())
        store = open_store(Path(tmp).as_uri())
        t = time.perf_counter()
        train(TPE(config), [Source(cache, 1.0)], section, seed=0, device=args.device, store=store, prefix="b")
        print(f"  training (augment + fwd/bwd):  {steps * 64 / (time.perf_counter() - t):8.0f} samples/s")


if __name__ == "__main__":
    main()
