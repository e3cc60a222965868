"""The `retarget` stage: its config section and spec (light module: no torch at import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posesyn_core.config import Resources, StageSection
from posesyn_core.stages import StageSpec


class RetargetSection(StageSection):
    """Inverse kinematics from joint motions to body-model parameters, then placement in a reference camera."""

    motions: str = Field("msm/motions", description="Motion dataset prefix to fit (posesyn_core.data.motions).")
    references: str = Field(
        "eem/references.jsonl", description="Reference samples (non-challenging set) whose cameras host the bodies."
    )
    body_model: Literal["anny", "smpl"] = Field("anny", description="Body model to fit (SMPL needs model_path).")
    body_model_path: str | None = Field(None, description="SMPL model file or folder (body_model: smpl).")
    frames_per_motion: int = Field(
        16, ge=1, description="Frames fitted (and later animated) per motion, evenly spaced, incl. the hard frame."
    )
    iterations: int = Field(40, ge=0, description="Adam refinement steps per window after the analytic start.")
    shape_iterations: int = Field(5, ge=0, description="Gauss-Newton steps fitting one body shape per motion's bones.")
    lr: float = Field(0.005, gt=0, description="Adam learning rate of the refinement (radians, metres per step).")
    window: int = Field(64, ge=1, description="Frames optimized jointly; the next window starts from the last one.")
    smooth_weight: float = Field(0.02, ge=0, description="Weight of the penalty on the fit residual's acceleration.")
    limit_weight: float = Field(0.01, ge=0, description="Weight of the penalty on pose parameters beyond limits.")
    keep_trajectory: bool = Field(
        False, description="Keep the motion's horizontal root travel (the person may walk out of the image)."
    )
    max_error_mm: float = Field(
        60.0, gt=0, description="Motions fitted worse than this mean per-joint error are dropped (counted)."
    )
    motions_per_chunk: int = Field(16, ge=1, description="Motions per output chunk (the unit of resume).")


SPEC = StageSpec(
    name="retarget",
    section=RetargetSection,
    run="posesyn_core.retarget.stage:run",
    finalize="posesyn_core.retarget.stage:finalize",
    description="Fit body-model parameters to each synthesized motion (batched IK) and place the body in the "
    "camera of a reference image the way the reference person stands.",
    inputs=("msm", "eem"),
    outputs=("fits.jsonl", "summary.json"),
    resources=Resources(cpu="2", memory="4Gi"),
    shardable=True,
)
