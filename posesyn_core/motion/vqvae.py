"""The T2M-GPT motion VQ-VAE (Zhang et al., "T2M-GPT", CVPR 2023), one readable file.

References: the public T2M-GPT code (models/vqvae.py, encdec.py, resnet.py, quantize_cnn.py) and Jukebox's
dilated residual 1D convs. Same layers, order, activations and parameter/buffer names as the release, so its
`net_last.pth` loads with `load_release_state_dict` (one explicit key map: the release's `vqvae.` prefix) and then
computes the same codes and reconstructions:

    Encoder: Conv1d(263 -> w, k3) ReLU, down_t x [Conv1d(w, w, k4, s2, p1), Resnet1D], Conv1d(w -> code_dim, k3)
    Decoder: Conv1d(code_dim -> w, k3) ReLU, down_t x [Resnet1D, Upsample(x2, nearest), Conv1d(w, w, k3)],
             Conv1d(w, w, k3) ReLU, Conv1d(w -> 263, k3)
    Resnet1D: depth x pre-activation blocks [ReLU, Conv1d(k3, dilation d), ReLU, Conv1d(k1)] + skip, dilations
              growth**0..depth-1 applied in reverse order (9, 3, 1) in both encoder and decoder
    QuantizeEMAReset: nearest code (squared L2), EMA (mu 0.99) of code sums/counts, codes whose EMA count < 1 reset
              to random encoder outputs, commitment loss mse(x, sg(q)), straight-through gradients.

Time is downsampled by 2**down_t (4 for the release): T feature frames -> T/4 codes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from posesyn_core.motion.representation import FEATURE_DIM, RIC


class ResConv1DBlock(nn.Module):
    def __init__(self, n_in: int, n_state: int, dilation: int = 1):
        super().__init__()
        self.norm1 = nn.Identity()  # the release's norm=None; kept so the module tree is the release's
        self.norm2 = nn.Identity()
        self.activation1 = nn.ReLU()
        self.activation2 = nn.ReLU()
        self.conv1 = nn.Conv1d(n_in, n_state, 3, 1, dilation, dilation)  # padding = dilation keeps the length
        self.conv2 = nn.Conv1d(n_state, n_in, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.activation1(self.norm1(x)))
        h = self.conv2(self.activation2(self.norm2(h)))
        return x + h


class Resnet1D(nn.Module):
    def __init__(self, n_in: int, n_depth: int, dilation_growth_rate: int = 1, reverse_dilation: bool = True):
        super().__init__()
        blocks = [ResConv1DBlock(n_in, n_in, dilation=dilation_growth_rate**d) for d in range(n_depth)]
        if reverse_dilation:
            blocks = blocks[::-1]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Encoder(nn.Module):
    def __init__(self, input_dim: int, code_dim: int, down_t: int, stride_t: int, width: int, depth: int,
                 dilation_growth_rate: int):  # fmt: skip
        super().__init__()
        filter_t, pad_t = stride_t * 2, stride_t // 2
        blocks: list[nn.Module] = [nn.Conv1d(input_dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            blocks.append(nn.Sequential(
                nn.Conv1d(width, width, filter_t, stride_t, pad_t),
                Resnet1D(width, depth, dilation_growth_rate),  # the release's default reverse_dilation=True
            ))  # fmt: skip
        blocks.append(nn.Conv1d(width, code_dim, 3, 1, 1))
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, C_in, T) -> (B, code_dim, T / stride**down_t)


class Decoder(nn.Module):
    def __init__(self, input_dim: int, code_dim: int, down_t: int, stride_t: int, width: int, depth: int,
                 dilation_growth_rate: int):  # fmt: skip
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv1d(code_dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            blocks.append(nn.Sequential(
                Resnet1D(width, depth, dilation_growth_rate, reverse_dilation=True),
                nn.Upsample(scale_factor=stride_t, mode="nearest"),
                nn.Conv1d(width, width, 3, 1, 1),
            ))  # fmt: skip
        blocks += [nn.Conv1d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv1d(width, input_dim, 3, 1, 1)]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, code_dim, L) -> (B, C_in, L * stride**down_t)


class QuantizeEMAReset(nn.Module):
    """Codebook updated by exponential moving averages, not gradients; unused codes are reset to encoder outputs.

    `codebook` is the only buffer (as in the release); the EMA statistics `code_sum`/`code_count` are plain
    attributes, saved separately by the trainer (`ema_state`) so training can resume exactly."""

    def __init__(self, nb_code: int, code_dim: int, mu: float = 0.99):
        super().__init__()
        self.nb_code, self.code_dim, self.mu = nb_code, code_dim, mu
        self.register_buffer("codebook", torch.zeros(nb_code, code_dim))
        self.init = False  # a trained/loaded codebook sets this; training initializes from the first batch
        self.code_sum: torch.Tensor | None = None
        self.code_count: torch.Tensor | None = None

    def _tile(self, x: torch.Tensor) -> torch.Tensor:
        """At least nb_code rows of x (repeated with a little noise when the batch has fewer vectors)."""
        n, d = x.shape
        if n >= self.nb_code:
            return x
        out = x.repeat((self.nb_code + n - 1) // n, 1)
        return out + torch.randn_like(out) * (0.01 / np.sqrt(d))

    def init_codebook(self, x: torch.Tensor) -> None:
        self.codebook = self._tile(x)[: self.nb_code].clone()
        self.code_sum = self.codebook.clone()
        self.code_count = torch.ones(self.nb_code, device=x.device)
        self.init = True

    @torch.no_grad()
    def update_codebook(self, x: torch.Tensor, code_idx: torch.Tensor) -> torch.Tensor:
        onehot = torch.zeros(self.nb_code, x.shape[0], device=x.device)  # (nb_code, N*L)
        onehot.scatter_(0, code_idx.view(1, -1), 1)
        code_sum = onehot @ x  # (nb_code, code_dim)
        code_count = onehot.sum(-1)  # (nb_code,)
        code_rand = self._tile(x)[: self.nb_code]
        self.code_sum = self.mu * self.code_sum + (1.0 - self.mu) * code_sum
        self.code_count = self.mu * self.code_count + (1.0 - self.mu) * code_count
        usage = (self.code_count.view(-1, 1) >= 1.0).float()
        code_update = self.code_sum / self.code_count.view(-1, 1)
        self.codebook = usage * code_update + (1 - usage) * code_rand
        return _perplexity(code_count)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, code_dim) -> (N,) nearest code indices (squared L2, expanded as in the release)."""
        k_w = self.codebook.t()
        distance = (x**2).sum(-1, keepdim=True) - 2 * x @ k_w + (k_w**2).sum(0, keepdim=True)
        return distance.argmin(-1)

    def dequantize(self, code_idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(code_idx, self.codebook)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, _, t = x.shape
        x = x.permute(0, 2, 1).reshape(-1, x.shape[1])  # (B, C, T) -> (B*T, C)
        if self.training and not self.init:
            self.init_codebook(x)
        elif self.training and self.code_sum is None:  # a loaded codebook: its statistics start from it
            self.code_sum, self.code_count = self.codebook.clone(), torch.ones(self.nb_code, device=x.device)
        code_idx = self.quantize(x)
        x_d = self.dequantize(code_idx)
        if self.training:
            perplexity = self.update_codebook(x, code_idx)
        else:
            perplexity = _perplexity(torch.bincount(code_idx, minlength=self.nb_code).float())
        commit_loss = F.mse_loss(x, x_d.detach())
        x_d = x + (x_d - x).detach()  # straight-through
        return x_d.view(n, t, -1).permute(0, 2, 1).contiguous(), commit_loss, perplexity

    def ema_state(self) -> dict:
        return {"init": self.init, "code_sum": self.code_sum, "code_count": self.code_count}

    def load_ema_state(self, state: dict) -> None:
        self.init, self.code_sum, self.code_count = state["init"], state["code_sum"], state["code_count"]


def _perplexity(code_count: torch.Tensor) -> torch.Tensor:
    prob = code_count / code_count.sum()
    return torch.exp(-(prob * torch.log(prob + 1e-7)).sum())


@dataclass
class VQVAEConfig:
    nb_code: int = 512
    code_dim: int = 512
    width: int = 512
    down_t: int = 2
    stride_t: int = 2
    depth: int = 3
    dilation_growth_rate: int = 3
    mu: float = 0.99  # EMA decay of the codebook statistics
    input_dim: int = FEATURE_DIM

    @property
    def downsample(self) -> int:
        return self.stride_t**self.down_t


class MotionVQVAE(nn.Module):
    """The release's `HumanVQVAE.vqvae` (VQVAE_251): normalized features (B, T, 263) <-> codes (B, T/4)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        c = config
        args = (c.input_dim, c.code_dim, c.down_t, c.stride_t, c.width, c.depth, c.dilation_growth_rate)
        self.encoder = Encoder(*args)
        self.decoder = Decoder(*args)
        self.quantizer = QuantizeEMAReset(c.nb_code, c.code_dim, c.mu)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, 263) -> reconstruction (B, T, 263), commitment loss, perplexity."""
        z = self.encoder(x.permute(0, 2, 1).float())  # (B, code_dim, T/4)
        z_q, commit_loss, perplexity = self.quantizer(z)
        return self.decoder(z_q).permute(0, 2, 1), commit_loss, perplexity

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 263) -> (B, T/4) code indices."""
        z = self.encoder(x.permute(0, 2, 1).float()).permute(0, 2, 1)  # (B, T/4, code_dim)
        return self.quantizer.quantize(z.reshape(-1, z.shape[-1])).view(x.shape[0], -1)

    @torch.no_grad()
    def decode(self, code_idx: torch.Tensor) -> torch.Tensor:
        """(B, L) code indices -> (B, 4L, 263) normalized features (the release's forward_decoder, batched)."""
        z = self.quantizer.dequantize(code_idx).permute(0, 2, 1)  # (B, code_dim, L)
        return self.decoder(z).permute(0, 2, 1)

    def loss(self, x: torch.Tensor, commit: float = 0.02, loss_vel: float = 0.5) -> tuple[torch.Tensor, dict]:
        """The release's training loss: smooth-L1 reconstruction + loss_vel * smooth-L1 on the joint-position
        (ric) channels + commit * commitment."""
        recon, commit_loss, perplexity = self(x)
        rec = F.smooth_l1_loss(recon, x)
        pos = F.smooth_l1_loss(recon[..., RIC], x[..., RIC])
        total = rec + loss_vel * pos + commit * commit_loss
        return total, {"recon": rec.item(), "pos": pos.item(), "commit": commit_loss.item(),
                       "perplexity": perplexity.item()}  # fmt: skip

    # --- checkpoints ------------------------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        return {"config": asdict(self.config), "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> MotionVQVAE:
        model = cls(VQVAEConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"], strict=True)
        model.quantizer.init = True
        return model

    @classmethod
    def from_release(cls, state_dict: dict[str, torch.Tensor], config: VQVAEConfig | None = None) -> MotionVQVAE:
        """Build from the release's `net_last.pth["net"]` (HumanML3D config by default). The one key map: the
        release wraps this module as `HumanVQVAE.vqvae`, so every key carries the `vqvae.` prefix; nothing is
        skipped or transposed. Key count and every shape are checked before copying."""
        with torch.device("meta"):  # no throwaway initialization: every tensor comes from the release
            model = cls(config or VQVAEConfig())
        model.load_state_dict(map_release_state_dict(model, state_dict), strict=True, assign=True)
        model.quantizer.init = True
        return model


RELEASE_PREFIX = "vqvae."


def map_release_state_dict(model: nn.Module, released: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Release keys -> our keys, asserting the key set, count and every shape (raises ValueError naming them)."""
    ours = model.state_dict()
    mapped = {}
    for key, tensor in released.items():
        if not key.startswith(RELEASE_PREFIX):
            raise ValueError(f"unexpected key {key!r} in the VQ-VAE release state_dict (expected prefix 'vqvae.')")
        mapped[key[len(RELEASE_PREFIX) :]] = tensor
    missing, unexpected = sorted(set(ours) - set(mapped)), sorted(set(mapped) - set(ours))
    if missing or unexpected or len(mapped) != len(ours):
        raise ValueError(f"VQ-VAE release keys do not match: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"{len(mapped)} keys vs {len(ours)}")  # fmt: skip
    for key, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(ours[key].shape):
            raise ValueError(f"VQ-VAE release key {RELEASE_PREFIX}{key}: shape {tuple(tensor.shape)}, "
                             f"expected {tuple(ours[key].shape)}")  # fmt: skip
    return mapped
