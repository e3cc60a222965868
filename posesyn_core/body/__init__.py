"""Body models behind one interface (`BodyModel`): ANNY by default, SMPL when model files are supplied.

    body = load_body_model("anny", decimate_cell=0.03)
    out = body(body_pose, shape, global_orient, transl)   # out.joints (B, 22, 3), out.vertices (B, V, 3)
"""

from __future__ import annotations

from pathlib import Path

import torch

from posesyn_core.body.base import (
    JOINT_LIMITS,
    NUM_BODY_JOINTS,
    BodyModel,
    BodyOutput,
    RestSkeleton,
    clamp_to_limits,
    skeleton_fk,
)
from posesyn_core.errors import ConfigError

BODY_MODELS = ("anny", "smpl")


def load_body_model(
    kind: str = "anny",
    model_path: str | Path | None = None,
    device: str | torch.device = "cpu",
    decimate_cell: float | None = None,
) -> BodyModel:
    """The body model `kind`. ANNY loads from the installed package (first load builds a ~39 MB cache under
    ~/.cache/body-models, ~35 s); `decimate_cell` (metres) gives it a small mesh for small renders. SMPL needs
    `model_path` (the user's SMPL file or folder)."""
    if kind == "anny":
        from posesyn_core.body.anny import AnnyBody

        return AnnyBody(device=device, decimate_cell=decimate_cell)
    if kind == "smpl":
        if model_path is None:
            raise ConfigError("body model 'smpl' needs model_path (SMPL files are not distributed with PoseSyn)")
        from posesyn_core.body.smpl import SmplBody

        return SmplBody(model_path, device=device)
    raise ConfigError(f"unknown body model {kind!r}; known: {list(BODY_MODELS)}")


__all__ = ["BODY_MODELS", "JOINT_LIMITS", "NUM_BODY_JOINTS", "BodyModel", "BodyOutput", "RestSkeleton",
           "clamp_to_limits", "load_body_model", "skeleton_fk"]  # fmt: skip
