"""The training loop: it learns, it is deterministic, and a killed training resumes to the same weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.storage import open_store
from posesyn_core.tpe.config import AugmentSection, TrainingSection
from posesyn_core.tpe.data import load_cropset
from posesyn_core.tpe.model import TPE, TPEConfig
from posesyn_core.tpe.train import CHECKPOINT, Source, load_torch, train

HERE = Path(__file__).parent
CONFIG = TPEConfig(img_size=32, widths=(8, 16, 16), head_dim=32)


def _section(steps: int) -> TrainingSection:
    # no flips: the stick figures colour left and right limbs differently, a mirror image would contradict that
    return TrainingSection(steps=steps, batch_size=16, lr=3e-3, warmup=5, checkpoint_every=20, log_every=10,
                           augment=AugmentSection(flip=0.0))  # fmt: skip


def run_training(root: str, prefix: str, steps: int) -> tuple[TPE, list[dict]]:
    """The same training everywhere in this file (also run in a subprocess that gets killed)."""
    torch.set_num_threads(1)
    store = open_store(root)
    crops = load_cropset(PoseDataset(store, "world/lab3d"), CONFIG.img_size, CONFIG.crop_pad, limit=256)
    torch.manual_seed(0)
    model = TPE(CONFIG)
    rows = train(model, [Source(crops, 1.0)], _section(steps), seed=7, device="cpu", store=store, prefix=prefix)
    return model, rows


def _same_weights(a: TPE, b: TPE) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_training_learns_and_is_deterministic(stick_root):
    model, rows = run_training(stick_root.as_uri(), "runs/a", 60)
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"]
    assert rows[-1]["loss_3d"] > 0 and rows[-1]["loss_2d"] > 0
    again, rows_again = run_training(stick_root.as_uri(), "runs/b", 60)
    assert rows == rows_again and _same_weights(model, again)


def test_killed_training_resumes_from_last_checkpoint(stick_root):
    root, steps = stick_root.as_uri(), 400
    store = open_store(root)
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_tpe_train as t; " \
           f"t.run_training({root!r}, 'runs/killed', {steps})"  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpt_key = f"runs/killed/{CHECKPOINT}"
    deadline = time.time() + 120
    while not store.exists(ckpt_key) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = load_torch(store, ckpt_key)["step"]
    assert 0 < killed_at < steps

    resumed, rows = run_training(root, "runs/killed", steps)
    straight, rows_straight = run_training(root, "runs/straight", steps)
    assert rows == rows_straight
    assert _same_weights(resumed, straight)
    assert np.isfinite(rows[-1]["loss"])
