"""The target pose estimator (TPE): a square RGB crop -> root-relative 3D joints + a weak-perspective camera.

A deliberately small ResNet-style CNN, so it trains in minutes on two CPU cores; the interface is the one of
real top-down regressors (HMR, 3DCrowdNet, HybrIK, 4DHumans heads):

    image crop (B, 3, S, S) RGB in [0, 1]
      -> joints3d (B, 22, 3): SMPL22 joints in the camera frame (OpenCV: x right, y down, z forward), metres,
         root-relative (pelvis at the origin)
      -> cam (B, 3): weak perspective (s, tx, ty); the joints project into the crop at
         x_n = s * X + tx, y_n = s * Y + ty, with (x_n, y_n) in [-1, 1] over the crop
         (`posesyn_core.geometry.weak_perspective_to_image` maps that to image pixels)

The crop is the person's bbox made square around its centre and enlarged by `crop_pad` (see `data.crop_box`).
Training uses mixed supervision, as real estimators do (`pose_loss`): an L1 loss on root-relative 3D joints where
3D labels exist, and a visibility-weighted L1 reprojection loss on 2D joints everywhere (the only signal for
2D-only datasets). Fine-tuning uses the same loss ("no new loss", PoseSyn).

References: He et al. 2016 (residual blocks); Kanazawa et al. 2018, HMR (weak-perspective camera, 2D
reprojection loss for 2D-only data); Moon et al. 2022, 3DCrowdNet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from posesyn_core import __version__
from posesyn_core.skeleton import NUM_JOINTS, ROOT

CHECKPOINT_FORMAT = "posesyn-tpe"
CHECKPOINT_VERSION = 1


class ResBlock(nn.Module):
    """Two 3x3 convs with batch norm and a residual path (1x1 conv when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.skip(x))


@dataclass
class TPEConfig:
    img_size: int = 64  # crop side in pixels; 64 trains in minutes on 2 cores and still resolves limbs
    crop_pad: float = 1.2  # crop side = crop_pad * max(bbox w, h): a little context around the person
    widths: tuple[int, ...] = (32, 64, 128, 192)  # channels per stage; stage i > 0 halves the resolution
    head_dim: int = 512
    num_joints: int = NUM_JOINTS
    loss_3d: float = 1.0  # weight of the root-relative 3D L1 loss (metres)
    loss_2d: float = 1.0  # weight of the 2D reprojection L1 loss (crop-normalized units, [-1, 1])

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)  # a checkpoint stores a list
        if self.img_size % (2 ** len(self.widths)) != 0:
            raise ValueError(f"img_size {self.img_size} must be divisible by 2**{len(self.widths)}")


class TPE(nn.Module):
    def __init__(self, config: TPEConfig):
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
        self.stages = nn.Sequential(*[ResBlock(w[max(i - 1, 0)], w[i], 1 if i == 0 else 2) for i in range(len(w))])
        side = config.img_size // 2 ** len(w)  # spatial size after the stem and the strided stages
        # Flatten instead of global pooling: where a joint is in the crop is what we regress.
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(w[-1] * side * side, config.head_dim), nn.ReLU(),
            nn.Linear(config.head_dim, config.num_joints * 3 + 3),
        )  # fmt: skip
        nn.init.zeros_(self.head[-1].weight)  # start at the mean pose (all zeros) and s = 1, t = 0
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) float RGB in [0, 1] -> joints3d (B, J, 3) root-relative metres, cam (B, 3)."""
        x = (images - 0.5) / 0.25  # roughly zero-mean, unit-variance pixels
        out = self.head(self.stages(self.stem(x)))  # (B, J*3 + 3)
        joints = out[:, :-3].reshape(-1, self.config.num_joints, 3)
        joints = joints - joints[:, ROOT : ROOT + 1]  # root-relative by construction
        # exp keeps the scale positive; s = 1 is about a standing person filling the padded crop.
        cam = torch.cat([out[:, -3:-2].exp(), out[:, -2:]], dim=1)
        return joints, cam

    def configure_optimizers(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """AdamW; no weight decay on batch-norm parameters and biases (1-D tensors)."""
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def project_weak(joints3d: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) root-relative joints + (B, 3) (s, tx, ty) -> (B, J, 2) crop-normalized coordinates."""
    return cam[:, None, :1] * joints3d[..., :2] + cam[:, None, 1:]


def pose_loss(
    joints3d: torch.Tensor, cam: torch.Tensor, target3d: torch.Tensor, has3d: torch.Tensor,
    target2d: torch.Tensor, visible: torch.Tensor, config: TPEConfig,
) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """Mixed supervision. target3d (B, J, 3) root-relative metres (any value where has3d (B,) is 0); target2d
    (B, J, 2) crop-normalized; visible (B, J) 0/1 (0 for joints a 2D dataset does not have).
    Returns the weighted total and its parts as floats for the loss log."""
    w3 = has3d.float()[:, None, None]
    l3d = ((joints3d - target3d).abs() * w3).sum() / (w3.sum() * joints3d.shape[1] * 3).clamp(min=1)
    v = visible.float()[..., None]
    l2d = ((project_weak(joints3d, cam) - target2d).abs() * v).sum() / (v.sum() * 2).clamp(min=1)
    total = config.loss_3d * l3d + config.loss_2d * l2d
    return total, {"loss": total.item(), "loss_3d": l3d.item(), "loss_2d": l2d.item()}


def checkpoint_dict(model: TPE, joint_set: str = "smpl22", **extra: object) -> dict:
    """What a TPE checkpoint holds: format, versions, the config that rebuilds the model, the joint set of its
    outputs, and the weights. Only tensors and plain types, so `torch.load(weights_only=True)` reads it."""
    config = asdict(model.config)
    config["widths"] = list(config["widths"])
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "posesyn_version": __version__,
        "torch_version": str(torch.__version__),
        "config": config,
        "joint_set": joint_set,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def model_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> TPE:
    """Rebuild a TPE from `checkpoint_dict` output; the architecture comes from the stored config."""
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{source}: not a PoseSyn TPE checkpoint (format {ckpt.get('format')!r})")
    if ckpt.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{source}: checkpoint format_version {ckpt.get('format_version')} is not "
                         f"{CHECKPOINT_VERSION}")  # fmt: skip
    if ckpt.get("joint_set") != "smpl22":
        raise ValueError(f"{source}: outputs joint set {ckpt.get('joint_set')!r}; only 'smpl22' is supported")
    model = TPE(TPEConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])  # strict: every key and shape must match
    return model

