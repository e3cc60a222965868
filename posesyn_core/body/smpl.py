"""SMPL through `smplx`, for users who supply the model files (they cannot be downloaded here).

SMPL already uses PoseSyn's pose convention (world-aligned axis-angle, T-pose at zero, y up facing +z), and its
first 22 joints are the canonical ones. We only move the origin to the pelvis so `transl` means the pelvis
position for every body model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from posesyn_core.body.base import BodyModel, _as_pose
from posesyn_core.errors import ConfigError
from posesyn_core.skeleton import NUM_JOINTS


class SmplBody(BodyModel):
    name = "smpl"

    def __init__(self, model_path: str | Path, gender: str = "neutral", num_betas: int = 10,
                 device: str | torch.device = "cpu"):  # fmt: skip
        super().__init__(device)
        import smplx

        path = Path(model_path)
        if not path.exists():
            raise ConfigError(f"body.model_path: {path} does not exist (a SMPL .pkl/.npz file or its folder)")
        try:
            self.model = smplx.SMPL(str(path), gender=gender, num_betas=num_betas).to(self.device)
        except (OSError, AssertionError, ValueError) as e:
            raise ConfigError(f"body.model_path: cannot load SMPL from {path}: {e}") from None
        self.num_shape_params = num_betas
        self.faces = np.asarray(self.model.faces, np.int64)
        part = self.model.lbs_weights.argmax(-1).cpu().numpy()
        self.vertex_part = np.where(part >= NUM_JOINTS, part - 2, part)  # SMPL's hand joints 22/23 -> wrists

    @property
    def num_vertices(self) -> int:
        return int(self.model.v_template.shape[0])

    def default_shape(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.num_shape_params, device=self.device)

    def random_shapes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # Betas are unit-variance PCA coefficients; +-1.5 sigma keeps bodies plausible.
        return np.clip(rng.normal(0, 0.8, (n, self.num_shape_params)), -1.5, 1.5).astype(np.float32)

    def _smpl_local(self, body_pose: torch.Tensor, shape: torch.Tensor | None):
        """smplx's output for the body pose (hands at rest), and its pelvis (B, 1, 3)."""
        b = body_pose.shape[0]
        betas = self.default_shape(b) if shape is None else torch.as_tensor(shape, dtype=torch.float32,
                                                                           device=self.device)  # fmt: skip
        # SMPL's body_pose has 23 joints (two hand joints beyond the canonical 21): keep those at rest.
        full = torch.cat([body_pose.reshape(b, -1), body_pose.new_zeros(b, 6)], 1)
        out = self.model(betas=betas, body_pose=full, global_orient=body_pose.new_zeros(b, 3),
                         transl=body_pose.new_zeros(b, 3))  # fmt: skip
        return out, out.joints[:, :1]

    def _forward_local(
        self, body_pose: torch.Tensor, shape: torch.Tensor | None, vertices: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, pelvis = self._smpl_local(body_pose, shape)
        return out.joints[:, :NUM_JOINTS] - pelvis, (out.vertices - pelvis) if vertices else None

    def joints24(
        self, body_pose: torch.Tensor, shape: torch.Tensor | None = None, global_orient: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """(B, 24, 3) SMPL's own joints (SMPL22, then the left and right hand) in the frame `forward` uses."""
        body_pose = _as_pose(torch.as_tensor(body_pose, dtype=torch.float32, device=self.device))
        out, pelvis = self._smpl_local(body_pose, shape)
        return self.place(out.joints[:, :24] - pelvis, global_orient, transl)
