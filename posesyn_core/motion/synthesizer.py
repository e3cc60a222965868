"""`MotionSynthesizer`: the motion model as the `msm` stage uses it (poses -> MR_init codes, text + codes ->
motion tokens -> joints), and `load_motion_model` to build it from `motion-train`'s outputs.

Conditioning modes of `sample`:
- text + MR_init: texts and `mrinit` codes (from `encode_poses`), the paper's p(s_i | e_text, S_MR, s_<i);
- text only: `mrinit=None` (the prefix is pad tokens);
- MR_init only: texts None (or "" entries): the encoder's feature of the empty string is the null text.
motion-train trains all three (`p_text_only`, `p_mrinit_only`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch

from posesyn_core.motion.representation import Normalizer, features_to_joints, static_pose_features
from posesyn_core.motion.t2m_gpt import T2MGPT
from posesyn_core.motion.text import NULL_TEXT, TextEncoder, load_text_encoder
from posesyn_core.motion.vqvae import MotionVQVAE
from posesyn_core.storage import Store, join


def encode_poses(vqvae: MotionVQVAE, normalizer: Normalizer, joints: np.ndarray, frames: int,
                 device: str = "cpu") -> np.ndarray:  # fmt: skip
    """PoseSyn's MR_init: each (B, 22, 3) pose held still for `frames` frames -> features -> normalized -> VQ-VAE
    encoder + nearest codes -> (B, frames // 4) int64."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3):
        raise ValueError(f"joints must be (B, 22, 3), got {joints.shape}")
    feats = normalizer.normalize(static_pose_features(joints, frames))  # (B, frames, 263), all poses at once
    return vqvae.encode(torch.from_numpy(feats).to(device)).cpu().numpy().astype(np.int64)


class MotionSynthesizer:
    """Components are passed in (they can be shared or swapped); methods validate inputs first."""

    def __init__(self, vqvae: MotionVQVAE, gpt: T2MGPT, normalizer: Normalizer, text_encoder: TextEncoder,
                 mrinit_frames: int, device: str = "cpu"):  # fmt: skip
        self.vqvae, self.gpt = vqvae.to(device).eval(), gpt.to(device).eval()
        self.normalizer, self.text_encoder, self.device = normalizer, text_encoder, device
        self.mrinit_frames = mrinit_frames
        if text_encoder.dim != gpt.config.clip_dim:
            raise ValueError(f"text encoder gives {text_encoder.dim} dims, the transformer expects "
                             f"{gpt.config.clip_dim}")  # fmt: skip
        if mrinit_frames // vqvae.config.downsample != gpt.config.mrinit_len:
            raise ValueError(f"mrinit_frames {mrinit_frames} give {mrinit_frames // vqvae.config.downsample} codes; "
                             f"the transformer's prefix has {gpt.config.mrinit_len}")  # fmt: skip

    @property
    def downsample(self) -> int:
        return self.vqvae.config.downsample

    def encode_poses(self, joints: np.ndarray) -> np.ndarray:
        """(B, 22, 3) world-frame poses -> (B, mrinit_frames // 4) int64 MR_init codes."""
        return encode_poses(self.vqvae, self.normalizer, joints, self.mrinit_frames, self.device)

    def sample(self, texts: Sequence[str] | None, mrinit: np.ndarray | None = None, max_tokens: int | None = None,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, seed: int = 0,
               num_samples: int = 1, stop_on_end: bool = True) -> list[list[int]]:  # fmt: skip
        """Token lists for B conditions x num_samples (row b * num_samples + j), each without the end token.
        texts: B sentences or None (MR_init only); mrinit: (B, M) codes or None (text only)."""
        # 1. Check inputs
        if texts is None and mrinit is None:
            raise ValueError("sample needs texts, mrinit or both")
        b = len(texts) if texts is not None else len(mrinit)
        if mrinit is not None and len(mrinit) != b:
            raise ValueError(f"mrinit has {len(mrinit)} rows for {b} texts")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        # 2. Conditions, repeated per sample
        texts = list(texts) if texts is not None else [NULL_TEXT] * b
        feats = torch.from_numpy(self.text_encoder.encode(texts)).to(self.device)
        feats = feats.repeat_interleave(num_samples, 0)
        prefix = None
        if mrinit is not None:
            prefix = torch.as_tensor(np.asarray(mrinit), dtype=torch.long, device=self.device)
            prefix = prefix.repeat_interleave(num_samples, 0)
        # 3. Sample: one seed per row, so a row's motion does not depend on the batch it is in
        seeds = [seed * 1_000_003 + r for r in range(b * num_samples)]
        return self.gpt.sample(feats, prefix, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                               top_p=top_p, stop_on_end=stop_on_end, seeds=seeds)  # fmt: skip

    @torch.no_grad()
    def token_log_likelihood(self, texts: Sequence[str] | None, mrinit: np.ndarray | None,
                             tokens: Sequence[Sequence[int]]) -> np.ndarray:  # fmt: skip
        """(B,) mean log-likelihood per motion token of B equal-length token lists under the transformer, given
        texts (None: the null text) and MR_init codes (None: pad prefix); teacher-forced, end token excluded (the
        msm stage samples without it). How well a text explains a motion, in the motion model's own text space:
        the `msm` consistency check compares a motion's caption with other poses' captions by it."""
        c = self.gpt.config
        b = len(tokens)
        if b == 0:
            return np.zeros(0)
        if len({len(t) for t in tokens}) != 1 or not len(tokens[0]):
            raise ValueError("token_log_likelihood needs non-empty token lists of one length")
        texts = list(texts) if texts is not None else [NULL_TEXT] * b
        if len(texts) != b or (mrinit is not None and len(mrinit) != b):
            raise ValueError(f"{len(texts)} texts / {None if mrinit is None else len(mrinit)} MR_init rows "
                             f"for {b} token lists")  # fmt: skip
        feats = torch.from_numpy(self.text_encoder.encode(texts)).to(self.device)
        prefix = (torch.full((b, c.mrinit_len), c.pad_id, dtype=torch.long) if mrinit is None
                  else torch.as_tensor(np.asarray(mrinit), dtype=torch.long)).to(self.device)  # fmt: skip
        targets = torch.as_tensor([list(t) for t in tokens], dtype=torch.long, device=self.device)
        logits = self.gpt(torch.cat([prefix, targets[:, :-1]], 1), feats)[:, c.mrinit_len :].float()  # (B, N, V+1)
        logits[..., c.end_id] = float("-inf")  # as sampled: the end token is never drawn
        logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
        return logp.mean(-1).cpu().numpy().astype(np.float64)

    def decode(self, tokens: Sequence[Sequence[int]], origin: np.ndarray | None = None) -> list[np.ndarray]:
        """Token lists -> one (4 * len, 22, 3) joint array each (an empty list gives (0, 22, 3)), in HumanML3D's
        canonical frame (root at x = z = 0 facing +z at frame 0), or placed with `origin` (B, 3) = (x, z, yaw)."""
        out: list[np.ndarray] = [np.zeros((0, 22, 3))] * len(tokens)
        by_length: dict[int, list[int]] = {}
        for i, seq in enumerate(tokens):
            if len(seq):
                by_length.setdefault(len(seq), []).append(i)
        for rows in by_length.values():  # equal lengths decode as one batch
            codes = torch.as_tensor([list(tokens[i]) for i in rows], dtype=torch.long, device=self.device)
            feats = self.normalizer.denormalize(self.vqvae.decode(codes).cpu().numpy())
            joints = features_to_joints(feats, None if origin is None else np.asarray(origin)[rows])
            for i, j in zip(rows, joints, strict=True):
                out[i] = j.astype(np.float32)
        return out


def _load(store: Store, key: str) -> dict:
    with store.open_read(key) as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)


def load_motion_model(store: Store, prefix: str = "motion-train", device: str = "cpu") -> MotionSynthesizer:
    """The synthesizer from a `motion-train` output folder (`vqvae.pt` + `t2m_gpt.pt`)."""
    vq_ckpt = _load(store, join(prefix, "vqvae.pt"))
    gpt_ckpt = _load(store, join(prefix, "t2m_gpt.pt"))
    normalizer = Normalizer.from_dict({k: v.numpy() for k, v in vq_ckpt["normalizer"].items()})
    return MotionSynthesizer(MotionVQVAE.from_checkpoint(vq_ckpt), T2MGPT.from_checkpoint(gpt_ckpt), normalizer,
                             load_text_encoder(gpt_ckpt["text_encoder"], device), gpt_ckpt["mrinit_frames"],
                             device)  # fmt: skip
