"""`motion-train`: the VQ-VAE, then the T2M-GPT transformer with MR_init prefixes (outputs: `motion/config.py`).

Resume: each phase saves `ckpt/<phase>.pt` (model, optimizer, EMA codebook statistics, step, loss rows) every
`checkpoint_every` iterations and writes its final checkpoint when done; a rerun skips finished phases and continues
a phase from its checkpoint. Randomness is derived from (run seed, phase, iteration), so a resumed run draws the
same batches, corruptions and dropout as an uninterrupted one.

Transformer training data: every training clip is tokenized whole (cropped to `max_motion_tokens` at random when
longer); `mrinit_poses_per_clip` random frames of each clip, made like MSM's pseudo-labels (`mrinit_noise`: right
in the image plane of a random view, guessed in depth; `motion/mrinit_noise.py`) and held still for
`mrinit_frames` frames, are encoded as its MR_init prefixes. Each sequence is text + MR_init, or text only (pad
prefix, `p_text_only`), or MR_init only (null text, `p_mrinit_only`), so all three conditioning modes work.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posesyn_core.data.motions import read_motions
from posesyn_core.errors import DataError
from posesyn_core.motion.config import ARCHITECTURES, MotionTrainConfig
from posesyn_core.motion.mrinit_noise import pseudo_label_like
from posesyn_core.motion.plots import skeleton_strip_png
from posesyn_core.motion.representation import Normalizer, features_to_joints, joints_to_features
from posesyn_core.motion.synthesizer import MotionSynthesizer, encode_poses
from posesyn_core.motion.t2m_gpt import T2MGPT, T2MGPTConfig
from posesyn_core.motion.text import NULL_TEXT, TextEncoder, TextEncoderSpec, load_text_encoder
from posesyn_core.motion.vqvae import MotionVQVAE, VQVAEConfig
from posesyn_core.stages import StageContext
from posesyn_core.storage import Store

VQ, GPT, INIT, PREFIXES = 1, 2, 3, 4  # keys of the random streams (with the run seed)
MIN_FRAMES = 4 * 2 + 1  # shortest usable clip


@dataclass
class Clip:
    id: str
    joints: np.ndarray  # (T, 22, 3)
    features: np.ndarray  # (T-1, 263) normalized float32 once the normalizer is fitted
    texts: list[str]


def save_checkpoint(store: Store, key: str, obj: dict) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    store.write_bytes(key, buf.getvalue())


def load_checkpoint(store: Store, key: str) -> dict:
    with store.open_read(key) as f:  # only tensors and plain types: no arbitrary unpickling
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)


def _seed_torch(ctx: StageContext, *keys: int) -> None:
    torch.manual_seed(int(np.random.SeedSequence([ctx.seed, *keys]).generate_state(1)[0]))


def _lr(step: int, steps: int, peak: float) -> float:
    """Linear warmup over 5% of the steps, cosine decay to 10% of the peak."""
    warmup = max(1, steps // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def run(ctx: StageContext) -> None:
    cfg: MotionTrainConfig = ctx.config
    # 1. Data: features of every clip, a held-out split, normalization
    clips = _load_clips(ctx, cfg)
    order = ctx.rng(0).permutation(len(clips))
    n_held = int(round(cfg.holdout_fraction * len(clips))) if len(clips) > 1 else 0
    held = [clips[i] for i in sorted(order[:n_held])]
    train = [clips[i] for i in sorted(order[n_held:])]
    normalizer = _normalizer(cfg, train)
    for c in clips:
        c.features = normalizer.normalize(c.features)
    ctx.store.save_npz(ctx.key("normalization.npz"), **normalizer.to_dict())
    ctx.counts.update(clips=len(clips), train_clips=len(train), heldout_clips=len(held))

    # 2. VQ-VAE
    vqvae = _train_vqvae(ctx, cfg, train, normalizer)
    recon = _reconstruction_error(vqvae, held or train, normalizer, ctx.device)
    ctx.extra["vq_recon_split"] = "heldout" if held else "train"
    ctx.extra.update({f"vq_recon_{k}": v for k, v in recon.items()})
    ctx.log.info("VQ-VAE reconstruction", extra={"fields": {"split": ctx.extra["vq_recon_split"], **recon}})

    # 3. Transformer
    text_encoder = _text_encoder(cfg, ctx.device)
    gpt = _train_gpt(ctx, cfg, vqvae, normalizer, train, text_encoder)

    # 4. A rendered sample, metrics
    synth = MotionSynthesizer(vqvae, gpt, normalizer, text_encoder, cfg.mrinit_frames, ctx.device)
    _render_sample(ctx, cfg, synth, held or train)
    logs = [r for key in ("ckpt/vqvae-log.json", "ckpt/gpt-log.json") for r in ctx.store.read_json(ctx.key(key))]
    ctx.store.write_jsonl(ctx.key("losses.jsonl"), logs)
    ctx.extra["vq_final_loss"] = next((r["loss"] for r in reversed(logs) if r["phase"] == "vqvae"), None)
    ctx.extra["gpt_final_loss"] = next((r["loss"] for r in reversed(logs) if r["phase"] == "gpt"), None)
    ctx.store.write_json(ctx.key("metrics.json"), dict(ctx.extra))  # timing: the manifest's, not an output


def _load_clips(ctx: StageContext, cfg: MotionTrainConfig) -> list[Clip]:
    motions = read_motions(ctx.store, cfg.motions)
    ctx.counts["samples_in"] = len(motions)
    usable = [i for i, m in enumerate(motions) if len(m.joints) >= MIN_FRAMES]
    features = by_length([motions[i].joints for i in usable], lambda joints: joints_to_features(joints)[0])
    features_of = dict(zip(usable, features, strict=True))
    clips = []
    for i, m in enumerate(motions):
        if i not in features_of:
            ctx.reject(m.id, "too short", frames=len(m.joints), minimum=MIN_FRAMES)
            continue
        feats = features_of[i]
        if not np.isfinite(feats).all():
            ctx.reject(m.id, "degenerate skeleton (features not finite)")
            continue
        clips.append(Clip(m.id, m.joints.astype(np.float64), feats, [t for t in m.texts if t.strip()]))
    if not clips:
        raise DataError(f"{ctx.store.url_for(cfg.motions)}: no usable motion clips")
    return clips


def by_length(sequences: Sequence[np.ndarray], fn: Callable[[np.ndarray], Any], chunk: int = 256) -> list:
    """`fn` of each sequence, computed on stacks of equal-length sequences (at most `chunk` at a time): one call
    per length instead of one per sequence (the demo's features and codes 29 -> 5 s, `benchmarks/motion_prep.py`).
    `fn` maps (B, T, ...) -> (B, ...) with rows independent. Numpy features come out bit for bit as one call per
    sequence; a convolution's float rounding can depend on the batch, so VQ codes may differ at near ties (0 to 2
    of ~53k clip codes per demo seed)."""
    out: list = [None] * len(sequences)
    groups: dict[int, list[int]] = {}
    for i, seq in enumerate(sequences):
        groups.setdefault(len(seq), []).append(i)
    for idx in groups.values():
        for lo in range(0, len(idx), chunk):
            rows = idx[lo : lo + chunk]
            for i, result in zip(rows, fn(np.stack([sequences[i] for i in rows])), strict=True):
                out[i] = result
    return out


def _normalizer(cfg: MotionTrainConfig, train: list[Clip]) -> Normalizer:
    if cfg.init_mean_std:
        folder = Path(cfg.init_mean_std)
        return Normalizer.from_dict({"mean": np.load(folder / "mean.npy"), "std": np.load(folder / "std.npy")})
    return Normalizer.fit([c.features for c in train])


def _load_release(path: str, key: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)[key]
    except (OSError, KeyError) as e:
        raise DataError(f"{path}: cannot read the release checkpoint's {key!r} weights: {e}") from None


# --- VQ-VAE -----------------------------------------------------------------------------------------------------
def _train_vqvae(ctx: StageContext, cfg: MotionTrainConfig, train: list[Clip], normalizer: Normalizer) -> MotionVQVAE:
    store, final = ctx.store, ctx.key("vqvae.pt")
    if store.exists(final):
        return MotionVQVAE.from_checkpoint(load_checkpoint(store, final)).to(ctx.device).eval()
    config = VQVAEConfig(**ARCHITECTURES[cfg.architecture]["vqvae"])
    if cfg.init_vqvae:
        model = MotionVQVAE.from_release(_load_release(cfg.init_vqvae, "net"), config)
    else:
        _seed_torch(ctx, INIT, VQ)
        model = MotionVQVAE(config)
    model.to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.vq_lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, log = 0, []
    ckpt_key = ctx.key("ckpt/vqvae.pt")
    if store.exists(ckpt_key):
        state = load_checkpoint(store, ckpt_key)
        model.load_state_dict(state["model"])
        model.quantizer.load_ema_state({k: (v.to(ctx.device) if torch.is_tensor(v) else v)
                                        for k, v in state["ema"].items()})  # fmt: skip
        opt.load_state_dict(state["optim"])
        step, log = state["step"], state["log"]
        ctx.log.info("resuming VQ-VAE", extra={"fields": {"step": step}})
    windows = [c for c in train if len(c.features) >= cfg.window]
    if cfg.vq_iterations and not windows:
        raise DataError(f"no training clip has {cfg.window} feature frames: lower motion-train.window")
    weights = np.array([len(c.features) - cfg.window + 1 for c in windows], dtype=np.float64)
    progress = ctx.progress(cfg.vq_iterations, "vq-steps")
    progress.advance(step)
    model.train()
    while step < cfg.vq_iterations:
        rng = ctx.rng(VQ, step)
        picks = rng.choice(len(windows), size=cfg.vq_batch_size, p=weights / weights.sum())
        starts = [rng.integers(0, len(windows[i].features) - cfg.window + 1) for i in picks]
        batch = np.stack([windows[i].features[s : s + cfg.window] for i, s in zip(picks, starts, strict=True)])
        _seed_torch(ctx, VQ, step)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg.vq_iterations, cfg.vq_lr)
        loss, parts = model.loss(torch.from_numpy(batch).to(ctx.device), cfg.commit, cfg.loss_vel)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        progress.advance()
        if step % cfg.log_every == 0 or step == cfg.vq_iterations:
            log.append({"phase": "vqvae", "step": step, "loss": round(loss.item(), 6),
                        **{k: round(v, 6) for k, v in parts.items()}})  # fmt: skip
        if step % cfg.checkpoint_every == 0 and step < cfg.vq_iterations:
            save_checkpoint(store, ckpt_key, {"step": step, "model": model.state_dict(), "optim": opt.state_dict(),
                                              "ema": model.quantizer.ema_state(), "log": log})  # fmt: skip
    model.eval()
    store.write_json(ctx.key("ckpt/vqvae-log.json"), log)
    save_checkpoint(store, final, {**model.checkpoint(),
                                   "normalizer": {k: torch.from_numpy(v) for k, v in normalizer.to_dict().items()}})
    store.delete(ckpt_key)
    return model


@torch.no_grad()
def _reconstruction_error(model: MotionVQVAE, clips: list[Clip], normalizer: Normalizer, device: str) -> dict:
    """Mean joint position error (mm) of VQ-VAE round trips: global (canonical frame, includes root drift) and
    root-relative per frame."""
    model.eval()  # a training-mode forward would update the codebook
    ds = model.config.downsample
    errs, rel_errs = [], []
    for c in clips:
        n = len(c.features) // ds * ds
        if n == 0:
            continue
        x = torch.from_numpy(c.features[:n][None]).to(device)
        recon = model(x)[0][0].cpu().numpy()
        truth = features_to_joints(normalizer.denormalize(c.features[:n]))
        pred = features_to_joints(normalizer.denormalize(recon))
        errs.append(np.linalg.norm(pred - truth, axis=-1).reshape(-1))
        rel = (pred - pred[:, :1]) - (truth - truth[:, :1])
        rel_errs.append(np.linalg.norm(rel, axis=-1).reshape(-1))
    return {"mpjpe_mm": round(float(np.concatenate(errs).mean() * 1000), 2),
            "root_relative_mm": round(float(np.concatenate(rel_errs).mean() * 1000), 2)}  # fmt: skip


# --- transformer --------------------------------------------------------------------------------------------------
def _text_encoder(cfg: MotionTrainConfig, device: str) -> TextEncoder:
    spec = TextEncoderSpec(kind=cfg.text.kind, path=cfg.text.path, project_to=512 if cfg.init_gpt else None)
    return load_text_encoder(spec, device)


def _tokenize(vqvae: MotionVQVAE, clips: list[Clip], device: str) -> list[np.ndarray]:
    """Codes of every clip, encoded whole (feature frames cropped to a multiple of 4)."""
    ds = vqvae.config.downsample
    return by_length([c.features[: len(c.features) // ds * ds] for c in clips],
                     lambda x: vqvae.encode(torch.from_numpy(x).to(device)).cpu().numpy())  # fmt: skip


def _train_gpt(ctx: StageContext, cfg: MotionTrainConfig, vqvae: MotionVQVAE, normalizer: Normalizer,
               train: list[Clip], text_encoder: TextEncoder) -> T2MGPT:  # fmt: skip
    store, final = ctx.store, ctx.key("t2m_gpt.pt")
    if store.exists(final):
        return T2MGPT.from_checkpoint(load_checkpoint(store, final)).to(ctx.device).eval()
    m_len = cfg.mrinit_frames // vqvae.config.downsample
    arch = ARCHITECTURES[cfg.architecture]["gpt"]
    if cfg.init_gpt:
        if cfg.max_motion_tokens != 50:
            raise DataError("init_gpt: the release holds 50 motion tokens; set motion-train.max_motion_tokens: 50")
        model = T2MGPT.from_release(_load_release(cfg.init_gpt, "trans"), mrinit_len=m_len)
    else:
        _seed_torch(ctx, INIT, GPT)
        model = T2MGPT(T2MGPTConfig(num_vq=vqvae.config.nb_code, clip_dim=text_encoder.dim,
                                    block_size=1 + m_len + cfg.max_motion_tokens, mrinit_len=m_len, **arch))
    model.to(ctx.device)
    opt = model.configure_optimizers(cfg.gpt_lr)
    step, log = 0, []
    ckpt_key = ctx.key("ckpt/gpt.pt")
    if store.exists(ckpt_key):
        state = load_checkpoint(store, ckpt_key)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step, log = state["step"], state["log"]
        ctx.log.info("resuming transformer", extra={"fields": {"step": step}})

    # Training data: tokens per clip, MR_init prefixes per clip, one text feature per unique text (+ null text).
    tokens = _tokenize(vqvae, train, ctx.device)
    poses = []
    for i, c in enumerate(train):
        rng = ctx.rng(PREFIXES, i)
        held = c.joints[rng.integers(0, len(c.joints), cfg.mrinit_poses_per_clip)]
        poses.append(pseudo_label_like(held, rng, **cfg.mrinit_noise.model_dump()) if cfg.mrinit_noise.enabled
                     else held)  # fmt: skip
    poses = np.concatenate(poses)  # encoded 256 at a time, then split back per clip
    codes = np.concatenate([encode_poses(vqvae, normalizer, poses[lo : lo + 256], cfg.mrinit_frames, ctx.device)
                            for lo in range(0, len(poses), 256)])  # fmt: skip
    prefixes = np.split(codes, len(train))
    texts = sorted({t for c in train for t in c.texts} | {NULL_TEXT})
    text_index = {t: k for k, t in enumerate(texts)}
    text_feats = torch.from_numpy(text_encoder.encode(texts)).to(ctx.device)
    end, pad = model.config.end_id, model.config.pad_id

    progress = ctx.progress(cfg.gpt_iterations, "gpt-steps")
    progress.advance(step)
    model.train()
    while step < cfg.gpt_iterations:
        rng = ctx.rng(GPT, step)
        picks = rng.integers(0, len(train), cfg.gpt_batch_size)
        seqs, conds, pres = [], [], []
        for i in picks:
            toks = tokens[i]
            if len(toks) > cfg.max_motion_tokens:
                s = rng.integers(0, len(toks) - cfg.max_motion_tokens + 1)
                toks = toks[s : s + cfg.max_motion_tokens]
            clip_texts = train[i].texts
            u, k_text, k_pre = rng.random(), rng.integers(0, max(1, len(clip_texts))), rng.integers(0, len(prefixes[i]))
            if clip_texts and u < cfg.p_text_only:
                mode = "text"
            elif not clip_texts or u < cfg.p_text_only + cfg.p_mrinit_only:
                mode = "mrinit"
            else:
                mode = "both"
            text = clip_texts[k_text] if mode != "mrinit" else NULL_TEXT
            pre = np.full(m_len, pad) if mode == "text" else prefixes[i][k_pre]
            seqs.append(toks)
            conds.append(text_index[text])
            pres.append(pre)
        width = max(len(s) for s in seqs) + 1
        targets = np.full((len(seqs), width), pad, dtype=np.int64)
        for r, s in enumerate(seqs):
            targets[r, : len(s)] = s
            targets[r, len(s)] = end
        _seed_torch(ctx, GPT, step)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg.gpt_iterations, cfg.gpt_lr)
        loss = model.loss(text_feats[torch.as_tensor(conds)], torch.as_tensor(np.stack(pres)).to(ctx.device),
                          torch.from_numpy(targets).to(ctx.device), cfg.pkeep)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        progress.advance()
        if step % cfg.log_every == 0 or step == cfg.gpt_iterations:
            log.append({"phase": "gpt", "step": step, "loss": round(loss.item(), 6)})
        if step % cfg.checkpoint_every == 0 and step < cfg.gpt_iterations:
            save_checkpoint(store, ckpt_key, {"step": step, "model": model.state_dict(), "optim": opt.state_dict(),
                                              "log": log})  # fmt: skip
    model.eval()
    store.write_json(ctx.key("ckpt/gpt-log.json"), log)
    save_checkpoint(store, final, {**model.checkpoint(), "text_encoder": text_encoder.to_dict(),
                                   "mrinit_frames": cfg.mrinit_frames})  # fmt: skip
    store.delete(ckpt_key)
    return model


def _render_sample(ctx: StageContext, cfg: MotionTrainConfig, synth: MotionSynthesizer, clips: list[Clip]) -> None:
    """One text + MR_init sample, rendered as a skeleton strip for the report."""
    source = next((c for c in clips if c.texts), clips[0])
    text = cfg.sample_text or (source.texts[0] if source.texts else NULL_TEXT)
    pose = source.joints[len(source.joints) // 2]
    mrinit = synth.encode_poses(pose[None])
    tokens = synth.sample([text], mrinit, seed=ctx.seed, top_k=50)[0]
    joints = synth.decode([tokens])[0]
    ctx.store.save_npz(ctx.key("sample.npz"), joints=joints, tokens=np.array(tokens, np.int64),
                       mrinit=mrinit[0], text=np.array(text), source=np.array(source.id))  # fmt: skip
    if len(joints):
        ctx.store.write_bytes(ctx.key("sample.png"), skeleton_strip_png(joints, title=f'"{text}" (+ MR_init)'))
    ctx.extra["sample"] = {"text": text, "source_clip": source.id, "tokens": len(tokens)}
