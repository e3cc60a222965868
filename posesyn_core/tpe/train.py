"""The TPE training loop, shared by `tpe-train` (from scratch) and `finetune` (from a checkpoint, same loss).

Determinism and resume: the batch of step t is drawn from `np.random.default_rng([seed, t])` alone, and the
checkpoint (`<prefix>/checkpoints/last.pt`, written atomically every `checkpoint_every` steps) holds the model,
the optimizer and the loss-log state. So a training killed at any point and started again continues from the
last checkpoint and ends with the same weights as an uninterrupted one (on the same device and thread count).
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from posesyn_core.storage import Store, join
from posesyn_core.tpe.config import TrainingSection
from posesyn_core.tpe.data import Augment, CropSet, make_batch, mix_counts
from posesyn_core.tpe.model import TPE, checkpoint_dict, pose_loss

CHECKPOINT = "checkpoints/last.pt"


@dataclass
class Source:
    """One stream of training samples and the fraction of every batch it fills."""

    crops: CropSet
    fraction: float
    name: str = ""


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_torch(store: Store, key: str, obj: dict) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    store.write_bytes(key, buf.getvalue())


def load_torch(store: Store, key: str) -> dict:
    """Checkpoints hold only tensors and plain types: load them without unpickling arbitrary code."""
    with store.open_read(key) as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)


def _batch(sources: Sequence[Source], counts: list[int], img_size: int, aug: Augment, rng: np.random.Generator,
           device: str) -> dict[str, torch.Tensor]:  # fmt: skip
    parts = [
        make_batch(src.crops, rng.integers(0, len(src.crops), n), img_size, aug, rng)
        for src, n in zip(sources, counts, strict=True)
        if n > 0
    ]
    batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
    # (B, S, S, 3) -> (B, 3, S, S), kept channels-last in memory (faster CPU convolutions)
    out["images"] = out["images"].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    return out


def train(
    model: TPE, sources: Sequence[Source], section: TrainingSection, seed: int, device: str, store: Store,
    prefix: str, log: logging.Logger | None = None, advance: Callable[[int], None] | None = None,
) -> list[dict]:  # fmt: skip
    """Train `model` in place for `section.steps` steps; resumes from `<prefix>/checkpoints/last.pt` when it
    exists. Returns the loss log (one row per `log_every` steps: step, lr, mean losses since the last row)."""
    log = log or logging.getLogger("posesyn.tpe")
    sources = [s for s in sources if s.fraction > 0]
    if not sources or any(len(s.crops) == 0 for s in sources):
        raise ValueError("training needs at least one non-empty source with a positive fraction")
    total = sum(s.fraction for s in sources)
    counts = mix_counts(section.batch_size, [s.fraction / total for s in sources])
    aug = Augment(**section.augment.model_dump())
    img_size = model.config.img_size
    model.to(device, memory_format=torch.channels_last).train()
    opt = model.configure_optimizers(section.lr, section.weight_decay)

    # Resume: weights, optimizer moments, step and the loss-log accumulators come back exactly.
    ckpt_key = join(prefix, CHECKPOINT)
    start, rows, acc = 0, [], {"n": 0, "loss": 0.0, "loss_3d": 0.0, "loss_2d": 0.0}
    if store.exists(ckpt_key):
        ckpt = load_torch(store, ckpt_key)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start, rows, acc = ckpt["step"], list(ckpt["losses"]), dict(ckpt["accumulators"])
        log.info("resuming training", extra={"fields": {"step": start, "checkpoint": ckpt_key}})
        if advance is not None:
            advance(start)

    tick = time.perf_counter()
    for step in range(start, section.steps):
        lr = lr_at(step, section.steps, section.lr, section.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = _batch(sources, counts, img_size, aug, np.random.default_rng([seed, step]), device)
        joints3d, cam = model(batch["images"])
        loss, parts = pose_loss(joints3d, cam, batch["joints3d"], batch["has3d"], batch["joints2d"],
                                batch["visible"], model.config)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        acc["n"] += 1
        for k, v in parts.items():
            acc[k] += v
        done = step + 1
        if done % section.log_every == 0 or done == section.steps:
            now = time.perf_counter()
            row = {"step": done, "lr": round(lr, 8)}
            row.update({k: round(acc[k] / acc["n"], 6) for k in ("loss", "loss_3d", "loss_2d")})
            rows.append(row)  # no timings in the log: same seed -> byte-identical outputs
            speed = round(acc["n"] * section.batch_size / max(now - tick, 1e-9), 1)
            log.info("train", extra={"fields": {**row, "samples_per_s": speed}})
            tick, acc = now, {"n": 0, "loss": 0.0, "loss_3d": 0.0, "loss_2d": 0.0}
        if done % section.checkpoint_every == 0 and done < section.steps:
            state = {"optimizer": opt.state_dict(), "step": done, "losses": rows, "accumulators": acc}
            save_torch(store, ckpt_key, checkpoint_dict(model, **state))
        if advance is not None:
            advance(1)
    model.eval()
    return rows
